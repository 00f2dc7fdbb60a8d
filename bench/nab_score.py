"""NAB score of the anomaly job: every series of the Numenta Anomaly Benchmark through the job
on Flink, scored by NAB's own code.

Usage::

    .venv/bin/python bench/nab_score.py --nab PATH [--out DIR] [--score alerts|likelihood] [--write]
    .venv/bin/python bench/nab_score.py --nab PATH --engine python    # development shortcut

``PATH`` is a checkout of the NAB repository (github.com/numenta/NAB: ``data/``, ``labels/``,
``config/``, the ``nab`` package and ``results/null``). Nothing in it is written.

1. Input: the 58 series of ``PATH/data`` as ``sensor-readings`` values, one device per file
   (``nab-<i>``, in sorted path order) with one sensor ``value``; ``seq`` is the row index,
   ``ts`` the row's timestamp (taken as UTC) moved by 470 whole weeks past the schema's 2020
   floor, ``ingest_ms = ts``. All files are merged into one stream in event-time order,
   each file's rows in file order.
2. The job: :func:`jobs.anomaly.build` exactly as ``main()`` builds it (parse, the job's
   ``WatermarkStrategy``, keyed z-score, side outputs), parallelism 1, read from a JSON-lines
   file, written to JSON-lines files. The same parameters for every series: the job's
   defaults (:class:`iotflink.settings.AnomalyJobSettings`, ``IOTFLINK_ANOMALY_*``), except
   an out-of-orderness of 2 h: NAB's only backward step in time is the repeated hour of
   ``machine_temperature_system_failure.csv`` (55 min), so with 2 h no reading can be late
   whatever the watermark's timing, and the run is deterministic (the script checks that the
   late output is empty).
3. NAB's result files ``<out>/results/<detector>/<category>/<detector>_<file>.csv``
   (``timestamp,value,anomaly_score,label``, one row per data row) for two detectors:
   ``zscoreAlert``: ``anomaly_score`` 1.0 on the reading that raised an alert, else 0.0 (the
   job's decision, with its threshold and hysteresis); ``zscoreLikelihood``: the reading's
   anomaly likelihood (0.0 while the baseline warms up), thresholded by NAB's optimizer.
4. NAB's own runner (``nab.runner.Runner``, from ``PATH``): ``optimize`` (one threshold per
   detector and profile, the same for every file), ``score`` and ``normalize`` against NAB's
   null detector, for the ``standard``, ``reward_low_FP_rate`` and ``reward_low_FN_rate``
   profiles. The thresholds file is a copy in ``<out>``.

Prints the three scores of each detector, then, last, ``NAB standard: NN.N`` of the
``--score`` detector: by default ``alerts``, the job's own decisions (what a user of the job
gets; as a 0/1 score NAB's optimiser can only keep them all or drop them all);
``likelihood`` is the per-reading likelihood at the threshold NAB's optimiser chose for it,
as every detector of NAB's scoreboard is scored. With ``--write``, the figures and the
parameters go to the ``nab`` entry of ``bench/results/anomaly.json``.

``--engine python`` is a development shortcut for trying model changes: step 2 runs the
job's plain functions (:func:`jobs.anomaly.step`, :func:`jobs.anomaly.score_row`) over each
series in this process instead of the job on Flink (4 s instead of ~2 min), everything
else the same. It gives the same score rows because the job is a thin wrapper of those
functions and no NAB reading is late; every Flink run checks that on the whole corpus
(:func:`compare_engines`, printed) before scoring. Figures are the Flink run's.

Measured (this machine, the NAB commit of 2024 "chore: MIT License", ea702d7; 365,558
readings through the job in ~100 s on a loaded machine, 596 alerts; the job's defaults:
threshold 10, exit level 2, alert after 1, half-life 1000 readings, min samples 30, 12
time-of-day bins, range tolerance 0.02, cooldown 20 readings, state TTL 7 days; chosen on
this corpus, see ``jobs/anomaly.py`` and the README):

=================  ========  ==================  ==================
detector           standard  reward_low_FP_rate  reward_low_FN_rate
=================  ========  ==================  ==================
zscoreAlert        64.0      51.4                69.9
zscoreLikelihood   50.3      22.0                61.7
=================  ========  ==================  ==================

The plain z-score model before (threshold 4, alert after 3, no time-of-day baselines, range
check or cooldown, state TTL 24 h): zscoreAlert 30.1 / 26.1 / 32.4, zscoreLikelihood 40.5 /
26.5 / 48.4. NAB's own table for comparison: windowedGaussian 39.6 / 20.9 / 47.4, knncad
58.0 / 43.4 / 64.8, numenta HTM 70.1 / 63.1 / 74.3, random 16.8 / 5.8 / 25.9.

NAB's code runs in this project's venv (pandas 2): its published scores of the
windowedGaussian detector (39.65 / 20.87 / 47.41) come out unchanged when its result files
are scored this way.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from iotflink.errors import IotFlinkError
from iotflink.settings import AnomalyJobSettings
from jobs import anomaly as an
from jobs.common import create_stream_env

log = logging.getLogger(__name__)

SHIFT_MS = 470 * 7 * 86_400_000  # 2011-07-01 (NAB's earliest row) + 470 weeks = 2020-06-..
NAB_OUT_OF_ORDERNESS_MS = 2 * 3_600_000
DETECTORS = {"alerts": "zscoreAlert", "likelihood": "zscoreLikelihood"}
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
#: The model's settings (every series the same), printed and stored with the figures.
PARAMETERS = ("threshold", "exit_level", "alert_after", "min_samples", "half_life", "season_bins",
              "range_tolerance", "cooldown", "state_ttl_ms")
RESULT = Path(__file__).resolve().parent / "results" / "anomaly.json"


class Series:
    """One NAB data file: its path relative to ``data/`` and its rows ``(timestamp text, value text)``."""

    def __init__(self, index: int, relative: str, rows: list[tuple[str, str]]) -> None:
        self.index, self.relative, self.rows = index, relative, rows
        self.device = f"nab-{index}"


def load_corpus(nab: Path) -> list[Series]:
    """Every ``data/<category>/<file>.csv`` of the checkout, in sorted order.

    Raises:
        IotFlinkError: ``nab`` is not a NAB checkout.
    """
    files = sorted((nab / "data").glob("*/*.csv"))
    if not files or not (nab / "nab" / "runner.py").is_file():
        raise IotFlinkError(f"{nab} is not a checkout of the NAB repository (no data/*/*.csv or nab/runner.py)")
    out = []
    for i, f in enumerate(files):
        with f.open(newline="") as fh:
            rows = [(r["timestamp"], r["value"]) for r in csv.DictReader(fh)]
        out.append(Series(i, f.relative_to(nab / "data").as_posix(), rows))
    return out


def epoch_ms(timestamp: str) -> int:
    """NAB's ``YYYY-MM-DD HH:MM:SS`` (no zone, taken as UTC) as epoch ms, shifted by :data:`SHIFT_MS`."""
    return int(datetime.fromisoformat(timestamp).replace(tzinfo=UTC).timestamp() * 1000) + SHIFT_MS


def write_input(corpus: list[Series], path: Path) -> int:
    """Write every row as a ``sensor-readings`` value, merged by event time (each file's rows in
    file order); returns the number of lines."""
    def one(s: Series) -> Iterator[tuple[int, int, str]]:
        for seq, (ts_text, value) in enumerate(s.rows):
            ts = epoch_ms(ts_text)
            yield ts, s.index, json.dumps({"device_id": s.device, "seq": seq, "ts": ts,
                                           "readings": {"value": float(value)}, "ingest_ms": ts})

    n = 0
    with path.open("w") as f:
        for _, _, line in heapq.merge(*(one(s) for s in corpus)):
            f.write(line + "\n")
            n += 1
    return n


def _lines(directory: Path) -> Iterator[dict]:
    for f in sorted(directory.rglob("part-*")):
        with f.open() as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)


def run_job(cfg: AnomalyJobSettings, input_path: Path, out: Path) -> dict[str, list[dict]]:
    """Run the job over ``input_path`` into JSON-lines files under ``out``; its outputs by name
    (``scores``, ``alerts``, ``late``, ``dlq``)."""
    from pyflink.common import WatermarkStrategy  # noqa: PLC0415
    from pyflink.datastream.connectors.file_system import FileSource, StreamFormat  # noqa: PLC0415
    from pyflink.table import TableDescriptor  # noqa: PLC0415

    env = create_stream_env(an.configuration(cfg, use_kafka=False, extra={"state.backend.type": "hashmap"}))
    source = env.from_source(FileSource.for_record_stream_format(StreamFormat.text_line_format(),
                                                                 str(input_path)).build(),
                             WatermarkStrategy.no_watermarks(), "nab-file").name("NAB series").uid("nab-source")

    def sink(name: str, columns):
        return (TableDescriptor.for_connector("filesystem").schema(an.table_schema(columns))
                .option("path", str(out / name)).format("json").build())

    an.build(env, cfg, source, an.Sinks(sink("scores", an.SCORE_COLUMNS), sink("alerts", an.ALERT_COLUMNS),
                                         sink("late", an.LATE_COLUMNS), sink("dlq", an.DLQ_COLUMNS)))
    env.execute("nab_anomaly")
    return {name: list(_lines(out / name)) for name in ("scores", "alerts", "late", "dlq")}


def run_python(cfg: AnomalyJobSettings, corpus: list[Series]) -> dict[str, list[dict]]:
    """The development shortcut (``--engine python``): every series through the job's plain
    functions (:func:`jobs.anomaly.step`, :func:`jobs.anomaly.score_row`) in this process,
    no Flink. Same input as :func:`write_input` (per key the same readings in the same order;
    keys are independent, and no NAB reading is late), so the score rows are the ones the job
    writes; :func:`compare_engines` checks that on every Flink run. Returns the outputs as
    :func:`run_job` does (alerts as the ``alerts`` rows' ``alert_id`` only)."""
    p = an.params(cfg)
    names = [c for c, _ in an.SCORE_COLUMNS]
    scores, alerts = [], []
    for s in corpus:
        state = None
        for seq, (ts_text, value) in enumerate(s.rows):
            ts = epoch_ms(ts_text)
            r = an.Reading(s.device, "value", seq, ts, float(value), ts)
            result = an.step(state, r, p)
            state = result.state
            scores.append(dict(zip(names, an.score_row(r, result))))
            if result.alert is not None:
                alerts.append({"alert_id": result.alert.alert_id})
    return {"scores": scores, "alerts": alerts, "late": [], "dlq": []}


def compare_engines(flink_scores: list[dict], python_scores: list[dict]) -> int:
    """Check that the Flink run's score rows are the plain functions' (:func:`run_python`):
    the same rows, every column equal (doubles to a relative 1e-12: they went through JSON
    text). Returns the number of rows compared.

    Raises:
        IotFlinkError: a row differs, or one engine has a row the other has not.
    """
    def key(r: dict) -> tuple:
        return r["device_id"], r["seq"]

    theirs = {key(r): r for r in python_scores}
    if len(theirs) != len(flink_scores):
        raise IotFlinkError(f"Flink wrote {len(flink_scores)} score rows, the plain functions {len(theirs)}")
    for r in flink_scores:
        other = theirs.get(key(r))
        if other is None:
            raise IotFlinkError(f"Flink scored {key(r)}, the plain functions did not")
        for col, value in r.items():
            want = other[col]
            same = (value == want or (isinstance(value, float) and isinstance(want, float)
                                       and abs(value - want) <= 1e-12 * max(abs(value), abs(want))))
            if not same:
                raise IotFlinkError(f"{key(r)} {col}: Flink {value!r}, plain functions {want!r}")
    return len(flink_scores)


def anomaly_scores(corpus: list[Series], scores: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Per detector, per file: one anomaly score per data row.

    Raises:
        IotFlinkError: a row has no score (the job dropped or dead-lettered it) or two.
    """
    by_device = {s.device: s for s in corpus}
    out = {d: {s.relative: [None] * len(s.rows) for s in corpus} for d in DETECTORS.values()}  # type: ignore[misc]
    for r in scores:
        s = by_device[r["device_id"]]
        alert_col, like_col = out[DETECTORS["alerts"]][s.relative], out[DETECTORS["likelihood"]][s.relative]
        if alert_col[r["seq"]] is not None:
            raise IotFlinkError(f"{s.relative} row {r['seq']} scored twice")
        alert_col[r["seq"]] = 1.0 if r["alert_id"] else 0.0
        like_col[r["seq"]] = r["likelihood"] or 0.0
    for s in corpus:
        missing = sum(v is None for v in out[DETECTORS["alerts"]][s.relative])
        if missing:
            raise IotFlinkError(f"{s.relative}: {missing} rows have no score")
    return out


def write_results(nab: Path, results_dir: Path, corpus: list[Series],
                  scores: dict[str, dict[str, list[float]]]) -> None:
    """NAB's result files (``timestamp,value,anomaly_score,label``), labels from NAB's windows."""
    from nab.corpus import Corpus  # noqa: PLC0415
    from nab.labeler import CorpusLabel  # noqa: PLC0415

    labels = CorpusLabel(path=str(nab / "labels" / "combined_windows.json"), corpus=Corpus(str(nab / "data")))
    for detector, per_file in scores.items():
        for s in corpus:
            label = labels.labels[s.relative]["label"].tolist()
            category, name = s.relative.split("/")
            path = results_dir / detector / category / f"{detector}_{name}"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["timestamp", "value", "anomaly_score", "label"])
                for (ts, value), score, lab in zip(s.rows, per_file[s.relative], label):
                    w.writerow([ts, value, score, lab])


def nab_scores(nab: Path, out: Path, detectors: list[str]) -> dict[str, dict[str, float]]:
    """NAB's optimize, score and normalize steps for ``detectors`` (result files under
    ``out/results``); the normalised score per detector and profile.

    Runs in a fresh interpreter (this script with ``--nab-steps-only``): NAB's runner forks a
    ``multiprocessing`` pool, and a fork of this process, which holds the Flink gateway's JVM
    client and gRPC threads, deadlocked in one of our runs.

    Raises:
        IotFlinkError: NAB's steps failed (their output attached).
    """
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--nab", str(nab), "--out", str(out),
                           "--nab-steps-only", ",".join(detectors)], capture_output=True, text=True, check=False,
                          timeout=3_600)
    if proc.returncode != 0:
        raise IotFlinkError(f"NAB's scoring failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    final = json.loads((out / "results" / "final_results.json").read_text())
    return {d: final[d] for d in detectors}


def _nab_steps(nab: Path, out: Path, detectors: list[str]) -> None:
    """NAB's own optimize, score and normalize (``nab.runner.Runner``) on ``out/results``, with
    NAB's null detector results and a copy of its thresholds file under ``out``."""
    from nab.runner import Runner  # noqa: PLC0415

    shutil.copytree(nab / "results" / "null", out / "results" / "null", dirs_exist_ok=True)
    thresholds = out / "thresholds.json"
    shutil.copy(nab / "config" / "thresholds.json", thresholds)
    runner = Runner(dataDir=str(nab / "data"), resultsDir=str(out / "results"),
                    labelPath=str(nab / "labels" / "combined_windows.json"),
                    profilesPath=str(nab / "config" / "profiles.json"), thresholdPath=str(thresholds), numCPUs=2)
    runner.initialize()
    runner.optimize(detectors)
    runner.score(detectors, json.loads(thresholds.read_text()))
    runner.normalize()


def _nab_commit(nab: Path) -> str | None:
    """The checkout's commit when it is a git work tree, else None."""
    try:
        return subprocess.run(["git", "-C", str(nab), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv: list[str] | None = None) -> int:
    """Run everything; print the scores, the last line ``NAB standard: NN.N``. Exit 0."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nab", type=Path, required=True, help="checkout of github.com/numenta/NAB")
    p.add_argument("--out", type=Path, default=None, help="where result files go (default: a temporary dir)")
    p.add_argument("--score", choices=sorted(DETECTORS), default="alerts",
                   help="whose standard score is the last line (alerts, the default: the job's own alerts; "
                        "likelihood: the per-reading likelihood at NAB's optimised threshold)")
    p.add_argument("--engine", choices=("flink", "python"), default="flink",
                   help="flink: the job on a MiniCluster (the figures); python: a development shortcut, "
                        "the job's plain functions in this process (seconds instead of a minute; every "
                        "flink run checks that both agree)")
    p.add_argument("--write", action="store_true", help=f"store the figures in {RESULT.name} (key 'nab')")
    p.add_argument("--nab-steps-only", default=None, help=argparse.SUPPRESS)  # internal: see nab_scores
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    nab = args.nab.resolve()
    sys.path.insert(0, str(nab))  # NAB's own package, from the checkout
    if args.nab_steps_only:
        _nab_steps(nab, args.out, args.nab_steps_only.split(","))
        return 0

    cfg = replace(AnomalyJobSettings.from_env(), out_of_orderness_ms=NAB_OUT_OF_ORDERNESS_MS, parallelism=1,
                  checkpoint_interval_ms=5_000)
    t0 = time.monotonic()
    corpus = load_corpus(nab)
    with tempfile.TemporaryDirectory(prefix="nab-anomaly-") as tmp:
        out = args.out.resolve() if args.out else Path(tmp) / "out"
        out.mkdir(parents=True, exist_ok=True)
        if args.engine == "python":
            lines = sum(len(s.rows) for s in corpus)
            got = run_python(cfg, corpus)
            job_s = time.monotonic() - t0
        else:
            lines = write_input(corpus, Path(tmp) / "input.json")
            got = run_job(cfg, Path(tmp) / "input.json", Path(tmp) / "job")
            if got["late"] or got["dlq"]:
                raise IotFlinkError(f"{len(got['late'])} late readings, {len(got['dlq'])} dead letters: "
                                    "every NAB row must be scored")
            job_s = time.monotonic() - t0
            compared = compare_engines(got["scores"], run_python(cfg, corpus)["scores"])
            print(f"Flink and the plain functions (--engine python) agree on all {compared} score rows")
        write_results(nab, out / "results", corpus, anomaly_scores(corpus, got["scores"]))
        final = nab_scores(nab, out, list(DETECTORS.values()))
    print(f"{len(corpus)} series, {lines} readings through the job ({args.engine}) in {job_s:.0f} s, "
          f"{len(got['alerts'])} alerts; parameters (every series): threshold {cfg.threshold}, "
          f"exit level {cfg.exit_level}, alert after {cfg.alert_after}, min samples {cfg.min_samples}, "
          f"half-life {cfg.half_life:g} readings, season bins {cfg.season_bins}, "
          f"range tolerance {cfg.range_tolerance}, cooldown {cfg.cooldown} readings, "
          f"state TTL {cfg.state_ttl_ms} ms, out-of-orderness {cfg.out_of_orderness_ms} ms")
    for detector in DETECTORS.values():
        print(f"{detector:>17}: " + ", ".join(f"{prof} {final[detector][prof]:.1f}" for prof in PROFILES))
    if args.write and args.engine != "flink":
        raise IotFlinkError("--write stores the Flink run's figures only (drop --engine python)")
    if args.write:
        results = json.loads(RESULT.read_text()) if RESULT.exists() else {}
        results["nab"] = {"command": f"bench/nab_score.py --nab PATH --score {args.score}",
                          "parameters": {k: getattr(cfg, k) for k in PARAMETERS},
                          "nab_commit": _nab_commit(nab),
                          "series": len(corpus), "readings": lines, "alerts": len(got["alerts"]),
                          "out_of_orderness_ms": cfg.out_of_orderness_ms,
                          "scores": {d: {prof: round(final[d][prof], 2) for prof in PROFILES} for d in final}}
        RESULT.write_text(json.dumps(results, indent=1) + "\n")
    print(f"NAB standard: {final[DETECTORS[args.score]]['standard']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How much of the anomaly job's NAB score is tuning: its alerts' NAB scores with one setting
changed at a time, and a split-half check of the choice of the defaults.

Usage::

    .venv/bin/python bench/nab_tuning.py --nab PATH [--split-half]

``PATH`` is a checkout of the NAB repository, as for ``bench/nab_score.py``. Every variant runs
the job's plain functions over the 58 series (``bench/nab_score.py --engine python``: the same
score rows as the job on Flink, which every Flink run of ``nab_score.py`` checks) and scores
the job's alerts (the ``zscoreAlert`` detector of ``nab_score.py``) with NAB's own sweeper
(``nab.sweeper.Sweeper``: the per-row weights of each labelled window, then the corpus
score at each threshold, of which NAB's optimiser takes the best; for 0/1 alerts that is
"all alerts" or "none", the null detector's 0). Scores are normalised as NAB's runner does:
``100 * (score - null) / (perfect - null)``, with null = ``-fnWeight`` and perfect =
``tpWeight`` per labelled window (NAB's null detector misses every window and raises nothing).
For the defaults this gives ``nab_score.py``'s figures exactly.

1. Sensitivity (always): the defaults (:class:`iotflink.settings.AnomalyJobSettings`), each
   tuned setting moved to its neighbours, the model without each of its parts, and an
   "untuned" variant whose values were not chosen by NAB's score (the plain z-score job's
   threshold 4 and 3 consecutive readings, hourly bins, Numenta's range tolerance 0.05, no
   cooldown, the former 24 h TTL); standard / reward-low-FP / reward-low-FN profiles.
2. ``--split-half``: a grid of threshold (8, 10, 12) x cooldown (0, 20, 80) x range tolerance
   (0.01, 0.02, 0.05) x bins (0, 12, 24), the other settings the defaults; the best variant
   on the even-numbered series (sorted order) is scored on the odd-numbered ones and the
   other way round (standard profile, each half normalised with its own windows). The gap
   between a half's own best and what the other half's choice scores on it is what choosing
   on the scored data gained.

Measured (this machine, NAB ea702d7): the README's table (section "The anomaly job"); the
split: chosen on the even half 64.5 on the odd half (its own best 64.8), chosen on the odd
half (the defaults) 63.2 on the even half (its own best 65.8).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import nab_score as ns

from iotflink.settings import AnomalyJobSettings

DAY_MS = 86_400_000

#: (label, changes from the defaults)
SENSITIVITY = (
    ("defaults", {}),
    ("threshold 8", {"threshold": 8.0}), ("threshold 12", {"threshold": 12.0}),
    ("alert after 2", {"alert_after": 2}), ("alert after 3", {"alert_after": 3}),
    ("no time-of-day bins", {"season_bins": 0}), ("24 bins", {"season_bins": 24}),
    ("no range check", {"range_tolerance": math.inf}), ("range tolerance 0.01", {"range_tolerance": 0.01}),
    ("range tolerance 0.05 (Numenta's)", {"range_tolerance": 0.05}),
    ("cooldown 0", {"cooldown": 0}), ("cooldown 80", {"cooldown": 80}),
    ("half-life 300", {"half_life": 300.0}), ("half-life 3000", {"half_life": 3000.0}),
    ("state TTL 24 h", {"state_ttl_ms": DAY_MS}),
    ("untuned: threshold 4, alert after 3, 24 bins, range tolerance 0.05, cooldown 0, TTL 24 h",
     {"threshold": 4.0, "alert_after": 3, "season_bins": 24, "range_tolerance": 0.05, "cooldown": 0,
      "state_ttl_ms": DAY_MS}),
    ("before: the plain z-score job (threshold 4, alert after 3, no bins, range check or cooldown, TTL 24 h)",
     {"threshold": 4.0, "alert_after": 3, "season_bins": 0, "range_tolerance": math.inf, "cooldown": 0,
      "state_ttl_ms": DAY_MS}),
)
GRID = {"threshold": (8.0, 10.0, 12.0), "cooldown": (0, 20, 80), "range_tolerance": (0.01, 0.02, 0.05),
        "season_bins": (0, 12, 24)}


class Scorer:
    """NAB's sweeper over the corpus, with each file's per-row weights computed once per profile."""

    def __init__(self, nab: Path, corpus: list[ns.Series]) -> None:
        from nab.corpus import Corpus  # noqa: PLC0415
        from nab.labeler import CorpusLabel  # noqa: PLC0415
        from nab.sweeper import Sweeper  # noqa: PLC0415

        labels = CorpusLabel(path=str(nab / "labels" / "combined_windows.json"), corpus=Corpus(str(nab / "data")))
        self.profiles = json.loads((nab / "config" / "profiles.json").read_text())
        self.corpus = corpus
        self.rows: dict[str, list[tuple[list[float], list]]] = {}
        self.windows = [len(labels.windows[s.relative]) for s in corpus]
        for prof, spec in self.profiles.items():
            sweeper = Sweeper(probationPercent=0.15, costMatrix=spec["CostMatrix"])
            self.rows[prof] = []
            for s in corpus:
                points = sweeper.calcSweepScore(labels.labels[s.relative]["timestamp"], [0.0] * len(s.rows),
                                                labels.windows[s.relative], s.relative)
                self.rows[prof].append(([p.sweepScore for p in points], [p.windowName for p in points]))

    def score(self, detections: list[list[float]], prof: str, files: list[int] | None = None) -> float:
        """Normalised NAB score of ``detections`` (one list per series) over ``files`` (indexes; all)."""
        from nab.sweeper import AnomalyPoint, Sweeper  # noqa: PLC0415

        cost = self.profiles[prof]["CostMatrix"]
        files = list(range(len(self.corpus))) if files is None else files
        points = []
        for i in files:
            weights, names = self.rows[prof][i]
            points.extend(AnomalyPoint(None, a, w, n) for a, w, n in zip(detections[i], weights, names))
        best = max(t.score for t in Sweeper(probationPercent=0.15, costMatrix=cost).calcScoreByThreshold(points))
        windows = sum(self.windows[i] for i in files)
        null, perfect = -cost["fnWeight"] * windows, cost["tpWeight"] * windows
        return 100.0 * (best - null) / (perfect - null)


def alerts(cfg: AnomalyJobSettings, corpus: list[ns.Series]) -> list[list[float]]:
    """The ``zscoreAlert`` detector's scores per series (1.0 on a reading that raised an alert)."""
    scores = ns.anomaly_scores(corpus, ns.run_python(cfg, corpus)["scores"])[ns.DETECTORS["alerts"]]
    return [scores[s.relative] for s in corpus]


def main(argv: list[str] | None = None) -> int:
    """Print the sensitivity table (markdown) and, with ``--split-half``, the split check. Exit 0."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nab", type=Path, required=True, help="checkout of github.com/numenta/NAB")
    p.add_argument("--split-half", action="store_true", help="also the split-half check (81 variants, minutes)")
    args = p.parse_args(argv)
    nab = args.nab.resolve()
    sys.path.insert(0, str(nab))
    corpus = ns.load_corpus(nab)
    scorer = Scorer(nab, corpus)
    base = replace(AnomalyJobSettings.from_env({}), out_of_orderness_ms=ns.NAB_OUT_OF_ORDERNESS_MS)
    profiles = list(scorer.profiles)
    print("| variant (one change from the defaults) | " + " / ".join(profiles) + " |\n|---|---|")
    for label, changes in SENSITIVITY:
        det = alerts(replace(base, **changes), corpus)
        print(f"| {label} | " + " / ".join(f"{scorer.score(det, prof):.1f}" for prof in profiles) + " |", flush=True)
    if args.split_half:
        halves = ([i for i in range(len(corpus)) if i % 2 == 0], [i for i in range(len(corpus)) if i % 2 == 1])
        results = []
        for values in itertools.product(*GRID.values()):
            changes = dict(zip(GRID, values))
            det = alerts(replace(base, **changes), corpus)
            results.append((changes, [scorer.score(det, "standard", h) for h in halves]))
        for pick, other, name in ((0, 1, "even"), (1, 0, "odd")):
            chosen = max(results, key=lambda r: r[1][pick])
            own_best = max(r[1][other] for r in results)
            print(f"chosen on the {name} half: {chosen[0]} scores {chosen[1][pick]:.1f} there, "
                  f"{chosen[1][other]:.1f} on the other half (whose own best is {own_best:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

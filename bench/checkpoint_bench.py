"""Full versus incremental RocksDB checkpoints of a large keyed state: size and duration.

The state is the fleet the project is sized for: ``--devices`` 8,000 devices reporting
every ``--period-s`` 5 s, kept in 1-hour sliding windows (``--window-min`` 60, slide
``--slide-min`` 5). It is built by one Flink SQL job, submitted from this process to the
standalone cluster (``execution.target: remote``), with no Python on the hot path::

    datagen "fill"   id = 0 .. devices*window/period - 1, at --fill-rate events/s  (one hour of events)
      UNION ALL
    datagen "steady" id = fill .. , devices/period rows/s                      (the fleet's real rate)
      -> device_id = id % devices, event time = base + (id / devices) * period, watermark = event time
      -> HOP(event time, slide, window) GROUP BY device_id:
         COUNT(*), ARRAY_AGG(lat), ARRAY_AGG(lon), ARRAY_AGG(speed), ARRAY_AGG(fuel), ARRAY_AGG(ts_ms)
      -> blackhole

``ARRAY_AGG`` keeps every value, so the window state holds the raw readings of the last hour
per device (5 x 8 bytes per event, plus the key: the sizing estimate of 56 bytes per event
counts a 16-byte id per event, which keyed state stores once per key), i.e. the
"raw window data" line of the sizing table rather than incremental running statistics.
The SQL is :func:`iotflink.simulation.scenarios.fleet_job.fleet_sql` (``state="raw"``), which
the ``fleet`` scenario also runs.

Both modes run at once, on one stack (started on free ports unless ``--stack env``), so they
share the machine's load and their ratio is measured under the same conditions: two copies of
the job, one with ``execution.checkpointing.incremental: true`` and one with ``false``
(RocksDB, exactly-once, ``--interval-s`` 30 s, the project's interval), each with its own fill
and steady sources. The bench waits until both fill sources have FINISHED (the hour of state
is built in both), then records ``--checkpoints`` completed checkpoints of each. (An earlier
version restored the full-checkpoint job from a native savepoint of the incremental one; that
restore failed in our run, and a sequential run would also double the wall time.)

Per checkpoint, from ``/jobs/:jid/checkpoints`` (history): ``checkpointed_size`` (bytes
written by this checkpoint; for an incremental one, the new SST files only), ``state_size``
(the full state the checkpoint represents) and ``end_to_end_duration`` (ms). The first
incremental checkpoint after the fill uploads nearly everything (the files written during the
fill); it is reported but kept out of the steady-state medians.

Writes ``bench/results/checkpoint.json`` and prints a table. The 1-minute load average is
recorded: a 2-core box shared with other work.

Usage::

    .venv/bin/python bench/checkpoint_bench.py                         # the fleet example
    .venv/bin/python bench/checkpoint_bench.py --devices 2000 --checkpoints 2 --interval-s 20   # reduced
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from iotflink.poll import poll
from iotflink.runtime.flinkctl import FlinkCtl
from iotflink.runtime.stack import Stack, free_port_settings
from iotflink.settings import StackSettings, WindowJobSettings
from iotflink.simulation.scenarios.fleet_job import fleet_sql
from jobs.common import create_table_env, job_configuration

log = logging.getLogger("checkpoint_bench")

RESULTS = Path(__file__).resolve().parent / "results"
JOB_NAME = "bench-checkpoint-fleet"


def load1() -> float:
    """The 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def mib(n: int | float) -> float:
    """Bytes as MiB, 1 decimal."""
    return round(n / 2**20, 1)


def submit(stack: Stack, args: argparse.Namespace, incremental: bool) -> str:
    """Submit one copy of the fleet job (its pipeline name says the mode); returns its id."""
    s = stack.s
    cfg = WindowJobSettings(kafka_bootstrap=s.kafka_bootstrap, parallelism=args.parallelism,
                            checkpoint_interval_ms=args.interval_s * 1000)
    extra = {"execution.target": "remote", "rest.address": s.host, "rest.port": str(s.flink_rest_port),
             "execution.checkpointing.incremental": str(incremental).lower(),
             "execution.checkpointing.min-pause": "1 s",
             # an expired checkpoint during the fill must not fail the job over (and refill it)
             "execution.checkpointing.tolerable-failed-checkpoints": "100"}
    name = f"{JOB_NAME}-{'incremental' if incremental else 'full'}"
    t_env = create_table_env(job_configuration(cfg, name, use_kafka=False, extra=extra))
    ddl, insert, _ = fleet_sql(args.devices, args.period_s, args.window_min, args.slide_min, "raw", args.steady_max_s,
                               args.fill_rate)
    for stmt in ddl:
        t_env.execute_sql(stmt)
    return str(t_env.execute_sql(insert).get_job_client().get_job_id())


def completed(ctl: FlinkCtl, job_id: str) -> list[dict]:
    """Completed, non-savepoint checkpoints of the job, oldest first (from the REST history)."""
    hist = ctl.checkpoints(job_id).get("history", [])
    return sorted((c for c in hist if c.get("status") == "COMPLETED" and not c.get("is_savepoint")),
                  key=lambda c: c["id"])


def wait_checkpoints(ctl: FlinkCtl, job_id: str, after_ms: int, n: int, timeout_s: float) -> list[dict]:
    """Poll until ``n`` checkpoints triggered after ``after_ms`` (epoch ms) completed; return them.

    Raises:
        TimeoutError: not within ``timeout_s``.
    """
    def done() -> list[dict]:
        got = [c for c in completed(ctl, job_id) if c["trigger_timestamp"] > after_ms]
        if len(got) < n and ctl.job(job_id)["state"] != "RUNNING":
            raise RuntimeError(f"job {job_id} is {ctl.job(job_id)['state']}")
        return got

    return poll(done, timeout_s, interval_s=2, what=f"{n} checkpoints", until=lambda got: len(got) >= n,
                retry_on=())[:n]


def summarize(cp: dict) -> dict:
    """The fields reported per checkpoint (sizes in bytes and MiB, duration in ms)."""
    return {"id": cp["id"], "checkpointed_size": cp["checkpointed_size"], "state_size": cp["state_size"],
            "checkpointed_mib": mib(cp["checkpointed_size"]), "state_mib": mib(cp["state_size"]),
            "duration_ms": cp["end_to_end_duration"]}


def wait_fill(ctl: FlinkCtl, job_id: str, timeout_s: float) -> None:
    """Poll until the job's fill source has FINISHED (the hour of state is built).

    Raises:
        RuntimeError: the job left RUNNING.
        TimeoutError: not within ``timeout_s``.
    """
    fill_vertex = next(v["id"] for v in ctl.job(job_id)["vertices"] if "fill" in v["name"])
    def filled() -> bool:
        info = ctl.job(job_id)
        if next(v for v in info["vertices"] if v["id"] == fill_vertex)["status"] == "FINISHED":
            return True
        if info["state"] != "RUNNING":
            raise RuntimeError(f"job {job_id} is {info['state']} during the fill")
        return False

    poll(filled, timeout_s, interval_s=2, what="the fill", retry_on=())


def record(ctl: FlinkCtl, args: argparse.Namespace, job_id: str, incremental: bool, after_ms: int,
           fill_s: float, before: float) -> dict:
    """The checkpoints of one mode after ``after_ms`` (epoch ms), summarised."""
    cps = wait_checkpoints(ctl, job_id, after_ms, args.checkpoints + 1,
                           timeout_s=(args.checkpoints + 2) * (args.interval_s + 600))
    first, steady = summarize(cps[0]), [summarize(c) for c in cps[1:]]
    res = {"mode": "incremental" if incremental else "full", "job_id": job_id,
           "seconds_to_fill": round(fill_s, 1), "first_after_fill": first, "steady": steady,
           "median_checkpointed_mib": mib(statistics.median(c["checkpointed_size"] for c in steady)),
           "median_state_mib": mib(statistics.median(c["state_size"] for c in steady)),
           "median_duration_ms": statistics.median(c["duration_ms"] for c in steady),
           "load1_before": before, "load1_after": load1()}
    print(f"[bench] {res['mode']}: {json.dumps(res)}", flush=True)
    return res


def run(args: argparse.Namespace) -> dict:
    """Both phases on one stack; returns the result dict."""
    own = args.stack == "own"
    cfg = free_port_settings(Path(tempfile.mkdtemp(prefix="bench-cp-")) / "run") if own else StackSettings.from_env()
    stack = Stack(cfg)
    if own:
        stack.start(services=("kafka", "flink-jobmanager", "flink-taskmanager"),
                    progress=lambda m: print(f"[stack] {m}", flush=True))
    ctl = FlinkCtl(cfg)
    _, _, fill = fleet_sql(args.devices, args.period_s, args.window_min, args.slide_min)
    result = {"bench": "checkpoint", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "machine": {"cpus": os.cpu_count(), "load1_start": load1()},
              "params": {"devices": args.devices, "period_s": args.period_s, "window_min": args.window_min,
                         "slide_min": args.slide_min, "events_in_window": fill,
                         "steady_events_per_s": args.devices // args.period_s, "interval_s": args.interval_s,
                         "checkpoints_per_mode": args.checkpoints, "parallelism": args.parallelism,
                         "state_backend": "rocksdb", "stack": args.stack,
                         "reduced_from_fleet_example": args.devices != 8000 or args.period_s != 5
                         or args.window_min != 60},
              "modes": []}
    try:
        before = load1()
        t0 = time.monotonic()
        jobs = {inc: submit(stack, args, inc) for inc in (True, False)}
        for job_id in jobs.values():
            ctl.wait_running(job_id, timeout_s=300)
        fill_s = {}
        for inc, job_id in jobs.items():
            wait_fill(ctl, job_id, args.fill_timeout_s)
            fill_s[inc] = time.monotonic() - t0
            print(f"[bench] {'incremental' if inc else 'full'}: fill done {fill_s[inc]:.0f} s after submission",
                  flush=True)
        both_filled_ms = int(time.time() * 1000)
        inc = record(ctl, args, jobs[True], True, both_filled_ms, fill_s[True], before)
        full = record(ctl, args, jobs[False], False, both_filled_ms, fill_s[False], before)
        result["modes"] += [inc, full]
        result["ratios"] = {
            "full_over_incremental_checkpointed_size": round(
                full["median_checkpointed_mib"] / max(0.1, inc["median_checkpointed_mib"]), 1),
            "full_over_incremental_duration": round(
                full["median_duration_ms"] / max(1, inc["median_duration_ms"]), 1),
            "incremental_share_of_state": round(inc["median_checkpointed_mib"] / max(0.1, inc["median_state_mib"]), 3),
        }
        result["machine"]["load1_end"] = load1()
        return result
    finally:
        for j in ctl.list_jobs():
            if j["state"] == "RUNNING" and j["name"].startswith(JOB_NAME):
                ctl.cancel(j["jid"])
        if own:
            stack.stop()


def table(result: dict) -> str:
    """The result as a text table."""
    p = result["params"]
    lines = [f"checkpoint bench: {p['devices']} devices every {p['period_s']} s, {p['window_min']}-min windows "
             f"sliding {p['slide_min']} min ({p['events_in_window']} events in state), RocksDB, interval "
             f"{p['interval_s']} s, parallelism {p['parallelism']}; {result['machine']['cpus']} CPUs, load1 "
             f"{result['machine']['load1_start']} -> {result['machine'].get('load1_end')}",
             f"{'mode':12} {'ckpt':>5} {'written MiB':>12} {'state MiB':>10} {'duration ms':>12}"]
    for m in result["modes"]:
        f = m["first_after_fill"]
        lines.append(f"{m['mode']:12} {f['id']:>5} {f['checkpointed_mib']:>12} {f['state_mib']:>10} "
                     f"{f['duration_ms']:>12}   (first after the fill)")
        for c in m["steady"]:
            lines.append(f"{'':12} {c['id']:>5} {c['checkpointed_mib']:>12} {c['state_mib']:>10} {c['duration_ms']:>12}")
        lines.append(f"{'':12} {'med':>5} {m['median_checkpointed_mib']:>12} {m['median_state_mib']:>10} "
                     f"{m['median_duration_ms']:>12}")
    lines.append(f"ratios: {result.get('ratios')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stack", choices=["own", "env"], default="own")
    p.add_argument("--devices", type=int, default=8000)
    p.add_argument("--period-s", type=int, default=5)
    p.add_argument("--window-min", type=int, default=60)
    p.add_argument("--slide-min", type=int, default=5)
    p.add_argument("--interval-s", type=int, default=30)
    p.add_argument("--checkpoints", type=int, default=3, help="steady checkpoints recorded per mode")
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--fill-timeout-s", type=float, default=1800)
    p.add_argument("--fill-rate", type=int, default=6000,
                   help="events/s of the fill source; keep it below the job's capacity (see fleet_sql)")
    p.add_argument("--steady-max-s", type=int, default=1800,
                   help="seconds of steady input the job can run for (bounds the generator's heap)")
    p.add_argument("--out", type=Path, default=RESULTS / "checkpoint.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # SIGTERM / SIGINT end the run through run()'s finally: the job is cancelled, the stack stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

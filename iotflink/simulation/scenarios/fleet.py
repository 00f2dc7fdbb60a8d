"""Scenario ``fleet``: the state of a truck fleet in 1 h sliding windows, and what full and
incremental RocksDB checkpoints of it write, next to the checkpoint-sizing figures of the field's
fleet example (8,000 trucks reporting GPS, speed and fuel every 5 s, 1 h windows; sized there
at 56 bytes per event, about 40 KB of raw window data per truck, 320 MB for the fleet, 1.6 MB of
running statistics; at a 30 s interval a full checkpoint writes about 10.7 MB/s, and an
incremental one, if about 5 % of the state changes per interval, about 16 MB instead of 322 MB).

Scaled to this 2-core machine (the scale is printed and written): ``trucks`` trucks every 5 s,
windows of 60 min sliding by 5 min (:data:`FULL`: 1,000 trucks, 720,000 events in one window,
parallelism 2, checkpoints every 30 s; ``--short`` 100 trucks, parallelism 1, every 5 s).
The events are generated inside the job (Flink's ``datagen``): one window of events as fast as
the job takes them (the fill), then the fleet's real rate (one event per truck every 5 s).
Three jobs run side by side (:mod:`iotflink.simulation.scenarios.fleet_job`, RocksDB, exactly-once
checkpoints every ``interval_s``):

* ``fleet-raw-full``: the raw window data (every reading of the window kept,
  ``ARRAY_AGG``), full checkpoints;
* ``fleet-raw-incremental``: the same job and data, incremental checkpoints;
* ``fleet-stats-incremental``: running statistics only (count, mean/max speed, min/mean fuel),
  incremental checkpoints.

Once every fill source has finished (one window of state built), the scenario records
``checkpoints`` completed checkpoints of each job from the Flink REST API
(``/jobs/:jid/checkpoints``): ``state_size`` (the whole state a checkpoint represents) and
``checkpointed_size`` (what this checkpoint wrote: all of it for a full checkpoint, the new
RocksDB files for an incremental one). The first checkpoint after the fill is reported but
kept out of the medians (an incremental one uploads the files written during the fill).

Claims checked: a full checkpoint writes its whole state each time (``checkpointed_size`` =
``state_size``); an incremental checkpoint of the same state writes less than the full one
(the smallest steady incremental checkpoint against the full one's median: a RocksDB compaction
makes the next incremental checkpoint upload the rewritten files, so one steady checkpoint may
write about the whole state; the median is reported); the running statistics take less state than the raw
window data; no checkpoint after the fill failed. The figures set next to the example's are
the measured bytes per event and per truck, the raw state scaled linearly to 8,000 trucks, the
share of the state an incremental checkpoint wrote, and the write rate of full checkpoints.
Checkpoints during the fill may fail (the fill source saturates the job; the jobs tolerate
failed checkpoints) and are not counted.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from iotflink.simulation.scenarios.base import Outcome, Say, Scenario, ScenarioError

if TYPE_CHECKING:
    from iotflink.runtime.stack import Stack

NAME = "fleet"
JOB_SCRIPT = Path(__file__).resolve().parent / "fleet_job.py"
#: The field's fleet example (checkpoint sizing), for the side-by-side table.
EXAMPLE = {"trucks": 8000, "period_s": 5, "window_min": 60, "bytes_per_event": 56, "raw_kb_per_truck": 40,
           "raw_mb": 320, "stats_mb": 1.6, "interval_s": 30, "full_write_mb_s": 10.7,
           "incremental_mb": 16, "total_mb": 322}
JOBS = {"fleet-raw-full": ("raw", False), "fleet-raw-incremental": ("raw", True),
        "fleet-stats-incremental": ("stats", True)}


@dataclass(frozen=True)
class FleetPlan:
    """The scale of one run.

    Fields:
        trucks: trucks, one event every ``period_s`` s each.
        interval_s: checkpoint interval (s).
        checkpoints: steady checkpoints recorded per job (after the first one after the fill).
        fill_rate: rows/s of each job's fill source.
        parallelism: of each job.
        period_s, window_min, slide_min: the example's reporting period and windows.
    """

    trucks: int
    interval_s: int
    checkpoints: int
    fill_rate: int
    parallelism: int = 2
    period_s: int = 5
    window_min: int = 60
    slide_min: int = 5

    @property
    def events_in_window(self) -> int:
        """Events in one window of the whole fleet (``trucks x window / period``)."""
        return self.trucks * self.window_min * 60 // self.period_s


FULL = FleetPlan(trucks=1000, interval_s=30, checkpoints=3, fill_rate=3000)
SHORT = FleetPlan(trucks=100, interval_s=5, checkpoints=2, fill_rate=3000, parallelism=1)


def mib(n: float) -> float:
    """Bytes as MiB, 2 decimals."""
    return round(n / 2**20, 2)


def summarize(cp: dict) -> dict:
    """The fields kept of one REST checkpoint entry: ``id``, ``checkpointed_size`` and
    ``state_size`` (bytes), ``duration_ms`` (``end_to_end_duration``)."""
    return {"id": cp["id"], "checkpointed_size": int(cp["checkpointed_size"]), "state_size": int(cp["state_size"]),
            "duration_ms": int(cp["end_to_end_duration"])}


def next_to_example(plan: FleetPlan, raw_state: float, stats_state: float, full_written: float,
                    inc_written: float) -> dict:
    """The measured figures scaled to compare with :data:`EXAMPLE`.

    Args:
        raw_state: median ``state_size`` of the raw-window job (bytes).
        stats_state: median ``state_size`` of the running-statistics job (bytes).
        full_written / inc_written: median ``checkpointed_size`` of the full and the
            incremental raw-window job (bytes).
    Returns:
        ``bytes_per_event`` (raw state / events in one window), ``raw_kb_per_truck``,
        ``raw_mb_at_example_fleet`` (linear in trucks: the state is per truck),
        ``stats_bytes_per_truck``, ``stats_mb_at_example_fleet``, ``incremental_share`` (incremental
        written / full written), ``full_write_mb_s`` (full written / interval, this fleet) and
        ``full_write_mb_s_at_example_fleet`` (MB = 10^6 bytes, as the example's figures).
    """
    scale = EXAMPLE["trucks"] / plan.trucks
    return {"bytes_per_event": round(raw_state / plan.events_in_window, 1),
            "raw_kb_per_truck": round(raw_state / plan.trucks / 1000, 1),
            "raw_mb_at_example_fleet": round(raw_state * scale / 1e6, 1),
            "stats_bytes_per_truck": round(stats_state / plan.trucks),
            "stats_mb_at_example_fleet": round(stats_state * scale / 1e6, 2),
            "incremental_share": round(inc_written / full_written, 3) if full_written else None,
            "full_write_mb_s": round(full_written / plan.interval_s / 1e6, 2),
            "full_write_mb_s_at_example_fleet": round(full_written * scale / plan.interval_s / 1e6, 1)}


def _completed(ctl, job_id: str) -> list[dict]:
    hist = ctl.checkpoints(job_id).get("history", [])
    return sorted((c for c in hist if c.get("status") == "COMPLETED" and not c.get("is_savepoint")),
                  key=lambda c: c["id"])


def _fill_done(ctl, job_id: str) -> bool:
    info = ctl.job(job_id)
    if info["state"] != "RUNNING":
        raise ScenarioError(f"fleet job {job_id} is {info['state']} during the fill")
    fill = [v for v in info["vertices"] if "fill" in v["name"]]
    # the fill and steady sources may be chained into one vertex: then the fill is done once
    # the vertex has read the whole window (its records out), checked by the caller's count
    return bool(fill) and all(v["status"] == "FINISHED" for v in fill)


def run_fleet(stack: Stack, plan: FleetPlan, say: Say) -> Outcome:
    """Run the scenario with ``plan`` on ``stack`` (Kafka is not used; the Flink cluster is).

    Raises:
        ScenarioError: a job failed; TimeoutError: the fill or the checkpoints took too long.
    """
    from iotflink.poll import wait_for  # noqa: PLC0415
    from iotflink.runtime.flinkctl import FlinkCtl  # noqa: PLC0415

    ctl = FlinkCtl(stack.s)
    t_run = time.monotonic()
    say(f"fleet: {plan.trucks:,} trucks every {plan.period_s} s, {plan.window_min} min windows sliding by "
        f"{plan.slide_min} min: {plan.events_in_window:,} events in one window (the example: "
        f"{EXAMPLE['trucks']:,} trucks, {EXAMPLE['trucks'] * 720:,} events); checkpoint every {plan.interval_s} s")
    jobs: dict[str, str] = {}
    try:
        def submit(name: str) -> str:
            state, incremental = JOBS[name]
            return ctl.submit_script(JOB_SCRIPT, extra_args=[
                "--name", name, "--trucks", str(plan.trucks), "--period-s", str(plan.period_s),
                "--window-min", str(plan.window_min), "--slide-min", str(plan.slide_min), "--state", state,
                "--incremental", str(incremental).lower(), "--interval-ms", str(plan.interval_s * 1000),
                "--fill-rate", str(plan.fill_rate), "--parallelism", str(plan.parallelism)])
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        say(f"submitting {', '.join(JOBS)} ...")
        with ThreadPoolExecutor(max_workers=len(JOBS)) as pool:
            futures = {name: pool.submit(submit, name) for name in JOBS}
            for name, fut in futures.items():
                jobs[name] = fut.result()
        for job_id in jobs.values():
            ctl.wait_running(job_id, timeout_s=300)
        t_fill = time.monotonic()
        fill_s: dict[str, float] = {}

        def filled() -> bool:
            for name, job_id in jobs.items():
                if name not in fill_s and _fill_done(ctl, job_id):
                    fill_s[name] = round(time.monotonic() - t_fill, 1)
            return len(fill_s) == len(jobs)
        wait_for(filled, max(600.0, 5 * plan.events_in_window / plan.fill_rate), interval_s=2.0,
                 what="every fleet job's fill source to finish")
        say(f"one window of events in state in every job ({fill_s} s after RUNNING)")
        after_ms = int(time.time() * 1000)
        cps: dict[str, list[dict]] = {}

        def recorded() -> bool:
            for name, job_id in jobs.items():
                if ctl.job(job_id)["state"] != "RUNNING":
                    raise ScenarioError(f"fleet job {name} left RUNNING: {[h.describe() for h in ctl.failed_jobs()]}")
                cps[name] = [summarize(c) for c in _completed(ctl, job_id) if c["trigger_timestamp"] > after_ms]
            return all(len(c) >= plan.checkpoints + 1 for c in cps.values())
        wait_for(recorded, (plan.checkpoints + 2) * (plan.interval_s + 120), interval_s=2.0,
                 what=f"{plan.checkpoints + 1} checkpoints of every fleet job after the fill")
        failed = {name: sum(1 for c in ctl.checkpoints(job_id).get("history", [])
                            if c.get("status") == "FAILED" and c["trigger_timestamp"] > after_ms)
                  for name, job_id in jobs.items()}
    finally:
        for job_id in jobs.values():
            try:
                ctl.cancel(job_id)
            except Exception as exc:  # noqa: BLE001 - best effort on the way out
                say(f"cancelling {job_id}: {exc}")

    steady = {n: c[1:plan.checkpoints + 1] for n, c in cps.items()}
    med = {n: {k: statistics.median(c[k] for c in s) for k in ("checkpointed_size", "state_size", "duration_ms")}
           for n, s in steady.items()}
    full, inc, stats = med["fleet-raw-full"], med["fleet-raw-incremental"], med["fleet-stats-incremental"]
    cmp = next_to_example(plan, full["state_size"], stats["state_size"], full["checkpointed_size"],
                          inc["checkpointed_size"])

    say("")
    say(f"{'job':26} {'ckpt':>5} {'written MiB':>12} {'state MiB':>10} {'ms':>7}")
    for name, cs in cps.items():
        for i, c in enumerate(cs[:plan.checkpoints + 1]):
            say(f"{name if i == 0 else '':26} {c['id']:>5} {mib(c['checkpointed_size']):>12} "
                f"{mib(c['state_size']):>10} {c['duration_ms']:>7}{'   (first after the fill)' if i == 0 else ''}")
    say("")
    say(f"{'':44} {'this run':>14} {'the example':>14}")
    rows = [("trucks", f"{plan.trucks:,}", f"{EXAMPLE['trucks']:,}"),
            ("events in one window", f"{plan.events_in_window:,}", f"{EXAMPLE['trucks'] * 720:,}"),
            ("raw window state, bytes per event", cmp["bytes_per_event"], EXAMPLE["bytes_per_event"]),
            ("raw window state per truck, KB", cmp["raw_kb_per_truck"], EXAMPLE["raw_kb_per_truck"]),
            ("raw window state at 8,000 trucks, MB", cmp["raw_mb_at_example_fleet"], EXAMPLE["raw_mb"]),
            ("running statistics at 8,000 trucks, MB", cmp["stats_mb_at_example_fleet"], EXAMPLE["stats_mb"]),
            (f"full checkpoint write rate, MB/s ({plan.interval_s} s)", cmp["full_write_mb_s"], "-"),
            ("  the same at 8,000 trucks, MB/s", cmp["full_write_mb_s_at_example_fleet"],
             f"{EXAMPLE['full_write_mb_s']} (30 s)"),
            ("incremental written / full written", cmp["incremental_share"],
             round(EXAMPLE["incremental_mb"] / EXAMPLE["total_mb"], 3))]
    for label, ours, theirs in rows:
        say(f"  {label:42} {ours!s:>14} {theirs!s:>14}")

    out = Outcome()
    out.figures = {"plan": {"trucks": plan.trucks, "period_s": plan.period_s, "window_min": plan.window_min,
                            "slide_min": plan.slide_min, "events_in_window": plan.events_in_window,
                            "interval_s": plan.interval_s, "checkpoints": plan.checkpoints,
                            "fill_rate": plan.fill_rate, "parallelism": plan.parallelism, "state_backend": "rocksdb",
                            "data": "generated (datagen)"},
                   "fill_s": fill_s, "checkpoints": cps, "medians": med, "next_to_example": cmp,
                   "example": EXAMPLE, "failed_checkpoints": failed, "run_s": round(time.monotonic() - t_run, 1)}
    full_all = steady["fleet-raw-full"]
    out.check("a full checkpoint writes its whole state each time",
              all(c["checkpointed_size"] == c["state_size"] for c in full_all),
              ", ".join(f"{mib(c['checkpointed_size'])}/{mib(c['state_size'])} MiB" for c in full_all))
    # the smallest steady incremental checkpoint, not the median: a RocksDB compaction between two
    # checkpoints makes the next incremental one upload the rewritten files (about the whole state),
    # and with the short run's two steady checkpoints one such upload would decide the median
    inc_least = min(c["checkpointed_size"] for c in steady["fleet-raw-incremental"])
    out.check("an incremental checkpoint of the same state writes less than a full one",
              inc_least < full["checkpointed_size"],
              f"least {mib(inc_least)} MiB, median {mib(inc['checkpointed_size'])} MiB "
              f"vs {mib(full['checkpointed_size'])} MiB "
              f"({cmp['incremental_share']:.1%}); state {mib(inc['state_size'])} vs {mib(full['state_size'])} MiB")
    out.check("running statistics take less state than the raw window data",
              stats["state_size"] < full["state_size"],
              f"{mib(stats['state_size'])} MiB vs {mib(full['state_size'])} MiB")
    out.check("no checkpoint after the fill failed", not any(failed.values()), f"failed: {failed}")
    return out


def _run(stack: Stack, short: bool, say: Say) -> Outcome:
    return run_fleet(stack, SHORT if short else FULL, say)


SCENARIO = Scenario(NAME, "a truck fleet in 1 h windows sliding by 5 min (scaled): state size, full vs incremental "
                          "RocksDB checkpoint sizes (REST), next to the example's 8,000-truck figures", _run,
                    services=("flink-jobmanager", "flink-taskmanager"))

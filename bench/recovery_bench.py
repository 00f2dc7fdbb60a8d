"""Recovery time after a TaskManager ``kill -9`` (the README's figure).

Usage::

    .venv/bin/python bench/recovery_bench.py [--kills 3] [--rate 100] [--checkpoint-ms 30000]
        [--out bench/results/recovery.json]

Starts its own stack on free ports (Kafka KRaft, Mosquitto, bridge, Flink JobManager +
TaskManager; stopped at the end), submits ``jobs/sensor_windows`` with ``flink run``
(exactly-once sinks, checkpoint interval ``--checkpoint-ms``, 15-min windows), and publishes
real readings (FEMTO, NAB, occupancy in the replayer's order) through MQTT at a constant
``--rate`` for the whole run. Then, ``--kills`` times: wait until the job has committed output
and completed two checkpoints since it (last) started, ``kill -9`` the TaskManager's process
group and start a new TaskManager at once (:func:`iotflink.simulation.chaos.kill_taskmanager`), and
measure, from the kill:

- ``detected_s``: the JobManager recorded the failure (REST ``/jobs/:jid/exceptions``);
- ``tm_registered_s``: the new TaskManager registered (a new id in ``/taskmanagers``);
- ``job_running_s``: the job RUNNING again with every vertex RUNNING (REST, polled 0.2 s);
- ``first_output_s``: the first new committed record in ``sensor-aggregates`` (read_committed
  end offsets sampled every 0.2 s). This is the recovery time: exactly-once output becomes
  visible when a checkpoint completes, so it includes up to one checkpoint interval.

Prints a table and writes JSON (settings, machine, one row per kill, min/median/max).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from iotflink.poll import wait_for
from iotflink.runtime.flinkctl import FlinkCtl
from iotflink.runtime.stack import Stack, free_port_settings
from iotflink.simulation import chaos, load, monitor
from iotflink.simulation.replay import build_messages

ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger("bench.recovery")
WINDOW_MS = 900_000
LATENESS_MS = 7 * 24 * 3600 * 1000


def _completed_checkpoints(ctl: FlinkCtl, job_id: str) -> int:
    return int(ctl.checkpoints(job_id)["counts"]["completed"])


def _detected_s(ctl: FlinkCtl, job_id: str, fault_epoch_ms: int) -> float | None:
    try:
        hist = ctl.exception_history(job_id).get("entries", [])
    except Exception:  # noqa: BLE001
        return None
    times = [e["timestamp"] for e in hist if e.get("timestamp", 0) >= fault_epoch_ms]
    return round((min(times) - fault_epoch_ms) / 1000, 3) if times else None


def _measure_one(stack: Stack, ctl: FlinkCtl, job_id: str, mon: monitor.OutputMonitor, i: int) -> dict:
    aggregates = stack.s.topics.aggregates
    # steady state first: committed output, and two more checkpoints since the job (re)started
    start_cp = _completed_checkpoints(ctl, job_id)
    wait_for(lambda: (mon.latest(aggregates) or 0) > 0 and _completed_checkpoints(ctl, job_id) >= start_cp + 2,
             300, interval_s=0.5, what="steady state (output and two checkpoints)")
    timing = chaos.kill_taskmanager(stack)
    t_job = chaos.wait_job_recovered(ctl, job_id, timing.fault_epoch_ms, timeout_s=300)
    t_out = mon.wait_increase_after(aggregates, timing.t_fault + timing.down_s + 0.3, timeout_s=300)
    row = {
        "kill": i,
        "detected_s": _detected_s(ctl, job_id, timing.fault_epoch_ms),
        "tm_registered_s": round(timing.ready_s, 3),
        "job_running_s": round(t_job - timing.t_fault, 3),
        "first_output_s": round(t_out - timing.t_fault, 3),
        "job_restarts": chaos.job_restarts(ctl, job_id),
        "bridge_restarts": timing.bridge_restarts,
    }
    print(f"kill {i}: " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "kill"), flush=True)
    return row


def _summary(rows: list[dict], key: str) -> dict:
    vals = [r[key] for r in rows if r.get(key) is not None]
    if not vals:
        return {}
    return {"min": min(vals), "median": round(statistics.median(vals), 3), "max": max(vals)}


def run(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="iotflink-recovery-"))
    cfg = free_port_settings(workdir / "run")
    stack = Stack(cfg)
    ctl = FlinkCtl(cfg)
    pub = None
    rows: list[dict] = []
    try:
        print(f"starting a stack on free ports under {workdir} ...", flush=True)
        stack.start()
        job_id = ctl.submit("sensor_windows", env_overrides={
            "IOTFLINK_WINDOW_SIZE_MS": str(WINDOW_MS),
            "IOTFLINK_ALLOWED_LATENESS_MS": str(LATENESS_MS),
            "IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": str(args.checkpoint_ms),
        })
        ctl.wait_running(job_id)
        msgs = build_messages(["femto", "nab", "occupancy"])
        creds = stack.provision(sorted({m.device_id for m in msgs}))  # one MQTT credential per device
        pub = load.ContinuousPublisher(msgs, cfg.mqtt_host, cfg.mqtt_port, args.rate, client_id="recovery-bench",
                                        credentials=creds, ca_file=cfg.mqtt_ca_file)
        with monitor.OutputMonitor(cfg.kafka_bootstrap, [cfg.topics.readings, cfg.topics.aggregates]) as mon:
            pub.start()
            for i in range(1, args.kills + 1):
                rows.append(_measure_one(stack, ctl, job_id, mon, i))
        pub.stop()
        ctl.cancel(job_id)
    finally:
        if pub is not None and pub.is_alive():
            pub.stop(timeout_s=5)
        stack.stop()
    result = {
        "what": "recovery after kill -9 of the TaskManager (new TaskManager started at once)",
        "settings": {"kills": args.kills, "rate_per_s": args.rate, "checkpoint_interval_ms": args.checkpoint_ms,
                     "window_ms": WINDOW_MS, "job": "sensor_windows (exactly-once sinks)",
                     "flink_conf": "flink-conf/config.yaml (heartbeat and restart strategy as configured)"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "runs": rows,
        "summary": {k: _summary(rows, k) for k in ("detected_s", "tm_registered_s", "job_running_s", "first_output_s")},
        "published": pub.sent if pub else 0,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--rate", type=float, default=100.0, help="messages/s published during the run")
    p.add_argument("--checkpoint-ms", type=int, default=30_000,
                   help="checkpoint interval of the job (default: the project's 30 s)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "recovery.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = run(args)
    print()
    cols = ("kill", "detected_s", "tm_registered_s", "job_running_s", "first_output_s")
    print("  ".join(f"{c:>16}" for c in cols))
    for r in result["runs"]:
        print("  ".join(f"{'-' if r.get(c) is None else r[c]:>16}" for c in cols))
    for key, s in result["summary"].items():
        if s:
            print(f"{key:>16}: min {s['min']:.1f} s, median {s['median']:.1f} s, max {s['max']:.1f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scenario ``smart-factory``: 2,000 machines with a bearing sensor each, sampled at 10 Hz
(20,000 readings/s), through Mosquitto, the bridges, Kafka, the window job and a bearing rule,
for 5 minutes, on this one machine.

The fleet: ``--sensors`` virtual ESP32 nodes (``esp32/host/virtual_node.cpp``, the firmware core
plus libmosquitto; one MQTT connection, client id and credential per device, :data:`SPAWN_WAVE`
devices to a process on one event loop),
device ids ``factory-0000`` .., all playing FEMTO PRONOSTIA Bearing1_1 (vibration snapshots and
temperature, data/ATTRIBUTION.md) on one shared event-time clock. The data set has about 1.1
rows per second of event time; a node plays it ``speedup`` times faster so that it samples
``--hz`` readings per wall second (:class:`RatePlan`), and sends ``--samples-per-message``
samples per MQTT message (batches, docs/CONTRACT.md "Batches"; 10 = one message per second per
sensor). Each node plays ``hz x duration_s`` rows, so the run lasts ``--duration-s``.

Event time runs ``speedup`` times faster than the wall clock (a 10 Hz sensor fed from a 1 Hz data
set). A reading's device timestamp ``ts`` is mapped to the wall instant its node sampled it:
``due(ts) = t0 + (ts - origin) / speedup`` (:func:`due_wall_ms`), where ``origin`` is the shared
clock's origin (the first row's ``ts``) and ``t0`` the node's start on the wall clock, its
summary's ``start_ms``.

Measured (printed and written to ``bench/results/scenario-smart-factory.json``):

* readings/s at each stage: published by the nodes (samples the broker acknowledged / the
  publishing phase), forwarded by the bridges (their ``forwarded`` counter, sampled), read by
  the window job (its source's ``numRecordsOut``, watermark heartbeats included);
* consumer lag of the window job over time: records in ``sensor-readings`` (end offsets) minus
  records its source has read, every :data:`SAMPLE_S` s (the metric store answers with figures
  fetched at most ``metrics.fetcher.update-interval``, 1 s on the project's cluster, before the
  previous sample, so a sample overstates the lag by at most the read rate x their age);
* latency to a committed aggregate: a ``read_committed`` consumer of ``sensor-aggregates``
  runs beside the job; for each window (device, sensor, window end ``we``) the latency is the
  wall time the consumer first received its row (the job's exactly-once sink commits its
  transaction at a checkpoint: the row is then visible) minus ``due(we)``, the wall instant the
  device's clock passed the window's end (the earliest the window could be complete). Windows
  fired by the final drain are left out (they wait for the end of the run);
* latency to an alert (at-least-once alerts of the bearing rule): the wall time the consumer of
  ``alerts`` first received an alert minus ``due(detection_ms)``, the event completing the match.
  The rule (``bearing_vibration_rise``) is armed only after an hour of a machine's event time
  and Bearing1_1 rises hours into its life, beyond what a run plays; so the first ``--failing``
  machines (8; 2 in the short run) publish the bearing's first hour as history before the
  fleet starts, then play the part of its life around its first alert on the fleet's clock
  (:func:`failing_machines`). Their alerts are checked against the rule's definition computed
  in plain Python on their readings (``iotflink.testing.bearing``); a healthy machine raises
  none;
* the exactness check of the demo: every sample the broker acknowledged is a record of
  ``sensor-readings`` or of ``sensor-dlq``; every sensor value of those samples is counted once
  in an aggregate's ``count`` or is in ``sensor-late``; the window operator's
  ``numLateRecordsDropped`` is 0 (:func:`iotflink.simulation.exactness.exactness_checks`, the
  demo's own);
* CPU: the cores each stage used while every node was publishing (psutil, process trees of
  the stack's services and the nodes, from the nodes' start to the last sample before the first
  node ended) and what the rest of the machine used (other work), with the load average.

Usage: ``iotflink scenario smart-factory [--short]`` (2,000 sensors for 300 s, or 200 for 30 s),
or ``python -m iotflink.simulation.scenarios.smart_factory --sensors 1000 --duration-s 300 --bridges 2``
(``make smart-factory ARGS="..."``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from iotflink.simulation.exactness import exactness_checks, reading_records_in_kafka
from iotflink.simulation.monitor import FirstSeen, latency_summary
from iotflink.simulation.replay import DATA_DIR
from iotflink.simulation.scenarios.base import Outcome, Say, Scenario, ScenarioError

if TYPE_CHECKING:
    from iotflink.runtime.stack import Stack

log = logging.getLogger(__name__)

NAME = "smart-factory"
DEVICE_PREFIX = "factory-"
PROFILE = "femto-b1_1"
DEFAULT_SENSORS, SHORT_SENSORS = 2000, 200
DEFAULT_HZ = 10.0
DEFAULT_DURATION_S, SHORT_DURATION_S = 300.0, 30.0
DEFAULT_SAMPLES_PER_MESSAGE = 10
DEFAULT_PARALLELISM = 2
#: The bearing rule the scenario deploys (sql/rules/).
RULE = "bearing_vibration_rise"
#: Sampling period of the stage counters and the consumer lag (s).
SAMPLE_S = 5.0
#: Checkpoint interval of the window job in this scenario (ms): its exactly-once sink commits
#: the aggregates at each checkpoint, so this bounds the commit part of the latency.
CHECKPOINT_INTERVAL_MS = 10_000
#: Devices started at once, in one virtual-node process (:class:`iotflink.simulation.vnodes.NodeGroup`);
#: every wave waits for the shared event-time clock's start (one started after it joins the
#: clock where it is by then).
SPAWN_WAVE = 250
#: Failing machines of a full / short run (the first device ids of the fleet): their nodes play a
#: splice of Bearing1_1 (:func:`splice_bearing`) so that the bearing rule alerts during the run.
FAILING, SHORT_FAILING = 8, 2
#: Where the failing machines' first reference alert falls in the run's event-time span
#: (fractions, spread evenly from the first to the last failing machine).
ALERT_AT = (0.15, 0.75)
#: History a failing machine publishes before the fleet starts, beyond the rule's run-in and
#: baseline (s of event time), so that its baseline is known when its live rows begin.
HISTORY_MARGIN_S = 60
#: Seconds the failing machines' history gets to reach Kafka before the fleet's clock starts
#: (their history would be late behind the fleet's readings otherwise).
HISTORY_WAIT_S = 10.0
#: Seconds the fleet's waves get to start before the shared clock's first reading is due.
START_MARGIN_S, START_PER_WAVE_S = 3.0, 1.0
#: Seconds the rule job gets after the window job's drain to read every record.
RULE_DRAIN_S = 900.0
#: Seconds a read of a whole output topic may take at the end (s).
READ_TIMEOUT_S = 900.0
#: Seconds the bridges get, after the nodes are done, to forward every acknowledged sample.
BRIDGE_DRAIN_S = 300.0
SERVICES = ("kafka", "mosquitto", "bridge", "flink-jobmanager", "flink-taskmanager")


@dataclass(frozen=True)
class RatePlan:
    """The load of one run.

    Fields:
        sensors: virtual nodes (devices).
        hz: readings per second per sensor (wall clock).
        duration_s: wall seconds of publishing.
        samples_per_message: samples per MQTT message (1 = single readings).
        rows: data rows each node plays (``ceil(hz x duration_s)``).
        speedup: event-time seconds per wall second: the event-time span of ``rows`` rows over
            ``duration_s``.
    """

    sensors: int
    hz: float
    duration_s: float
    samples_per_message: int
    rows: int
    speedup: float

    @property
    def readings_per_s(self) -> float:
        """Target readings/s of the fleet (``sensors x hz``)."""
        return self.sensors * self.hz

    @property
    def messages_per_s(self) -> float:
        """Target MQTT messages/s of the fleet (readings/s / samples per message)."""
        return self.readings_per_s / self.samples_per_message

    @property
    def readings(self) -> int:
        """Readings the fleet publishes in all (``sensors x rows``)."""
        return self.sensors * self.rows


def rate_plan(sensors: int, hz: float, duration_s: float, samples_per_message: int,
              event_ts_ms: Sequence[int]) -> RatePlan:
    """The :class:`RatePlan` for ``sensors`` nodes sampling ``hz`` readings/s for ``duration_s``,
    each playing the data set whose rows have event times ``event_ts_ms`` (ascending, epoch ms).

    Raises:
        ValueError: a non-positive argument, or the data set has fewer rows than
            ``hz x duration_s`` (or spans no event time).
    """
    if sensors < 1 or hz <= 0 or duration_s <= 0 or samples_per_message < 1:
        raise ValueError("sensors, hz, duration_s and samples_per_message must be positive")
    rows = math.ceil(hz * duration_s)
    if rows > len(event_ts_ms):
        raise ValueError(f"{hz:g} Hz for {duration_s:g} s needs {rows} rows; the data set has {len(event_ts_ms)}")
    span_ms = event_ts_ms[rows - 1] - event_ts_ms[0]
    if span_ms <= 0:
        raise ValueError("the played rows span no event time")
    return RatePlan(sensors, hz, duration_s, samples_per_message, rows, span_ms / 1000.0 / duration_s)


def due_wall_ms(event_ms: int, t0_wall_ms: float, origin_ms: int, speedup: float) -> float:
    """Wall time (epoch ms) at which a node started at ``t0_wall_ms`` on a shared event-time
    clock (``origin_ms``, ``speedup`` event-time s per wall s) reaches event time ``event_ms``
    (the virtual node's pacing: ``max(0, t - origin) / speedup`` after its start)."""
    return t0_wall_ms + max(0, event_ms - origin_ms) / speedup


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def values_per_row(rows: Iterable[Mapping[str, float]]) -> list[int]:
    """Prefix sums of sensor values: element ``i`` = values in rows ``0 .. i-1`` (length
    ``len(rows) + 1``), for :func:`values_in_ranges`."""
    out = [0]
    for readings in rows:
        out.append(out[-1] + len(readings))
    return out


def values_in_ranges(prefix: Sequence[int], ranges: Iterable[Sequence[int]]) -> int:
    """Sensor values of the rows whose seqs are in the inclusive ``[lo, hi]`` ``ranges`` (seq =
    row index: a node started with a fresh seq file numbers its rows from 0).

    Raises:
        ValueError: a range outside the rows of ``prefix``.
    """
    total = 0
    for lo, hi in ranges:
        if not 0 <= lo <= hi < len(prefix) - 1:
            raise ValueError(f"seq range [{lo}, {hi}] outside rows 0..{len(prefix) - 2}")
        total += prefix[hi + 1] - prefix[lo]
    return total


# ------------------------------------------------------------------ failing machines


def _shift_time(text: str, by_s: float) -> str:
    """``text`` (seconds, as in the FEMTO CSVs) minus ``by_s``, with as many decimals as ``text``."""
    decimals = len(text.split(".", 1)[1]) if "." in text else 0
    return f"{float(text) - by_s:.{decimals}f}"


def splice_bearing(vib: Sequence[Sequence[str]], temp: Sequence[Sequence[str]], history_s: int, gap_s: int,
                   live_from_s: int, live_span_s: float, batch: int = 1) -> tuple[list[list[str]], list[list[str]]]:
    """The data of a failing machine, from a FEMTO bearing's CSV rows: its history, then a late
    part of the bearing's life played from the fleet's clock origin on.

    Args:
        vib: vibration rows ``[snapshot, time_of_day_s, h_rms_g, v_rms_g, peak_abs_g]`` (g), file
            order; temp: temperature rows ``[file, time_of_day_s, temp_c]`` (degrees C), file order.
        history_s: the history: the rows of the bearing's first ``history_s`` s (from ``t0``, the
            data set's first reading; the file's rows up to the first one at or after ``t0 +
            history_s``), moved ``history_s + gap_s`` s earlier, so they end at least ``gap_s`` s
            before ``t0`` (the node sends them at once when its pacing clock starts ``gap_s`` s of
            event time before ``t0``).
        gap_s: event-time gap between the history and the live part, s (>= 0).
        batch: the history holds a multiple of ``batch`` readings (its last ones dropped), so
            that a node sending ``batch`` samples per message sends all of it before the live
            part's first reading is due.
        live_from_s: the live part: the rows from the first one at or after ``t0 + live_from_s``
            (file order, so a row with a faulty clock stays where the file has it), moved
            ``live_from_s`` s earlier, so they start at ``t0``, up to the first one that lands
            after ``t0 + live_span_s``.
        live_span_s: event-time length of the live part, s.

    Returns:
        ``(vibration rows, temperature rows)`` in the input's layout, values unchanged (times
        keep their decimals).

    Raises:
        ValueError: no rows, ``history_s`` not positive, ``gap_s`` negative, or ``live_from_s``
            before the end of the history.
    """
    if not vib or not temp:
        raise ValueError("no rows to splice")
    if history_s <= 0 or gap_s < 0 or live_from_s < history_s:
        raise ValueError(f"history_s must be positive, gap_s not negative, and live_from_s ({live_from_s}) "
                         f"at or after history_s ({history_s})")
    t0 = min(float(vib[0][1]), float(temp[0][1]))
    out = []
    for rows in (vib, temp):
        hist = [[r[0], _shift_time(r[1], history_s + gap_s), *r[2:]]
                for r in itertools.takewhile(lambda r: float(r[1]) < t0 + history_s, rows)]
        start = next((i for i, r in enumerate(rows) if float(r[1]) >= t0 + live_from_s), len(rows))
        live = [[r[0], _shift_time(r[1], live_from_s), *r[2:]]
                for r in itertools.takewhile(lambda r: float(r[1]) - live_from_s <= t0 + live_span_s, rows[start:])]
        out.append((hist, live))
    (vh, vl), (th, tl) = out
    for _ in range((len(vh) + len(th)) % batch):  # drop the latest history readings
        if th and (not vh or float(th[-1][1]) > float(vh[-1][1])):
            th.pop()
        else:
            vh.pop()
    return vh + vl, th + tl


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def write_failing_data(out_dir: Path, history_s: int, gap_s: int, live_from_s: int, live_span_s: float,
                       batch: int = 1, data_dir: Path = DATA_DIR) -> Path:
    """Write a failing machine's data (:func:`splice_bearing` of Bearing1_1) under ``out_dir``
    in the layout of the project's ``data/`` (``femto/Bearing1_1_vibration.csv`` and
    ``_temperature.csv``, headers kept), for a virtual node's ``--data-dir``; returns ``out_dir``.

    Raises:
        OSError: a data file cannot be read or written; ValueError: as :func:`splice_bearing`.
    """
    names = ("Bearing1_1_vibration.csv", "Bearing1_1_temperature.csv")
    (vh, vib), (th, temp) = (_read_csv(data_dir / "femto" / n) for n in names)
    parts = splice_bearing(vib, temp, history_s, gap_s, live_from_s, live_span_s, batch)
    (out_dir / "femto").mkdir(parents=True, exist_ok=True)
    for name, header, rows in zip(names, (vh, th), parts, strict=True):
        with open(out_dir / "femto" / name, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh, lineterminator="\n").writerows([header, *rows])
    return out_dir


def live_from_for(first_alert_s: float, span_s: float, failing: int) -> list[int]:
    """Where each of ``failing`` machines starts its live part (s after the data set's first
    reading): so that the bearing's first alert, ``first_alert_s`` s into its life, falls at
    :data:`ALERT_AT` fractions of the run's event-time span ``span_s`` (s), spread evenly."""
    lo, hi = ALERT_AT
    fractions = [lo + (hi - lo) * i / (failing - 1) for i in range(failing)] if failing > 1 else [(lo + hi) / 2]
    return [int(first_alert_s - f * span_s) for f in fractions]


@dataclass(frozen=True)
class FailingMachine:
    """One failing machine of a run (:func:`failing_machines`).

    Fields:
        data_dir: its node's ``--data-dir`` (:func:`write_failing_data`).
        now_ms: its node's ``--now-ms``: gives its data the fleet's whole-week replay shift.
        history: its readings before the shared clock's origin (sent at once, first).
        prefix: :func:`values_per_row` of its readings (publishing order).
        last_ts: event time of its last reading, epoch ms (replay time).
        alerts: the rule's reference alerts on its readings: detection times, epoch ms
            (``iotflink.testing.bearing``, the rule's definition in plain Python, readings in
            publishing order with the rules' watermark bound).
    """

    data_dir: Path
    now_ms: int
    history: int
    prefix: list[int]
    last_ts: int
    alerts: list[int]


def failing_machines(devices: Sequence[str], out_dir: Path, origin_ms: int, last_ts_ms: int, speedup: float,
                     lead_s: float, bound_ms: int, batch: int = 1, data_dir: Path = DATA_DIR) -> dict[str, FailingMachine]:
    """Data and reference alerts of the failing machines ``devices`` of a run.

    The bearing rule (:data:`RULE`) is armed only after its run-in and baseline (an hour of
    event time), longer than a run plays, and Bearing1_1 rises hours into its life. So each
    failing machine first publishes its history (the bearing's first hour, sent at once before
    the fleet starts; the rule's baseline), then plays, on the fleet's clock from ``origin_ms``,
    the part of the bearing's life around its first alert, placed so that the alerts of the
    machines fall at :data:`ALERT_AT` of the run's event-time span (:func:`live_from_for`).

    Args:
        devices: the failing machines' device ids; out_dir: their data go to ``out_dir/<id>``.
        origin_ms, last_ts_ms: event time of the fleet's first and last reading (replay time).
        speedup: event-time s per wall s; lead_s: wall s from the failing machines' start to
            the clock's origin (their history must come before it: :func:`splice_bearing`'s gap).
        bound_ms: the rules' watermark out-of-orderness bound, ms.
        batch: samples per MQTT message (the history is a multiple of it: :func:`splice_bearing`).

    Raises:
        ScenarioError: the rule raises no alert on the whole bearing, or the fleet's replay shift
            is not whole weeks; OSError: a data file cannot be read or written.
    """
    if not devices:
        return {}
    from iotflink.simulation.replay import WEEK_MS, femto_rows  # noqa: PLC0415
    from iotflink.testing import bearing as br  # noqa: PLC0415

    params = br.shipped_params(RULE)
    whole = br.load_run("1_1", bound_ms, data_dir)
    detections = br.detections(RULE, whole, params)
    if not detections:
        raise ScenarioError(f"{RULE} raises no alert on Bearing1_1: no failing machine can be played")
    shift = origin_ms - whole.first_ms
    if shift % WEEK_MS:
        raise ScenarioError(f"the replay shift {shift} ms is not whole weeks")
    history_s = int(params.run_in_s + params.baseline_s + HISTORY_MARGIN_S)
    gap_s = math.ceil(lead_s * speedup) + 1
    span_s = (last_ts_ms - origin_ms) / 1000
    out = {}
    for dev, live_from in zip(devices, live_from_for((detections[0] - whole.first_ms) / 1000, span_s, len(devices)),
                              strict=True):
        ddir = write_failing_data(out_dir / dev, history_s, gap_s, max(live_from, history_s), span_s, batch, data_dir)
        rows = femto_rows("1_1", ddir, dev)
        readings = [{"device_id": dev, "seq": i, "ts": ts + shift, "readings": v} for i, (ts, _d, v) in enumerate(rows)]
        last = max(r["ts"] for r in readings)
        out[dev] = FailingMachine(ddir, last + WEEK_MS // 2, sum(r["ts"] < origin_ms for r in readings),
                                  values_per_row(v for _t, _d, v in rows), last,
                                  br.detections(RULE, br.run_from_rows(dev, readings, bound_ms), params))
    return out


# ------------------------------------------------------------------ measuring while it runs


def process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds user + system so far) of every process (one psutil pass)."""
    import psutil  # noqa: PLC0415

    out = {}
    for p in psutil.process_iter(["ppid", "cpu_times"]):
        t = p.info.get("cpu_times")
        if t is not None:
            out[p.pid] = (p.info["ppid"] or 0, t.user + t.system)
    return out


def tree_cpu_s(table: Mapping[int, tuple[int, float]], roots: Iterable[int], last: dict[int, float],
               children: bool = True) -> float:
    """CPU seconds so far of the processes ``roots`` (and, with ``children``, their descendants)
    in ``table`` (:func:`process_table`). ``last``: pid -> CPU seconds at earlier calls, updated
    here; a process that has exited counts with its last sampled value (so up to one sampling
    period of its CPU is missed)."""
    wanted = set(roots)
    if children:
        kids: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            kids.setdefault(ppid, []).append(pid)
        todo = list(wanted)
        while todo:
            for child in kids.get(todo.pop(), []):
                if child not in wanted:
                    wanted.add(child)
                    todo.append(child)
    for pid in wanted:
        if pid in table:
            last[pid] = table[pid][1]
    return sum(last.values())


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (all cores; psutil: total minus idle and
    iowait)."""
    import psutil  # noqa: PLC0415

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def cpu_shares(before: Mapping[str, float], after: Mapping[str, float], seconds: float) -> dict[str, float]:
    """Cores used per stage between two samples (``after - before`` CPU seconds / ``seconds``);
    ``machine`` (if present) is the whole machine and ``other work`` what no stage used."""
    cores = {k: round((after[k] - before[k]) / seconds, 2) for k in after if k in before}
    if "machine" in cores:
        cores["other work"] = round(cores["machine"] - sum(v for k, v in cores.items() if k != "machine"), 2)
    return cores


# ------------------------------------------------------------------ the run


def _stage_pids(stack: Stack) -> dict[str, list[int]]:
    names = {"mosquitto": ["mosquitto"], "bridges": ["bridge"] + [f"bridge-{i}" for i in range(1, stack.s.bridges)],
             "kafka": ["kafka"], "flink": ["flink-jobmanager", "flink-taskmanager"]}
    return {stage: [p for p in (stack.pid(n) for n in ns) if p is not None] for stage, ns in names.items()}


def _cpu_sample(stack: Stack, node_pids: list[int], last: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds so far per stage (``last``: per stage, pid -> last sampled CPU seconds)."""
    table = process_table()
    out = {stage: tree_cpu_s(table, pids, last.setdefault(stage, {})) for stage, pids in _stage_pids(stack).items()}
    out["virtual nodes"] = tree_cpu_s(table, node_pids, last.setdefault("virtual nodes", {}), children=False)
    out["machine"] = machine_busy_s()
    return out


def _node_t0_ms(summary: Mapping) -> float:
    """Wall time (epoch ms) a node started pacing: its summary's ``start_ms`` (the start of its
    process's event loop)."""
    return float(summary["start_ms"])


def run_factory(stack: Stack, say: Say, sensors: int, duration_s: float, hz: float = DEFAULT_HZ,
                samples_per_message: int = DEFAULT_SAMPLES_PER_MESSAGE,
                parallelism: int = DEFAULT_PARALLELISM, failing: int = FAILING) -> Outcome:
    """Run the smart factory on ``stack`` (every service of :data:`SERVICES` started); the first
    ``failing`` of the ``sensors`` machines are failing ones (:func:`failing_machines`).

    Raises:
        ScenarioError: a job failed; VnodeError: the nodes could not run; TimeoutError: a stage
            did not finish in time.
    """
    from iotflink import kafka_io  # noqa: PLC0415
    from iotflink.poll import wait_for  # noqa: PLC0415
    from iotflink.runtime.flinkctl import FlinkCtl  # noqa: PLC0415
    from iotflink.settings import RulesSettings, WindowJobSettings  # noqa: PLC0415
    from iotflink.simulation.demo import reset_topics, window_job_env  # noqa: PLC0415
    from iotflink.simulation.replay import load_dataset  # noqa: PLC0415
    from iotflink.simulation.vnodes import NodeGroup, NodeSpec  # noqa: PLC0415

    if not 0 <= failing <= sensors:
        raise ValueError(f"failing machines must be 0..{sensors}, not {failing}")

    cfg = stack.s
    now_ms = int(time.time() * 1000)
    data = load_dataset("femto", now_ms)  # shifted as the node shifts it (whole data set)
    plan = rate_plan(sensors, hz, duration_s, samples_per_message, [r[0] for r in data])
    origin = data[0][0]
    prefix = values_per_row(r[2] for r in data[:plan.rows])
    last_ts = data[plan.rows - 1][0]
    devices = [f"{DEVICE_PREFIX}{i:04d}" for i in range(sensors)]
    waves = math.ceil((sensors - failing) / SPAWN_WAVE)
    # the shared clock's first reading is due this long after the failing machines start: their
    # history goes first (sent at once), then the fleet's waves start and wait for the clock
    lead_s = (HISTORY_WAIT_S if failing else 0.0) + START_MARGIN_S + START_PER_WAVE_S * waves
    sick = failing_machines(devices[:failing], cfg.run_dir / "smart-factory", origin, last_ts, plan.speedup,
                            lead_s, RulesSettings.from_env(cfg.to_env()).out_of_orderness_ms, samples_per_message)
    load0 = os.getloadavg()
    say(f"plan: {plan.sensors} sensors x {plan.hz:g} Hz = {plan.readings_per_s:,.0f} readings/s "
        f"({plan.messages_per_s:,.0f} MQTT messages/s, {plan.samples_per_message} samples per message) for "
        f"{plan.duration_s:g} s; FEMTO Bearing1_1 at {plan.speedup:.2f}x event time ({plan.rows} rows per node); "
        f"{cfg.bridges} bridge(s); window job parallelism {parallelism}; load average {load0[0]:.1f}")
    if sick:
        say(f"failing machines: {', '.join(sick)}, each with {min(m.history for m in sick.values())}+ history "
            f"readings sent first, then a late part of Bearing1_1's life; the rule's reference alerts fall at "
            f"{', '.join(f'{(a - origin) / 1000:.0f}' for m in sick.values() for a in m.alerts[:1])} s of event time")

    env = {**window_job_env(parallelism), "IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": str(CHECKPOINT_INTERVAL_MS)}
    job_cfg = WindowJobSettings.from_env({**cfg.to_env(), **env})
    ctl = FlinkCtl(cfg)
    say("resetting the topics (and cancelling running jobs) so the counts cover this run only")
    reset_topics(stack, ctl, job_cfg.consumer_group)
    for name in ["bridge"] + [f"bridge-{i}" for i in range(1, cfg.bridges)]:
        stack.stop_service(name)
    stack.start(services=("bridge",), progress=lambda m: say("  " + m))
    say(f"provisioning {sensors} device credentials ...")
    stack.provision(devices)

    say(f"submitting jobs/sensor_windows (parallelism {parallelism}, checkpoint every "
        f"{CHECKPOINT_INTERVAL_MS / 1000:g} s) and deploying the rule {RULE} ...")
    job_id = ctl.submit("sensor_windows", env_overrides=env)
    ctl.wait_running(job_id)
    # no idle timeout for the rule either: the bridges' watermark heartbeats keep every partition
    # of sensor-readings moving (iotflink.kafka_io.PartitionClock); with one, the partitions that
    # stay silent while the failing machines send their history go idle, and when the fleet
    # starts the first partitions read raise the watermark past the others' first readings
    rc = subprocess.run([sys.executable, "-m", "iotflink.cli", "rules", "deploy", RULE],  # noqa: S603
                        env={**stack.flink_env(), "IOTFLINK_RULES_IDLENESS_MS": "0",
                             "IOTFLINK_RULES_PARALLELISM": str(parallelism)}, check=False,
                        capture_output=True, text=True)
    if rc.returncode != 0:
        raise ScenarioError(f"`iotflink rules deploy {RULE}` failed: {rc.stdout[-500:]}{rc.stderr[-500:]}")
    rule_job = ctl.resolve_job(f"rule:{RULE}")
    ctl.wait_running(rule_job)

    aggs_seen = FirstSeen(cfg.kafka_bootstrap, cfg.topics.aggregates,
                          lambda v: (v["device_id"], v["sensor"], int(v["window_end_ms"])))
    alerts_seen = FirstSeen(cfg.kafka_bootstrap, cfg.topics.alerts,
                            lambda v: (v["rule_id"], v["alert_key"], int(v["detection_ms"])))
    def specs_from(first: int, shift_ms: int) -> list:
        return [NodeSpec(PROFILE, device_id=d, speedup=plan.speedup, limit=plan.rows, now_ms=now_ms,
                         pace_origin_ms=origin + shift_ms, samples_per_message=samples_per_message,
                         max_inflight=20, extra_args=("--quiet",))
                for d in devices[max(first, failing):first + SPAWN_WAVE]]

    def failing_specs(shift_ms: int) -> list:
        # one process each (their data differ); backpressure: the history is due at once
        return [NodeSpec(PROFILE, device_id=d, speedup=plan.speedup, now_ms=m.now_ms,
                         pace_origin_ms=origin + shift_ms, samples_per_message=samples_per_message,
                         max_inflight=20, backpressure=True, data_dir=m.data_dir, extra_args=("--quiet",))
                for d, m in sick.items()]

    samples: list[dict] = []
    t_start = time.monotonic()

    def sample(phase: str) -> dict:
        st = stack.bridge_stats()
        end = sum(kafka_io.end_offsets(cfg.kafka_bootstrap, cfg.topics.readings).values())
        read = ctl.source_records_read(job_id)
        rule_read = ctl.source_records_read(rule_job)
        row = {"t_s": round(time.monotonic() - t_start, 1), "phase": phase, "forwarded": st["forwarded"],
               "readings_end_offset": end, "job_read": read, "lag_records": max(0, end - read),
               "rule_read": rule_read, "rule_lag_records": max(0, end - rule_read),
               "load1": round(os.getloadavg()[0], 1)}
        samples.append(row)
        say(f"  t={row['t_s']:6.1f} s {phase:9} bridges forwarded {row['forwarded']:>9}  job read "
            f"{read:>9}  consumer lag {row['lag_records']:>8}  rule job lag {row['rule_lag_records']:>8}  "
            f"load {row['load1']}")
        return row

    broker_before = stack.mosquitto_counters(fresh=False)
    say(f"starting {sensors} virtual nodes ...")
    origins: dict[str, int] = {}
    try:
        with contextlib.ExitStack() as nodes:
            groups = []
            spawn0 = time.monotonic()
            clock0 = spawn0 + lead_s  # the wall instant the shared clock's first reading is due
            clock0_ms = (time.time() + lead_s) * 1000

            def start(wave: list) -> None:
                groups.append(nodes.enter_context(NodeGroup(
                    wave, cfg.mqtt_host, cfg.mqtt_port, cfg.run_dir, reset_seq=True, auth_dir=cfg.mqtt_auth_dir,
                    ca_file=cfg.mqtt_ca_file)))
                origins.update({sp.device: sp.pace_origin_ms for sp in wave})

            def shift_ms() -> int:
                # a node's clock starts at its own start: a node started before clock0 waits for it
                # (negative shift); one started after it skips ahead (its skipped rows are due at
                # once), so every node samples on one wall clock
                return int((time.monotonic() - clock0) * 1000 * plan.speedup)
            if sick:
                start(failing_specs(shift_ms()))
                history = sum(m.history for m in sick.values())
                try:
                    wait_for(lambda: sum(kafka_io.end_offsets(cfg.kafka_bootstrap, cfg.topics.readings).values())
                             >= history, HISTORY_WAIT_S, interval_s=0.5, what="the failing machines' history in Kafka")
                    say(f"  {history} history readings of {len(sick)} failing machines in Kafka after "
                        f"{time.monotonic() - spawn0:.1f} s")
                except TimeoutError as exc:  # its readings may then be late: the checks say so
                    say(f"  {exc}")
            for first in range(0, sensors, SPAWN_WAVE):
                wave = specs_from(first, shift_ms())
                if wave:
                    start(wave)
            say(f"  {sensors} nodes started in {time.monotonic() - spawn0:.1f} s; the shared clock starts "
                f"{clock0 - time.monotonic():.1f} s later")
            pids = [pid for g in groups for pid in g.pids]

            def running() -> int:
                return sum(g.running() for g in groups)
            cpu_last: dict[str, dict[int, float]] = {}
            cpu0: dict[str, float] | None = None
            cpu1: dict[str, float] = {}
            c0 = c1 = 0.0
            while running():
                # the publishing phase starts with the shared clock (before it: "start")
                sample("publish" if time.monotonic() >= clock0 else "start")
                if time.monotonic() >= clock0 and running() == sensors:  # every node publishing
                    if cpu0 is None:
                        cpu0, c0 = _cpu_sample(stack, pids, cpu_last), time.monotonic()
                    else:
                        cpu1, c1 = _cpu_sample(stack, pids, cpu_last), time.monotonic()
                time.sleep(SAMPLE_S)  # the sampling period while the nodes run
            results = [r for g in groups for r in g.wait(timeout_s=120)]
        # from the shared clock's start to the last node's end (its last PUBACK)
        publish_s = max(_node_t0_ms(r.summary) + 1000 * float(r.summary["wall_s"]) for r in results) / 1000 \
            - clock0_ms / 1000
        published = sum(r.published for r in results)
        say(f"nodes done: {published} samples acknowledged by the broker in {publish_s:.0f} s")
        values_in = sum(values_in_ranges(sick[r.device_id].prefix if r.device_id in sick else prefix,
                                         r.summary["acked_ranges"]) for r in results) \
            - sum(int(r.summary.get("invalid", 0)) for r in results)
        t0s = {r.device_id: _node_t0_ms(r.summary) for r in results}

        def bridge_done() -> bool:
            st = stack.bridge_stats()
            return st["forwarded"] + st["dead_lettered"] >= published and st["pending"] == 0
        try:
            wait_for(bridge_done, BRIDGE_DRAIN_S, interval_s=1.0, what="the bridges to forward every sample")
        except TimeoutError as exc:  # a sample lost upstream of Kafka: the accounting check says so
            say(f"  {exc}")
        broker_dropped = stack.mosquitto_counters(fresh=True).dropped_since(broker_before)

        def caught_up() -> bool:
            if ctl.job(job_id)["state"] in ("FAILED", "FAILING"):
                raise ScenarioError(f"window job failed: {[h.describe() for h in ctl.failed_jobs()]}")
            return sample("drain")["lag_records"] == 0
        wait_for(caught_up, 900, interval_s=SAMPLE_S, what="the window job to read every record")
        # readings in Kafka: records less the bridges' heartbeats, read while no heartbeat moved
        readings_records = reading_records_in_kafka(stack)
        dropped_late = ctl.operator_metric_sum(job_id, "GroupWindowAggregate", "numLateRecordsDropped")
        drain_at_ms = time.time() * 1000
        say("draining the window job (fires the last windows, commits its exactly-once sinks) ...")
        ctl.drain_bounded_replay(job_id, cfg.kafka_bootstrap, cfg.topics.readings,
                                 max([last_ts, *(m.last_ts for m in sick.values())]))
        # the rule job reads the same topic (the drain's heartbeats too): its alerts come once it
        # has read everything; then give its sink a moment for the last expected alerts
        try:
            wait_for(lambda: sample("rule")["rule_lag_records"] == 0, RULE_DRAIN_S, interval_s=SAMPLE_S,
                     what="the rule job to read every record")
            expected = {(RULE, d, a) for d, m in sick.items() for a in m.alerts}
            wait_for(lambda: expected <= set(alerts_seen.seen), 30, interval_s=0.5, what="every expected alert")
        except TimeoutError as exc:  # the alert check says what is missing
            say(f"  {exc}")
    finally:
        aggs_first = aggs_seen.stop()
        alerts_first = alerts_seen.stop()

    # a full run writes about a million aggregates: give the reads time
    aggregates = kafka_io.latest_by_key(kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.aggregates, READ_TIMEOUT_S))
    late = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.late, READ_TIMEOUT_S)
    dlq = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.dlq, READ_TIMEOUT_S)
    counted = sum(int(a["count"]) for a in aggregates.values())

    # windows of the failing machines' history (ending before the clock's origin) are left out
    agg_lat = [seen - due_wall_ms(we, t0s[dev], origins[dev], plan.speedup)
               for (dev, _sensor, we), seen in aggs_first.items() if dev in t0s and seen < drain_at_ms and we > origin]
    alert_lat = [seen - due_wall_ms(ts, t0s[dev], origins[dev], plan.speedup)
                 for (_rule, dev, ts), seen in alerts_first.items() if dev in t0s]
    cores = cpu_shares(cpu0, cpu1, c1 - c0) if cpu0 is not None and c1 > c0 else {}
    forwarded_pub = [s for s in samples if s["phase"] == "publish"]

    def publish_rate(counter: str) -> float | None:
        # per second over the publishing phase's samples of ``counter``
        if len(forwarded_pub) < 2:
            return None
        first, last = forwarded_pub[0], forwarded_pub[-1]
        return (last[counter] - first[counter]) / (last["t_s"] - first["t_s"])
    pub_rate = (published - sum(m.history for m in sick.values())) / publish_s
    lags = [s["lag_records"] for s in samples if s["phase"] != "rule"]  # the window job's, to its drain
    rule_lags = [s["rule_lag_records"] for s in samples]
    load1 = os.getloadavg()
    out = Outcome()
    out.figures = {
        "plan": {"sensors": plan.sensors, "hz": plan.hz, "duration_s": plan.duration_s,
                 "samples_per_message": plan.samples_per_message, "target_readings_per_s": plan.readings_per_s,
                 "speedup_event_time": round(plan.speedup, 3), "rows_per_node": plan.rows,
                 "bridges": cfg.bridges, "window_job_parallelism": parallelism, "rule": RULE,
                 "checkpoint_interval_ms": CHECKPOINT_INTERVAL_MS, "window_size_ms": job_cfg.window_size_ms,
                 "failing_machines": len(sick)},
        "readings_per_s": {"published_by_nodes": round(pub_rate),
                           "forwarded_by_bridges": _round(publish_rate("forwarded")),
                           "read_by_window_job": _round(publish_rate("job_read")),
                           "read_by_rule_job": _round(publish_rate("rule_read"))},
        "publish_phase_s": round(publish_s, 1), "published_samples": published,
        "readings_records": readings_records, "dlq_records": len(dlq), "values_in": values_in,
        "counted": counted, "late": len(late), "dropped_late": dropped_late,
        "node_drops": sum(r.dropped for r in results), "mosquitto_dropped": broker_dropped,
        "max_lag_records": max(lags) if lags else None, "final_lag_records": lags[-1] if lags else None,
        "rule_job_max_lag_records": max(rule_lags) if rule_lags else None,
        "latency_to_committed_aggregate": latency_summary(agg_lat),
        "latency_to_alert": latency_summary(alert_lat),
        "cpu_cores_while_publishing": cores,
        "load_average_1m": {"start": round(load0[0], 2), "end": round(load1[0], 2)},
        "lag_samples": samples,
    }
    print_figures(out.figures, say)
    for name, passed, detail in exactness_checks(published, readings_records, len(dlq), values_in, counted,
                                                 len(late), dropped_late):
        out.check(name, passed, detail)
    if sick:
        rules_late = {r["value"].get("record_key")
                      for r in kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.rules_late, READ_TIMEOUT_S)
                      if isinstance(r["value"], dict)}
        on_time = [d for d in sick if d not in rules_late]
        got = {d: sorted({ts for (rule, dev, ts) in alerts_first if rule == RULE and dev == d}) for d in sick}
        wrong = {d: (got[d], sick[d].alerts) for d in on_time if got[d] != sick[d].alerts}
        out.check(f"every failing machine with its readings on time for the rule raised exactly the reference's "
                  f"alerts of {RULE} (at-least-once: repeats allowed)",
                  bool(on_time) and not wrong and all(sick[d].alerts for d in on_time),
                  f"{len(on_time)} of {len(sick)} on time, {sum(len(sick[d].alerts) for d in on_time)} alerts "
                  f"expected; differing (got, expected): {wrong}; with late rows: {sorted(set(sick) - set(on_time))}")
    healthy = sorted({dev for (rule, dev, _ts) in alerts_first if dev not in sick})
    out.check("no alert for a healthy machine", not healthy, f"alerts for {healthy[:5]}" if healthy else "none")
    out.check("Mosquitto dropped no message for a full session queue", broker_dropped == 0,
              f"{broker_dropped} dropped ($SYS/broker/publish/messages/dropped)")
    out.check("the nodes published the target rate (at least 95 %)", pub_rate >= 0.95 * plan.readings_per_s,
              f"{pub_rate:,.0f} of {plan.readings_per_s:,.0f} readings/s", timing=True)
    out.check("the consumer lag is back to 0 at the end", bool(lags) and lags[-1] == 0,
              f"max {max(lags) if lags else None} records, last {lags[-1] if lags else None}")
    return out


def print_figures(fig: dict, say: Say) -> None:
    """Print the run's figures (``fig``: :attr:`Outcome.figures` of :func:`run_factory`)."""
    r, a, al = fig["readings_per_s"], fig["latency_to_committed_aggregate"], fig["latency_to_alert"]
    say(f"readings/s: published by nodes {r['published_by_nodes']}, forwarded by bridges "
        f"{r['forwarded_by_bridges']}, read by the window job {r['read_by_window_job']}, by the rule job "
        f"{r['read_by_rule_job']} (target {fig['plan']['target_readings_per_s']:,.0f})")
    say(f"consumer lag: max {fig['max_lag_records']} records, final {fig['final_lag_records']}; "
        f"rule job: max {fig['rule_job_max_lag_records']} records")
    say(f"latency to a committed aggregate: p50 {a['p50_ms']} ms, p99 {a['p99_ms']} ms ({a['n']} windows)")
    say(f"latency to an alert: p50 {al['p50_ms']} ms, p99 {al['p99_ms']} ms ({al['n']} alerts)")
    say(f"cores used while publishing: {fig['cpu_cores_while_publishing']}")
    say(f"load average (1 min): {fig['load_average_1m']}")


def _run_short_or_full(stack: Stack, short: bool, say: Say) -> Outcome:
    """The registry's entry: the defaults, or the short run; starts the services of
    :data:`SERVICES` that ``stack`` does not run yet (Mosquitto and the bridges)."""
    stack.start(services=SERVICES, progress=lambda m: say("  " + m))
    if short:
        return run_factory(stack, say, SHORT_SENSORS, SHORT_DURATION_S, failing=SHORT_FAILING)
    return run_factory(stack, say, DEFAULT_SENSORS, DEFAULT_DURATION_S)


SCENARIO = Scenario(NAME, "2,000 bearing sensors at 10 Hz (20,000 readings/s) for 5 min through MQTT, the bridges, "
                          "Kafka, the window job and a bearing rule: rates, lag, latency, exactness",
                    _run_short_or_full, services=SERVICES)


def main(argv: list[str] | None = None) -> int:
    """``python -m iotflink.simulation.scenarios.smart_factory [--sensors N] [--duration-s S] [--hz F]
    [--samples-per-message N] [--bridges N] [--parallelism N] [--failing N] [--no-results]``: run the scenario
    with these settings; exit status 0 when every check held, 1 otherwise."""
    from iotflink.settings import StackSettings  # noqa: PLC0415
    from iotflink.simulation import scenarios  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="smart-factory", description=__doc__.split("\n\n")[0])
    p.add_argument("--sensors", type=int, default=DEFAULT_SENSORS)
    p.add_argument("--duration-s", type=float, default=DEFAULT_DURATION_S)
    p.add_argument("--hz", type=float, default=DEFAULT_HZ)
    p.add_argument("--samples-per-message", type=int, default=DEFAULT_SAMPLES_PER_MESSAGE)
    p.add_argument("--bridges", type=int, default=None, help="bridge processes (default IOTFLINK_BRIDGES)")
    p.add_argument("--parallelism", type=int, default=DEFAULT_PARALLELISM)
    p.add_argument("--failing", type=int, default=None,
                   help=f"failing machines among the sensors (default {FAILING}, short run {SHORT_FAILING})")
    p.add_argument("--short", action="store_true", help=f"{SHORT_SENSORS} sensors for {SHORT_DURATION_S:g} s")
    p.add_argument("--no-results", action="store_true")
    a = p.parse_args(argv)
    env = dict(os.environ)
    if a.bridges is not None:
        env["IOTFLINK_BRIDGES"] = str(a.bridges)
    sensors, duration = (SHORT_SENSORS, SHORT_DURATION_S) if a.short else (a.sensors, a.duration_s)
    failing = a.failing if a.failing is not None else (SHORT_FAILING if a.short else FAILING)
    return scenarios.run(NAME, StackSettings.from_env(env), a.short, not a.no_results,
                         runner=lambda stack, say: run_factory(stack, say, sensors, duration, a.hz,
                                                               a.samples_per_message, a.parallelism, failing))

if __name__ == "__main__":
    sys.exit(main())

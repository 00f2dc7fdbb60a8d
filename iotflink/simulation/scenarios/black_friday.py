"""Scenario ``black-friday``: a load spike of 3x the job's capacity for 60 s: the consumer lag
grows and drains, backpressure shows in ``iotflink.cli backpressure``, nothing is lost.

Scaled to this machine: the job's capacity is set, not guessed. ``jobs/sensor_windows`` runs
with its slow-sink switch on (``IOTFLINK_SLOW_SINK_FILE``: the Python UDF before the
aggregates sink sleeps ``IOTFLINK_SLOW_SINK_MS`` = :data:`SLOW_SINK_MS` per row), with 1 s
tumbling windows and each device reading at most once a second, so every reading is one
aggregate row and the job holds at most ``1000 / SLOW_SINK_MS`` = :data:`CAPACITY_PER_S`
readings/s. The shop's load (generated, seeded order of devices) is written to Kafka in real
time (event time = wall-clock time): :data:`BASELINE_FACTOR` x capacity, then
:data:`SPIKE_FACTOR` x capacity for :data:`SPIKE_S` s (the short run :data:`SHORT_SPIKE_S` s), then the baseline
again until the lag has drained. This mirrors the e-commerce example of a 150,000 events/min
spike on a job that holds 80,000/min, at a rate this 2-core machine runs beside other work.

Measured while it runs: the source's consumer lag (records in the topic minus records the
source has read, sampled every :data:`SAMPLE_S` s from Flink's metric store, which a request
refreshes when its figures are older than ``metrics.fetcher.update-interval``: 1 s on the
project's cluster, so a sample is a few seconds old at most; the checks allow
:data:`METRIC_AGE_S`, Flink's default 10 s), and from the end of the spike the report of
``iotflink.cli backpressure`` (:func:`iotflink.runtime.backpressure.job_report`), taken again while the
backlog drains, at least :data:`METRIC_AGE_S` apart, until one shows HIGH upstream
of the slow sink (at most :data:`MAX_REPORTS`).

A sample overstates the lag by at most the source's read rate x 10 s: at most the capacity
x 10 s while a backlog is read, the baseline rate x 10 s once caught up. Claims checked: the
lag grows during the spike (the first sample after it, less capacity x 10 s, is above 5 s of
capacity), and drains afterwards (a sample at most ``baseline rate x 10 s``: caught up); the vertices
upstream of the slow sink report backpressure (LOW or HIGH: backpressured over 10 % of the time); nothing is lost (aggregate counts + late
records = readings written, ``numLateRecordsDropped`` 0).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from iotflink.simulation.scenarios.base import Outcome, Say, Scenario, finish_window_jobs, start_window_jobs

if TYPE_CHECKING:
    from iotflink.runtime.stack import Stack

NAME = "black-friday"
TOPIC = "scenario-black-friday"
INSTANCE = "black-friday"
SLOW_SINK_MS = 5
CAPACITY_PER_S = 1000 // SLOW_SINK_MS
BASELINE_FACTOR, SPIKE_FACTOR = 0.2, 3.0
#: Spike length (s). Not shorter in the short run: the network buffers between the job's vertices
#: take in some thousands of rows before the source blocks (a 15 s spike, 6,000 records over
#: capacity, left a lag of 1,300 and no backpressure on this machine), so the spike's excess must
#: exceed that by the lag check's 3,000.
SPIKE_S, SHORT_SPIKE_S = 60, 25
#: Seconds of baseline load before the spike (the short run: fewer).
PRE_S, SHORT_PRE_S = 10, 4
DEVICES = 1000  # > the spike's readings/s: a device reads at most once per 1 s window
SAMPLE_S = 2.0
#: Age bound of a lag sample (s): the JobManager's metric store is refreshed by a request when
#: its figures are older than ``metrics.fetcher.update-interval`` (1 s on the project's cluster,
#: Flink's default 10 s), and a sample comes every :data:`SAMPLE_S` s, so a sample is about 3 s
#: old at most; the checks keep the 10 s of Flink's default as their margin: a sample overstates
#: the lag by at most the input rate x this.
METRIC_AGE_S = 10.0
DRAIN_TIMEOUT_S = 600.0
#: ``backpressure`` reports taken after the spike, 10 s apart, until one shows HIGH upstream of
#: the slow sink (each is a snapshot of the metric store, up to :data:`METRIC_AGE_S` old).
MAX_REPORTS = 4


def upstream_backpressured(report, levels: tuple[str, ...] = ("LOW", "HIGH")) -> list[str]:
    """``"<level> <vertex name>"`` for each vertex upstream of the slow sink's vertex
    (``PythonCalc``) whose backpressure level in ``report``
    (:class:`iotflink.runtime.backpressure.JobReport`) is one of ``levels`` (Flink: LOW = backpressured
    10-50 % of the time, HIGH = over 50 %)."""
    slow_v = next((v for v in report.vertices if "PythonCalc" in v.name), None)
    ups = report.upstream_of(slow_v.id) if slow_v else []
    return [f"{v.level} {v.name}" for v in ups if v.level in levels]


def settings(slow_file: Path) -> dict[str, str]:
    """The instance's ``IOTFLINK_*`` overrides: 1 s tumbling windows, the slow sink on."""
    return {"IOTFLINK_WINDOW_SIZE_MS": "1000", "IOTFLINK_OUT_OF_ORDERNESS_MS": "0",
            "IOTFLINK_ALLOWED_LATENESS_MS": "0", "IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": "5000",
            "IOTFLINK_SLOW_SINK_FILE": str(slow_file), "IOTFLINK_SLOW_SINK_MS": str(SLOW_SINK_MS)}


class Load:
    """Writes readings to Kafka at a rate set from outside (readings/s), in real time.

    Every 100 ms it sends ``rate / 10`` readings (fractions carried over) of devices
    ``shopper-000`` .. in round robin, each ``{"device_id", "seq", "ts" = now (epoch ms),
    "readings": {"orders": 1.0}}``. ``written`` counts the readings Kafka acknowledged.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaProducer  # noqa: PLC0415

        self.topic, self.rate, self.written, self.sent, self.last_ts = topic, 0.0, 0, 0, 0
        self._prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                   key_serializer=str.encode, value_serializer=lambda v: json.dumps(v).encode(),
                                   linger_ms=20, client_id="iotflink-scenario-load")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="black-friday-load", daemon=True)
        self._errors: list[Exception] = []

    def _ack(self, _meta) -> None:
        self.written += 1

    def _err(self, exc: Exception) -> None:
        self._errors.append(exc)

    def _run(self) -> None:
        owed, tick = 0.0, time.monotonic()
        while not self._stop.is_set():
            owed += self.rate / 10
            while owed >= 1:
                owed -= 1
                dev = f"shopper-{self.sent % DEVICES:03d}"
                self.last_ts = int(time.time() * 1000)
                value = {"device_id": dev, "seq": self.sent // DEVICES, "ts": self.last_ts,
                         "readings": {"orders": 1.0}}
                self._prod.send(self.topic, key=dev, value=value).add_callback(self._ack).add_errback(self._err)
                self.sent += 1
            tick += 0.1
            self._stop.wait(max(0.0, tick - time.monotonic()))

    def start(self) -> Load:
        """Start sending (at the current ``rate``); returns self."""
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop, flush and close; returns the readings acknowledged.

        Raises:
            KafkaError: the broker refused a reading.
        """
        self._stop.set()
        self._thread.join(timeout=10)
        self._prod.flush()
        self._prod.close()
        if self._errors:
            raise self._errors[0]
        return self.written


def run(stack: Stack, short: bool, say: Say) -> Outcome:
    """Run the scenario on ``stack`` (Kafka and Flink); ``short``: a 25 s spike instead of 60 s,
    after 4 s of baseline instead of 10 s."""
    from iotflink import kafka_io  # noqa: PLC0415
    from iotflink.runtime import backpressure  # noqa: PLC0415

    spike_s, pre_s = (SHORT_SPIKE_S, SHORT_PRE_S) if short else (SPIKE_S, PRE_S)
    base_rate, spike_rate = BASELINE_FACTOR * CAPACITY_PER_S, SPIKE_FACTOR * CAPACITY_PER_S
    slow = stack.s.run_dir / "black-friday.slow"
    slow.parent.mkdir(parents=True, exist_ok=True)
    slow.touch()
    say(f"job capacity {CAPACITY_PER_S} readings/s (slow sink {SLOW_SINK_MS} ms per aggregate row, 1 s windows); "
        f"load {base_rate:g}/s, spike {spike_rate:g}/s ({SPIKE_FACTOR:g}x capacity) for {spike_s} s")
    run_ = start_window_jobs(stack, TOPIC, {INSTANCE: settings(slow)}, say)
    ctl, job_id = run_.ctl, run_.jobs[INSTANCE]
    samples: list[tuple[float, int, str]] = []
    load = Load(stack.s.kafka_bootstrap, TOPIC)
    t0 = time.monotonic()

    def sample(phase: str) -> int:
        lag = sum(kafka_io.end_offsets(stack.s.kafka_bootstrap, TOPIC).values()) - ctl.source_records_read(job_id)
        samples.append((round(time.monotonic() - t0, 1), lag, phase))
        return lag

    def hold(seconds: float, phase: str) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            lag = sample(phase)
            say(f"  t={samples[-1][0]:6.1f} s  {phase:8} load {load.rate:5.0f}/s  consumer lag {lag:6d} records")
            time.sleep(max(0.0, min(SAMPLE_S, end - time.monotonic())))  # the sampling period

    reports: list = []
    try:
        load.rate = base_rate
        load.start()
        hold(pre_s, "baseline")
        load.rate = spike_rate
        hold(spike_s, "spike")
        load.rate = base_rate
        spike_end = time.monotonic() - t0
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        drained_at, last_report = None, 0.0
        while time.monotonic() < deadline:
            if len(reports) < MAX_REPORTS and not (reports and upstream_backpressured(reports[-1], ("HIGH",))) \
                    and time.monotonic() - last_report >= METRIC_AGE_S:
                last_report = time.monotonic()
                reports.append(backpressure.job_report(ctl, job_id, stack.s.kafka_bootstrap, bp_timeout_s=15))
                say(f"the report of `iotflink.cli backpressure` at t={time.monotonic() - t0:.0f} s:")
                for line in backpressure.format_report(reports[-1]).splitlines():
                    say("  " + line)
            hold(SAMPLE_S, "drain")
            if samples[-1][1] <= base_rate * METRIC_AGE_S:  # caught up, up to the metric's age
                drained_at = samples[-1][0]
                break
        written = load.stop()
    except BaseException:
        load.stop()
        run_.cancel()
        slow.unlink(missing_ok=True)
        raise
    slow.unlink(missing_ok=True)  # full speed again for the final drain
    say(f"wrote {written} readings; lag drained {'at t=%.0f s' % drained_at if drained_at else 'NOT within the timeout'}")
    res = finish_window_jobs(stack, run_, written, load.last_ts, say)[INSTANCE]

    spike_lags = [lag for t, lag, ph in samples if ph == "spike"]
    max_lag = max(lag for _, lag, _ in samples)
    excess = (spike_rate - CAPACITY_PER_S) * spike_s
    seen = sorted({entry for rep in reports for entry in upstream_backpressured(rep)})
    counted = sum(int(a["count"]) for a in res.aggregates)
    out = Outcome()
    out.figures = {"capacity_per_s": CAPACITY_PER_S, "baseline_per_s": base_rate, "spike_per_s": spike_rate,
                   "spike_s": spike_s, "readings": written, "max_lag_records": max_lag,
                   "lag_at_spike_end_records": spike_lags[-1] if spike_lags else None,
                   "spike_excess_records": excess,
                   "drain_s_after_spike": None if drained_at is None else round(drained_at - spike_end, 1),
                   "backpressured_vertices": seen, "backpressure_reports": len(reports), "lag_samples": samples}
    stale = base_rate * METRIC_AGE_S  # most a sample overstates the lag once the source reads at the input rate
    busy_stale = CAPACITY_PER_S * METRIC_AGE_S  # ... while it reads at most at the job's capacity
    after = next((lag for _, lag, ph in samples if ph == "drain"), None)
    out.figures["lag_after_spike_records"] = after
    out.check("the consumer lag grows during the spike (a backlog in Kafka, beyond the metric's age)",
              after is not None and after - busy_stale >= 5 * CAPACITY_PER_S,
              f"{after} records just after the spike; less the most a stale sample overstates while the source "
              f"reads at capacity ({busy_stale:g}), over 5 s of the job's capacity; max sampled {max_lag}; "
              f"the spike's excess over capacity {excess:g}")
    out.check("the lag drains after the spike", drained_at is not None,
              f"at most {stale:g} (the metric's age x the baseline rate) at t={drained_at} s, "
              f"{out.figures['drain_s_after_spike']} s after the spike" if drained_at
              else f"still {samples[-1][1]} after {DRAIN_TIMEOUT_S:g} s")
    out.check("backpressure is visible upstream of the slow sink (iotflink backpressure: LOW or HIGH)",
              bool(seen), f"{seen or 'none'} in {len(reports)} report(s) after the spike")
    out.check("nothing is lost: every reading is counted once or is in the late topic",
              counted + len(res.late) == written and not res.dropped_late,
              f"{counted} counted + {len(res.late)} late vs {written} written; numLateRecordsDropped {res.dropped_late}")
    return out


SCENARIO = Scenario(NAME, "a 3x-capacity spike for 60 s (capacity set by a slow sink): consumer lag grows and "
                          "drains, backpressure shows, nothing is lost", run)

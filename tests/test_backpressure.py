"""Integration test of the backpressure and savepoint CLI on the real stack (free ports).

One stack (Kafka + Flink standalone cluster; no MQTT: readings are produced straight to
``sensor-readings`` in the contract format, the test is about Flink) and one submission of
``jobs/sensor_windows`` with:

- 100 ms tumbling windows, no allowed lateness, 20 devices each reporting every 100 ms, so
  every reading makes one aggregate: ``RATE`` = 200 readings/s and aggregates/s;
- the slow-sink switch (``IOTFLINK_SLOW_SINK_FILE``): while the file exists, a Python UDF
  before the aggregates sink sleeps ``SLOW_MS`` = 200 ms per row, i.e. at most 5 rows/s per
  subtask (the job runs at parallelism 1): far under the 200 rows/s arriving. With the switch
  off the same path handles several hundred rows/s, so the backlog drains under the load.

Why long device ids and sensor names (60 characters): under backpressure Flink's network
buffers (32 KiB each, ~30 per channel pair between two vertices with the default
``taskmanager.network`` settings) fill up completely before the upstream vertex blocks; with
~60-byte rows they hold ~15,000 rows, i.e. over a minute of deficit at this rate. Rows of
~200 bytes cut that to a few thousand, so HIGH shows within seconds of the buffers filling.

``test_slow_sink_backpressure_and_drain``:

1. a steady load of ``RATE`` = 100 readings/s; poll until every vertex is OK and the source
   is caught up (baseline);
2. create the switch file; poll until the REST API reports HIGH on a vertex upstream of the
   slow one (the vertex holding the Python UDF), and the source's live Kafka lag has grown
   to at least 3 s of input (the backpressure reached Kafka);
3. delete the file; poll until every vertex is back to OK under the same load (bound:
   ``RECOVER_S``); then stop the load and poll until the live lag is exactly 0 on every
   partition (bound: ``DRAIN_S``).

``test_savepoint_stop_and_resume`` (same stack and job, to save a start-up): the CLI's
``savepoint`` (job keeps running), ``stop`` (with a savepoint; job FINISHED) and
``job submit --from-savepoint``; the new job is RUNNING and its checkpoint statistics say it
was restored from that savepoint.

Everything is polled (never a sleep as synchronisation); metric values in the REST API are up
to ``metrics.fetcher.update-interval`` (1 s on the project's cluster; the bounds allow for
Flink's default 10 s) older than the previous request.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

import iotflink.poll
from iotflink import cli
from iotflink.runtime import backpressure
from iotflink.runtime.flinkctl import FlinkCtl

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Services of the module's ``stack`` fixture (tests/conftest.py).
STACK_SERVICES = ('kafka', 'flink-jobmanager', 'flink-taskmanager')
#: the stack shared with the other modules that opt in (tests/conftest.py), topics of its own
SHARED_STACK = True

DEVICES = 20
PERIOD_MS = 100          # each device reports every 100 ms
RATE = DEVICES * 1000 // PERIOD_MS  # readings/s
WINDOW_MS = 100          # one reading per device and window: one aggregate per reading
SLOW_MS = 200            # per aggregate row while the switch is on: <= 5 rows/s per subtask
SENSOR = "temp_c_" + "x" * 54  # a valid sensor name (CONTRACT.md), 60 characters
BASELINE_S = 120.0       # the job is up, OK and caught up within this
HIGH_S = 120.0           # HIGH upstream within this after the switch is on
RECOVER_S = 120.0        # OK again within this after the switch is off (load continues)
DRAIN_S = 60.0           # live lag 0 within this after the load stops
#: "caught up" at baseline: lag under 12 s of input (2 s of processing + 10 s metric age)
BASELINE_LAG = RATE * 12

JOB_ENV = {
    "IOTFLINK_WINDOW_SIZE_MS": str(WINDOW_MS),
    "IOTFLINK_ALLOWED_LATENESS_MS": "0",
    "IOTFLINK_OUT_OF_ORDERNESS_MS": "200",
    "IOTFLINK_IDLENESS_MS": "1000",
    "IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": "5000",
    "IOTFLINK_SLOW_SINK_MS": str(SLOW_MS),
}


class SteadyLoad:
    """Produce ``rate`` readings/s to the readings topic from a thread (contract format).

    Device ``bp-<i>-xxx...`` (60 characters) sends ``seq`` 0, 1, 2, ... with ``ts`` = now
    (epoch ms) and one reading named ``SENSOR`` (60 characters); keyed by device id. ``sent`` counts records handed to the producer;
    :meth:`stop` flushes them, so afterwards every one of them is in Kafka.
    """

    def __init__(self, bootstrap: str, topic: str, devices: int, period_ms: int) -> None:
        from kafka import KafkaProducer  # noqa: PLC0415

        self.topic, self.devices, self.period_s = topic, devices, period_ms / 1000.0
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
        self.sent = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-load", daemon=True)

    def start(self) -> SteadyLoad:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            t0 = time.monotonic()
            seq = 0
            while not self._stop.is_set():
                now = int(time.time() * 1000)
                for d in range(self.devices):
                    dev = f"bp-{d}-".ljust(60, "x")
                    rec = {"device_id": dev, "seq": seq, "ts": now, "readings": {SENSOR: 20.0 + (seq % 10) / 10},
                           "ingest_ms": now}
                    self.producer.send(self.topic, key=dev.encode(), value=json.dumps(rec).encode())
                seq += 1
                self.sent = seq * self.devices
                self._stop.wait(max(0.0, t0 + seq * self.period_s - time.monotonic()))
            self.producer.flush(30)
        except BaseException as exc:  # noqa: BLE001 - surfaced by stop()
            self.error = exc

    def stop(self) -> int:
        """Stop, flush and close; returns the number of readings sent.

        Raises:
            the producer thread's exception, if it failed.
        """
        self._stop.set()
        self._thread.join(60)
        self.producer.close(10)
        if self.error is not None:
            raise self.error
        return self.sent


def poll(what: str, timeout_s: float, probe, interval_s: float = 1.0):
    """Call ``probe()`` until it returns a truthy value; return it (:func:`iotflink.poll.poll`,
    every 1 s; the time-out names the last value)."""
    return iotflink.poll.poll(probe, timeout_s, interval_s=interval_s, what=what, retry_on=())


@pytest.fixture(scope="module")
def job(stack, tmp_path_factory):
    """The window job with the slow-sink switch; yields (ctl, job_id, switch file, job env)."""
    switch = tmp_path_factory.mktemp("switch") / "slow-sink.on"
    env = dict(JOB_ENV, IOTFLINK_SLOW_SINK_FILE=str(switch))
    ctl = FlinkCtl(stack.s)
    job_id = ctl.submit("sensor_windows", env_overrides=env)
    # the Python UDF's worker starts with its task: over 2 min once on the loaded 2-core machine
    ctl.wait_running(job_id, timeout_s=300)
    state = {"job_id": job_id}
    yield ctl, state, switch, env
    switch.unlink(missing_ok=True)
    for j in ctl.list_jobs():
        if j["state"] == "RUNNING":
            ctl.cancel(j["jid"])


def _report(ctl: FlinkCtl, job_id: str, bootstrap: str) -> backpressure.JobReport:
    return backpressure.job_report(ctl, job_id, bootstrap, bp_timeout_s=30)


def _slow_vertex(rep: backpressure.JobReport) -> backpressure.VertexReport:
    """The vertex holding the throttling Python UDF (else the one with the aggregates sink)."""
    for needle in ("PythonCalc", "aggregates"):
        try:
            return rep.vertex(needle)
        except KeyError:
            continue
    raise AssertionError(f"no slow vertex in {[v.name for v in rep.vertices]}")


def _levels(rep: backpressure.JobReport) -> dict[str, str]:
    return {v.name[:40]: v.level for v in rep.vertices}


def test_slow_sink_backpressure_and_drain(stack, job):
    ctl, state, switch, _env = job
    job_id, bootstrap = state["job_id"], stack.s.kafka_bootstrap
    assert "PythonCalc" in json.dumps(ctl.job(job_id)["plan"]), \
        "the job was submitted with IOTFLINK_SLOW_SINK_FILE but has no Python operator"
    load = SteadyLoad(bootstrap, stack.s.topics.readings, DEVICES, PERIOD_MS).start()
    try:
        t0 = time.monotonic()

        # 1. baseline: every vertex OK, the source caught up (lag under 2 s of input)
        def baseline():
            rep = _report(ctl, job_id, bootstrap)
            ok = all(v.level == "OK" for v in rep.vertices)
            lag = rep.live_lag_total
            read = sum(p.current_offset is not None for p in rep.source_lag)
            return rep if ok and read == stack.s.topics.readings_partitions and lag is not None \
                and lag <= BASELINE_LAG else None
        rep = poll("baseline: all vertices OK and the source caught up", BASELINE_S, baseline)
        slow = _slow_vertex(rep)
        upstream_ids = {v.id for v in rep.upstream_of(slow.id)}
        assert upstream_ids, f"nothing upstream of {slow.name}"
        print(f"\nbaseline after {time.monotonic() - t0:.0f} s: {_levels(rep)}, lag {rep.live_lag_total}")

        # 2. switch on: HIGH upstream of the slow vertex, and the backlog reaches Kafka
        switch.touch()
        t_on = time.monotonic()

        def high_upstream():
            rep = _report(ctl, job_id, bootstrap)
            high = [v for v in rep.vertices if v.id in upstream_ids and v.level == "HIGH"]
            return (rep, high) if high else None
        rep, high = poll("HIGH backpressure upstream of the slow sink", HIGH_S, high_upstream)
        t_high = time.monotonic() - t_on
        print(f"HIGH after {t_high:.0f} s on {[v.name[:40] for v in high]} "
              f"(ratios {[v.ratio for v in high]}); slow vertex busy "
              f"{rep.vertex(slow.name).busy_ms_per_s} ms/s; lag {rep.live_lag_total}")
        assert all(v.ratio is not None and v.ratio > 0.5 for v in high)
        rep = poll(f"the source's live lag to exceed {3 * RATE} records", HIGH_S,
                   lambda: (lambda r: r if (r.live_lag_total or 0) >= 3 * RATE else None)(
                       _report(ctl, job_id, bootstrap)))
        peak_lag = rep.live_lag_total
        print(f"lag {peak_lag} records after {time.monotonic() - t_on:.0f} s of slow sink")

        # 3. switch off: OK again under the same load, then the lag drains to 0 once it stops
        switch.unlink()
        t_off = time.monotonic()
        rep = poll("every vertex back to OK", RECOVER_S,
                   lambda: (lambda r: r if all(v.level == "OK" for v in r.vertices) else None)(
                       _report(ctl, job_id, bootstrap)))
        print(f"OK after {time.monotonic() - t_off:.0f} s, lag {rep.live_lag_total} under load")
        sent = load.stop()
        t_stop = time.monotonic()
        rep = poll("live lag 0 on every partition", DRAIN_S,
                   lambda: (lambda r: r if r.live_lag_total == 0 else None)(_report(ctl, job_id, bootstrap)))
        print(f"lag 0 {time.monotonic() - t_stop:.0f} s after the load stopped; {sent} readings sent; "
              f"total {time.monotonic() - t0:.0f} s")
        ends = sum(p.end_offset for p in rep.source_lag)
        assert ends == sent
        assert sum(p.current_offset + 1 for p in rep.source_lag) == sent
    finally:
        switch.unlink(missing_ok=True)
        if not load._stop.is_set():
            load.stop()


def test_savepoint_stop_and_resume(stack, job, monkeypatch, capsys):
    ctl, state, _switch, env = job
    for key, value in {**stack.s.to_env(), **env}.items():
        monkeypatch.setenv(key, value)
    job_id = state["job_id"]

    assert cli.main(["savepoint", "sensor_windows"]) == 0
    sp1 = capsys.readouterr().out.strip()
    assert sp1.startswith("file:") and Path(_path(sp1)).is_dir(), sp1
    assert ctl.job(job_id)["state"] == "RUNNING"

    target = stack.run_dir / "savepoints-cli"
    assert cli.main(["stop", job_id, "--savepoint-dir", target.as_uri()]) == 0
    sp2 = capsys.readouterr().out.strip()
    assert Path(_path(sp2)).parent == target, sp2
    assert ctl.wait_state(job_id, {"FINISHED"}, 60) == "FINISHED"

    assert cli.main(["job", "submit", "sensor_windows", "--from-savepoint", sp2]) == 0
    new_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert new_id != job_id and len(new_id) == 32
    state["job_id"] = new_id
    ctl.wait_running(new_id)
    restored = poll("restore statistics of the resumed job", 30,
                    lambda: (ctl.checkpoints(new_id).get("latest") or {}).get("restored"))
    assert restored["is_savepoint"] is True
    assert _path(restored["external_path"]) == _path(sp2)


def _path(uri: str) -> str:
    """A ``file:`` URI or path as a plain path without trailing slash."""
    for prefix in ("file://", "file:"):
        if uri.startswith(prefix):
            uri = uri[len(prefix):]
            break
    return uri.rstrip("/")

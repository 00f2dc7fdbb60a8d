"""``make demo``: real sensor data through MQTT, the bridge, Kafka and the Flink cluster.

Steps (each prints a progress line):

1. start the local stack (Kafka KRaft, Mosquitto, the bridge, Flink JobManager + TaskManager)
   and reset the demo's topics, so the counts below cover this run only; provision one MQTT
   credential per demo device (the broker refuses anonymous clients, README "Security");
2. submit ``jobs/sensor_windows`` to the standalone cluster with ``flink run``, at parallelism
   :data:`DEFAULT_PARALLELISM` (``--parallelism``; above 1 without an idle timeout: the
   bridge's watermark heartbeats move quiet partitions, README "The late split is exact"),
   and deploy the detection rules (``sql/rules/*.sql``, one MATCH_RECOGNIZE job per rule);
3. play NAB machine temperature, FEMTO Bearing1_1 and UCI occupancy through MQTT with three
   virtual ESP32 nodes (the firmware core + libmosquitto, ``iotflink.simulation.vnodes``) on one shared
   event-time clock at :data:`DEFAULT_VNODE_SPEEDUP` x; the NAB node has a 10 h connectivity
   outage (event time), and its store-and-forward outbox flushes the queued readings on
   reconnect with their original timestamps: late data downstream. With
   ``--source replay`` the Python replayer plays them instead, with a seeded fraction of
   readings delayed inside the watermark bound and some held back past the allowed lateness.
   A handful of bad payloads must land in the dead-letter queue, and the bad device's reading
   on another device's topic must be refused by the broker (PUBACK 0x87);
   then replay TabFormer card transactions with seeded fraud scenarios into ``transactions``;
4. wait until the bridge has accounted for every message and the job's Kafka source has read
   every record; then end the bounded replay (``FlinkCtl.drain_bounded_replay``): heartbeat
   records with no sensor value carry every partition's watermark past the last window and its
   allowed lateness, so the last windows fire (a bounded replay leaves every partition idle,
   and idle inputs never advance the watermark), and a drained stop-with-savepoint
   commits the exactly-once sinks;
5. print the rules' alerts by rule and check every injected fraud scenario was found;
6. read the result topics back (``read_committed``) and print the summary. It checks that
   every published message is in ``sensor-readings`` or ``sensor-dlq`` (and, with the virtual
   nodes, that they published every reading: none dropped from a full outbox), that the window job
   read every record of ``sensor-readings`` (none in ``sensor-windows-dlq``), that every sensor
   value in ``sensor-readings`` is counted in exactly one of an aggregate's ``count`` or
   ``sensor-late``; that the broker refused an anonymous client and the spoofed reading;
   that Mosquitto dropped no message for a full session queue during the run (its
   ``$SYS`` counter, :mod:`iotflink.runtime.broker_stats`); and that no job of this run is FAILED
   or restarting (the root exception of each one that is: :func:`job_health_checks`).

If the window job ends FAILED (its failure-rate restart strategy gave up, e.g. on a poison
record), the demo stops waiting for it and says so with the root exception; on any error the
demo lists the jobs of this run that are FAILED or restarting, with their root exceptions.

The stack stays up afterwards for inspection (web UI URL printed); ``make down`` stops it.
Exit status: 0 when every check holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

from iotflink import kafka_io
from iotflink.errors import IotFlinkError
from iotflink.poll import wait_for
from iotflink.runtime.flinkctl import FlinkCtl
from iotflink.runtime.mqtt_auth import Credential, configure_paho
from iotflink.runtime.stack import Stack
from iotflink.settings import PROJECT_ROOT, StackSettings, WindowJobSettings
from iotflink.simulation.exactness import exactness_checks
from iotflink.simulation.replay import DEVICE_FEMTO, DEVICE_NAB, DEVICE_OCCUPANCY

log = logging.getLogger(__name__)

#: Default speedup of the virtual nodes: the shared clock's 8 days (occupancy's first reading to
#: FEMTO's last) in about 140 s, and the NAB node's 10 h outage lasts 7.2 s, longer than the
#: bridge's 5 s heartbeat quiet period (and the window job's 5 s idle timeout at parallelism 1),
#: so the other partitions move the watermark on meanwhile (iotflink.simulation.vnodes.default_demo_specs).
DEFAULT_VNODE_SPEEDUP = 5000.0

#: Default parallelism of the window job in the demo: 2, exact at any parallelism (see
#: jobs/sensor_windows.py); the standalone cluster has 10 slots.
DEFAULT_PARALLELISM = 2

#: Bad payloads the demo publishes on purpose; each must reach the DLQ with this reason.
BAD_PAYLOADS: list[tuple[str, bytes, str]] = [
    ("sensors/demo-bad/telemetry", b'{"device_id": "demo-bad", "seq": 1, "ts": ', "malformed_json"),
    ("sensors/demo-bad/telemetry", b'{"device_id": "demo-bad", "seq": 2, "readings": {"temp_c": 1}}',
     "missing_field"),
    ("sensors/demo-bad/telemetry",
     b'{"device_id": "demo-bad", "seq": 3, "ts": 1700000000000, "readings": {"temp_c": NaN}}', "non_finite"),
    ("sensors/demo-bad/telemetry",
     b'{"device_id": "demo-bad", "seq": 4, "ts": 1262304000000, "readings": {"temp_c": 20.5}}', "ts_too_old"),
    ("sensors/demo-bad/telemetry", b"\xff\xfe\x00binary", "malformed_json"),
]


def _step(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def reset_topics(stack: Stack, ctl: FlinkCtl, group: str) -> None:
    """Cancel running jobs, delete and re-create the project's topics and the job's group."""

    for job in ctl.list_jobs():
        if job["state"] in ("RUNNING", "CREATED", "RESTARTING", "INITIALIZING"):
            _step(f"cancelling running job {job['name']} ({job['jid']})")
            ctl.cancel(job["jid"])
            ctl.wait_state(job["jid"], {"CANCELED", "FINISHED", "FAILED"})
    kafka_io.delete_topics_and_groups(stack.s.kafka_bootstrap, stack.s.topics.all(),
                                      lambda g: g == group or g.startswith("iotflink"), client_id="iotflink-demo")
    wait_for(lambda: bool(stack.create_topics()) or True, 60, what="topic creation")


#: The device the bad payloads come from (it has its own credential, like any device).
BAD_DEVICE = "demo-bad"
#: A topic of another device that :data:`BAD_DEVICE` tries to publish on (the broker refuses).
SPOOFED_TOPIC = "sensors/nab-machine/telemetry"


def publish_bad(host: str, port: int, credential: Credential, ca_file: Path | None = None) -> tuple[int, int]:
    """Publish :data:`BAD_PAYLOADS` at QoS 1 (MQTT v5) as ``credential`` (:data:`BAD_DEVICE`),
    then one valid-looking reading on :data:`SPOOFED_TOPIC`, another device's topic.

    Returns:
        ``(bad payloads acknowledged with success, PUBACK reason code of the spoofed reading)``:
        the broker's ACL answers 135 (0x87, not authorised) and drops the message.
    Raises:
        IotFlinkError: the broker refused the credential or did not acknowledge in 10 s.
    """
    import paho.mqtt.client as mqtt  # noqa: PLC0415

    codes: dict[int, int] = {}
    done = threading.Condition()

    def on_publish(_c, _u, mid, reason_code, _p):
        with done:
            codes[mid] = reason_code.value
            done.notify_all()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=BAD_DEVICE, protocol=mqtt.MQTTv5)
    configure_paho(client, credential, ca_file)
    client.on_publish = on_publish
    rc = client.connect(host, port)
    client.loop_start()
    try:
        if rc != mqtt.MQTT_ERR_SUCCESS or not wait_until(client.is_connected, 10):
            raise IotFlinkError(f"demo: {BAD_DEVICE} could not connect to MQTT {host}:{port}")
        mids = [client.publish(topic, payload, qos=1).mid for topic, payload, _ in BAD_PAYLOADS]
        spoof = json.dumps({"device_id": "nab-machine", "seq": 10**9, "ts": int(time.time() * 1000),
                            "readings": {"temperature_f": 1.0}}).encode()
        spoof_mid = client.publish(SPOOFED_TOPIC, spoof, qos=1).mid
        with done:
            if not done.wait_for(lambda: all(m in codes for m in [*mids, spoof_mid]), 10):
                raise IotFlinkError(f"demo: no PUBACK for {BAD_DEVICE}'s messages within 10 s")
        return sum(codes[m] < 0x80 for m in mids), codes[spoof_mid]
    finally:
        client.disconnect()
        client.loop_stop()


def wait_until(cond, timeout_s: float) -> bool:
    """True once ``cond()`` is true, False after ``timeout_s`` (polled every 50 ms)."""
    try:
        wait_for(cond, timeout_s, interval_s=0.05)
        return True
    except TimeoutError:
        return False


def run(args: argparse.Namespace) -> int:
    """Run the demo end to end; returns the exit status."""
    cfg = StackSettings.from_env()
    job_cfg = WindowJobSettings.from_env()
    stack = Stack(cfg)
    ctl = FlinkCtl(cfg)
    t_start = time.monotonic()
    started_ms = int(time.time() * 1000)  # jobs submitted from now on are this run's

    _step("starting the local stack (Kafka KRaft, Mosquitto, bridge, Flink) ...")
    stack.start(progress=lambda m: _step("  " + m))
    _step("provisioning an MQTT credential per device (iotflink device add) ...")
    creds = stack.provision([DEVICE_NAB, DEVICE_FEMTO, DEVICE_OCCUPANCY, BAD_DEVICE])
    _step(f"  {', '.join(creds)}: each may publish only on sensors/<its id>/telemetry "
          f"(credentials in {cfg.mqtt_auth_dir}; TLS {'on' if cfg.mqtt_tls else 'off'})")
    # Mosquitto's drop counter before the run (retained value: if stale, it can only make the
    # run's count larger, never hide a drop)
    broker_before = stack.mosquitto_counters(fresh=False)
    _step("resetting the demo topics so the counts cover this run only")
    reset_topics(stack, ctl, job_cfg.consumer_group)
    stack.stop_service("bridge")
    stack.start(services=("bridge",), progress=lambda m: _step("  " + m))

    _step(f"submitting jobs/sensor_windows to the Flink cluster (flink run -py), parallelism "
          f"{args.parallelism} ...")
    job_id = ctl.submit("sensor_windows", env_overrides=window_job_env(args.parallelism))
    ctl.wait_running(job_id)
    _step(f"  job {job_id} RUNNING; web UI {cfg.flink_rest_url}/#/job/running/{job_id}/overview")
    _step(f"  subtasks per TaskManager: {stack.subtasks_per_taskmanager(job_id)}")

    _step("deploying the detection rules (Flink SQL MATCH_RECOGNIZE, one job per rule) ...")
    _run_cli(["rules", "deploy"], stack)

    if args.source == "vnodes":
        from iotflink.simulation.vnodes import default_demo_specs, run_nodes, totals  # noqa: PLC0415

        speedup = DEFAULT_VNODE_SPEEDUP if args.speedup is None else args.speedup
        specs = default_demo_specs(limit=args.limit or None, speedup=speedup)
        outage = next((s for s in specs if s.outage_at is not None), None)
        _step(f"playing the data sets through virtual ESP32 nodes (firmware core + libmosquitto) at "
              f"{speedup:g}x on {'one shared' if specs[0].pace_origin_ms is not None else 'their own'} "
              f"event-time clock" + (f"; {outage.device} loses its connection for {outage.outage_s:g} "
                                     "event-time s and flushes its outbox on reconnect" if outage else "") + " ...")
        results = run_nodes(specs, cfg.mqtt_host, cfg.mqtt_port, cfg.run_dir, timeout_s=1800, reset_seq=True,
                            auth_dir=cfg.mqtt_auth_dir, ca_file=cfg.mqtt_ca_file)
        acct = totals(results)
        per_device = {dev: c["published"] for dev, c in acct["per_device"].items()}
        real = acct["published"]
        detail = f"{acct['dropped']} dropped at the nodes (outbox full)"
        node_dropped: int | None = acct["dropped"]
    else:
        summary_file = cfg.run_dir / "replay-summary.json"
        replay_cmd = [sys.executable, "-m", "iotflink.simulation.replay", "--datasets", args.datasets,
                      "--speedup", str(args.speedup or 0.0), "--seed", str(args.seed),
                      "--delay-fraction", str(args.delay_fraction), "--delay-ms", str(args.delay_ms),
                      "--late-fraction", str(args.late_fraction), "--late-ms", str(args.late_ms),
                      "--summary-file", str(summary_file)]
        if args.limit:
            replay_cmd += ["--limit", str(args.limit)]
        _step("replaying real data through MQTT: " + " ".join(replay_cmd[2:]))
        subprocess.run(replay_cmd, check=True, cwd=PROJECT_ROOT, env=stack.flink_env())  # noqa: S603
        replay = json.loads(summary_file.read_text())
        per_device = replay["published"]
        real = replay["total"]
        detail = (f"{replay['delayed']} delayed, {replay['held_back']} held back past the "
                  "lateness bound")
        node_dropped = None
    bad_acked, spoof_code = publish_bad(cfg.mqtt_host, cfg.mqtt_port, creds[BAD_DEVICE], cfg.mqtt_ca_file)
    published = real + len(BAD_PAYLOADS)
    _step(f"  published {real} readings ({detail}) + {bad_acked} bad payloads; {BAD_DEVICE}'s reading on "
          f"{SPOOFED_TOPIC} got PUBACK reason code {spoof_code} (135: not authorised, dropped)")
    anonymous_code = stack.mqtt_connack()

    _step("waiting for the bridge to account for every message ...")
    wait_for(lambda: _bridge_done(stack, published), 300, interval_s=0.5, what="the bridge")
    bst = stack.bridge_stats()
    _step(f"  bridge: forwarded {bst['forwarded']}, dead-lettered {bst['dead_lettered']}")

    _step("replaying TabFormer card transactions with injected fraud scenarios (seeded) ...")
    subprocess.run([sys.executable, "-m", "iotflink.simulation.transactions"], check=True, cwd=PROJECT_ROOT,
                   env=stack.flink_env())

    readings_end = sum(kafka_io.end_offsets(cfg.kafka_bootstrap, cfg.topics.readings).values())
    _step("waiting for the job's Kafka source to read every record ...")
    last = [-1]

    def source_done() -> bool:
        if ctl.job(job_id)["state"] in ("FAILED", "FAILING"):
            return True  # reported by the wait_state below, with the root exception
        n = ctl.source_records_read(job_id)
        # the source also reads the bridge's watermark heartbeats (records without a value)
        want = bst["forwarded"] + stack.bridge_stats().get("heartbeats", 0)
        if n != last[0]:
            _step(f"  source has read {n}/{want} records (readings and watermark heartbeats)")
            last[0] = n
        return n >= want

    wait_for(source_done, 600, interval_s=2.0, what="the job's source to catch up")
    ctl.wait_state(job_id, {"RUNNING"})  # raises, naming the root exception, if the job FAILED
    _step("stopping the job with a drained savepoint (fires the last windows, commits the sinks) ...")
    dropped_late = ctl.operator_metric_sum(job_id, "GroupWindowAggregate", "numLateRecordsDropped")
    _step(f"  window operator's numLateRecordsDropped: {dropped_late}")
    # every reading is in Kafka and read by the job: this is sensor-readings' final content
    # (the end-of-stream heartbeats the drain adds next carry no value)
    readings = [r for r in kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.readings)
                if not kafka_io.is_heartbeat(r["value"])]
    last_ts = max(r["value"]["ts"] for r in readings)
    savepoint = ctl.drain_bounded_replay(job_id, cfg.kafka_bootstrap, cfg.topics.readings, last_ts)
    _step(f"  savepoint {savepoint}; job FINISHED (its exactly-once sinks committed)")

    _step("alerts of the detection rules (waiting until every injected fraud scenario is found) ...")
    from iotflink.settings import TransactionSettings  # noqa: PLC0415

    ground_truth = TransactionSettings.from_env().ground_truth_path
    alerts_rc = _run_cli(["rules", "alerts", "--ground-truth", str(ground_truth), "--wait-s", "240"],
                         stack, check=False)

    duplicates = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.duplicates)
    dlq = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.dlq)
    window_dlq = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.window_dlq)
    aggregates_raw = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.aggregates)
    late = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.late)
    aggregates = kafka_io.latest_by_key(aggregates_raw)
    # the job drops a reading delivered twice (same device_id, seq) and writes the copy to
    # sensor-duplicates; every unique reading's values are counted once
    unique = {(r["value"]["device_id"], r["value"]["seq"]): r["value"] for r in readings}
    values_in = sum(len(v["readings"]) for v in unique.values())
    counted = sum(int(a["count"]) for a in aggregates.values())
    dlq_reasons: dict[str, int] = {}
    for rec in dlq:
        reason = (rec["value"] or {}).get("reason", "?")
        dlq_reasons[reason] = dlq_reasons.get(reason, 0) + 1

    checks = exactness_checks(published, len(readings), len(dlq), values_in, counted, len(late), dropped_late,
                              unique_readings=len(unique), duplicates=len(duplicates))
    checks += [
        ("readings offsets match records (no gaps)", len(readings) <= readings_end,
         f"{len(readings)} records, end offsets {readings_end}"),
        ("every bad payload is in the DLQ", len(dlq) >= len(BAD_PAYLOADS), f"{len(dlq)} DLQ records"),
        ("the broker refused an anonymous client", anonymous_code == 5, f"CONNACK return code {anonymous_code}"),
        ("a device's reading on another device's topic was refused (so it is in no count above)",
         spoof_code == 0x87, f"PUBACK reason code {spoof_code}"),
        ("the window job read every record the bridge wrote (none in its DLQ)", not window_dlq,
         f"{len(window_dlq)} records in {cfg.topics.window_dlq}"),
        ("every injected fraud scenario raised its alert", alerts_rc == 0,
         f"rules alerts exit status {alerts_rc}"),
    ]
    if node_dropped is not None:
        # the nodes wait for their outbox (NodeSpec.backpressure) instead of overflowing it, so a
        # reading lost at a node is a fault of the run, not of the data
        checks.append(("the virtual nodes published every reading (none dropped from a full outbox)",
                       node_dropped == 0, f"{node_dropped} dropped at the nodes"))
    broker_after = stack.mosquitto_counters(fresh=True)
    broker_dropped = broker_after.dropped_since(broker_before)
    checks.append(("Mosquitto dropped no message for a full session queue", broker_dropped == 0,
                   f"{broker_dropped} dropped in this run ($SYS/broker/publish/messages/dropped; "
                   f"see {stack.log_file('mosquitto')})"))
    checks += job_health_checks(ctl, started_ms)
    print()
    print("=" * 72)
    print("iot-flink demo summary")
    print("-" * 72)
    print(f"readings published (MQTT)        {published:>10}   ({real} real + {len(BAD_PAYLOADS)} bad; {detail})")
    for dev, n in sorted(per_device.items()):
        print(f"   {dev:30}{n:>10}")
    print(f"records in {cfg.topics.readings:22}{len(readings):>10}   ({values_in} sensor values)")
    print(f"aggregates in {cfg.topics.aggregates:19}{len(aggregates):>10}   windows "
          f"({len(aggregates_raw)} records incl. late-firing updates; counts sum to {counted})")
    print(f"late events in {cfg.topics.late:18}{len(late):>10}")
    print(f"duplicates in {cfg.topics.duplicates:19}{len(duplicates):>10}   (readings delivered twice, dropped by the job)")
    print(f"DLQ records in {cfg.topics.dlq:18}{len(dlq):>10}   {dlq_reasons}")
    print(f"dropped by Mosquitto (full queue){broker_dropped:>10}   (max_queued_messages / max_queued_bytes "
          f"of a session; {broker_after.stored} messages stored now)")
    print(f"unreadable in {cfg.topics.window_dlq:19}{len(window_dlq):>10}   (records of {cfg.topics.readings} "
          "the window job could not read)")
    print(f"Flink web UI                     {cfg.flink_rest_url}")
    print(f"job {job_id}  savepoint {savepoint}")
    print("-" * 72)
    ok = True
    for name, passed, detail in checks:
        ok &= passed
        print(f"[{'OK ' if passed else 'FAIL'}] {name}: {detail}")
    print(f"demo took {time.monotonic() - t_start:.0f} s; the stack stays up (make down stops it)")
    print("=" * 72)
    return 0 if ok else 1


def job_health_checks(ctl: FlinkCtl, since_ms: int) -> list[tuple[str, bool, str]]:
    """The summary's check of the jobs submitted since ``since_ms`` (epoch ms), as
    ``(name, passed, detail)`` entries: ``("no job FAILED or restarting", True, "N jobs of this
    run, R restarts")``, or one failing entry per FAILED, FAILING or RESTARTING job:
    ``("job NAME (ID) FAILED", False, root exception on one line)``.

    Raises:
        JobError: the Flink REST API could not be read.
    """
    health = ctl.job_health(since_ms=since_ms)
    bad = [h for h in health if h.unhealthy]
    if not bad:
        restarts = sum(h.restarts or 0 for h in health)
        return [("no job FAILED or restarting", True, f"{len(health)} jobs of this run, {restarts} restarts")]
    return [(f"job {h.name} ({h.job_id}) {h.state}", False,
             (h.root_exception or "no exception recorded").replace("\n", " / ")) for h in bad]


def window_job_env(parallelism: int) -> dict[str, str]:
    """``IOTFLINK_*`` overrides for submitting the window job at ``parallelism``: above 1 also
    ``IOTFLINK_IDLENESS_MS=0`` (no idle channel in the job; ``WindowJobSettings.from_env``
    refuses parallelism > 1 otherwise).

    Raises:
        ValueError: ``parallelism`` < 1.
    """
    if parallelism < 1:
        raise ValueError(f"parallelism must be >= 1: {parallelism}")
    out = {"IOTFLINK_JOB_PARALLELISM": str(parallelism)}
    if parallelism > 1:
        out["IOTFLINK_IDLENESS_MS"] = "0"
    return out


def _report_failed_jobs(since_ms: int) -> None:
    """Print the jobs submitted since ``since_ms`` that are FAILED or restarting, each with
    its root exception, to stderr (best effort: the demo is failing already)."""
    try:
        failed = FlinkCtl(StackSettings.from_env()).failed_jobs(since_ms=since_ms)
    except IotFlinkError as exc:
        log.warning("could not list failed jobs: %s", exc)
        return
    for health in failed:
        print(f"[demo] {health.describe()}", file=sys.stderr)


def _run_cli(args: list[str], stack: Stack, check: bool = True) -> int:
    """Run ``iotflink ARGS`` with the stack's environment; returns its status."""
    proc = subprocess.run([sys.executable, "-m", "iotflink.cli", *args], cwd=PROJECT_ROOT,  # noqa: S603
                          env=stack.flink_env(), check=False)
    if check and proc.returncode != 0:
        raise IotFlinkError(f"`iotflink {' '.join(args)}` failed with exit status {proc.returncode}")
    return proc.returncode


def _bridge_done(stack: Stack, published: int) -> bool:
    st = stack.bridge_stats()
    return st["forwarded"] + st["dead_lettered"] >= published and st["pending"] == 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``iotflink demo`` (its arguments, :func:`run_demo`) on the CLI's subparsers."""
    p = sub.add_parser("demo", help="start the local stack, run the window job on the demo data, check the results",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--source", choices=["vnodes", "replay"], default="vnodes",
                   help="virtual ESP32 nodes (default: firmware core + libmosquitto, an outage flushed "
                        "late) or the Python replayer (seeded delays and held-back readings)")
    p.add_argument("--datasets", default="nab,femto,occupancy", help="replay source only")
    p.add_argument("--speedup", type=float, default=None,
                   help=f"event-time s per wall s; 0 = as fast as possible (default: {DEFAULT_VNODE_SPEEDUP:g} "
                        "for virtual nodes, on one shared clock; 0 for the replayer)")
    p.add_argument("--limit", type=int, default=0, help="rows per data set (0 = all)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--delay-fraction", type=float, default=0.02)
    p.add_argument("--delay-ms", type=int, default=5_000)
    p.add_argument("--late-fraction", type=float, default=0.002)
    p.add_argument("--late-ms", type=int, default=600_000)
    p.add_argument("--parallelism", type=_positive_int, default=DEFAULT_PARALLELISM,
                   help=f"of the window job (default {DEFAULT_PARALLELISM}; above 1 it runs without an idle "
                        "timeout, moved by the bridge's watermark heartbeats)")
    p.set_defaults(func=run_demo, log_level=logging.WARNING)
    return p


def run_demo(args: argparse.Namespace) -> int:
    """``iotflink demo [--speedup X] [--limit N] ...``; see the module docstring. Exit status 0
    when every check passed, 1 otherwise (the failure and the cluster's failed jobs on stderr)."""
    started_ms = int(time.time() * 1000)
    try:
        return run(args)
    except (IotFlinkError, TimeoutError, subprocess.CalledProcessError) as exc:
        print(f"[demo] FAILED: {exc}", file=sys.stderr)
        _report_failed_jobs(started_ms)
        return 1


def main(argv: list[str] | None = None) -> int:
    """``python -m iotflink.simulation.demo ...``: the same as ``iotflink demo ...``."""
    from iotflink import cli  # noqa: PLC0415 - the CLI imports this module

    return cli.main(["demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

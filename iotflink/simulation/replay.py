"""Replay the demo data sets over MQTT as the ESP32 nodes would (docs/CONTRACT.md).

Usage::

    iotflink replay [--datasets nab,femto,occupancy] [--speedup 0] [--limit N]
        [--delay-fraction F --delay-ms D] [--late-fraction F --late-ms L] [--seed S]
        [--window 200] [--start-ms MS] [--summary-file F] [--dry-run]

Devices, files and readings are those of docs/CONTRACT.md "Demo devices". Each reading becomes
one QoS 1 message ``{"device_id", "seq", "ts" (epoch ms), "readings"}`` on
``sensors/{device_id}/telemetry``, published by one MQTT client per device with that device's
credential (``iotflink device add ID``; the broker refuses anything else), at most
``window`` messages waiting for their PUBACK.

Timing (docs/CONTRACT.md "Replay time"): timestamps without a zone are UTC; FEMTO's seconds of
the test day are placed on :data:`FEMTO_DAY0` (2012-03-01 UTC). Each data set is then shifted by
a whole number of weeks so its last event falls in the week before ``start_ms`` (the replay's
start), which keeps weekday and time of day.

Order: within a data set, files are merged by event time, each file keeping its own order; the
data sets are merged the same way. Real disorder in the files is kept as it is: NAB's machine
file repeats the hour 2014-01-07 02:00-02:55, FEMTO snapshot 2121 is stamped about 6 h early.
Each message has a *release time* (event-time clock of the sender): the running maximum of the
event times before it. A seeded ``delay_fraction`` of messages is released ``delay_ms`` later
(out of order within the watermark bound) and a seeded ``late_fraction`` ``late_ms`` later
(held back past the lateness bound); messages are published in release order (stable), and with
``speedup`` > 0 paced at release-time / speedup (0 = as fast as possible).

``seq`` counts each device's messages from 0 in the original (un-delayed) order.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from iotflink.errors import ConfigError, IotFlinkError
from iotflink.poll import PollTimeout, poll
from iotflink.runtime.mqtt_auth import Credential, CredentialStore, configure_paho
from iotflink.settings import PROJECT_ROOT, StackSettings

log = logging.getLogger(__name__)

#: Where the replayed files live (copies with attribution, see data/ATTRIBUTION.md).
DATA_DIR = PROJECT_ROOT / "data"
#: Every data set the replayer knows, in the default order.
DATASETS = ("nab", "femto", "occupancy")
#: FEMTO day 0 (nominal; PRONOSTIA does not publish the date), epoch ms: 2012-03-01T00:00:00Z.
FEMTO_DAY0_MS = 1_330_560_000_000
#: One week, ms: the unit of the replay-time shift.
WEEK_MS = 7 * 24 * 3600 * 1000

DEVICE_NAB = "nab-machine"
DEVICE_FEMTO = "femto-b1_1"
DEVICE_OCCUPANCY = "occupancy-office"


@dataclass(frozen=True)
class Message:
    """One reading to publish.

    Fields:
        device_id: the node (docs/CONTRACT.md "Demo devices").
        seq: per-device sequence number, from 0 in the original order.
        ts_ms: event time after the week shift, epoch ms (the payload's ``ts``).
        readings: sensor name -> value (units: docs/CONTRACT.md).
        release_ms: the sender's event-time clock when it publishes (>= ts_ms for in-order
            data; ts_ms + delay for delayed / held-back messages), epoch ms.
        kind: ``"normal"``, ``"delayed"`` (out of order within the watermark bound) or
            ``"held"`` (held back past the lateness bound).
        dataset: ``"nab"``, ``"femto"`` or ``"occupancy"``.
    """

    device_id: str
    seq: int
    ts_ms: int
    readings: dict
    release_ms: int
    kind: str
    dataset: str

    @property
    def topic(self) -> str:
        """The MQTT topic, ``sensors/{device_id}/telemetry``."""
        return f"sensors/{self.device_id}/telemetry"

    def payload(self) -> dict:
        """The MQTT payload as a dict: ``{"device_id", "seq", "ts", "readings"}``."""
        return {"device_id": self.device_id, "seq": self.seq, "ts": self.ts_ms, "readings": self.readings}

    def payload_bytes(self) -> bytes:
        """The MQTT payload, compact UTF-8 JSON."""
        return json.dumps(self.payload(), separators=(",", ":")).encode()


# ---------------------------------------------------------------------- file readers
# Each reader yields (ts_ms, device_id, readings) in file order, times in original epoch ms.
Row = tuple[int, str, dict]


def _utc_ms(text: str) -> int:
    dt = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1000


def _read_nab(data_dir: Path) -> Iterator[Row]:
    with open(data_dir / "nab" / "machine_temperature_system_failure.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            yield _utc_ms(row["timestamp"]), DEVICE_NAB, {"temp": float(row["value"])}


#: FEMTO bearings shipped in data/femto (PRONOSTIA run-to-failure tests; data/ATTRIBUTION.md).
FEMTO_BEARINGS = ("1_1", "1_4", "1_5", "1_6", "1_7", "2_1", "2_4", "2_5")


def femto_vibration(bearing: str = "1_1", data_dir: Path = DATA_DIR, device_id: str = DEVICE_FEMTO) -> Iterator[Row]:
    """FEMTO vibration snapshots of one bearing as the node publishes them, in file order.

    One row per 10 s snapshot: ``(ts_ms, device_id, {"h_rms_g", "v_rms_g", "peak_abs_g"})``,
    ts_ms = :data:`FEMTO_DAY0_MS` + the snapshot's start (seconds of the test day) in ms;
    values in g (docs/CONTRACT.md). Raises OSError when the file is missing.
    """
    with open(data_dir / "femto" / f"Bearing{bearing}_vibration.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            ts = FEMTO_DAY0_MS + round(float(row["time_of_day_s"]) * 1000)
            yield ts, device_id, {"h_rms_g": float(row["h_rms_g"]), "v_rms_g": float(row["v_rms_g"]),
                                  "peak_abs_g": float(row["peak_abs_g"])}


def femto_temperature(bearing: str = "1_1", data_dir: Path = DATA_DIR, device_id: str = DEVICE_FEMTO) -> Iterator[Row]:
    """FEMTO bearing temperature of one bearing, one row per second in file order:
    ``(ts_ms, device_id, {"temp_c"})`` (degrees C). Raises OSError when the file is missing."""
    with open(data_dir / "femto" / f"Bearing{bearing}_temperature.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            ts = FEMTO_DAY0_MS + round(float(row["time_of_day_s"]) * 1000)
            yield ts, device_id, {"temp_c": float(row["temp_c"])}


def femto_rows(bearing: str = "1_1", data_dir: Path = DATA_DIR, device_id: str | None = None) -> list[Row]:
    """Every reading of one FEMTO bearing in the order the node publishes them: vibration and
    temperature merged by event time, each file in its own order (so Bearing1_1's clock-fault
    snapshots 2121-2122 come right after snapshot 2120, about 6 h behind it). Times are not
    week-shifted (day 0 = :data:`FEMTO_DAY0_MS`). ``device_id`` defaults to
    ``femto-b<bearing>`` (``femto-b1_1`` is the demo node of docs/CONTRACT.md).

    Raises:
        ConfigError: unknown bearing or a missing file.
    """
    if bearing not in FEMTO_BEARINGS:
        raise ConfigError(f"unknown FEMTO bearing {bearing!r}; choose from {', '.join(FEMTO_BEARINGS)}")
    dev = device_id or f"femto-b{bearing}"
    try:
        return list(_merge([femto_vibration(bearing, data_dir, dev), femto_temperature(bearing, data_dir, dev)]))
    except FileNotFoundError as exc:
        raise ConfigError(f"data file of FEMTO bearing {bearing} missing: {exc.filename}") from exc


def _read_femto_vibration(data_dir: Path) -> Iterator[Row]:
    return femto_vibration("1_1", data_dir)


def _read_femto_temperature(data_dir: Path) -> Iterator[Row]:
    return femto_temperature("1_1", data_dir)


def _read_occupancy(data_dir: Path) -> Iterator[Row]:
    with open(data_dir / "occupancy" / "datatraining.txt", newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)  # header: "date","Temperature",... (rows carry a leading row id)
        for row in reader:
            _rid, date, temp, hum, light, co2, hratio = row[:7]
            yield _utc_ms(date), DEVICE_OCCUPANCY, {
                "temp_c": float(temp), "humidity_pct": float(hum), "light_lux": float(light),
                "co2_ppm": float(co2), "humidity_ratio": float(hratio)}


_READERS: dict[str, tuple[Callable[[Path], Iterator[Row]], ...]] = {
    "nab": (_read_nab,),
    "femto": (_read_femto_vibration, _read_femto_temperature),
    "occupancy": (_read_occupancy,),
}


def _merge(streams: Iterable[Iterable[tuple]]) -> Iterator[tuple]:
    """k-way merge by the first element; each stream keeps its own order (ties: stream order)."""
    return heapq.merge(*streams, key=lambda r: r[0])


def week_shift_ms(last_ts_ms: int, start_ms: int) -> int:
    """The whole-week shift that puts ``last_ts_ms`` in ``[start_ms - 1 week, start_ms)``, ms."""
    return ((start_ms - 1 - last_ts_ms) // WEEK_MS) * WEEK_MS


def load_dataset(name: str, start_ms: int, limit: int | None = None,
                 data_dir: Path = DATA_DIR) -> list[tuple[int, str, dict, str]]:
    """Rows of one data set in replay order, shifted to replay time.

    Args:
        name: ``"nab"``, ``"femto"`` or ``"occupancy"``.
        start_ms: the replay's start, epoch ms; the last row lands in the week before it.
        limit: keep only the first ``limit`` rows (in merged order); the shift is computed on
            the rows kept.
        data_dir: the directory holding ``nab/``, ``femto/``, ``occupancy/``.
    Returns:
        ``[(ts_ms, device_id, readings, dataset), ...]``, files merged by event time, each
        file in its own order.
    Raises:
        ConfigError: unknown data set, or a data file is missing.
    """
    if name not in _READERS:
        raise ConfigError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    try:
        merged = _merge(reader(data_dir) for reader in _READERS[name])
        rows = []
        for row in merged:
            if limit is not None and len(rows) >= limit:
                break
            rows.append(row)
    except FileNotFoundError as exc:
        raise ConfigError(f"data file of {name!r} missing: {exc.filename}") from exc
    if not rows:
        return []
    shift = week_shift_ms(max(r[0] for r in rows), start_ms)
    return [(ts + shift, dev, readings, name) for ts, dev, readings in rows]


def build_messages(
    datasets: Iterable[str] = DATASETS,
    start_ms: int | None = None,
    *,
    limit: int | None = None,
    delay_fraction: float = 0.0,
    delay_ms: int = 0,
    late_fraction: float = 0.0,
    late_ms: int = 0,
    seed: int = 0,
    data_dir: Path = DATA_DIR,
) -> list[Message]:
    """Every message of a replay, in publish order, without publishing anything.

    Args:
        datasets: names from :data:`DATASETS`.
        start_ms: the replay's start, epoch ms (default: now).
        limit: rows per data set (first rows in event-time-merged order).
        delay_fraction / delay_ms: this fraction of messages (seeded) is released
            ``delay_ms`` ms of event time later: out of order within the watermark bound.
        late_fraction / late_ms: this fraction (seeded) is released ``late_ms`` later: held back
            past the lateness bound. The two draws are exclusive (one random number per
            message: ``< late_fraction`` held, ``< late_fraction + delay_fraction`` delayed).
        seed: seed of the selection; the same arguments give the same messages.
        data_dir: data directory (tests may point elsewhere).
    Returns:
        the messages sorted by ``(release_ms, original position)``.
    Raises:
        ConfigError: unknown data set, missing file, or fractions outside [0, 1].
    """
    if not (0 <= delay_fraction <= 1 and 0 <= late_fraction <= 1 and delay_fraction + late_fraction <= 1):
        raise ConfigError("delay_fraction and late_fraction must be in [0, 1] and sum to at most 1")
    if delay_ms < 0 or late_ms < 0:
        raise ConfigError("delay_ms and late_ms must be >= 0")
    if start_ms is None:
        start_ms = time.time_ns() // 1_000_000
    names = list(datasets)
    per_set = [load_dataset(n, start_ms, limit, data_dir) for n in names]
    rng = random.Random(seed)
    seqs: dict[str, int] = {}
    clock = None
    staged = []
    for pos, (ts, dev, readings, dataset) in enumerate(_merge(per_set)):
        seq = seqs.get(dev, 0)
        seqs[dev] = seq + 1
        clock = ts if clock is None or ts > clock else clock
        draw = rng.random()
        if draw < late_fraction:
            kind, release = "held", clock + late_ms
        elif draw < late_fraction + delay_fraction:
            kind, release = "delayed", clock + delay_ms
        else:
            kind, release = "normal", clock
        staged.append((release, pos, Message(dev, seq, ts, readings, release, kind, dataset)))
    staged.sort(key=lambda t: (t[0], t[1]))
    return [m for _r, _p, m in staged]


def summarise(messages: list[Message]) -> dict:
    """Counts of a message list: ``{"total", "published": {device: n}, "delayed", "held_back",
    "first_ts_ms", "last_ts_ms"}``."""
    per_dev: dict[str, int] = {}
    delayed = held = 0
    for m in messages:
        per_dev[m.device_id] = per_dev.get(m.device_id, 0) + 1
        delayed += m.kind == "delayed"
        held += m.kind == "held"
    return {
        "total": len(messages),
        "published": per_dev,
        "delayed": delayed,
        "held_back": held,
        "first_ts_ms": min((m.ts_ms for m in messages), default=None),
        "last_ts_ms": max((m.ts_ms for m in messages), default=None),
    }


def publish(
    messages: list[Message],
    host: str,
    port: int,
    *,
    credentials: Mapping[str, Credential | None],
    ca_file: Path | None = None,
    speedup: float = 0.0,
    window: int = 200,
    client_id: str | None = None,
    ack_timeout_s: float = 60.0,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Publish ``messages`` in order at QoS 1, each device over its own authenticated MQTT
    connection (as the nodes would), and wait for every PUBACK.

    The broker lets a device credential publish only on its own topic, so each device gets
    its own client. The order of the list is kept across devices: before the first message
    of a run of one device's messages goes out, every earlier message (of other devices) has
    its PUBACK, so the broker has queued it for the bridge first. Within a run, up to
    ``window`` messages wait for their PUBACK at once.

    Args:
        messages: from :func:`build_messages`.
        host / port: the MQTT broker.
        credentials: device id -> :class:`~iotflink.runtime.mqtt_auth.Credential` for every device in
            ``messages`` (``Stack.provision`` or ``CredentialStore.get``); a None value connects
            that device without a credential (only for a broker that allows anonymous clients).
        ca_file: CA certificate to verify the broker's TLS certificate; None = plain MQTT.
        speedup: release-time ms per wall ms; 0 publishes as fast as the window allows.
        window: most messages waiting for their PUBACK at once.
        client_id: prefix of the MQTT client ids (default ``iotflink-replay``); the broker
            uses each device's username as its client id anyway.
        ack_timeout_s: longest wait for one PUBACK window slot, or for the last PUBACKs, s.
        progress: called as ``progress(done, total)`` about every 5,000 messages.
    Returns:
        :func:`summarise` of the messages plus ``"acked"``, ``"elapsed_s"``, ``"rate_per_s"``.
    Raises:
        ConfigError: a device of ``messages`` has no credential, or ``window`` < 1.
        IotFlinkError: the broker could not be reached, refused a credential, or PUBACKs
            stopped coming.
    """
    import paho.mqtt.client as mqtt  # noqa: PLC0415

    if window < 1:
        raise ConfigError("window must be >= 1")
    missing = sorted({m.device_id for m in messages} - set(credentials))
    if missing:
        raise ConfigError(f"replay: no MQTT credential for {', '.join(missing)}; "
                          "create them with: iotflink device add ID")
    slots = threading.Semaphore(window)
    acked = [0]
    lock = threading.Condition()  # acked[0] changed
    closing = threading.Event()
    prefix = client_id or "iotflink-replay"
    clients: dict[str, mqtt.Client] = {}
    refused: dict[str, str] = {}

    def on_publish(_c, _u, _mid, _rc, _p):
        with lock:
            acked[0] += 1
            lock.notify_all()
        slots.release()

    def connect(device: str) -> mqtt.Client:
        connected = threading.Event()

        def on_connect(_c, _u, _f, reason_code, _p):
            if reason_code.is_failure:
                refused[device] = str(reason_code)
                log.error("replay: MQTT connect of %s refused: %s", device, reason_code)
            else:
                connected.set()

        def on_disconnect(_c, _u, _f, reason_code, _p):
            connected.clear()
            if not closing.is_set():
                log.warning("replay: %s disconnected (%s); paho reconnects and re-sends un-acked messages",
                            device, reason_code)

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-{device}",
                             protocol=mqtt.MQTTv311, clean_session=True)
        configure_paho(client, credentials[device], ca_file)
        client.max_inflight_messages_set(window)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(1, 10)
        client.on_connect, client.on_disconnect, client.on_publish = on_connect, on_disconnect, on_publish
        try:
            client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise IotFlinkError(f"replay: cannot reach MQTT broker {host}:{port}: {exc}") from exc
        client.loop_start()
        clients[device] = client
        def connack() -> bool:
            if device in refused:
                raise IotFlinkError(f"replay: the broker refused device {device}'s credential: {refused[device]}")
            return connected.wait(0.05)  # the event's wait is the polling interval

        try:
            poll(connack, 10, interval_s=0, what=f"the CONNACK of {device}", retry_on=())
        except PollTimeout as exc:
            raise IotFlinkError(f"replay: no CONNACK for {device} from {host}:{port} within 10 s") from exc
        return client

    def wait_acked(count: int) -> None:
        with lock:
            if not lock.wait_for(lambda: acked[0] >= count, ack_timeout_s):
                raise IotFlinkError(f"replay: only {acked[0]} of {count} PUBACKs after {ack_timeout_s:.0f} s")

    t0 = time.monotonic()
    try:
        base = messages[0].release_ms if messages else 0
        current = None
        for i, m in enumerate(messages):
            if speedup > 0:
                due = t0 + (m.release_ms - base) / speedup / 1000.0
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing to the data set's own timing, not synchronisation
            if m.device_id != current:
                wait_acked(i)  # everything before this run is at the broker: the order holds
                current = m.device_id
            client = clients.get(m.device_id) or connect(m.device_id)
            if not slots.acquire(timeout=ack_timeout_s):
                raise IotFlinkError(f"replay: no PUBACK for {ack_timeout_s:.0f} s ({i} published)")
            client.publish(m.topic, m.payload_bytes(), qos=1)
            if progress and (i + 1) % 5000 == 0:
                progress(i + 1, len(messages))
        wait_acked(len(messages))
    finally:
        closing.set()
        for client in clients.values():
            client.disconnect()
            client.loop_stop()
    elapsed = time.monotonic() - t0
    out = summarise(messages)
    out.update({"acked": acked[0], "elapsed_s": round(elapsed, 3),
                "rate_per_s": round(len(messages) / elapsed, 1) if elapsed > 0 else None})
    if progress:
        progress(len(messages), len(messages))
    return out


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``iotflink replay`` (its arguments, :func:`run`) on the CLI's subparsers."""
    p = sub.add_parser("replay", help="replay the demo data sets over MQTT",
                       description="Replay the demo data sets over MQTT; prints a JSON summary.")
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated: nab,femto,occupancy")
    p.add_argument("--speedup", type=float, default=0.0, help="event-time ms per wall ms; 0 = as fast as possible")
    p.add_argument("--delay-fraction", type=float, default=0.0)
    p.add_argument("--delay-ms", type=int, default=0, help="event-time delay of delayed readings (ms)")
    p.add_argument("--late-fraction", type=float, default=0.0)
    p.add_argument("--late-ms", type=int, default=0, help="event-time hold-back of late readings (ms)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="rows per data set")
    p.add_argument("--start-ms", type=int, default=None, help="replay start, epoch ms (default: now)")
    p.add_argument("--window", type=int, default=200, help="most messages awaiting PUBACK")
    p.add_argument("--host", default=None, help="MQTT host (default: IOTFLINK_HOST)")
    p.add_argument("--port", type=int, default=None, help="MQTT port (default: IOTFLINK_MQTT_PORT)")
    p.add_argument("--summary-file", type=Path, default=None, help="also write the JSON summary here")
    p.add_argument("--dry-run", action="store_true", help="build the messages, print the summary, publish nothing")
    p.set_defaults(func=run, log_level=logging.INFO)
    return p


def run(args: argparse.Namespace) -> int:
    """``iotflink replay``: build the messages, publish them, print the JSON summary on stdout.

    Exit status: 0 every message acknowledged by the broker, 1 a project error.
    """
    try:
        stack = StackSettings.from_env()
        names = [n.strip() for n in args.datasets.split(",") if n.strip()]
        messages = build_messages(names, args.start_ms, limit=args.limit, delay_fraction=args.delay_fraction,
                                  delay_ms=args.delay_ms, late_fraction=args.late_fraction,
                                  late_ms=args.late_ms, seed=args.seed)
        if args.dry_run:
            summary = summarise(messages)
        else:
            store = CredentialStore(stack.mqtt_auth_dir)
            creds = {dev: store.get(dev, "device") for dev in sorted({m.device_id for m in messages})}
            summary = publish(messages, args.host or stack.mqtt_host, args.port or stack.mqtt_port,
                              credentials=creds, ca_file=stack.mqtt_ca_file, speedup=args.speedup, window=args.window,
                              progress=lambda d, t: log.info("replay: %d/%d published", d, t))
    except IotFlinkError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 1
    summary.update({"datasets": names, "seed": args.seed, "delay_ms": args.delay_ms, "late_ms": args.late_ms,
                    "dry_run": args.dry_run})
    text = json.dumps(summary, sort_keys=True)
    if args.summary_file:
        args.summary_file.write_text(text + "\n")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m iotflink.simulation.replay ...``: the same as ``iotflink replay ...``."""
    from iotflink import cli  # noqa: PLC0415 - the CLI imports this module

    return cli.main(["replay", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

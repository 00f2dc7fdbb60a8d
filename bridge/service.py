"""The MQTT-to-Kafka bridge: QoS 1 in, Kafka ``acks=all`` out, MQTT ack only after Kafka.

Data flow, per MQTT message on ``sensors/+/telemetry``::

    paho network thread: on_message -> contract.validate -> producer.send(readings | dlq)
    kafka-python I/O thread: future succeeded -> mark done -> PUBACK (in arrival order)

Guarantees and decisions (see also docs/CONTRACT.md and /work/shared/PITFALLS.md item 8):

* **Persistent session.** MQTT v5, fixed client id (``BridgeSettings.client_id``),
  ``clean_start=False`` and a session expiry of :data:`SESSION_EXPIRY_S`, so QoS 1 messages
  published while the bridge is down wait at the broker. The subscription is made in
  ``on_connect``, i.e. again on every (re)connect. Redeliveries (``dup`` flag) are processed
  like any other message, never skipped.
* **Ack after Kafka.** ``manual_ack=True``; a message's PUBACK is sent only after
  kafka-python's future for its record (reading or dead letter) succeeded. PUBACKs go out in
  the order the PUBLISH packets arrived (MQTT 3.1.1 §4.6 / 5.0 §4.6), so a slow record holds
  back the acks behind it. Delivery is at-least-once: after a crash or reconnect the broker
  redelivers every un-acked message, whose record may already be in Kafka (duplicates are
  identified downstream by ``(device_id, seq)``).
* **Thread safety of ack().** ``Client.ack()`` only builds the 4-byte PUBACK and appends it to
  paho's outgoing deque, then writes one byte to the socket pair that wakes the network thread
  (``_packet_queue``). With ``loop_start()`` (our case) it never touches the socket itself, so
  it is exactly as thread-safe as ``publish()`` from another thread, which paho supports.
  Acks are additionally serialised by this module's lock, and an ack whose message arrived on
  an earlier connection is dropped (never sent on the new connection, where its packet id may
  already name another message); the broker redelivers that message instead.
* **Bounded memory / backpressure.** At most ``max_inflight`` messages are un-acked: the
  CONNECT carries ``Receive Maximum = max_inflight`` so the broker itself stops sending, and a
  semaphore of the same size blocks ``on_message`` (the paho thread, hence all reading from
  the socket) should a broker ignore it. Permits come back when a message is acked.
* **Kafka failure.** kafka-python retries internally until ``delivery_timeout_ms``. If a
  record still fails, its message and every message after it stay un-acked, the bridge stops
  with :data:`EXIT_KAFKA_FAILURE` and the broker redelivers them to the next bridge process
  (a supervisor, or ``make demo``, restarts it). The bridge never acks a message whose record
  Kafka did not confirm and never re-sends on its own (a re-send would not be de-duplicated).
* **Reconnect** with paho's exponential backoff (``reconnect_delay_set``), logged.
* **Nothing lost silently.** ``received = forwarded + dead_lettered + pending + failed``
  (see :meth:`Bridge.stats`); invalid payloads go to the DLQ topic with a reason.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge import contract
from iotflink.errors import IotFlinkError, ValidationError
from iotflink.settings import BridgeSettings

log = logging.getLogger(__name__)

#: MQTT session expiry the bridge asks for, seconds (7 days, as the broker's
#: ``persistent_client_expiration``): QoS 1 messages wait that long for a stopped bridge.
SESSION_EXPIRY_S = 7 * 24 * 3600
#: MQTT keepalive, seconds.
KEEPALIVE_S = 30
#: paho reconnect backoff: first delay and cap, seconds (doubles each failed attempt).
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
#: Exit status when Kafka did not confirm a record (messages stay un-acked at the broker).
EXIT_KAFKA_FAILURE = 3
#: Default kafka-python producer configuration (overridable through ``Bridge(producer_config=)``).
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 5,
    "batch_size": 64 * 1024,
    # A Kafka outage must not end the bridge: at most max_inflight records wait (bounded
    # memory; the rest wait at the MQTT broker), so let them wait for a day, and reconnect
    # within a second of the broker's return (kafka-python's default backoff grows to 30 s,
    # which once outlived a 120 s delivery timeout and made the bridge exit with status 3).
    "delivery_timeout_ms": 86_400_000,
    "reconnect_backoff_max_ms": 1_000,
    "request_timeout_ms": 30_000,
    "max_block_ms": 30_000,
    "client_id": "iotflink-bridge",
}


#: Compact JSON encoder for Kafka values (one instance: json.dumps(**kw) builds one per call).
_encode_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


class KafkaDeliveryError(IotFlinkError):
    """Kafka did not confirm a record; its MQTT message was not acknowledged."""


class _Pending:
    """One MQTT message accepted but not yet acknowledged to the broker."""

    __slots__ = ("mid", "qos", "gen", "done", "failed")

    def __init__(self, mid: int, qos: int, gen: int) -> None:
        self.mid = mid
        self.qos = qos
        self.gen = gen
        self.done = False
        self.failed = False


class Bridge:
    """MQTT (QoS 1, persistent session) to Kafka (idempotent, ``acks=all``) bridge.

    Args:
        settings: broker addresses, topics, client id and ``max_inflight``.
        producer_config: kafka-python overrides merged over :data:`PRODUCER_DEFAULTS`.
        producer_factory: builds the producer (tests inject a fake); default ``KafkaProducer``.
        clock_ms: the bridge clock, epoch ms (``ingest_ms``, ``received_ms``, ts checks).

    Use :meth:`start`, then :meth:`run_until` or :meth:`stop`; :meth:`stats` at any time.
    """

    def __init__(
        self,
        settings: BridgeSettings,
        producer_config: dict[str, Any] | None = None,
        producer_factory: Callable[..., Any] | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        if not 1 <= settings.max_inflight <= 65535:
            raise ValueError("max_inflight must be in 1..65535 (MQTT Receive Maximum)")
        self.settings = settings
        self._producer_config = {**PRODUCER_DEFAULTS, **(producer_config or {})}
        self._producer_factory = producer_factory
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.RLock()
        self._pending: collections.deque[_Pending] = collections.deque()
        self._permits = threading.Semaphore(settings.max_inflight)
        self._gen = 0
        self._connected = False
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._disconnected = threading.Event()
        self.fatal: BaseException | None = None
        self._counts = collections.Counter()
        self._dlq_reasons: collections.Counter = collections.Counter()
        self._started_mono = time.monotonic()
        self.producer: Any = None
        self.client = self._make_client()

    # ------------------------------------------------------------------ setup
    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.settings.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = self.settings.max_inflight
        return props

    def start(self) -> None:
        """Create the Kafka producer, then connect to MQTT and start paho's network thread.

        The MQTT connection is made asynchronously and retried with backoff, so a broker that
        is not up yet is waited for. Raises whatever the producer factory raises (e.g.
        ``kafka.errors.NoBrokersAvailable``) when Kafka cannot be reached.
        """
        if self._producer_factory is None:
            from kafka import KafkaProducer  # noqa: PLC0415

            self._producer_factory = KafkaProducer
        self.producer = self._producer_factory(
            bootstrap_servers=self.settings.kafka_bootstrap, **self._producer_config
        )
        self.client.connect_async(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            keepalive=KEEPALIVE_S,
            clean_start=False,
            properties=self._connect_properties(),
        )
        self.client.loop_start()
        log.info(
            "bridge started: mqtt %s:%d filter %s client_id %s -> kafka %s (%s, dlq %s), max_inflight %d",
            self.settings.mqtt_host, self.settings.mqtt_port, self.settings.topic_filter,
            self.settings.client_id, self.settings.kafka_bootstrap, self.settings.readings_topic,
            self.settings.dlq_topic, self.settings.max_inflight,
        )

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(self, client, _userdata, flags, reason_code, _props) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect refused: %s", reason_code)
            return
        with self._lock:
            self._gen += 1
            self._connected = True
            self._counts["connects"] += 1
        log.info("MQTT connected (session present: %s); subscribing to %s at QoS 1",
                 flags.session_present, self.settings.topic_filter)
        client.subscribe(self.settings.topic_filter, options=SubscribeOptions(qos=1))

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _props) -> None:
        for rc in reason_codes:
            if rc.is_failure or rc.value != 1:
                log.error("subscription to %s not granted at QoS 1: %s", self.settings.topic_filter, rc)
            else:
                with self._lock:
                    self._counts["subscribed"] += 1

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props) -> None:
        with self._lock:
            self._connected = False
            self._gen += 1  # acks of messages from the lost connection are dropped
            unacked = len(self._pending)
            if not self._stopping.is_set():
                self._counts["disconnects"] += 1
        self._disconnected.set()
        if self._stopping.is_set():
            log.info("MQTT disconnected (%s)", reason_code)
        else:
            log.warning("MQTT connection lost (%s); %d messages un-acked will be redelivered; "
                        "reconnecting with backoff %d..%d s", reason_code, unacked,
                        RECONNECT_MIN_S, RECONNECT_MAX_S)

    def _on_message(self, _client, _userdata, msg: mqtt.MQTTMessage) -> None:
        # Runs in paho's network thread. Blocks (stops reading MQTT) while max_inflight
        # messages are un-acked.
        if self._stopping.is_set():
            return  # not processed, not acked: the broker redelivers it to the next session
        while not self._permits.acquire(timeout=0.5):
            if self._stopping.is_set():
                return
        now_ms = self._clock_ms()
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)  # noqa: SLF001 - paho raises on a non-UTF-8 topic
        payload = msg.payload
        stale = False
        try:
            value = contract.validate(topic, payload, now_ms)
            body = _encode_json(value).encode()
            kind, out_topic, key = "forwarded", self.settings.readings_topic, value["device_id"]
            stale = now_ms - value["ts"] > contract.STALE_AFTER_MS
        except Exception as exc:  # noqa: BLE001 - every message in is counted out
            if isinstance(exc, ValidationError):
                reason, detail = exc.reason, exc.detail
            else:  # a bug, or an input the contract did not foresee: dead-letter, keep running
                log.exception("unexpected error handling a message on %s; dead-lettering it", topic)
                reason, detail = "internal_error", repr(exc)
            body = _encode_json(contract.dead_letter(topic, payload, reason, detail, now_ms)).encode()
            kind, out_topic, key = "dead_lettered", self.settings.dlq_topic, contract.topic_device_id(topic)
            with self._lock:
                self._dlq_reasons[reason] += 1
        entry = _Pending(msg.mid, msg.qos, 0)
        with self._lock:
            entry.gen = self._gen
            self._counts["received"] += 1
            if msg.dup:
                self._counts["redelivered"] += 1
            if stale:
                self._counts["stale_ts"] += 1
            self._pending.append(entry)
        try:
            future = self.producer.send(
                out_topic,
                value=body,
                key=key.encode() if key is not None else None,
            )
        except Exception as exc:  # noqa: BLE001 - e.g. KafkaTimeoutError waiting for metadata
            self._on_failed(entry, kind, exc)
            return
        future.add_callback(self._on_sent, entry, kind)
        future.add_errback(self._on_failed, entry, kind)

    # ------------------------------------------------------------------ kafka callbacks
    def _on_sent(self, entry: _Pending, kind: str, _metadata: Any) -> None:
        with self._lock:
            entry.done = True
            self._counts[kind] += 1
            self._drain_acks()

    def _on_failed(self, entry: _Pending, kind: str, exc: BaseException) -> None:
        with self._lock:
            entry.failed = True
            self._counts["kafka_errors"] += 1
            first = self.fatal is None
            if first:
                self.fatal = KafkaDeliveryError(f"Kafka did not confirm a {kind} record: {exc!r}")
        if first:
            log.error("Kafka send failed (%r): MQTT message mid %d and all after it stay un-acked; "
                      "stopping so the broker redelivers them to the next bridge process", exc, entry.mid)
        self._stopping.set()
        self._done.set()

    def _drain_acks(self) -> None:
        # Caller holds self._lock. Ack the done prefix of the queue, in arrival order.
        pending = self._pending
        while pending and pending[0].done:
            entry = pending.popleft()
            if entry.gen == self._gen and self._connected and self.fatal is None:
                rc = self.client.ack(entry.mid, entry.qos)
                if rc == mqtt.MQTT_ERR_SUCCESS:
                    self._counts["acked"] += 1
                else:
                    self._counts["ack_dropped"] += 1
            else:
                self._counts["ack_dropped"] += 1  # message from a lost connection: redelivered
            self._permits.release()

    # ------------------------------------------------------------------ running
    def stats(self) -> dict[str, Any]:
        """Counters since start, as a JSON-able dict.

        Fields: ``received`` (MQTT messages taken in), ``forwarded`` (Kafka confirmed a
        ``sensor-readings`` record), ``dead_lettered`` (Kafka confirmed a DLQ record),
        ``acked`` (PUBACK queued to the broker), ``kafka_errors`` (records Kafka did not
        confirm), ``pending`` (accepted, not yet acked), ``redelivered`` (``dup`` flag set),
        ``stale_ts`` (ts more than 1 h old), ``ack_dropped`` (acks not sent because the
        connection was lost; the broker redelivers those), ``connects``, ``disconnects``,
        ``subscribed`` (SUBACKs granting QoS 1: the bridge is ready once this is >= 1),
        ``dlq_reasons`` {reason: count}, ``uptime_s``, ``fatal`` (error text or null).
        """
        with self._lock:
            out = {k: self._counts.get(k, 0) for k in (
                "received", "forwarded", "dead_lettered", "acked", "kafka_errors", "redelivered",
                "stale_ts", "ack_dropped", "connects", "disconnects", "subscribed")}
            out["pending"] = len(self._pending)
            out["dlq_reasons"] = dict(self._dlq_reasons)
            out["fatal"] = str(self.fatal) if self.fatal else None
        out["uptime_s"] = round(time.monotonic() - self._started_mono, 3)
        return out

    def write_stats(self, path: Path) -> None:
        """Write :meth:`stats` as JSON to ``path`` atomically (temp file + rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.stats(), sort_keys=True) + "\n")
        os.replace(tmp, path)

    def request_stop(self) -> None:
        """Ask :meth:`run_until` to return (safe from a signal handler)."""
        self._done.set()

    def run_until(self, stats_file: Path | None = None, stats_interval_s: float = 5.0) -> int:
        """Block until :meth:`request_stop` or a Kafka failure, logging stats periodically.

        Returns the process exit status: 0 after a clean stop, :data:`EXIT_KAFKA_FAILURE`
        after a Kafka failure. Always calls :meth:`stop`.
        """
        if stats_file:
            self.write_stats(stats_file)
        try:
            while not self._done.wait(stats_interval_s):
                st = self.stats()
                log.info("bridge stats: received %d forwarded %d dlq %d acked %d pending %d kafka_errors %d",
                         st["received"], st["forwarded"], st["dead_lettered"], st["acked"],
                         st["pending"], st["kafka_errors"])
                if stats_file:
                    self.write_stats(stats_file)
        finally:
            self.stop()
            if stats_file:
                self.write_stats(stats_file)
        return EXIT_KAFKA_FAILURE if self.fatal else 0

    def stop(self, flush_timeout_s: float = 30.0) -> None:
        """Stop cleanly: take no new messages, flush Kafka, send the acks, then disconnect.

        Messages that arrive while stopping are neither forwarded nor acked; the broker keeps
        them in the persistent session. After a Kafka failure nothing more is acked.
        """
        if getattr(self, "_stopped", False):
            return
        self._stopped = True
        self._stopping.set()
        if self.producer is not None:
            try:
                self.producer.flush(timeout=flush_timeout_s)
            except Exception as exc:  # noqa: BLE001
                log.error("Kafka flush failed on shutdown (%r); un-confirmed messages stay un-acked", exc)
        # every confirmed record's PUBACK is queued now (callbacks ran during flush); the
        # DISCONNECT queued next goes out after them, from paho's thread, which calls
        # on_disconnect once it is written. Wait for that before stopping the thread.
        with self._lock:
            connected = self._connected
        self._disconnected.clear()
        self.client.disconnect()
        if connected and not self._disconnected.wait(5.0):
            log.warning("MQTT DISCONNECT not confirmed within 5 s; un-sent acks are redelivered")
        self.client.loop_stop()
        if self.producer is not None:
            try:
                self.producer.close(timeout=5)
            except Exception as exc:  # noqa: BLE001
                log.warning("closing the Kafka producer: %r", exc)
        st = self.stats()
        log.info("bridge stopped: %s", st)

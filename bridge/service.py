"""The MQTT-to-Kafka bridge: QoS 1 in, Kafka ``acks=all`` out, MQTT ack only after Kafka.

Data flow, per MQTT message on ``sensors/+/telemetry``::

    paho network thread:     on_message -> contract.validate -> record (reading | dead letter)
                             -> admission (message and byte bounds) -> send queue
    bridge sender thread:    producer.send(readings | dlq), in arrival order; a failed send is
                             retried with backoff before anything newer is sent
    kafka-python I/O thread: record confirmed -> mark done -> PUBACKs of the done prefix, in
                             arrival order; record failed -> dead letter (too large) or re-send

With ``producer_process`` (the default) the producer runs in a child process
(:mod:`bridge.producer_process`): ``producer.send`` hands the record to it over a pipe, and
the confirmations (or failures) come back to a reader thread of the bridge process, which
runs the same callbacks as kafka-python's I/O thread would, so everything below holds alike.

Guarantees and decisions (see also docs/CONTRACT.md):

* **Identity.** The bridge authenticates with its own credential (``BridgeSettings.username``
  and ``password_file``; iotflink/runtime/mqtt_auth.py), optionally over TLS (``ca_file``). The
  broker's ACL lets it read ``sensors/+/telemetry`` and publish nothing, and the broker uses
  the username as the client id, so its session cannot be taken over without its password.
* **Persistent session.** MQTT v5, fixed client id (the username, see above),
  ``clean_start=False`` and a session expiry of :data:`SESSION_EXPIRY_S`, so QoS 1 messages
  published while the bridge is down wait at the broker. The subscription is made in
  ``on_connect``, i.e. again on every (re)connect. Redeliveries (``dup`` flag) are processed
  like any other message, never skipped.
* **Retained messages: never replayed.** The subscription asks for MQTT v5 *retain handling 2*
  (:data:`RETAIN_HANDLING`, "do not send retained messages at subscribe time"). Without it the
  broker would send every device's retained telemetry again on each re-subscribe, i.e. on
  every reconnect, and each copy would become another record in ``sensor-readings``. A message
  published with the retain flag while the bridge's session exists is still delivered once,
  like any other message (also when it waits in the session while the bridge is down). A
  retained message stored before the bridge's session existed (first start, or after the
  session expired) is not forwarded: devices must not rely on the retain flag for delivery.
* **Ack after Kafka.** ``manual_ack=True``; a message's PUBACK is sent only after
  kafka-python's future for its record (reading or dead letter) succeeded. PUBACKs go out in
  the order the PUBLISH packets arrived (MQTT 3.1.1 §4.6 / 5.0 §4.6), so a slow record holds
  back the acks behind it. Delivery is at-least-once: after a crash or reconnect the broker
  redelivers every un-acked message, whose record may already be in Kafka.
* **Kafka failures never end the process** (no exit, no crash loop on a redelivered message).
  Each failed send, synchronous (``producer.send`` raises: a metadata wait for an uncached
  topic during an outage, a missing topic, a record over ``max_request_size``) or
  asynchronous (the future fails: the broker's ``message.max.bytes``, a delivery timeout), is
  decided per error:

  - *record too large* (``MessageSizeTooLargeError``, ``RecordListTooLargeError``): the
    message goes to the DLQ instead, as a record of reason ``record_too_large`` whose
    ``detail`` names the refused record's size in bytes and whose ``raw``/``mqtt_topic``
    keep at most :data:`TOO_LARGE_KEEP_BYTES` bytes of JSON each (``"truncated": true``,
    ``raw_bytes`` = the full payload size);
  - *anything else* (Kafka away, topic missing, timeouts, a dead letter still too large after
    truncation): the same record is sent again after an exponential backoff
    (:data:`RETRY_BACKOFF_MIN_S` doubling to :data:`RETRY_BACKOFF_MAX_S`), and nothing newer
    is sent until it has been. Acks stop behind it (nothing is lost: the message stays un-acked at the
    broker), the log says so, and :meth:`Bridge.stats` shows ``kafka_blocked`` (a
    ``sensor-readings`` record) or ``dlq_blocked`` (a ``sensor-dlq`` record) with the error
    text and since when, until a record of that topic is confirmed again.

  A non-retriable asynchronous error also replaces the producer: kafka-python's idempotent
  producer answers one (e.g. the broker's MESSAGE_TOO_LARGE) with a fatal state in which it
  fails every later record with that same exception. Records failed that way, or by the
  replaced producer's close, are sent again through the new one, without backoff
  (``producer_restarts`` in the stats).

  A re-send after an asynchronous failure can duplicate a record (Kafka may have written the
  first copy, e.g. when the acknowledgement timed out), and can put it behind newer records
  that were already on their way. That is acceptable under the contract's at-least-once
  delivery: the window job drops duplicates by ``(device_id, seq)`` and orders by event time,
  and dead letters are diagnostics.
* **Thread safety of ack().** ``Client.ack()`` only builds the 4-byte PUBACK and appends it to
  paho's outgoing deque, then writes one byte to the socket pair that wakes the network thread
  (``_packet_queue``). With ``loop_start()`` (our case) it never touches the socket itself, so
  it is exactly as thread-safe as ``publish()`` from another thread, which paho supports.
  Acks are additionally serialised by this module's lock, and an ack whose message arrived on
  an earlier connection is dropped (never sent on the new connection, where its packet id may
  already name another message); the broker redelivers that message instead.
* **Bounded memory / backpressure.** At most ``max_inflight`` messages of the current
  connection are un-acked: the CONNECT carries ``Receive Maximum = max_inflight`` so the broker
  itself stops sending, and ``on_message`` (the paho thread, hence all reading from the socket)
  waits should a broker ignore it. Messages of a lost connection whose records Kafka has not
  confirmed yet do not count against the new connection's window: the broker redelivers them
  and counts them afresh, and their acks are dropped. Counting them too made ``on_message``
  wait for Kafka right after a reconnect under overload, sending no keepalive meanwhile, so
  the broker dropped the connection again and redelivered more each time; they stay held by
  the byte bound. At most ``max_inflight_bytes`` bytes (:func:`message_cost`) are held for
  messages whose record Kafka has not yet confirmed; ``on_message`` waits for room (a message
  larger than the whole bound is admitted alone, once nothing else is held). Bytes come back
  when Kafka confirms a record, messages when they are acked. The broker refuses any packet
  over :data:`MAX_PACKET_BYTES` (``max_packet_size`` in deploy/mosquitto.conf), so one
  message costs at most about 0.85 MiB (a dead letter escapes a control character as 6 bytes).
  While ``on_message`` waits it sends no MQTT keepalive: a wait longer than 1.5 x
  :data:`KEEPALIVE_S` (only while Kafka is away *and* the byte bound is full) makes the broker
  drop the connection, and it redelivers the un-acked messages after the reconnect.
* **Reconnect** with paho's exponential backoff (``reconnect_delay_set``), logged.
* **Leaving a shared subscription group** (several bridge processes, ``share_group``): the
  broker hands each message to one member, and a member that is offline but keeps its session
  still gets its share, queued until the session expires (Mosquitto does so). So a graceful
  stop (:meth:`Bridge.stop`, SIGTERM/SIGINT) of a member first *leaves* the group: UNSUBSCRIBE
  and wait for the UNSUBACK; go on forwarding, and acking after Kafka, what the broker still
  delivers (messages it had queued for this member before the UNSUBSCRIBE) until none has
  come for :data:`LEAVE_QUIET_S` and every one is acked (at most :data:`LEAVE_TIMEOUT_S`);
  then the usual stop, with a DISCONNECT that ends the session (session expiry 0). The other
  members get every later message. If something is still un-acked at the end (Kafka away),
  the session is kept, so those messages stay at the broker. ``leave_on_stop=False`` keeps
  the session in the group (for a stop and restart of every member together, whose messages
  then wait in the sessions). A single bridge (no group) always keeps its session.
* **Throughput** (profiles with ``bench/profile_bridge.py``, py-spy; ``bench/bridge_bench.py``
  measures rates and CPU per message against a bare paho subscriber and a bare producer).
  A first round found the threads taking turns on the GIL record by record and fixed it:
  (1) ``on_message`` sends the record itself while nothing older waits (the sender thread
  only takes over behind a failed or queued record, so arrival order and the retry rules are
  unchanged); (2) a confirmed record wakes only who waits for it (two conditions on one lock);
  (3) the value is written as text by :func:`bridge.contract.encode_reading` (byte-equal to
  ``json.dumps``); (4) each key's partition is cached (:class:`CachedKeyPartitioner`, the same
  murmur2 answer as the Java client's). A second profile of one process (all threads, then
  only the thread holding the GIL) showed where the rest went: of the GIL's time, paho about
  half (its PUBLISH parsing with MQTT v5 properties and an ``MQTTMessageInfo`` with a
  ``Condition`` per message, a ``select`` and several ``recv`` per packet), our validation,
  encoding, admission and ack path most of the other half, and, with the producer in the same
  process, kafka-python's I/O thread (record batches, a pure-Python CRC-32C until ``crc32c``
  was installed, one wake-up per ``send``) about a third of all samples. Since then: the
  producer runs in a child process (:mod:`bridge.producer_process`, setting
  ``producer_process``), so paho and kafka-python no longer share one GIL; the link batches
  records both ways and keeps ack-after-Kafka per record (a PUBACK still waits for Kafka's
  acknowledgement of its record, relayed over the pipe). What remains in the bridge process
  per message, besides paho's own work: about 14 us of our code (parse, checks, encode,
  entry, admission, the confirmation and the PUBACK) and about 6 us for the link (future,
  pickling both ways), measured per thread CPU time on this machine.
* **Batches** (docs/CONTRACT.md, "Batches"): a message with a ``samples`` list becomes one
  Kafka record per sample (``seq`` of sample ``i`` = the message's ``seq`` + ``i``), a faulty
  sample its own dead letter (``sample_index``, raw = the whole payload) beside the good
  samples' records; the message is acked once all its records are confirmed.
* **Nothing lost silently.** ``records = forwarded + dead_lettered + pending``
  (see :meth:`Bridge.stats`); invalid payloads go to the DLQ topic with a reason.
"""

from __future__ import annotations

import collections
import heapq
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from kafka import errors as kafka_errors
from kafka.partitioner import DefaultPartitioner
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge import contract
from iotflink.errors import ConfigError, ValidationError
from iotflink.kafka_io import HEARTBEAT_DEVICE, PartitionClock, heartbeat_value
from iotflink.settings import BridgeSettings

log = logging.getLogger(__name__)

#: MQTT session expiry the bridge asks for, seconds (7 days, as the broker's
#: ``persistent_client_expiration``): QoS 1 messages wait that long for a stopped bridge.
SESSION_EXPIRY_S = 7 * 24 * 3600
#: Leaving a shared subscription group on a graceful stop (module docstring): the member stops
#: forwarding once no message came for this long after the UNSUBACK (s), and every message is
#: acked; the broker sends what it queued for the member right behind the UNSUBACK.
LEAVE_QUIET_S = 1.0
#: ... and at the latest this long after the UNSUBSCRIBE (s).
LEAVE_TIMEOUT_S = 20.0
#: MQTT keepalive, seconds.
KEEPALIVE_S = 30
#: paho reconnect backoff: first delay and cap, seconds (doubles each failed attempt).
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
#: MQTT v5 retain handling of the subscription: 2 = never send retained messages at subscribe
#: time (so a reconnect does not replay retained telemetry).
RETAIN_HANDLING = SubscribeOptions.RETAIN_DO_NOT_SEND
#: Backoff before re-sending a record whose send failed: first delay and cap, seconds (doubles
#: with each consecutive failure of records of the same topic).
RETRY_BACKOFF_MIN_S, RETRY_BACKOFF_MAX_S = 0.5, 30.0
#: Bytes allowed on top of the contract's payload maximum in one MQTT PUBLISH packet: fixed
#: header (<= 5), topic length and packet id (4), the topic (``sensors/{device_id}/telemetry``,
#: <= 82 bytes) and MQTT v5 properties (the rest, ~930 bytes).
MQTT_PACKET_ALLOWANCE_BYTES = 1024
#: The broker's ``max_packet_size`` (deploy/mosquitto.conf): a larger packet is refused (the
#: publisher is disconnected) before it reaches the bridge. 66,560 bytes.
MAX_PACKET_BYTES = contract.MAX_PAYLOAD_BYTES + MQTT_PACKET_ALLOWANCE_BYTES
#: A ``record_too_large`` dead letter keeps at most this many bytes of JSON text of each of
#: ``raw``, ``mqtt_topic`` and ``detail``, so it is at most ~3.3 KiB.
TOO_LARGE_KEEP_BYTES = 1024
class CachedKeyPartitioner(DefaultPartitioner):
    """kafka-python's default partitioner (murmur2 of the key, as the Java client's), with each
    key's partition remembered: the pure-Python murmur2 costs several microseconds per
    record, and a fleet has few keys (device ids) that recur on every reading.

    The cache is keyed by (topic, key, partition count), so a topic that gains partitions gets
    new answers, and cleared when it holds ``max_keys`` entries (bounded memory). A record
    without a key goes to a random available partition, as with the default.

    Args:
        max_keys: most cached keys (>= 1).
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self._max_keys = max_keys
        self._cache: dict[tuple[str, bytes, int], int] = {}

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
        parts = cluster.partitions_for_topic(topic) if serialized_key is not None else None
        if not parts:
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        ck = (topic, serialized_key, len(parts))
        cached = self._cache.get(ck)
        if cached is None:
            cached = super().partition(topic, key, serialized_key, value, serialized_value, cluster)
            if len(self._cache) >= self._max_keys:
                self._cache.clear()
            self._cache[ck] = cached
        return cached


#: Default kafka-python producer configuration (overridable through ``Bridge(producer_config=)``);
#: ``linger_ms`` comes from :attr:`BridgeSettings.linger_ms`.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "batch_size": 64 * 1024,
    # A Kafka outage must not end the bridge: at most max_inflight records wait (bounded
    # memory; the rest wait at the MQTT broker), so let them wait for a day, and reconnect
    # within a second of the broker's return (kafka-python's default backoff grows to 30 s).
    # A record that still times out is re-sent by the bridge (see the module docstring).
    "delivery_timeout_ms": 86_400_000,
    "reconnect_backoff_max_ms": 1_000,
    "request_timeout_ms": 30_000,
    # how long send() waits for an uncached topic's metadata; the sender thread retries
    # anyway, so a short wait reports a blocked state sooner and lets stop() finish sooner
    "max_block_ms": 10_000,
    "client_id": "iotflink-bridge",  # the bridge's own username replaces it (Bridge.__init__)
    "partitioner": CachedKeyPartitioner(),
}

#: kafka-python errors meaning "this record is too large for Kafka" (the producer's
#: ``max_request_size`` raises the first one synchronously; the broker answers either).
_TOO_LARGE = (kafka_errors.MessageSizeTooLargeError, kafka_errors.RecordListTooLargeError)

#: What the sender thread's queue answers when the producer must be replaced first.
_REPLACE = object()

#: Compact JSON encoder for Kafka values (one instance: json.dumps(**kw) builds one per call).
_encode_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


def message_cost(payload_bytes: int, topic_bytes: int, record_bytes: int) -> int:
    """Bytes one in-flight message counts against ``max_inflight_bytes``.

    Args:
        payload_bytes: the MQTT payload's size (kept for a possible ``record_too_large``
            dead letter until Kafka confirms).
        topic_bytes: the MQTT topic's size.
        record_bytes: the Kafka record's key + value size; counted twice, for the bridge's
            copy (kept for a re-send) and the copy in kafka-python's batch buffer.
    Returns:
        the cost in bytes.
    """
    return payload_bytes + topic_bytes + 2 * record_bytes


def _close_producer(producer: Any, timeout_s: float = 5.0) -> None:
    """Close a replaced producer, logging (not raising) a failure."""
    try:
        producer.close(timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - e.g. KafkaTimeoutError from its final flush
        log.warning("closing the replaced Kafka producer: %r", exc)


def _json_head(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose JSON string form is at most ``limit`` bytes."""
    if len(text.encode("utf-8", "surrogatepass")) * 6 <= limit:  # even fully escaped it fits
        return text
    size = 0
    for i, ch in enumerate(text):
        size += len(_encode_json(ch).encode("utf-8", "surrogatepass")) - 2
        if size > limit:
            return text[:i]
    return text


class _Entry:
    """One MQTT message accepted but not yet acknowledged, and the Kafka record made from it.

    ``kind`` is ``"forwarded"`` (a ``sensor-readings`` record) or ``"dead_lettered"``;
    ``topic``/``key``/``value`` are the record (bytes); ``reason``/``detail`` the dead
    letter's; ``payload``/``mqtt_topic``/``received_ms`` the message's, kept for a
    ``record_too_large`` dead letter; ``cost`` its bytes against the byte bound (0 once
    confirmed); ``attempt`` counts failed sends (a future of an older attempt is ignored);
    ``pgen`` is the generation of the producer its last send went to.
    """

    __slots__ = ("seq", "mid", "qos", "gen", "done", "kind", "topic", "key", "value", "reason",
                 "detail", "payload", "mqtt_topic", "received_ms", "cost", "attempt", "truncated",
                 "pgen", "ts_ms", "last")

    def __init__(self, mid: int, qos: int, kind: str, topic: str, key: bytes | None, value: bytes,
                 reason: str | None, detail: str | None, payload: bytes, mqtt_topic: str,
                 received_ms: int) -> None:
        self.seq = 0
        self.mid = mid
        self.qos = qos
        self.gen = 0
        self.done = False
        self.kind = kind
        self.topic = topic
        self.key = key
        self.value = value
        self.reason = reason
        self.detail = detail
        self.payload = payload
        self.mqtt_topic = mqtt_topic
        self.received_ms = received_ms
        self.cost = message_cost(len(payload), len(mqtt_topic.encode("utf-8", "surrogatepass")),
                                 len(value) + len(key or b""))
        self.attempt = 0
        self.truncated = False
        self.pgen = 0
        self.ts_ms: int | None = None  # a reading's event time (for the watermark heartbeats)
        self.last = False  # the last record of its message: carries the message's PUBACK


class Bridge:
    """MQTT (QoS 1, persistent session) to Kafka (idempotent, ``acks=all``) bridge.

    Args:
        settings: broker addresses, topics, client id, ``max_inflight`` (1..65535, the MQTT
            Receive Maximum) and ``max_inflight_bytes`` (>= 1).
        producer_config: kafka-python overrides merged over :data:`PRODUCER_DEFAULTS`.
        producer_factory: builds the producer (tests inject a fake); default ``KafkaProducer``.
        clock_ms: the bridge clock, epoch ms (``ingest_ms``, ``received_ms``, ts checks,
            ``since_ms`` of a blocked state).
        client_factory: builds the MQTT client with paho ``Client``'s arguments (tests inject
            a fake); default ``paho.mqtt.client.Client``.
        retry_backoff_s: ``(first, cap)`` delay before re-sending a failed record, seconds.

    Raises:
        ValueError: a bound out of range.

    Use :meth:`start`, then :meth:`run_until` or :meth:`stop`; :meth:`stats` at any time.
    """

    def __init__(
        self,
        settings: BridgeSettings,
        producer_config: dict[str, Any] | None = None,
        producer_factory: Callable[..., Any] | None = None,
        clock_ms: Callable[[], int] | None = None,
        client_factory: Callable[..., Any] | None = None,
        retry_backoff_s: tuple[float, float] = (RETRY_BACKOFF_MIN_S, RETRY_BACKOFF_MAX_S),
    ) -> None:
        if not 1 <= settings.max_inflight <= 65535:
            raise ValueError("max_inflight must be in 1..65535 (MQTT Receive Maximum)")
        if settings.max_inflight_bytes < 1:
            raise ValueError("max_inflight_bytes must be >= 1")
        if settings.heartbeat_interval_ms < 0 or settings.heartbeat_quiet_ms <= 0:
            raise ValueError("heartbeat interval must be >= 0 (0 = off) and the quiet period > 0")
        if settings.linger_ms < 0:
            raise ValueError("linger_ms must be >= 0")
        self.settings = settings
        self._producer_config = {**PRODUCER_DEFAULTS, "client_id": settings.client_id or PRODUCER_DEFAULTS["client_id"],
                                 "linger_ms": settings.linger_ms, **(producer_config or {})}
        self._producer_factory = producer_factory
        self._client_factory = client_factory or mqtt.Client
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._backoff_min_s, self._backoff_max_s = retry_backoff_s
        self._lock = threading.RLock()
        # Two conditions on the one lock, so that a confirmed record wakes only who waits for
        # it: _cv (the sender thread: work to send, backoff over, stop) and _room (on_message
        # waiting for a bound). Waking the idle sender thread on every record cost a GIL
        # hand-over per record (see "Throughput" in the module docstring).
        self._cv = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._sender_busy = False  # the sender thread holds a popped entry, not yet sent
        self._pending: collections.deque[_Entry] = collections.deque()  # arrival order, un-acked
        self._inflight_bytes = 0  # sum of cost over _pending
        self._send_queue: collections.deque[_Entry] = collections.deque()  # admitted, not sent yet
        self._retry: list[tuple[int, _Entry]] = []  # heap (seq, entry): failed, to re-send first
        self._retry_at = 0.0  # monotonic time before which the sender sends nothing (backoff)
        self._blocked: dict[str, dict[str, Any]] = {}  # "kafka" | "dlq" -> blocked state
        self._admission_blocked: str | None = None  # "messages" | "bytes" while on_message waits
        self._producer_gen = 0  # +1 each time the producer is replaced
        self._replace_producer = False  # set on a non-retriable asynchronous error
        self._poison: BaseException | None = None  # that error (the old producer repeats it)
        self._seq = 0
        self._pending_msgs = 0  # messages in _pending (a batch has several records there)
        # of those, the messages of the current connection: what the broker counts against the
        # Receive Maximum (messages of a lost connection are redelivered; their acks are dropped)
        self._conn_msgs = 0
        self._gen = 0
        self._connected = False
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._disconnected = threading.Event()
        self._unsubscribed = threading.Event()  # UNSUBACK of the shared subscription (leaving)
        self._leaving = False  # leaving the shared subscription group: no re-subscribe on connect
        self._last_message_mono = 0.0  # monotonic time of the last message received
        self._counts: collections.Counter = collections.Counter()
        self._dlq_reasons: collections.Counter = collections.Counter()
        self._started_mono = time.monotonic()
        self._sender: threading.Thread | None = None
        self._heartbeater: threading.Thread | None = None
        self._partition_clock = PartitionClock(settings.heartbeat_quiet_ms)
        self.producer: Any = None
        self.client = self._make_client()

    # ------------------------------------------------------------------ setup
    def _make_client(self) -> mqtt.Client:
        client = self._client_factory(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.settings.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        if self.settings.username:
            client.username_pw_set(self.settings.username, self._password())
        if self.settings.ca_file is not None:
            client.tls_set(ca_certs=str(self.settings.ca_file))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_message = self._on_message
        return client

    def _password(self) -> str:
        path = self.settings.password_file
        if path is None:
            raise ConfigError(f"bridge user {self.settings.username}: no password file configured")
        try:
            password = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"bridge user {self.settings.username}: cannot read its password file "
                              f"{path} ({exc}); the local stack creates it, see README 'Security'") from exc
        if not password:
            raise ConfigError(f"bridge user {self.settings.username}: password file {path} is empty")
        return password

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = self.settings.max_inflight
        return props

    def start(self) -> None:
        """Create the Kafka producer and the sender thread, then connect to MQTT.

        The MQTT connection is made asynchronously and retried with backoff, so a broker that
        is not up yet is waited for. Raises whatever the producer factory raises (e.g.
        ``kafka.errors.NoBrokersAvailable``) when Kafka cannot be reached.
        """
        if self._producer_factory is None:
            if self.settings.producer_process:
                from bridge.producer_process import ProcessProducer  # noqa: PLC0415

                self._producer_factory = ProcessProducer
            else:
                from kafka import KafkaProducer  # noqa: PLC0415

                self._producer_factory = KafkaProducer
        self.producer = self._producer_factory(
            bootstrap_servers=self.settings.kafka_bootstrap, **self._producer_config
        )
        self._sender = threading.Thread(target=self._sender_loop, name="bridge-sender", daemon=True)
        self._sender.start()
        if self.settings.heartbeat_interval_ms > 0:
            self._heartbeater = threading.Thread(target=self._heartbeat_loop, name="bridge-heartbeat",
                                                 daemon=True)
            self._heartbeater.start()
        self.client.connect_async(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            keepalive=KEEPALIVE_S,
            clean_start=False,
            properties=self._connect_properties(),
        )
        self.client.loop_start()
        log.info(
            "bridge started: mqtt %s:%d filter %s client_id %s -> kafka %s (%s, dlq %s), "
            "max_inflight %d messages / %d bytes",
            self.settings.mqtt_host, self.settings.mqtt_port, self.settings.subscription,
            self.settings.client_id, self.settings.kafka_bootstrap, self.settings.readings_topic,
            self.settings.dlq_topic, self.settings.max_inflight, self.settings.max_inflight_bytes,
        )

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(self, client, _userdata, flags, reason_code, _props) -> None:
        if reason_code.is_failure:
            # e.g. "Not authorized" / "Bad user name or password": a revoked or wrong credential
            log.error("MQTT connect refused: %s (user %s)", reason_code, self.settings.username or "anonymous")
            with self._lock:
                self._counts["connect_refused"] += 1
            return
        with self._lock:
            self._gen += 1
            self._conn_msgs = 0
            self._connected = True
            self._counts["connects"] += 1
        if self._leaving:
            log.info("MQTT connected while leaving the shared subscription group: not subscribing")
            return
        log.info("MQTT connected (session present: %s); subscribing to %s at QoS 1, retained "
                 "messages not replayed (retain handling %d)",
                 flags.session_present, self.settings.subscription, RETAIN_HANDLING)
        client.subscribe(self.settings.subscription,
                         options=SubscribeOptions(qos=1, retainHandling=RETAIN_HANDLING))
        # a session from a run with another bridge count may still hold the other form of
        # the subscription, which would deliver every message a second time
        if self.settings.share_group:
            client.unsubscribe(self.settings.topic_filter)
        elif self.settings.leave_group:
            client.unsubscribe(f"$share/{self.settings.leave_group}/{self.settings.topic_filter}")

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _props) -> None:
        for rc in reason_codes:
            if rc.is_failure or rc.value != 1:
                log.error("subscription to %s not granted at QoS 1: %s", self.settings.subscription, rc)
            else:
                with self._lock:
                    self._counts["subscribed"] += 1

    def _on_unsubscribe(self, _client, _userdata, mid, _reason_codes, _props) -> None:
        if mid == getattr(self, "_leave_mid", None):
            self._unsubscribed.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props) -> None:
        with self._lock:
            self._connected = False
            self._gen += 1  # acks of messages from the lost connection are dropped
            self._conn_msgs = 0  # and they no longer count against the broker's window
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
        # Runs in paho's network thread. Waits (stops reading MQTT) while a bound is full.
        if self._stopping.is_set():
            return  # not processed, not acked: the broker redelivers it to the next session
        self._last_message_mono = time.monotonic()
        now_ms = self._clock_ms()
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)  # noqa: SLF001 - paho raises on a non-UTF-8 topic
        payload = msg.payload
        stale = 0
        readings_topic, dlq_topic = self.settings.readings_topic, self.settings.dlq_topic
        entries: list[_Entry] = []
        try:
            items = contract.validate_message(topic, payload, now_ms)
        except Exception as exc:  # noqa: BLE001 - every message in is counted out
            items = [exc]
        for i, item in enumerate(items):
            try:
                if isinstance(item, BaseException):
                    raise item
                body = contract.encode_reading(item)
                entry = _Entry(msg.mid, msg.qos, "forwarded", readings_topic, item["device_id"].encode(), body,
                               None, None, payload, topic, now_ms)
                entry.ts_ms = item["ts"]
                if now_ms - item["ts"] > contract.STALE_AFTER_MS:
                    stale += 1
            except Exception as exc:
                if isinstance(exc, ValidationError):
                    reason, detail = exc.reason, exc.detail
                else:  # a bug, or an input the contract did not foresee: dead-letter, keep running
                    log.exception("unexpected error handling a message on %s; dead-lettering it", topic)
                    reason, detail = "internal_error", repr(exc)
                letter = contract.dead_letter(topic, payload, reason, detail, now_ms)
                if len(items) > 1:
                    letter["sample_index"] = i  # the raw payload is the whole batch
                body = _encode_json(letter).encode()
                key = contract.topic_device_id(topic)
                entry = _Entry(msg.mid, msg.qos, "dead_lettered", dlq_topic,
                               key.encode() if key is not None else None, body, reason, detail,
                               payload, topic, now_ms)
            entries.append(entry)
        self._admit(entries, dup=msg.dup, stale=stale)

    def _admit(self, entries: list[_Entry], dup: bool, stale: int) -> bool:
        """Wait until the records of one message fit both bounds, then queue them for sending.

        The message's PUBACK goes with its last record (``last``): acks are drained in order,
        so it is sent once every record of the message is confirmed. ``stale`` counts the
        readings with a ts more than 1 h old.

        Returns False (the message is neither counted nor acked; the broker redelivers it)
        when the bridge stops while waiting.
        """
        limit_n, limit_b = self.settings.max_inflight, self.settings.max_inflight_bytes
        cost = sum(e.cost for e in entries)
        entries[-1].last = True
        with self._cv:
            waited: str | None = None
            while True:
                if self._stopping.is_set():
                    self._admission_blocked = None
                    return False
                if self._conn_msgs >= limit_n:
                    why = "messages"
                elif self._inflight_bytes and self._inflight_bytes + cost > limit_b:
                    why = "bytes"
                else:
                    break
                if why != waited:
                    self._counts[f"inflight_{why}_waits"] += 1
                    waited = why
                self._admission_blocked = why
                self._room.wait(0.5)
            self._admission_blocked = None
            for entry in entries:
                entry.gen = self._gen
                entry.seq = self._seq
                self._seq += 1
                self._pending.append(entry)
            self._pending_msgs += 1
            self._conn_msgs += 1
            self._counts["received"] += 1
            self._counts["records"] += len(entries)
            if len(entries) > 1:
                self._counts["batches"] += 1
            if dup:
                self._counts["redelivered"] += 1
            if stale:
                self._counts["stale_ts"] += stale
            self._inflight_bytes += cost
            # Fast path: nothing older waits to be sent and Kafka is not failing, so this
            # thread sends the record itself (arrival order is kept: the sender thread is
            # idle and only this thread queues new entries). Otherwise the sender thread
            # sends it, after what is queued before it.
            inline = not (self._send_queue or self._retry or self._sender_busy or self._blocked
                          or self._replace_producer)
            if not inline:
                self._send_queue.extend(entries)
                self._cv.notify_all()
        if inline:
            for entry in entries:
                try:
                    self._send(entry)
                except Exception as exc:
                    log.exception("unexpected error sending a record to %s", entry.topic)
                    self._on_failed(entry, entry.attempt, exc)
        return True

    # ------------------------------------------------------------------ sending
    def _sender_loop(self) -> None:
        # The bridge's sender thread: one send at a time, failed records first, in arrival order.
        while True:
            entry = self._next_to_send()
            if entry is None:
                return
            if entry is _REPLACE:
                self._new_producer()
                continue
            try:
                self._send(entry)
            except Exception as exc:  # a bug here must not end the thread
                log.exception("unexpected error sending a record to %s", entry.topic)
                self._on_failed(entry, entry.attempt, exc)
            finally:
                with self._lock:
                    self._sender_busy = False

    def _next_to_send(self) -> Any:
        # The next entry to send, _REPLACE when the producer must be replaced first, or None
        # when stopping. Waits for work and for the backoff.
        with self._cv:
            while True:
                if self._stopping.is_set():
                    return None
                if not self._replace_producer and not self._retry and not self._send_queue:
                    self._cv.wait()
                    continue
                delay = self._retry_at - time.monotonic()
                if delay > 0:
                    self._cv.wait(delay)
                    continue
                if self._replace_producer:
                    return _REPLACE
                if self._retry:
                    entry = heapq.heappop(self._retry)[1]
                    self._counts["resent"] += 1
                else:
                    entry = self._send_queue.popleft()
                self._sender_busy = True
                return entry

    def _send(self, entry: _Entry) -> None:
        attempt = entry.attempt
        with self._lock:
            producer, entry.pgen = self.producer, self._producer_gen
        try:
            future = producer.send(entry.topic, value=entry.value, key=entry.key)
        except Exception as exc:  # noqa: BLE001 - e.g. KafkaTimeoutError waiting for metadata
            self._on_failed(entry, attempt, exc)
            return
        future.add_callback(self._on_sent, entry, attempt)
        future.add_errback(self._on_send_error, entry, attempt, entry.pgen)

    def _new_producer(self) -> None:
        """Replace the producer (sender thread). kafka-python's idempotent producer answers a
        non-retriable batch error (e.g. the broker's MESSAGE_TOO_LARGE) by entering a fatal
        state in which it fails every later record with that same error; only a new producer
        sends again. The old one is closed in the background: its unconfirmed records fail and
        are sent again through the new one (possible duplicates, as for any re-send)."""
        try:
            new = self._producer_factory(bootstrap_servers=self.settings.kafka_bootstrap,
                                         **self._producer_config)
        except Exception as exc:  # noqa: BLE001 - e.g. NoBrokersAvailable: try again later
            with self._cv:
                self._block("kafka", self.settings.readings_topic, f"new producer: {type(exc).__name__}: {exc}")
            log.error("cannot create a new Kafka producer (%r); retrying with backoff", exc)
            return
        with self._cv:
            old, self.producer = self.producer, new
            self._producer_gen += 1
            self._replace_producer = False
            self._counts["producer_restarts"] += 1
            poison = self._poison
        log.warning("replaced the Kafka producer after a non-retriable error (%s: %s); records it "
                    "had not confirmed are sent again", type(poison).__name__, poison)
        # in the background: close() first waits for the old producer's batches (its fatal
        # state fails them at once; any other outcome is handled by the callbacks)
        threading.Thread(target=_close_producer, args=(old,), name="bridge-producer-close",
                         daemon=True).start()

    def _block(self, which: str, topic: str, error: str) -> tuple[int, float]:
        """Record a failed send in the ``which`` ("kafka" | "dlq") blocked state and hold all
        sending back for the backoff. Caller holds the lock. Returns (failures, delay_s)."""
        state = self._blocked.get(which)
        now_ms = self._clock_ms()
        if state is None:
            since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_ms / 1000)) + f".{now_ms % 1000:03d}Z"
            state = self._blocked[which] = {"topic": topic, "since_ms": now_ms, "since": since,
                                            "failures": 0}
        state["failures"] += 1
        state["error"] = error
        state["last_ms"] = now_ms
        delay = min(self._backoff_max_s, self._backoff_min_s * 2 ** min(state["failures"] - 1, 30))
        self._retry_at = max(self._retry_at, time.monotonic() + delay)
        self._cv.notify_all()
        return state["failures"], delay

    # ------------------------------------------------------------------ watermark heartbeats
    def _heartbeat_loop(self) -> None:
        # The heartbeat thread: every interval, a heartbeat to each quiet partition that
        # PartitionClock says to raise (see iotflink.kafka_io.PartitionClock).
        interval_s = self.settings.heartbeat_interval_ms / 1000.0
        while not self._stopping.wait(interval_s):
            try:
                self._send_heartbeats()
            except Exception:  # a bug here must not end the thread
                log.exception("unexpected error sending watermark heartbeats")

    def _send_heartbeats(self) -> int:
        """Write the due watermark heartbeats (:func:`iotflink.kafka_io.heartbeat_value`, key
        ``__heartbeat__``, to an explicit partition of the readings topic); returns how many
        were handed to the producer. Nothing while records of the readings topic fail (Kafka
        away): the heartbeats would only queue behind them. A failed heartbeat is due again."""
        topic = self.settings.readings_topic
        with self._lock:
            producer = self.producer
            if producer is None or "kafka" in self._blocked:
                return 0
        partitions = producer.partitions_for(topic)
        if not partitions:
            return 0
        now_ms = self._clock_ms()
        due = self._partition_clock.due(sorted(partitions), now_ms)
        for i, (part, ts_ms) in enumerate(due.items()):
            # seq: unique over the bridge's restarts (wall clock ms x 1000 + index in the round)
            value = _encode_json(heartbeat_value(now_ms * 1_000 + i, ts_ms)).encode()
            try:
                future = producer.send(topic, value=value, key=HEARTBEAT_DEVICE.encode(), partition=part)
            except Exception as exc:  # noqa: BLE001 - e.g. a metadata timeout: due again next round
                log.warning("watermark heartbeat to %s[%d] not sent: %r", topic, part, exc)
                self._partition_clock.forget(part)
                continue
            future.add_callback(self._on_heartbeat_sent)
            future.add_errback(self._on_heartbeat_error, part)
        return len(due)

    def _on_heartbeat_sent(self, _metadata: Any) -> None:
        with self._lock:
            self._counts["heartbeats"] += 1

    def _on_heartbeat_error(self, part: int, exc: BaseException) -> None:
        log.warning("watermark heartbeat to partition %d failed: %r; due again", part, exc)
        self._partition_clock.forget(part)

    # ------------------------------------------------------------------ kafka callbacks
    def _on_sent(self, entry: _Entry, attempt: int, metadata: Any) -> None:
        partition = getattr(metadata, "partition", None)  # kafka-python's RecordMetadata
        if entry.kind == "forwarded" and entry.ts_ms is not None and isinstance(partition, int):
            self._partition_clock.observe(partition, entry.ts_ms, self._clock_ms())
        with self._cv:
            if entry.attempt != attempt or entry.done:
                return
            which = "dlq" if entry.topic == self.settings.dlq_topic else "kafka"
            entry.done = True
            self._counts[entry.kind] += 1
            if entry.kind == "dead_lettered":
                self._dlq_reasons[entry.reason] += 1
            self._inflight_bytes -= entry.cost
            entry.cost = 0
            entry.value = entry.payload = None  # free the memory now; the ack may wait
            recovered = self._blocked.pop(which, None)
            if recovered:
                if not self._blocked:
                    self._retry_at = 0.0  # Kafka is back: re-send without waiting out the backoff
                self._cv.notify_all()
            self._drain_acks()
            if self._admission_blocked:
                self._room.notify_all()
        if recovered:
            log.warning("Kafka accepts %s records again (blocked since %s, %d failed "
                        "sends, last error %s); acks resume", entry.topic, recovered["since"],
                        recovered["failures"], recovered["error"])

    def _on_send_error(self, entry: _Entry, attempt: int, pgen: int, exc: BaseException) -> None:
        # errback, in kafka-python's I/O thread (or the sender thread for a future that failed
        # before send() returned; or the ProcessProducer's reader thread).
        if getattr(exc, "raised_by_send", False):
            # ProcessProducer: the child's producer.send() raised, as a synchronous failure
            # here would (no producer replacement)
            self._on_failed(entry, attempt, exc)
            return
        with self._cv:
            replaced = pgen != self._producer_gen or exc is self._poison
            if not replaced and not getattr(exc, "retriable", False):
                self._poison = exc
                self._replace_producer = True
                self._cv.notify_all()
            if replaced and entry.attempt == attempt and not entry.done:
                # failed by a replaced producer (its fatal state or its close): send it again
                entry.attempt += 1
                self._counts["kafka_errors"] += 1
                if not self._stopping.is_set():
                    heapq.heappush(self._retry, (entry.seq, entry))
                    self._cv.notify_all()
                return
        if not replaced:
            self._on_failed(entry, attempt, exc)

    def _on_failed(self, entry: _Entry, attempt: int, exc: BaseException) -> None:
        # Decide what a failed send leads to: a record_too_large dead letter, or a re-send
        # after the backoff. Runs in the sender thread or kafka-python's I/O thread.
        error = f"{type(exc).__name__}: {exc}"
        with self._cv:
            if entry.attempt != attempt or entry.done:
                return
            entry.attempt += 1
            self._counts["kafka_errors"] += 1
            if self._stopping.is_set():
                return  # stays un-acked: the broker redelivers it to the next session
            if isinstance(exc, _TOO_LARGE) and not entry.truncated:
                refused = (entry.topic, len(entry.value) + len(entry.key or b""))
                self._to_too_large_letter(entry, error)
                failures = None
            else:
                which = "dlq" if entry.topic == self.settings.dlq_topic else "kafka"
                failures, delay = self._block(which, entry.topic, error)
                unacked = len(self._pending)
            heapq.heappush(self._retry, (entry.seq, entry))
            self._cv.notify_all()
        if failures is None:
            log.warning("Kafka refused a record of %d bytes for %s as too large (%s); sending "
                        "it to %s as a truncated record_too_large dead letter",
                        refused[1], refused[0], error, self.settings.dlq_topic)
        elif failures == 1:
            log.error("Kafka send to %s failed (%s): re-sending with backoff %.1f..%.0f s; MQTT acks "
                      "stop behind this message (%d un-acked, kept at the broker, nothing lost)%s",
                      entry.topic, error, self._backoff_min_s, self._backoff_max_s, unacked,
                      "; the dead-letter topic cannot be written" if entry.topic == self.settings.dlq_topic else "")
        else:
            log.warning("Kafka send to %s failed again (%s), attempt %d; retrying in %.1f s",
                        entry.topic, error, failures, delay)

    def _to_too_large_letter(self, entry: _Entry, error: str) -> None:
        # Caller holds self._lock. Turn entry into a truncated record_too_large dead letter.
        size = len(entry.value) + len(entry.key or b"")
        if entry.kind == "forwarded":
            what = f"{entry.topic} record"
        else:
            what = f"dead letter ({entry.reason}: {entry.detail})"
        detail = _json_head(f"{what} of {size} bytes (key + value) refused by Kafka: {error}",
                            TOO_LARGE_KEEP_BYTES)
        payload = entry.payload
        try:
            text: str | None = payload.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None:
            raw_field, raw = "raw", _json_head(text, TOO_LARGE_KEEP_BYTES)
        else:
            import base64  # noqa: PLC0415 - rare path

            raw_field = "raw_b64"
            raw = base64.b64encode(payload[: TOO_LARGE_KEEP_BYTES * 3 // 4]).decode("ascii")
        value = {
            "reason": "record_too_large",
            "detail": detail,
            "source": "bridge",
            "mqtt_topic": _json_head(entry.mqtt_topic, TOO_LARGE_KEEP_BYTES),
            raw_field: raw,
            "raw_bytes": len(payload),
            "received_ms": entry.received_ms,
            "truncated": True,
        }
        key = contract.topic_device_id(entry.mqtt_topic)
        entry.kind, entry.topic, entry.reason, entry.detail = (
            "dead_lettered", self.settings.dlq_topic, "record_too_large", detail)
        entry.key = key.encode() if key is not None else None
        entry.value = _encode_json(value).encode()
        entry.truncated = True
        cost = message_cost(len(payload), len(entry.mqtt_topic.encode("utf-8", "surrogatepass")),
                            len(entry.value) + len(entry.key or b""))
        self._inflight_bytes += cost - entry.cost
        entry.cost = cost

    def _drain_acks(self) -> None:
        # Caller holds self._lock. Ack the done prefix of the queue, in arrival order.
        pending = self._pending
        while pending and pending[0].done:
            entry = pending.popleft()
            if not entry.last:
                continue  # a record of a batch: the message's ack goes with its last record
            self._pending_msgs -= 1
            if entry.gen == self._gen:
                self._conn_msgs -= 1
            if entry.gen == self._gen and self._connected:
                rc = self.client.ack(entry.mid, entry.qos)
                if rc == mqtt.MQTT_ERR_SUCCESS:
                    self._counts["acked"] += 1
                else:
                    self._counts["ack_dropped"] += 1
            else:
                self._counts["ack_dropped"] += 1  # message from a lost connection: redelivered

    # ------------------------------------------------------------------ running
    def stats(self) -> dict[str, Any]:
        """Counters since start and the current state, as a JSON-able dict.

        Counters: ``received`` (MQTT messages taken in), ``records`` (Kafka records made from
        them: one per reading, per sample of a batch, or per dead letter; equal to
        ``received`` without batches), ``batches`` (messages with several samples), ``forwarded`` (Kafka confirmed a
        ``sensor-readings`` record), ``dead_lettered`` (Kafka confirmed a DLQ record),
        ``acked`` (PUBACK queued to the broker), ``kafka_errors`` (failed sends, synchronous
        or asynchronous), ``resent`` (sends of a record whose earlier send failed, including
        its ``record_too_large`` replacement), ``redelivered`` (``dup`` flag set),
        ``stale_ts`` (ts more than 1 h old), ``ack_dropped`` (acks not sent because the
        connection was lost; the broker redelivers those), ``connects``, ``disconnects``,
        ``subscribed`` (SUBACKs granting QoS 1: the bridge is ready once this is >= 1),
        ``inflight_messages_waits`` / ``inflight_bytes_waits`` (times ``on_message`` had to
        wait for the message / byte bound), ``producer_restarts`` (producers replaced after a
        non-retriable asynchronous error), ``connect_refused`` (CONNACKs refusing the
        connection, e.g. a wrong or revoked credential), ``heartbeats`` (watermark heartbeats
        Kafka confirmed; not messages, not in ``received``), ``dlq_reasons`` {reason: count of confirmed dead
        letters}.

        State: ``pending`` (records of accepted messages not yet acked; ``records = forwarded +
        dead_lettered + pending``), ``pending_messages`` (their messages, against
        ``max_inflight``), ``inflight_bytes`` (bytes held against ``max_inflight_bytes``),
        ``admission_blocked`` (null, or ``"messages"``/``"bytes"`` while ``on_message``
        waits for that bound), ``kafka_blocked`` / ``dlq_blocked`` (null, or while records of
        ``sensor-readings`` / ``sensor-dlq`` fail: ``{"topic", "error" (last error text),
        "since_ms" (first failure, epoch ms), "since" (the same as ISO-8601 UTC), "last_ms"
        (last failure, epoch ms), "failures"}``; acks are held back meanwhile), ``fatal`` (always null; kept for readers of older stats),
        ``uptime_s``.
        """
        with self._lock:
            out: dict[str, Any] = {k: self._counts.get(k, 0) for k in (
                "received", "forwarded", "dead_lettered", "acked", "kafka_errors", "resent",
                "redelivered", "stale_ts", "ack_dropped", "connects", "disconnects", "subscribed",
                "inflight_messages_waits", "inflight_bytes_waits", "producer_restarts",
                "connect_refused", "heartbeats", "records", "batches")}
            out["pending"] = len(self._pending)
            out["pending_messages"] = self._pending_msgs
            out["inflight_bytes"] = self._inflight_bytes
            out["admission_blocked"] = self._admission_blocked
            out["kafka_blocked"] = dict(self._blocked["kafka"]) if "kafka" in self._blocked else None
            out["dlq_blocked"] = dict(self._blocked["dlq"]) if "dlq" in self._blocked else None
            out["dlq_reasons"] = dict(self._dlq_reasons)
            out["fatal"] = None
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
        """Block until :meth:`request_stop`, logging (and writing) stats every interval.

        Kafka failures do not end it: they are retried or dead-lettered, and shown in the
        stats (``kafka_blocked``, ``dlq_blocked``). Returns the process exit status, 0.
        Always calls :meth:`stop`.
        """
        if stats_file:
            self.write_stats(stats_file)
        try:
            while not self._done.wait(stats_interval_s):
                st = self.stats()
                blocked = " ".join(f"{name} since {st[name]['since']} ({st[name]['error']})"
                                   for name in ("kafka_blocked", "dlq_blocked") if st[name])
                log.info("bridge stats: received %d forwarded %d dlq %d acked %d pending %d "
                         "(%d bytes) kafka_errors %d%s", st["received"], st["forwarded"],
                         st["dead_lettered"], st["acked"], st["pending"], st["inflight_bytes"],
                         st["kafka_errors"], f"; BLOCKED: {blocked}" if blocked else "")
                if stats_file:
                    self.write_stats(stats_file)
        finally:
            self.stop()
            if stats_file:
                self.write_stats(stats_file)
        return 0

    def leave_share_group(self, timeout_s: float = LEAVE_TIMEOUT_S, quiet_s: float = LEAVE_QUIET_S) -> bool:
        """Leave the shared subscription group while still forwarding (module docstring).

        UNSUBSCRIBE ``settings.subscription``, wait for the UNSUBACK, then keep forwarding and
        acking what the broker still delivers until no message came for ``quiet_s`` and none is
        un-acked, for at most ``timeout_s`` (s) in all. Returns True when the member left with
        nothing un-acked (its session may then end), False otherwise (not connected, no
        UNSUBACK, or messages still un-acked at the deadline: the session must stay).
        """
        with self._lock:
            connected = self._connected
        if not connected:
            return False
        deadline = time.monotonic() + timeout_s
        self._leaving = True
        self._unsubscribed.clear()
        rc, self._leave_mid = self.client.unsubscribe(self.settings.subscription)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("leaving %s: UNSUBSCRIBE not sent (%s)", self.settings.subscription, mqtt.error_string(rc))
            return False
        if not self._unsubscribed.wait(max(0.0, deadline - time.monotonic())):
            log.warning("leaving %s: no UNSUBACK within %.0f s; keeping the session", self.settings.subscription,
                        timeout_s)
            return False
        while time.monotonic() < deadline:
            with self._lock:
                pending = self._pending_msgs
            if pending == 0 and time.monotonic() - self._last_message_mono >= quiet_s:
                log.info("left the shared subscription group (%s); every message received is acked",
                         self.settings.subscription)
                return True
            time.sleep(0.05)
        with self._lock:
            pending = self._pending_msgs
        log.warning("leaving %s: %d messages still un-acked after %.0f s; keeping the session (the broker "
                    "keeps them)", self.settings.subscription, pending, timeout_s)
        return False

    def stop(self, flush_timeout_s: float = 30.0) -> None:
        """Stop cleanly: take no new messages, flush Kafka, send the acks, then disconnect.

        Messages that arrive while stopping, and records not yet sent or waiting for a re-send,
        are neither forwarded nor acked; the broker keeps them in the persistent session.
        A member of a shared subscription group (``settings.share_group``, with
        ``leave_on_stop``) first leaves the group (:meth:`leave_share_group`), and when it left
        with nothing un-acked its DISCONNECT ends the session (session expiry 0).
        """
        if getattr(self, "_stopped", False):
            return
        self._stopped = True
        left = False
        if self.settings.share_group and self.settings.leave_on_stop:
            left = self.leave_share_group()
        self._stopping.set()
        with self._cv:
            self._cv.notify_all()  # wake the sender thread
            self._room.notify_all()  # and on_message (admission)
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
            end_session = left and self._pending_msgs == 0
        self._disconnected.clear()
        if end_session:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0  # the session holds no subscription and no message
            self.client.disconnect(properties=props)
        else:
            self.client.disconnect()
        if connected and not self._disconnected.wait(5.0):
            log.warning("MQTT DISCONNECT not confirmed within 5 s; un-sent acks are redelivered")
        self.client.loop_stop()
        if self.producer is not None:
            try:
                self.producer.close(timeout=5)
            except Exception as exc:  # noqa: BLE001
                log.warning("closing the Kafka producer: %r", exc)
        if self._sender is not None:
            # it returns at once unless it is inside producer.send() (at most max_block_ms)
            self._sender.join(timeout=1.0)
        if self._heartbeater is not None:
            self._heartbeater.join(timeout=1.0)
        st = self.stats()
        log.info("bridge stopped: %s", st)

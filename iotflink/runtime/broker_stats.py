"""Mosquitto's own counters, read from its ``$SYS`` topics: how many messages the broker dropped
because a client's queue was full, and how many it holds.

Why this matters: a persistent session (the bridge's) that is offline or slow gets its QoS 1
messages queued at the broker up to ``max_queued_messages`` / ``max_queued_bytes``
(deploy/mosquitto.conf). Past either cap Mosquitto drops each further message for that client.
The publisher has its PUBACK already, so nothing downstream can notice. Mosquitto counts each
such drop in ``$SYS/broker/publish/messages/dropped`` and logs (notice level, in the stack's
``mosquitto.log``) "Outgoing messages are being dropped for client ID." when a client starts
dropping (mosquitto(8), "Broker Status"; Mosquitto's ``db__message_insert``). The demo's
summary shows the count of its run and fails its check when it is not 0.

Counters are since the broker started (a restart sets them to 0). Mosquitto publishes the
``$SYS`` tree, retained, every ``sys_interval`` seconds (default 10), and a counter only when it
changed; the drop counter is never published while it is 0, so its absence reads as 0.
:func:`read_broker_counters` with ``fresh=True`` therefore waits for two live updates
of ``$SYS/broker/uptime`` (which changes every pass) after subscribing: every change made
before the first of them has been published by the second, so the values are no older than
the moment of the call. That takes up to 2 x ``sys_interval``.

Authentication: the broker may require it; ``username`` / ``password`` are passed to the MQTT
CONNECT as they are (the caller takes them from its settings), and the account needs read
access to ``$SYS/broker/#``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

from iotflink.errors import IotFlinkError

log = logging.getLogger(__name__)

#: The ``$SYS`` topics read, by field of :class:`BrokerCounters`.
SYS_TOPICS = {
    "dropped": "$SYS/broker/publish/messages/dropped",
    "stored": "$SYS/broker/store/messages/count",
    "uptime_s": "$SYS/broker/uptime",
}


class BrokerStatsError(IotFlinkError):
    """The broker's ``$SYS`` counters could not be read (refused, unreachable, or too slow)."""


@dataclass(frozen=True)
class BrokerCounters:
    """Counters of one Mosquitto process.

    Fields:
        dropped: messages dropped for a client whose queue was full (``max_queued_messages`` or
            ``max_queued_bytes``), since the broker started.
        stored: messages in the broker's store now (queued for sessions, in flight, retained,
            including the retained ``$SYS`` values themselves).
        uptime_s: seconds since the broker started (tells a restart: counters start at 0).
    """

    dropped: int
    stored: int
    uptime_s: int

    def dropped_since(self, before: BrokerCounters | None) -> int:
        """Drops after ``before`` was read: the difference, or all of ``dropped`` if the broker
        restarted in between (its uptime went down) or there is no ``before``."""
        if before is None or self.uptime_s < before.uptime_s or self.dropped < before.dropped:
            return self.dropped
        return self.dropped - before.dropped


def _parse(field: str, payload: bytes) -> int:
    text = payload.decode("ascii", errors="replace").strip()
    if field == "uptime_s":
        text = text.split()[0]  # "123 seconds"
    try:
        return int(text)
    except ValueError as exc:
        raise BrokerStatsError(f"unexpected value {text!r} on {SYS_TOPICS[field]}") from exc


def read_broker_counters(host: str, port: int, *, username: str | None = None, password: str | None = None,
                         fresh: bool = True, timeout_s: float = 30.0) -> BrokerCounters:
    """Subscribe to :data:`SYS_TOPICS` with a clean session and return the counters.

    Args:
        host / port: the broker's MQTT listener.
        username / password: MQTT credentials of an account that may read ``$SYS/broker/#``
            (None: connect without, for a broker that allows anonymous clients).
        fresh: wait for two live ``$SYS`` updates (up to 2 x ``sys_interval``) so the values
            are current; False: the retained values, up to ``sys_interval`` old.
        timeout_s: longest wait for the connection and the values (s).

    Raises:
        BrokerStatsError: the broker refused the connection, or the values did not arrive in
            ``timeout_s`` (e.g. no read access to ``$SYS``).
    """
    import paho.mqtt.client as mqtt  # noqa: PLC0415

    values: dict[str, int] = {}
    live_uptimes = [0]
    refused: list[str] = []
    done = threading.Event()
    lock = threading.Lock()
    by_topic = {topic: field for field, topic in SYS_TOPICS.items()}

    def on_connect(client, _u, _f, reason_code, _p) -> None:
        if reason_code.is_failure:
            refused.append(str(reason_code))
            done.set()
            return
        client.subscribe([(topic, 0) for topic in SYS_TOPICS.values()])

    def on_message(_c, _u, msg) -> None:
        field = by_topic.get(msg.topic)
        if field is None:
            return
        with lock:
            values[field] = _parse(field, msg.payload)
            if field == "uptime_s" and not msg.retain:
                live_uptimes[0] += 1
            # the retained values of one SUBSCRIBE come in the order of its topics, uptime last
            have_all = {"stored", "uptime_s"} <= set(values)
            if have_all and (not fresh or live_uptimes[0] >= 2):
                done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"iotflink-sys-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv311, clean_session=True)
    if username is not None:
        client.username_pw_set(username, password)
    client.on_connect = on_connect
    client.on_message = on_message
    t0 = time.monotonic()
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        raise BrokerStatsError(f"cannot reach the MQTT broker at {host}:{port}: {exc}") from exc
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            with lock:
                got = dict(values)
            raise BrokerStatsError(
                f"no {'current ' if fresh else ''}$SYS counters from {host}:{port} within {timeout_s:.0f} s "
                f"(got {got}; live uptime updates {live_uptimes[0]}); may the account read $SYS/broker/#?")
        if refused:
            raise BrokerStatsError(f"the MQTT broker at {host}:{port} refused the connection: {refused[0]}")
    finally:
        client.disconnect()
        client.loop_stop()
    # Mosquitto publishes the drop counter only when it changed, and never while it is 0 (seen
    # on 2.0.11: no retained copy after 12 min of a busy broker without drops); the retained
    # copy of any earlier value arrives before uptime's (see on_message), so absent means 0.
    values.setdefault("dropped", 0)
    counters = BrokerCounters(**values)
    log.debug("broker counters %s (read in %.1f s)", counters, time.monotonic() - t0)
    if counters.dropped:
        log.warning("Mosquitto at %s:%d has dropped %d messages for clients with a full queue since it "
                    "started (max_queued_messages / max_queued_bytes)", host, port, counters.dropped)
    return counters

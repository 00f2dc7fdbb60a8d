"""Helpers for the bridge tests (no tests here): a throw-away Mosquitto on a free port, a
controllable fake Kafka producer, a fake paho client that the test drives, an MQTT publisher
that counts PUBACKs, and a poll helper."""

from __future__ import annotations

import collections
import getpass
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

import iotflink.poll
from bridge.service import MAX_PACKET_BYTES
from iotflink.runtime.mqtt_auth import configure_paho
from iotflink.runtime.stack import free_ports

MOSQUITTO_CONF = """\
# started as root, mosquitto would switch to user "mosquitto" and lose access to these files
user {user}
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {data}/
autosave_interval 1
max_queued_messages 1000000
max_inflight_messages 1000
max_packet_size {max_packet_size}
log_dest file {log}
log_type error
log_type warning
log_type notice
connection_messages true
"""


def free_port() -> int:
    """A free TCP port outside the kernel's ephemeral range (see :func:`iotflink.runtime.stack.free_ports`:
    a ``bind(0)`` port can be taken by a client's local port before the broker binds it)."""
    return free_ports(1)[0]


def poll(cond: Callable[[], Any], timeout_s: float = 15.0, what: str = "condition", interval_s: float = 0.02):
    """Return ``cond()`` once truthy (:func:`iotflink.poll.poll`, every 20 ms); fail the test
    (:class:`~iotflink.poll.PollTimeout`) after ``timeout_s``."""
    return iotflink.poll.poll(cond, timeout_s, interval_s=interval_s, what=what, retry_on=())


class Mosquitto:
    """A Mosquitto broker on 127.0.0.1:<free port> with persistence under ``workdir``."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        self.log = workdir / "mosquitto.log"
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(MOSQUITTO_CONF.format(user=getpass.getuser(), port=self.port, data=workdir / "data",
                                                   log=self.log, max_packet_size=MAX_PACKET_BYTES))

    def start(self) -> Mosquitto:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        poll(self._accepts, 10, f"mosquitto on port {self.port} (log {self.log})")
        return self

    def _accepts(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"mosquitto exited: {self.log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.proc.wait(10)
        self.proc = None


class FakeFuture:
    """The part of kafka-python's FutureRecordMetadata the bridge uses."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list = []
        self._errbacks: list = []
        self.state: str | None = None
        self.value: Any = None

    def add_callback(self, fn, *args):
        with self._lock:
            if self.state is None:
                self._callbacks.append((fn, args))
                return self
        if self.state == "ok":
            fn(*args, self.value)
        return self

    def add_errback(self, fn, *args):
        with self._lock:
            if self.state is None:
                self._errbacks.append((fn, args))
                return self
        if self.state == "err":
            fn(*args, self.value)
        return self

    def _finish(self, state: str, value: Any) -> None:
        with self._lock:
            assert self.state is None
            self.state, self.value = state, value
            todo = self._callbacks if state == "ok" else self._errbacks
        for fn, args in todo:
            fn(*args, value)

    def succeed(self, value: Any = "metadata") -> None:
        self._finish("ok", value)

    def fail(self, exc: BaseException) -> None:
        self._finish("err", exc)


class FakeProducer:
    """Records every send. ``auto=True`` confirms each record from a separate thread (like
    kafka-python's I/O thread); ``auto=False`` leaves the futures for the test to complete.

    ``send_error``, when set, is called as ``send_error(topic, key, value)`` before each send;
    an exception it returns is raised by :meth:`send` (a synchronous failure, as kafka-python's
    metadata wait or record size check). ``attempts`` lists every send call as ``(topic, key,
    value, exception or None)``; ``records`` only the sends that returned a future.

    :meth:`factory` may be called again (the bridge replaces its producer after a
    non-retriable error; ``created`` counts the calls) and returns the same fake; ``closes``
    counts :meth:`close` calls, and the fake really closes once every creation was closed
    (the futures of a replaced producer stay for the test to complete or fail).
    """

    def __init__(self, auto: bool = True) -> None:
        self.auto = auto
        self.config: dict = {}
        self.records: list[tuple[str, bytes | None, bytes, FakeFuture]] = []
        self.attempts: list[tuple[str, bytes | None, bytes, BaseException | None]] = []
        self.send_error: Callable[[str, bytes | None, bytes], BaseException | None] | None = None
        self.created = 0
        self.closes = 0
        self._queue: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._worker, daemon=True)
        self._thread.start()

    def factory(self, **config):
        self.config = config
        self.created += 1
        return self

    def send(self, topic, value=None, key=None):
        exc = self.send_error(topic, key, value) if self.send_error else None
        with self._cv:
            self.attempts.append((topic, key, value, exc))
        if exc is not None:
            raise exc
        fut = FakeFuture()
        with self._cv:
            self.records.append((topic, key, value, fut))
            if self.auto:
                self._queue.append(fut)
                self._cv.notify()
        return fut

    def partitions_for(self, topic):
        """No topic metadata (like kafka-python before its first metadata answer): the
        bridge's watermark heartbeats send nothing through the fake."""
        return None

    def _worker(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if self._closed and not self._queue:
                    return
                fut = self._queue.popleft()
            fut.succeed()

    def flush(self, timeout=None):
        poll(lambda: not self._queue, timeout or 10, "fake flush")

    def close(self, timeout=None):
        with self._cv:
            self.closes += 1
            if self.closes < self.created:
                return
            self._closed = True
            self._cv.notify()

    def pending(self) -> list[FakeFuture]:
        return [f for _t, _k, _v, f in self.records if f.state is None]


class FakeMqttClient:
    """Stands in for paho's ``Client`` in unit tests (``Bridge(client_factory=FakeMqttClient)``).

    ``loop_start()`` "connects" at once (``on_connect``, then the subscription is granted at
    QoS 1); the test calls :meth:`deliver` (in its own thread when ``on_message`` may wait)
    and reads ``acks`` (packet ids, in the order the bridge acked them) and ``subscriptions``
    (``(topic filter, SubscribeOptions)``).
    """

    def __init__(self, *_args, **kwargs) -> None:
        self.kwargs = kwargs
        self.acks: list[int] = []
        self.subscriptions: list = []
        self.connect_args: dict = {}
        self.on_connect = self.on_disconnect = self.on_subscribe = self.on_message = None

    def reconnect_delay_set(self, *_args) -> None:
        pass

    def connect_async(self, host, port, **kwargs) -> None:
        self.connect_args = {"host": host, "port": port, **kwargs}

    def loop_start(self) -> None:
        self.connect()

    def loop_stop(self) -> None:
        pass

    def connect(self, session_present: bool = False) -> None:
        flags = type("ConnectFlags", (), {"session_present": session_present})()
        self.on_connect(self, None, flags, ReasonCode(PacketTypes.CONNACK, "Success"), None)

    def subscribe(self, topic, options=None):
        self.subscriptions.append((topic, options))
        self.on_subscribe(self, None, len(self.subscriptions),
                          [ReasonCode(PacketTypes.SUBACK, identifier=options.QoS)], None)
        return mqtt.MQTT_ERR_SUCCESS, len(self.subscriptions)

    def deliver(self, topic: str, payload: bytes, mid: int, qos: int = 1, dup: bool = False) -> None:
        """Hand one PUBLISH to the bridge's ``on_message`` (returns when it returns)."""
        msg = mqtt.MQTTMessage(mid, topic.encode())
        msg.payload, msg.qos, msg.dup = payload, qos, dup
        self.on_message(self, None, msg)

    def deliver_in_thread(self, topic: str, payload: bytes, mid: int) -> threading.Thread:
        """:meth:`deliver` in a new thread (the "network thread"), started and returned."""
        t = threading.Thread(target=self.deliver, args=(topic, payload, mid), daemon=True)
        t.start()
        return t

    def ack(self, mid: int, _qos: int) -> int:
        self.acks.append(mid)
        return mqtt.MQTT_ERR_SUCCESS

    def disconnect(self) -> None:
        flags = type("DisconnectFlags", (), {"is_disconnect_packet_from_server": False})()
        self.on_disconnect(self, None, flags, ReasonCode(PacketTypes.DISCONNECT, "Normal disconnection"), None)


def stack_publisher(stack, device: str) -> Publisher:
    """A :class:`Publisher` for ``device`` on the stack's broker, with the device's provisioned
    credential (created if missing; the broker is reloaded)."""
    cred = stack.provision([device])[device]
    return Publisher(stack.s.mqtt_port, client_id=f"pub-{device}", credential=cred, ca_file=stack.s.mqtt_ca_file)


class Publisher:
    """A QoS 1 MQTT publisher that counts PUBACKs."""

    def __init__(self, port: int, client_id: str = "test-publisher", credential=None, ca_file=None) -> None:
        """Connect to ``127.0.0.1:port`` as ``credential`` (an :class:`iotflink.runtime.mqtt_auth.Credential`;
        None = anonymous, for the brokers of these tests that allow it), over TLS with ``ca_file``."""
        self.acked = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311)
        configure_paho(self.client, credential, ca_file)
        self.client.max_inflight_messages_set(1000)
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        poll(self.client.is_connected, 10, "publisher connected")

    def _on_publish(self, *_args) -> None:
        with self._lock:
            self.acked += 1

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

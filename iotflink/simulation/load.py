"""MQTT load for faults, benchmarks and scenarios: :class:`ContinuousPublisher` publishes
prepared messages at QoS 1 at a constant rate, one connection per device with its credential."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from iotflink.errors import IotFlinkError
from iotflink.poll import PollTimeout, wait_for
from iotflink.runtime.mqtt_auth import Credential, configure_paho

log = logging.getLogger(__name__)


class ContinuousPublisher(threading.Thread):
    """Publishes ``messages`` (replayer :class:`~iotflink.simulation.replay.Message` objects) at QoS 1 at a
    constant ``rate_per_s`` until they run out or :meth:`stop` is called; for load during
    faults and benchmarks. Counts ``sent`` and ``acked`` (PUBACKs); paho reconnects by itself
    (a Mosquitto restart) and re-sends un-acked messages. Each device publishes over its own
    connection with its credential (``credentials``: device id -> Credential, e.g.
    ``Stack.provision``; a None value connects without one), over TLS with ``ca_file``; at most
    ``window`` messages wait for their PUBACK, over all devices."""

    def __init__(self, messages: list, host: str, port: int, rate_per_s: float,
                 client_id: str = "iotflink-chaos-publisher", window: int = 200, *,
                 credentials: Mapping[str, Credential | None], ca_file: Path | None = None) -> None:
        super().__init__(name="continuous-publisher", daemon=True)
        missing = sorted({m.device_id for m in messages} - set(credentials))
        if missing:
            raise IotFlinkError(f"no MQTT credential for {', '.join(missing)}")
        self.credentials, self.ca_file = credentials, ca_file
        self.messages, self.host, self.port = messages, host, port
        self.rate_per_s, self.client_id, self.window = rate_per_s, client_id, window
        self.sent = 0
        self.acked = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._slots = threading.Semaphore(window)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop publishing; wait up to ``timeout_s`` for the outstanding PUBACKs."""
        self._halt.set()
        self.join(timeout=timeout_s + 5)

    def run(self) -> None:
        import paho.mqtt.client as mqtt  # noqa: PLC0415

        def on_publish(_c, _u, _mid, _rc, _p) -> None:
            self.acked += 1
            self._slots.release()

        clients: dict[str, mqtt.Client] = {}

        def client_of(device: str) -> mqtt.Client:
            if device not in clients:
                client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{self.client_id}-{device}",
                                     protocol=mqtt.MQTTv311, clean_session=True)
                configure_paho(client, self.credentials[device], self.ca_file)
                client.max_inflight_messages_set(self.window)
                client.max_queued_messages_set(0)
                client.reconnect_delay_set(1, 5)
                client.on_publish = on_publish
                clients[device] = client
                client.connect(self.host, self.port, keepalive=30)
                client.loop_start()
            return clients[device]

        try:
            t0 = time.monotonic()
            for i, m in enumerate(self.messages):
                if self._halt.is_set():
                    break
                delay = t0 + i / self.rate_per_s - time.monotonic()
                if delay > 0:
                    self._halt.wait(delay)  # pacing, not synchronisation
                while not self._slots.acquire(timeout=0.5):
                    if self._halt.is_set():
                        break
                else:
                    client_of(m.device_id).publish(m.topic, m.payload_bytes(), qos=1)
                    self.sent += 1
            try:  # the last PUBACKs
                wait_for(lambda: self.acked >= self.sent, 30, interval_s=0.05, what="PUBACKs")
            except PollTimeout:
                log.debug("%d of %d messages unacknowledged after 30 s", self.sent - self.acked, self.sent)
        except BaseException as exc:  # noqa: BLE001 - reported through .error
            self.error = exc
        finally:
            for client in clients.values():
                client.disconnect()
                client.loop_stop()

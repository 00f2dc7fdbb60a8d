"""Device identity on the real broker (Mosquitto with the project's configuration), with the
real bridge and Kafka: one shared stack (kafka, mosquitto, bridge) for the module.

Checks: an anonymous client and a wrong password are refused; a device publishing on another
device's topic is refused (MQTT v5 PUBACK 0x87; dropped under MQTT 3.1.1) and never reaches the
bridge or Kafka; a device receives nothing it subscribes to; a bridge credential may read but not publish; a
revoked device is refused, and its open connection closed, without a broker restart (the
``device`` CLI); the bridge's client id cannot be taken over without its credential, and its
session keeps working; the files holding secrets are 0600. A second broker with
``IOTFLINK_MQTT_TLS=true`` (same Kafka) checks the TLS listener with the bridge behind it.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
import stat
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from iotflink import cli, kafka_io
from iotflink.poll import wait_for
from iotflink.runtime.mqtt_auth import Credential, configure_paho
from iotflink.runtime.stack import Stack, free_ports
from iotflink.simulation.vnodes import NodeSpec, build, run_nodes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

#: Services of the module's ``stack`` fixture (tests/conftest.py).
STACK_SERVICES = ("kafka", "mosquitto", "bridge")


def _reading(dev: str, seq: int) -> bytes:
    return json.dumps({"device_id": dev, "seq": seq, "ts": time.time_ns() // 1_000_000 - 500,
                       "readings": {"temp_c": 21.5}}).encode()


class Client:
    """A paho MQTT v5 client that records CONNACK, PUBACK and SUBACK reason codes and
    disconnects, for assertions."""

    def __init__(self, stack: Stack, cred: Credential | None, client_id: str | None = None,
                 protocol: int = mqtt.MQTTv5) -> None:
        self.connack: list[int] = []
        self.pubacks: dict[int, int] = {}
        self.subacks: list[int] = []
        self.disconnects: list[str] = []
        self.messages: list[str] = []
        self._cv = threading.Condition()
        self.v5 = protocol == mqtt.MQTTv5
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"t-{uuid.uuid4().hex[:8]}", protocol=protocol)
        configure_paho(self.client, cred, stack.s.mqtt_ca_file)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(30, 60)  # no quick reconnects muddling the counts
        self.client.connect(stack.s.mqtt_host, stack.s.mqtt_port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, _c, _u, _f, rc, _p):
        with self._cv:
            self.connack.append(rc.value)
            self._cv.notify_all()

    def _on_publish(self, _c, _u, mid, rc, _p):
        with self._cv:
            self.pubacks[mid] = rc.value
            self._cv.notify_all()

    def _on_subscribe(self, _c, _u, _mid, rcs, _p):
        with self._cv:
            self.subacks.extend(rc.value for rc in rcs)
            self._cv.notify_all()

    def _on_message(self, _c, _u, msg):
        with self._cv:
            self.messages.append(msg.topic)
            self._cv.notify_all()

    def _on_disconnect(self, _c, _u, _f, rc, _p):
        with self._cv:
            self.disconnects.append(str(rc))
            self._cv.notify_all()

    def wait(self, cond, what: str, timeout_s: float = 20.0):
        with self._cv:
            assert self._cv.wait_for(cond, timeout_s), f"timed out waiting for {what}"

    def connected_code(self) -> int:
        """The first CONNACK's reason code (MQTT v5: 0 success, 134 bad user name or password,
        135 not authorised; 3.1.1: 0, 4, 5)."""
        self.wait(lambda: self.connack or self.disconnects, "CONNACK")
        return self.connack[0] if self.connack else -1

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish at QoS 1 and return the PUBACK's reason code (0 under MQTT 3.1.1)."""
        mid = self.client.publish(topic, payload, qos=1).mid
        self.wait(lambda: mid in self.pubacks, f"PUBACK of {topic}")
        return self.pubacks[mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _forwarded_keys(stack: Stack) -> list[str]:
    return [r["key"] for r in kafka_io.read_topic(stack.s.kafka_bootstrap, stack.s.topics.readings)]


def _cli_env(monkeypatch, stack: Stack) -> None:
    for key, value in stack.s.to_env().items():  # the CLI reads StackSettings.from_env()
        monkeypatch.setenv(key, value)


def test_anonymous_and_wrong_password_are_refused(stack):
    assert stack.mqtt_connack() == 5  # MQTT 3.1.1: not authorised
    anon = Client(stack, None, protocol=mqtt.MQTTv5)
    try:
        assert anon.connected_code() == 135  # MQTT v5: not authorised
    finally:
        anon.close()
    cred = stack.provision([f"pw-{uuid.uuid4().hex[:6]}"])
    (name,) = cred
    assert stack.mqtt_connack(name, cred[name].password) == 0
    assert stack.mqtt_connack(name, cred[name].password + "x") == 5
    assert stack.mqtt_connack(stack.s.mqtt_bridge_user, "guess") == 5


def test_device_cannot_publish_as_another_device_and_nothing_reaches_kafka(stack):
    a, b = f"dev-a-{uuid.uuid4().hex[:6]}", f"dev-b-{uuid.uuid4().hex[:6]}"
    creds = stack.provision([a, b])
    before = stack.bridge_stats()
    v5 = Client(stack, creds[a])
    v311 = None
    try:
        assert v5.connected_code() == 0
        # the payload claims to be b, on b's topic: the ACL pattern sensors/%u/telemetry refuses
        assert v5.publish(f"sensors/{b}/telemetry", _reading(b, 10**6)) == 0x87
        assert v5.publish(f"sensors/{a}/telemetry", _reading(a, 1)) == 0  # its own topic: accepted
        v5.close()
        # MQTT 3.1.1 has no reason code: the broker acknowledges and drops the message
        v311 = Client(stack, creds[a], protocol=mqtt.MQTTv311)
        assert v311.connected_code() == 0
        assert v311.publish(f"sensors/{b}/telemetry", _reading(b, 10**6 + 1)) == 0
        assert v311.publish(f"sensors/{a}/telemetry", _reading(a, 2)) == 0
    finally:
        v5.close()
        if v311 is not None:
            v311.close()
    # the bridge forwards a's two readings (each published after a refused one) ...
    wait_for(lambda: stack.bridge_stats()["forwarded"] >= before["forwarded"] + 2, 60,
             what=f"{a}'s readings through the bridge")
    # ... and received nothing else (the broker delivers in order: the refused messages came
    # first); neither reached Kafka
    st = stack.bridge_stats()
    assert st["received"] == before["received"] + 2 and st["dead_lettered"] == before["dead_lettered"]
    keys = _forwarded_keys(stack)
    assert keys.count(a) == 2 and b not in keys


def test_device_cannot_read_and_a_bridge_credential_cannot_publish(stack):
    dev, spy, other_bridge = (f"sub-{uuid.uuid4().hex[:6]}", f"spy-{uuid.uuid4().hex[:6]}",
                              f"bridge-x-{uuid.uuid4().hex[:6]}")
    creds = stack.provision([dev, spy])
    bcred = stack.provision([other_bridge], role="bridge")[other_bridge]
    d = Client(stack, creds[dev])
    watcher = Client(stack, creds[spy])
    b = Client(stack, bcred)
    try:
        assert d.connected_code() == 0 and watcher.connected_code() == 0 and b.connected_code() == 0
        # Mosquitto 2.0 grants the subscription and checks read access per message
        watcher.client.subscribe("sensors/+/telemetry", options=SubscribeOptions(qos=1))
        b.client.subscribe("sensors/+/telemetry", options=SubscribeOptions(qos=1))
        watcher.wait(lambda: watcher.subacks, "SUBACK")
        b.wait(lambda: b.subacks, "SUBACK")
        assert b.subacks == [1]  # granted QoS 1
        # a bridge publishes nothing: not on a device's topic, not on the one named after itself
        assert b.publish(f"sensors/{dev}/telemetry", _reading(dev, 1)) == 0x87
        assert b.publish(f"sensors/{other_bridge}/telemetry", _reading(other_bridge, 1)) == 0x87
        assert d.publish(f"sensors/{dev}/telemetry", _reading(dev, 1)) == 0  # the device may
        # the broker delivers the reading to the bridge credential, and not to the other device
        b.wait(lambda: f"sensors/{dev}/telemetry" in b.messages, "the reading at the bridge credential")
        assert watcher.messages == []
    finally:
        for c in (d, watcher, b):
            c.close()
    wait_for(lambda: _forwarded_keys(stack).count(dev) == 1, 60, what="the device's reading in Kafka")
    assert other_bridge not in _forwarded_keys(stack)


def test_revoked_device_is_refused_and_disconnected_without_a_broker_restart(stack, monkeypatch, capsys):
    _cli_env(monkeypatch, stack)
    dev = f"rev-{uuid.uuid4().hex[:6]}"
    assert cli.main(["device", "add", dev]) == 0
    out = capsys.readouterr().out
    cred = stack.credentials.get(dev)
    assert f'#define FW_MQTT_PASSWORD "{cred.password}"' in out and f'#define FW_DEVICE_ID "{dev}"' in out
    assert stat.S_IMODE(stack.credentials.password_file(dev).stat().st_mode) == 0o600
    assert cli.main(["device", "list"]) == 0
    assert dev in capsys.readouterr().out
    broker_pid = stack.pid("mosquitto")

    c = Client(stack, cred)
    try:
        assert c.connected_code() == 0
        assert c.publish(f"sensors/{dev}/telemetry", _reading(dev, 1)) == 0
        assert cli.main(["device", "revoke", dev]) == 0
        assert "credential revoked" in capsys.readouterr().out
        # the broker re-read its files on SIGHUP and closed the revoked device's connection
        c.wait(lambda: c.disconnects, "the revoked device's connection to be closed")
    finally:
        c.close()
    assert stack.pid("mosquitto") == broker_pid, "the broker was not restarted"
    assert stack.mqtt_connack(dev, cred.password) == 5
    again = Client(stack, cred)
    try:
        assert again.connected_code() == 135
    finally:
        again.close()
    assert cli.main(["device", "list"]) == 0
    assert dev not in capsys.readouterr().out
    assert cli.main(["device", "list", "--all"]) == 0
    assert dev in capsys.readouterr().out
    assert cli.main(["device", "revoke", dev]) == 1  # nothing left to revoke
    # added again: a new password; the old one stays refused
    assert cli.main(["device", "add", dev]) == 0
    new = stack.credentials.get(dev)
    assert new.password != cred.password
    assert stack.mqtt_connack(dev, new.password) == 0 and stack.mqtt_connack(dev, cred.password) == 5


def test_bridge_session_cannot_be_taken_over_without_its_credential(stack):
    bridge_user = stack.s.mqtt_bridge_user
    dev = f"hijack-{uuid.uuid4().hex[:6]}"
    cred = stack.provision([dev])[dev]
    st0 = stack.bridge_stats()
    assert st0["subscribed"] >= 1
    # anonymous with the bridge's client id: refused
    anon = Client(stack, None, client_id=bridge_user)
    # a valid device credential with the bridge's client id: the broker names the session after
    # the username (use_username_as_clientid), so it is the device's session, not the bridge's
    thief = Client(stack, cred, client_id=bridge_user)
    # the bridge's username with a guessed password: refused
    guess = Client(stack, Credential(bridge_user, "guess", "bridge", 0), client_id=bridge_user)
    try:
        assert anon.connected_code() == 135
        assert guess.connected_code() in (134, 135)  # bad user name or password / not authorised
        assert thief.connected_code() == 0
        # it is just the device: it reads none of the telemetry (not even its own reading)
        thief.client.subscribe("sensors/+/telemetry", options=SubscribeOptions(qos=1))
        thief.wait(lambda: thief.subacks, "SUBACK")
        assert thief.publish(f"sensors/{dev}/telemetry", _reading(dev, 1)) == 0
        # the bridge kept its connection and session, and got the reading
        wait_for(lambda: _forwarded_keys(stack).count(dev) == 1, 60, what="the reading through the bridge")
        assert thief.messages == [] and thief.disconnects == []
    finally:
        for c in (anon, thief, guess):
            c.close()
    st = stack.bridge_stats()
    assert st["connects"] == st0["connects"] and st["disconnects"] == st0["disconnects"]
    assert st["connect_refused"] == 0


def test_auth_files_are_private(stack):
    store = stack.credentials
    for path in [store.passwd_file, store.acl_file, store.password_file(stack.s.mqtt_bridge_user),
                 store.dir / "clients.json"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(store.dir.stat().st_mode) == 0o700
    passwd = store.passwd_file.read_text()
    bridge_pw = store.get(stack.s.mqtt_bridge_user).password
    assert bridge_pw not in passwd and f"{stack.s.mqtt_bridge_user}:$7$" in passwd  # hashes only


def test_tls_listener_with_the_bridge_behind_it(stack, tmp_path):
    """A second broker (TLS only) and bridge on the shared Kafka: a device (paho) and a virtual
    node (libmosquitto, ``--cafile`` and ``--password-file``) publish over TLS and their readings
    reach Kafka; a plain-MQTT client and one that does not trust the CA fail."""
    (port,) = free_ports(1)
    tls = Stack(dataclasses.replace(stack.s, run_dir=tmp_path / "run", mqtt_port=port, mqtt_tls=True,
                                    mqtt_bridge_user="bridge-tls"))
    try:
        tls.start(("mosquitto", "bridge"))
        assert tls.s.mqtt_ca_file is not None and tls.s.mqtt_ca_file.exists()
        assert stat.S_IMODE((tls.s.mqtt_tls_dir / "server.key").stat().st_mode) == 0o600
        dev = f"tls-{uuid.uuid4().hex[:6]}"
        cred = tls.provision([dev])[dev]  # over TLS: mqtt_connack verifies with the CA
        c = Client(tls, cred)
        try:
            assert c.connected_code() == 0
            assert c.publish(f"sensors/{dev}/telemetry", _reading(dev, 1)) == 0
        finally:
            c.close()
        wait_for(lambda: _forwarded_keys(stack).count(dev) == 1, 60, what="the TLS reading in Kafka")
        node = NodeSpec("occupancy-office", device_id=f"vn-tls-{uuid.uuid4().hex[:6]}", limit=20)
        tls.provision([node.device])
        (res,) = run_nodes([node], tls.s.mqtt_host, tls.s.mqtt_port, tls.run_dir, timeout_s=120, exe=build(),
                           ca_file=tls.s.mqtt_ca_file)
        assert res.returncode == 0 and res.published == res.summary["messages"] > 0, res.summary
        wait_for(lambda: _forwarded_keys(stack).count(node.device) == res.published, 60,
                 what="the virtual node's readings in Kafka")
        wait_for(lambda: tls.bridge_stats()["forwarded"] == 1 + res.published, 30, what="the TLS bridge's count")
        plain = Stack(dataclasses.replace(tls.s, mqtt_tls=False))
        with pytest.raises(OSError):
            plain.mqtt_connack(dev, cred.password)  # no TLS: the broker never answers a CONNACK
        untrusted = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="untrusted", protocol=mqtt.MQTTv5)
        untrusted.username_pw_set(cred.username, cred.password)
        untrusted.tls_set()  # the system's trusted roots, which do not include the local CA
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusted.connect(tls.s.mqtt_host, tls.s.mqtt_port)
    finally:
        tls.stop()

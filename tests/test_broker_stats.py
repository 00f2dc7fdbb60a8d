"""A full queue never drops silently: on a real Mosquitto with the project's configuration
(deploy/mosquitto.conf, the queue cap lowered to :data:`CAP` so the test can reach it), QoS 1
messages for an offline persistent session beyond the cap are counted in ``$SYS`` (read by
:func:`iotflink.runtime.broker_stats.read_broker_counters`) and logged, and every published message is
either delivered to the session or counted as dropped."""

from __future__ import annotations

import getpass
import re
import shutil
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest

from iotflink.poll import wait_for
from iotflink.runtime.broker_stats import BrokerCounters, read_broker_counters
from iotflink.runtime.mqtt_auth import CredentialStore
from iotflink.runtime.stack import free_port, render_template
from iotflink.settings import PROJECT_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CAP = 10
PUBLISHED = 25
#: The persistent session's credential (a bridge: reads telemetry); its username is its client id.
SESSION = "broker-stats-session"
DEVICE = "dev-1"
MONITOR = "broker-stats-monitor"


@pytest.fixture()
def broker(tmp_path):
    """Mosquitto from the project's template (authentication on: a bridge-role session, a device
    and a monitor credential) with max_queued_messages CAP and sys_interval 1 (so the fresh $SYS
    read takes ~2 s, not ~20 s). Yields (port, log file, {username: Credential})."""
    port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    log_file = tmp_path / "mosquitto.log"
    store = CredentialStore(tmp_path / "auth")
    creds = {SESSION: store.add(SESSION, role="bridge"), DEVICE: store.add(DEVICE),
             MONITOR: store.add(MONITOR, role="monitor")}
    conf = render_template((PROJECT_ROOT / "deploy" / "mosquitto.conf").read_text(), port=port, tls="",
                           auth_dir=store.dir, host="127.0.0.1", user=getpass.getuser(), data_dir=data,
                           log_file=log_file)
    conf, n = re.subn(r"(?m)^max_queued_messages \d+$", f"max_queued_messages {CAP}", conf)
    assert n == 1, "deploy/mosquitto.conf sets max_queued_messages"
    (tmp_path / "mosquitto.conf").write_text(conf + "sys_interval 1\n")
    proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c",
                             str(tmp_path / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: counters(port, creds, fresh=False, timeout_s=2) is not None, 20,
                 what="Mosquitto to answer")
        yield port, log_file, creds
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def counters(port: int, creds: dict, **kw) -> BrokerCounters:
    """The broker's $SYS counters, read with the monitor credential."""
    return read_broker_counters("127.0.0.1", port, username=MONITOR, password=creds[MONITOR].password, **kw)


def _session(port: int, creds: dict, got: list[bytes] | None = None) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=SESSION, protocol=mqtt.MQTTv311,
                    clean_session=False)
    c.username_pw_set(SESSION, creds[SESSION].password)
    subscribed = threading.Event()
    c.on_subscribe = lambda *_a: subscribed.set()
    if got is not None:
        c.on_message = lambda _c, _u, msg: got.append(msg.payload)
    c.connect("127.0.0.1", port)
    c.loop_start()
    if got is None:
        c.subscribe("sensors/+/telemetry", qos=1)
        assert subscribed.wait(10), "no SUBACK"
    return c


def test_drops_of_a_full_queue_are_counted_and_logged(broker):
    port, log_file, creds = broker
    before = counters(port, creds)
    sub = _session(port, creds)
    sub.disconnect()
    sub.loop_stop()

    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=DEVICE, protocol=mqtt.MQTTv311)
    pub.username_pw_set(DEVICE, creds[DEVICE].password)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    infos = [pub.publish(f"sensors/{DEVICE}/telemetry", f"{i}".encode(), qos=1) for i in range(PUBLISHED)]
    for info in infos:
        info.wait_for_publish(10)
    assert all(info.is_published() for info in infos), "every message acknowledged to the device"
    pub.disconnect()
    pub.loop_stop()

    after = counters(port, creds)
    assert isinstance(after, BrokerCounters)
    assert after.dropped_since(before) == PUBLISHED - CAP
    wait_for(lambda: f"Outgoing messages are being dropped for client {SESSION}" in log_file.read_text(), 10,
             what="the drop in mosquitto.log")

    got: list[bytes] = []
    sub = _session(port, creds, got)
    try:
        wait_for(lambda: len(got) >= CAP, 10, what="the queued messages")
        # every message is delivered or counted as dropped: nothing vanished uncounted
        after_drain = counters(port, creds)
        assert len(set(got)) + after_drain.dropped_since(before) == PUBLISHED
        assert sorted(int(p) for p in set(got)) == list(range(CAP))
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_dropped_since_handles_a_restart():
    earlier = BrokerCounters(dropped=7, stored=50, uptime_s=100)
    assert BrokerCounters(dropped=9, stored=50, uptime_s=130).dropped_since(earlier) == 2
    assert BrokerCounters(dropped=3, stored=50, uptime_s=20).dropped_since(earlier) == 3  # restarted
    assert BrokerCounters(dropped=3, stored=50, uptime_s=20).dropped_since(None) == 3

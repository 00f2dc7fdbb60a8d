"""MQTT credentials without a broker: the credential store's files (real ``mosquitto_passwd``),
the ACL text, the CONNECT packet of the stack's probe, the settings that carry the credential to
the bridge, and the config lines ``device add`` prints. The broker's behaviour with them is
tested in tests/test_device_auth.py."""

from __future__ import annotations

import stat

import pytest

from iotflink.cli import device_config_lines
from iotflink.runtime.mqtt_auth import CredentialError, CredentialStore, render_acl
from iotflink.runtime.stack import mosquitto_tls_conf, mqtt_connect_packet
from iotflink.settings import BridgeSettings, StackSettings


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_add_get_list_revoke_and_files(tmp_path):
    store = CredentialStore(tmp_path / "auth")
    a = store.add("node-1")
    b = store.add("bridge-1", role="bridge")
    assert a.role == "device" and b.role == "bridge" and a.password != b.password
    assert len(a.password) >= 40 and a.password not in repr(a)  # 256 random bits; never in repr
    assert store.get("node-1").password == a.password
    assert [c["username"] for c in store.list()] == ["bridge-1", "node-1"]
    passwd = store.passwd_file.read_text().splitlines()
    assert sorted(line.split(":")[0] for line in passwd) == ["bridge-1", "node-1"]
    assert all(line.split(":", 1)[1].startswith("$7$") for line in passwd)  # PBKDF2-SHA512 hashes
    assert a.password not in store.passwd_file.read_text()
    # the bridge-only listener's file: the bridge's line of passwd, nothing else
    assert store.bridge_passwd_file.read_text().splitlines() == [ln for ln in passwd if ln.startswith("bridge-1:")]
    for path in (store.passwd_file, store.bridge_passwd_file, store.acl_file, store.password_file("node-1"), store.dir / "clients.json"):
        assert _mode(path) == 0o600, path
    assert _mode(store.dir) == 0o700 and _mode(store.dir / "clients") == 0o700
    assert a.password not in (store.dir / "clients.json").read_text()

    with pytest.raises(CredentialError, match="has a credential already"):
        store.add("node-1")
    store.revoke("node-1")
    assert not store.password_file("node-1").exists()
    assert "node-1" not in store.passwd_file.read_text()
    with pytest.raises(CredentialError, match="was revoked"):
        store.get("node-1")
    with pytest.raises(CredentialError, match="no active credential"):
        store.revoke("node-1")
    assert [c["username"] for c in store.list()] == ["bridge-1"]
    (revoked,) = [c for c in store.list(include_revoked=True) if c["username"] == "node-1"]
    assert revoked["revoked_ms"] >= revoked["created_ms"]
    again = store.add("node-1")  # a revoked name may come back, with a new password
    assert again.password != a.password and store.get("node-1").password == again.password


def test_ensure_creates_only_the_missing_and_checks_names_and_roles(tmp_path):
    store = CredentialStore(tmp_path / "auth")
    first, created = store.ensure(["d1", "d2"])
    assert created == ["d1", "d2"]
    second, created = store.ensure(["d2", "d3"])
    assert created == ["d3"] and second["d2"].password == first["d2"].password
    with pytest.raises(CredentialError, match="must match"):
        store.ensure(["bad/name"])
    with pytest.raises(CredentialError, match="must match"):
        store.add("+")
    with pytest.raises(CredentialError, match="role"):
        store.add("x", role="admin")
    with pytest.raises(CredentialError, match="is a device, not a bridge"):
        store.ensure(["d1"], role="bridge")
    with pytest.raises(CredentialError, match="has no credential"):
        store.get("nobody")


def test_acl_devices_write_own_topic_bridges_read_only():
    text = render_acl(["iotflink-bridge"])
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines == ["pattern write sensors/%u/telemetry",
                     "user iotflink-bridge", "topic deny sensors/iotflink-bridge/telemetry",
                     "topic read sensors/+/telemetry"]
    assert [ln for ln in render_acl([]).splitlines() if ln and not ln.startswith("#")] == [
        "pattern write sensors/%u/telemetry"]


def test_connect_packet_layout():
    anon = mqtt_connect_packet("c1")
    # fixed header, remaining length, "MQTT", level 4, flags = clean session, keepalive 5, id
    assert anon == b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x05\x00\x02c1"
    auth = mqtt_connect_packet("c1", "u", "p" * 200)
    assert auth[0] == 0x10 and auth[10] == 0x02 | 0x80 | 0x40  # after a 2-byte remaining length
    # a remaining length over 127 takes two bytes (variable byte integer)
    length = (auth[1] & 0x7F) + (auth[2] << 7)
    assert auth[1] & 0x80 and length == len(auth) - 3 and auth.endswith(b"\x00\xc8" + b"p" * 200)


def test_bridge_settings_carry_its_credential_and_ca(tmp_path):
    env = {"IOTFLINK_RUN_DIR": str(tmp_path), "IOTFLINK_MQTT_BRIDGE_USER": "bridge-7"}
    b = BridgeSettings.from_env(env)
    assert b.username == b.client_id == "bridge-7"
    assert b.password_file == tmp_path / "mosquitto" / "auth" / "clients" / "bridge-7.password"
    assert b.ca_file is None
    tls = BridgeSettings.from_env({**env, "IOTFLINK_MQTT_TLS": "true"})
    assert tls.ca_file == tmp_path / "mosquitto" / "tls" / "ca.crt"
    s = StackSettings.from_env({**env, "IOTFLINK_MQTT_TLS": "true", "IOTFLINK_MQTT_AUTH_DIR": str(tmp_path / "a")})
    child = StackSettings.from_env(s.to_env())  # what a child process (the bridge) sees
    assert (child.mqtt_tls, child.mqtt_bridge_user, child.mqtt_auth_dir, child.mqtt_ca_file) == (
        True, "bridge-7", tmp_path / "a", tmp_path / "mosquitto" / "tls" / "ca.crt")
    assert "tls_version tlsv1.2" in mosquitto_tls_conf(tmp_path) and "cafile" not in mosquitto_tls_conf(None)


def test_device_config_lines_for_the_firmware(tmp_path):
    cfg = StackSettings.from_env({"IOTFLINK_RUN_DIR": str(tmp_path), "IOTFLINK_MQTT_HOST": "broker.lan",
                                  "IOTFLINK_MQTT_PORT": "8883", "IOTFLINK_MQTT_TLS": "true"})
    text = device_config_lines("node-7", "s3cret", cfg)
    assert '#define FW_DEVICE_ID "node-7"' in text and '#define FW_MQTT_USERNAME "node-7"' in text
    assert '#define FW_MQTT_PASSWORD "s3cret"' in text
    assert '#define FW_MQTT_URI "mqtts://broker.lan:8883"' in text and "FW_MQTT_CA_PEM" in text

"""MQTT identities: one username/password per device and per bridge, Mosquitto's password and
ACL files, and the optional TLS certificate authority of the demo.

Every client of the broker authenticates (``allow_anonymous false`` in deploy/mosquitto.conf).
A credential is a username and a random password; the broker holds only its PBKDF2-SHA512
hash (``mosquitto_passwd``, Debian package ``mosquitto``). Roles:

* **device**: the username is the device id; it may only *publish* on its own telemetry
  topic, ``sensors/{device_id}/telemetry`` (ACL ``pattern write sensors/%u/telemetry``).
  It may subscribe to nothing.
* **bridge**: it may only *subscribe to and receive* ``sensors/+/telemetry`` (ACL
  ``topic read``); it may publish nothing (an explicit ``deny`` covers the one topic the
  device pattern would otherwise give it, ``sensors/{bridge}/telemetry``).

The broker runs with ``use_username_as_clientid true``: a client's MQTT client id *is* its
username, whatever id it sends. So only the holder of a credential can resume (or take over)
that username's session; the bridge's persistent session, where QoS 1 messages wait while the
bridge is down, is bound to the bridge's credential.

Files, all under the auth directory (``StackSettings.mqtt_auth_dir``, default
``<run_dir>/mosquitto/auth``), mode 0600 (the directory 0700)::

    clients.json          name -> {"role", "created_ms", "revoked_ms"} (no secrets)
    clients/NAME.password the password, one line (what a client reads: the bridge, the
                          virtual nodes, the demo, the tests)
    passwd                Mosquitto's password file (hashes), rendered from the above
    passwd-bridges        the same, bridge credentials only: the password file of a
                          bridge-only listener (docker-compose.yml's 8884, with
                          ``per_listener_settings true``), where no device can log in
    acl                   Mosquitto's ACL file, rendered from the above

Mosquitto reads ``passwd`` and ``acl`` at start and again on ``SIGHUP``
(:meth:`iotflink.runtime.stack.Stack.reload_mosquitto`); on that reload Mosquitto 2.0 also
disconnects a connected client whose username is no longer in the password file. So adding
or revoking a credential takes effect without a broker restart.

TLS (:func:`make_ca`): with ``IOTFLINK_MQTT_TLS=true`` the broker's only listener speaks MQTT
over TLS with a server certificate from a local certificate authority made with ``openssl``;
clients verify the broker against that CA's certificate (``ca.crt``). The CA's key stays in
the TLS directory (0600); it is a demo CA, not a production PKI.

References: mosquitto.conf(5) (``password_file``, ``acl_file``, ``use_username_as_clientid``,
``allow_anonymous``, signals), mosquitto_passwd(1), https://mosquitto.org/man/mosquitto-conf-5.html
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from iotflink.errors import ConfigError, IotFlinkError
from iotflink.schema import DEVICE_ID_RE

log = logging.getLogger(__name__)

#: Roles a credential can have.
ROLES = ("device", "bridge", "monitor")
#: The broker's own counters (messages dropped for full queues, stored messages, uptime), which
#: a ``monitor`` credential may read (iotflink/runtime/broker_stats.py).
SYS_FILTER = "$SYS/broker/#"
#: Topic filter every bridge may read, and the device pattern of the ACL (``%u`` = username).
TELEMETRY_FILTER = "sensors/+/telemetry"
DEVICE_WRITE_PATTERN = "sensors/%u/telemetry"
#: Random bytes in a generated password (URL-safe base64: 43 characters, 256 bits).
PASSWORD_BYTES = 32


class CredentialError(ConfigError):
    """A credential is missing, exists already, or cannot be written."""


@dataclass(frozen=True)
class Credential:
    """One MQTT identity.

    Fields:
        username: the device id (role ``device``) or the bridge's name (role ``bridge``);
            also the client id the broker gives its connection.
        password: the secret (never logged).
        role: ``device`` | ``bridge`` | ``monitor`` (reads the broker's ``$SYS`` counters).
        created_ms: when it was created, epoch ms.
    """

    username: str
    password: str
    role: str
    created_ms: int

    def __repr__(self) -> str:  # keep the password out of logs and tracebacks
        return f"Credential(username={self.username!r}, role={self.role!r}, created_ms={self.created_ms})"

    @property
    def topic(self) -> str:
        """The one topic a device credential may publish on, ``sensors/{username}/telemetry``."""
        return f"sensors/{self.username}/telemetry"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 (created so, never wider)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class CredentialStore:
    """The credentials of one broker, kept in ``auth_dir`` (see the module docstring).

    Every change (:meth:`add`, :meth:`ensure`, :meth:`revoke`) holds an exclusive file lock
    on ``auth_dir/.lock`` and re-renders ``passwd`` and ``acl``; the broker sees the change
    after a ``SIGHUP`` (:meth:`iotflink.runtime.stack.Stack.reload_mosquitto`).

    Raises (every method): :class:`CredentialError`.
    """

    def __init__(self, auth_dir: Path) -> None:
        self.dir = Path(auth_dir)

    # ------------------------------------------------------------------ paths
    @property
    def passwd_file(self) -> Path:
        """Mosquitto's ``password_file``."""
        return self.dir / "passwd"

    @property
    def bridge_passwd_file(self) -> Path:
        """Mosquitto's ``password_file`` of a bridge-only listener: the bridge credentials'
        hashes (the lines of :attr:`passwd_file` whose user has the ``bridge`` role)."""
        return self.dir / "passwd-bridges"

    @property
    def acl_file(self) -> Path:
        """Mosquitto's ``acl_file``."""
        return self.dir / "acl"

    @property
    def _index_file(self) -> Path:
        return self.dir / "clients.json"

    def password_file(self, username: str) -> Path:
        """The file holding ``username``'s password (one line, mode 0600)."""
        return self.dir / "clients" / f"{username}.password"

    # ------------------------------------------------------------------ internals
    def _init_dirs(self) -> None:
        for d in (self.dir, self.dir / "clients"):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict]:
        self._init_dirs()
        fd = os.open(self.dir / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            index = self._read_index()
            yield index
            _write_private(self._index_file, json.dumps(index, indent=1, sort_keys=True) + "\n")
            self._render(index)

    def _read_index(self) -> dict:
        try:
            return json.loads(self._index_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise CredentialError(f"cannot read {self._index_file}: {exc}") from exc

    @staticmethod
    def _check_name(username: str, role: str) -> None:
        if role not in ROLES:
            raise CredentialError(f"role {role!r}: expected one of {', '.join(ROLES)}")
        # devices: the contract's device id (it is also the topic level); bridges: the same
        # characters, so the ACL and password files can never be confused by a name
        if not isinstance(username, str) or not DEVICE_ID_RE.fullmatch(username):
            raise CredentialError(f"{role} name {username!r} must match {DEVICE_ID_RE.pattern} "
                                  "(the payload contract's device id)")

    def _render(self, index: dict) -> None:
        active = sorted(n for n, e in index.items() if not e.get("revoked_ms"))
        lines = []
        for name in active:
            try:
                password = self.password_file(name).read_text().strip()
            except OSError as exc:
                raise CredentialError(f"password file of {name} missing: {exc}") from exc
            lines.append(f"{name}:{password}\n")
        exe = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        if not Path(exe).exists():
            raise CredentialError("mosquitto_passwd not found (Debian package mosquitto; run scripts/setup.sh)")
        tmp = self.dir / f".passwd.{os.getpid()}.tmp"
        _write_private(tmp, "".join(lines))
        try:
            if lines:  # mosquitto_passwd -U hashes every plain-text line of the file in place
                proc = subprocess.run([exe, "-U", str(tmp)], capture_output=True, text=True,  # noqa: S603
                                      check=False, timeout=60)
                if proc.returncode != 0:
                    raise CredentialError(f"mosquitto_passwd -U failed: {proc.stderr.strip() or proc.stdout.strip()}")
            os.chmod(tmp, 0o600)
            hashed = tmp.read_text().splitlines(keepends=True)
            bridges = {n for n in active if index[n]["role"] == "bridge"}
            _write_private(self.bridge_passwd_file,
                           "".join(ln for ln in hashed if ln.split(":", 1)[0] in bridges))
            os.replace(tmp, self.passwd_file)
        finally:
            tmp.unlink(missing_ok=True)
        _write_private(self.acl_file, render_acl(
            [n for n in active if index[n]["role"] == "bridge"],
            [n for n in active if index[n]["role"] == "monitor"]))

    def _new(self, index: dict, username: str, role: str) -> Credential:
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        created = time.time_ns() // 1_000_000
        _write_private(self.password_file(username), password + "\n")
        index[username] = {"role": role, "created_ms": created, "revoked_ms": None}
        log.info("created %s credential %s", role, username)
        return Credential(username, password, role, created)

    # ------------------------------------------------------------------ public API
    def add(self, username: str, role: str = "device") -> Credential:
        """Create a new credential with a random password (:data:`PASSWORD_BYTES` bytes).

        A revoked name may be added again (it gets a new password).

        Raises:
            CredentialError: bad name or role, or ``username`` is active already.
        """
        self._check_name(username, role)
        with self._locked() as index:
            entry = index.get(username)
            if entry and not entry.get("revoked_ms"):
                raise CredentialError(f"{entry['role']} {username} has a credential already "
                                      "(revoke it first to replace it)")
            return self._new(index, username, role)

    def ensure(self, usernames: Iterable[str], role: str = "device") -> tuple[dict[str, Credential], list[str]]:
        """The active credentials of ``usernames``, creating the missing ones in one change.

        Returns:
            ``({username: Credential}, [usernames created now])``.
        Raises:
            CredentialError: a bad name, or a name active with another role.
        """
        names = list(dict.fromkeys(usernames))
        for name in names:
            self._check_name(name, role)
        index = self._read_index()
        if all(name in index and not index[name].get("revoked_ms") for name in names):
            return {n: self.get(n, role) for n in names}, []  # nothing to change: no lock, no render
        with self._locked() as index:
            created = []
            for name in names:
                entry = index.get(name)
                if entry is None or entry.get("revoked_ms"):
                    self._new(index, name, role)
                    created.append(name)
        return {n: self.get(n, role) for n in names}, created

    def get(self, username: str, role: str | None = None) -> Credential:
        """The active credential of ``username`` (of ``role`` if given).

        Raises:
            CredentialError: none (never created, or revoked), or of another role; the message
                says how to create one.
        """
        entry = self._read_index().get(username)
        if entry is None or entry.get("revoked_ms"):
            state = "was revoked" if entry else "has no credential"
            raise CredentialError(f"{role or 'client'} {username} {state} in {self.dir}; "
                                  f"create one with: iotflink device add {username}")
        if role is not None and entry["role"] != role:
            raise CredentialError(f"{username} is a {entry['role']}, not a {role}")
        try:
            password = self.password_file(username).read_text().strip()
        except OSError as exc:
            raise CredentialError(f"password file of {username} unreadable: {exc}") from exc
        return Credential(username, password, entry["role"], entry["created_ms"])

    def list(self, include_revoked: bool = False) -> list[dict]:
        """Every credential as ``{"username", "role", "created_ms", "revoked_ms"}`` (no
        secrets), sorted by username; revoked ones only with ``include_revoked``."""
        return [{"username": n, "role": e["role"], "created_ms": e["created_ms"],
                 "revoked_ms": e.get("revoked_ms")}
                for n, e in sorted(self._read_index().items())
                if include_revoked or not e.get("revoked_ms")]

    def revoke(self, username: str) -> None:
        """Revoke ``username``: its password file is deleted and it leaves ``passwd``; the
        entry stays in ``clients.json`` with ``revoked_ms`` (for ``device list --all``).

        Raises:
            CredentialError: ``username`` has no active credential.
        """
        with self._locked() as index:
            entry = index.get(username)
            if entry is None or entry.get("revoked_ms"):
                raise CredentialError(f"{username} has no active credential in {self.dir}")
            entry["revoked_ms"] = time.time_ns() // 1_000_000
            self.password_file(username).unlink(missing_ok=True)
            log.info("revoked %s credential %s", entry["role"], username)

    def render(self) -> None:
        """Write ``passwd`` and ``acl`` from the stored credentials (also when there are none:
        Mosquitto needs both files to start)."""
        with self._locked():
            pass


def render_acl(bridges: Iterable[str], monitors: Iterable[str] = ()) -> str:
    """Mosquitto ACL file text: devices publish on their own topic only, ``bridges`` read
    every device's telemetry and publish nothing, ``monitors`` read the broker's ``$SYS``
    counters (:data:`SYS_FILTER`) and nothing else.

    The ``pattern`` line applies to every authenticated user; a bridge or monitor gets an
    explicit ``deny`` on ``sensors/{name}/telemetry`` (Mosquitto checks denials first), so the
    one topic the pattern would give it stays closed.
    """
    out = ["# Rendered by iotflink.runtime.mqtt_auth; do not edit (iotflink device add|revoke).",
           "# Devices: publish only on their own telemetry topic (%u = the authenticated username).",
           f"pattern write {DEVICE_WRITE_PATTERN}", ""]
    for name in bridges:
        out += [f"# bridge {name}: read every device's telemetry, publish nothing",
                f"user {name}", f"topic deny sensors/{name}/telemetry", f"topic read {TELEMETRY_FILTER}", ""]
    for name in monitors:
        out += [f"# monitor {name}: read the broker's $SYS counters, publish nothing",
                f"user {name}", f"topic deny sensors/{name}/telemetry", f"topic read {SYS_FILTER}", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------- TLS

def make_ca(tls_dir: Path, hosts: Iterable[str], days: int = 825) -> Path:
    """Create (once) a local certificate authority and a server certificate for Mosquitto.

    Files in ``tls_dir`` (0700): ``ca.crt`` (give this to clients), ``ca.key`` (0600),
    ``server.crt``, ``server.key`` (0600). The server certificate names every entry of
    ``hosts`` in its subjectAltName (IP addresses as ``IP:``, others as ``DNS:``). Existing
    files are kept when the server certificate already names every host. RSA 2048, SHA-256;
    ``days`` at most 825 (the CA/Browser Forum's former limit for server certificates).

    Returns:
        the path of ``ca.crt``.
    Raises:
        IotFlinkError: ``openssl`` is missing or failed (its message is quoted).
    """
    import ipaddress  # noqa: PLC0415

    tls_dir = Path(tls_dir)
    tls_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(tls_dir, 0o700)
    hosts = list(dict.fromkeys(hosts))
    sans = []
    for h in hosts:
        try:
            ipaddress.ip_address(h)
            sans.append(f"IP:{h}")
        except ValueError:
            sans.append(f"DNS:{h}")
    ca_crt, ca_key = tls_dir / "ca.crt", tls_dir / "ca.key"
    srv_crt, srv_key = tls_dir / "server.crt", tls_dir / "server.key"
    stamp = tls_dir / "server.sans"
    if srv_crt.exists() and ca_crt.exists() and stamp.exists() and stamp.read_text().split(",") == sans:
        return ca_crt
    exe = shutil.which("openssl")
    if not exe:
        raise IotFlinkError("openssl not found (Debian package openssl; run scripts/setup.sh)")

    def run(*args: str) -> None:
        proc = subprocess.run([exe, *args], capture_output=True, text=True, check=False,  # noqa: S603
                              cwd=tls_dir, timeout=120)
        if proc.returncode != 0:
            raise IotFlinkError(f"openssl {args[0]} failed: {proc.stderr.strip()}")

    old = os.umask(0o077)
    try:
        if not (ca_crt.exists() and ca_key.exists()):
            run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", str(days),
                "-keyout", str(ca_key), "-out", str(ca_crt), "-subj", "/CN=iot-flink local MQTT CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        csr = tls_dir / "server.csr"
        run("req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout", str(srv_key), "-out", str(csr),
            "-subj", f"/CN={hosts[0] if hosts else 'mosquitto'}")
        ext = tls_dir / "server.ext"
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n"
                       "authorityKeyIdentifier=keyid,issuer\n"
                       f"subjectAltName={','.join(sans)}\n")
        run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
            "-sha256", "-days", str(days), "-extfile", str(ext), "-out", str(srv_crt))
        csr.unlink(missing_ok=True)
    finally:
        os.umask(old)
    for key in (ca_key, srv_key):
        os.chmod(key, 0o600)
    os.chmod(ca_crt, 0o644)
    os.chmod(srv_crt, 0o644)
    stamp.write_text(",".join(sans))
    log.info("made the MQTT CA and server certificate in %s for %s", tls_dir, ", ".join(hosts))
    return ca_crt


# ---------------------------------------------------------------------- clients

def configure_paho(client, credential: Credential | None, ca_file: Path | None = None) -> None:
    """Give a ``paho.mqtt.client.Client`` its username/password and, with ``ca_file``, TLS
    that verifies the broker's certificate (and host name) against that CA."""
    if credential is not None:
        client.username_pw_set(credential.username, credential.password)
    if ca_file is not None:
        client.tls_set(ca_certs=str(ca_file))

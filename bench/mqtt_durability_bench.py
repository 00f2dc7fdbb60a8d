"""MQTT durability benchmark: acknowledged QoS 1 messages lost to ``kill -9`` of the broker,
against publish throughput, for several broker configurations in one run.

Usage::

    .venv/bin/python bench/mqtt_durability_bench.py [--count 5000] [--online-count 6000]
        [--kills 3] [--variants interval-5,changes-1,changes-100,changes-1000,rabbitmq]
        [--devices 4] [--window 25]
        [--out bench/results/mqtt_durability.json]

Each variant is a broker on a free loopback port with its own data directory:

- Mosquitto (Debian's package) with ``deploy/mosquitto.conf``, the file the local stack renders,
  where only the ``autosave_*`` lines are replaced: ``current`` (the file as it is: the
  project's choice, ``changes-100``), ``interval-5`` (``autosave_interval 5``, the former
  setting: a save every 5 s), ``changes-N``
  (``autosave_on_changes true`` and ``autosave_interval N``: a save once N messages were
  stored, queued or subscriptions changed since the last one; the save is checked once per
  pass of Mosquitto's main loop, see mosquitto.conf(5)).
- ``rabbitmq``: RabbitMQ (Debian's ``rabbitmq-server``) with its MQTT plugin, if installed. It
  keeps a ``clean_session=false`` subscription in a durable queue and, for QoS 1, sends the
  PUBACK only when the queue has confirmed the (persistent) message, i.e. written it to disk
  (RabbitMQ documentation, "MQTT Plugin": QoS 1 and publisher confirms). Skipped, with a
  note, when ``/usr/lib/rabbitmq/bin/rabbitmq-server`` is absent: only this comparison uses
  it, so it is not in deps/apt.txt (``apt-get install rabbitmq-server`` to include it).

Per variant, one run of two scenarios, each with a persistent QoS 1 subscriber session (MQTT
3.1.1, ``clean_session=false``, like the bridge's) that existed before the measurement (created,
then the broker restarted with SIGTERM, which saves: a long-lived session such as the
bridge's is always on disk):

1. **offline** (the bridge stopped while the devices publish): the subscriber is disconnected;
   ``--devices`` clients (default 4) publish ``--count`` messages at QoS 1 (at most
   ``--window`` un-acknowledged each, default 25) and receive
   every PUBACK; right after the last PUBACK the broker gets ``kill -9``; it is started again,
   the subscriber session reconnects and counts what arrives (distinct ``(device, seq)``, until
   all are there or nothing new came for 5 s). ``lost`` = acknowledged - arrived. Publish
   throughput = messages / time from the first publish to the last PUBACK, also over the first
   and the last 10 % (the queue grows from 0 to ``--count``: Mosquitto writes its whole
   in-memory database at each save, so its cost grows with the queue).
2. **online** (the bridge running): the subscriber is connected and acknowledges at once; the
   devices publish ``--online-count`` messages and the broker gets ``kill -9`` when half are
   acknowledged, ``--kills`` times (a new broker each time, same data directory). ``lost`` =
   messages acknowledged to a device that the subscriber never received, before or after the
   restart. Throughput = acknowledged messages / time until the kill.

The machine has 2 cores and is shared: compare the variants within one run (ratios), not
across runs. Prints a table; writes JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from iotflink.poll import wait_for
from iotflink.runtime.stack import free_ports, render_template

ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger("bench.mqtt_durability")

TOPIC = "bench/{device}/telemetry"
TOPIC_FILTER = "bench/+/telemetry"
SUB_CLIENT_ID = "bench-durable-subscriber"
#: Publishing clients and the PUBACKs each may wait for (set by --devices / --window).
DEVICES = 4
WINDOW = 25
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


# ---------------------------------------------------------------------- brokers
def with_autosave(conf: str, lines: list[str] | None) -> str:
    """``conf`` with every ``autosave_*`` setting replaced by ``lines`` (None: unchanged)."""
    if lines is None:
        return conf
    kept = [ln for ln in conf.splitlines() if not re.match(r"\s*autosave_(interval|on_changes)\b", ln)]
    return "\n".join(kept + lines) + "\n"


class Broker:
    """A broker process on ``127.0.0.1:port`` with its data under ``workdir``."""

    name = "broker"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_ports(1)[0]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        raise NotImplementedError

    def _wait_connack(self, timeout_s: float) -> None:
        def ok() -> bool:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-probe", protocol=mqtt.MQTTv311)
            connected = threading.Event()
            c.on_connect = lambda _c, _u, _f, rc, _p: rc == 0 and connected.set()
            c.connect("127.0.0.1", self.port, keepalive=10)
            c.loop_start()
            try:
                return connected.wait(5)
            finally:
                c.disconnect()
                c.loop_stop()

        wait_for(ok, timeout_s, interval_s=0.2, what=f"{self.name} to accept MQTT connections")

    def kill9(self) -> None:
        """SIGKILL the broker's process (group) and wait until it is gone."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown that saves state), then wait."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=60)
        self.proc = None

    def cleanup(self) -> None:
        """Stop the broker if it runs (SIGKILL: its data is thrown away)."""
        self.kill9()


def without_auth(conf: str) -> str:
    """``conf`` with anonymous clients allowed and no password, ACL or username-as-client-id
    lines: the benchmark measures persistence, and its clients (plain ids, one per publisher)
    have no credentials. Authentication adds a hash check per CONNECT and an ACL check per
    PUBLISH, the same for every variant."""
    out = []
    for line in conf.splitlines():
        if line.startswith(("password_file ", "acl_file ", "use_username_as_clientid ")):
            continue
        out.append("allow_anonymous true" if line.startswith("allow_anonymous ") else line)
    return "\n".join(out) + "\n"


class Mosquitto(Broker):
    """Mosquitto with the project's ``deploy/mosquitto.conf``, ``autosave_*`` lines replaced and
    authentication off (:func:`without_auth`)."""

    def __init__(self, workdir: Path, name: str, autosave: list[str] | None) -> None:
        super().__init__(workdir)
        self.name = name
        self.autosave = autosave
        data = workdir / "data"
        data.mkdir(parents=True)
        template = (ROOT / "deploy" / "mosquitto.conf").read_text()
        conf = render_template(template, port=self.port, host="127.0.0.1", user=_user(), tls="",
                               auth_dir=workdir / "auth", data_dir=data, log_file=workdir / "mosquitto.log")
        self.conf_text = with_autosave(without_auth(conf), autosave)
        (workdir / "mosquitto.conf").write_text(self.conf_text)
        self.settings = [ln for ln in self.conf_text.splitlines() if ln.startswith("autosave")]

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.workdir / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._wait_connack(30)

    def db_bytes(self) -> int:
        """Size of the persistence file (bytes; 0 if none yet)."""
        path = self.workdir / "data" / "mosquitto.db"
        return path.stat().st_size if path.exists() else 0


class RabbitMQ(Broker):
    """RabbitMQ with the MQTT plugin, one node named after the run, on loopback ports only."""

    name = "rabbitmq"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.epmd_port, self.dist_port = free_ports(2)
        (workdir / "rabbitmq.conf").write_text(
            "listeners.tcp = none\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "mqtt.allow_anonymous = true\n"
            "loopback_users = none\n")
        (workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        self.settings = ["rabbitmq_mqtt, clean_session=false: durable classic queue, QoS 1 PUBACK after the queue's confirm"]
        self.version = ""

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        w = self.workdir
        env.update({
            "HOME": str(w), "RABBITMQ_MNESIA_BASE": str(w / "mnesia"), "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_NODENAME": f"bench{self.port}@localhost", "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"), "RABBITMQ_PID_FILE": str(w / "pid"),
            "ERL_EPMD_PORT": str(self.epmd_port), "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        })
        return env

    def start(self) -> None:
        self.proc = subprocess.Popen([str(RABBITMQ_SERVER)], env=self._env(), cwd=self.workdir,
                                     stdout=open(self.workdir / "server.out", "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_connack(120)
        if not self.version:
            out = (self.workdir / "server.out").read_text(errors="replace")
            m = re.search(r"RabbitMQ (\d+\.\d+\.\d+)", out)
            self.version = m.group(1) if m else "?"

    def kill9(self) -> None:
        """SIGKILL the Erlang VM (the node) only; epmd keeps running as it would on a host."""
        pid_file = self.workdir / "pid"
        if self.proc is None:
            return
        try:
            node = int(pid_file.read_text().strip())
            os.kill(node, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        self._signal(signal.SIGKILL)

    def cleanup(self) -> None:
        self.kill9()
        # epmd was started by the node for this run's ERL_EPMD_PORT: ask it to stop. It refuses
        # while it still lists the killed node (until it sees the node's connection close).
        epmd = shutil.which("epmd")
        if epmd:
            def stopped() -> bool:
                out = subprocess.run([epmd, "-kill"], env=self._env(), capture_output=True,
                                     text=True, check=False)
                return "Killed" in out.stdout or "Cannot connect" in out.stdout + out.stderr

            try:
                wait_for(stopped, 20, interval_s=0.5, what=f"epmd on port {self.epmd_port} to stop")
            except TimeoutError:
                log.warning("epmd on port %d is still running", self.epmd_port)


def _user() -> str:
    import getpass  # noqa: PLC0415

    return getpass.getuser()


# ---------------------------------------------------------------------- clients
class Subscriber:
    """The persistent QoS 1 session (``clean_session=false``); records distinct (device, seq)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.got: set[tuple[int, int]] = set()
        self.last_t = time.monotonic()
        self.subscribed = threading.Event()
        self.lock = threading.Lock()
        self.client: mqtt.Client | None = None

    def connect(self, subscribe: bool) -> None:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=SUB_CLIENT_ID, protocol=mqtt.MQTTv311,
                        clean_session=False)
        c.reconnect_delay_set(0.2, 1)

        def on_message(_c, _u, msg) -> None:
            dev, seq = (int(x) for x in msg.payload.split(b":", 2)[:2])
            with self.lock:
                self.got.add((dev, seq))
                self.last_t = time.monotonic()

        c.on_message = on_message
        c.on_subscribe = lambda *_a: self.subscribed.set()
        c.connect("127.0.0.1", self.port, keepalive=30)
        c.loop_start()
        if subscribe:
            c.subscribe(TOPIC_FILTER, qos=1)
            if not self.subscribed.wait(30):
                raise RuntimeError("no SUBACK")
        self.client = c

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None

    def drain(self, want: set[tuple[int, int]], quiet_s: float = 5.0, max_s: float = 180.0) -> None:
        """Wait until every message of ``want`` arrived, or nothing new came for ``quiet_s``."""
        t0 = time.monotonic()
        with self.lock:
            self.last_t = max(self.last_t, t0)

        def done() -> bool:
            with self.lock:
                return want <= self.got or time.monotonic() - self.last_t > quiet_s

        wait_for(done, max_s, interval_s=0.1, what="the subscriber to drain")


class Devices:
    """``devices`` publishing clients, each with at most ``window`` messages un-acknowledged.

    ``acked`` holds each acknowledged (device, seq) with the time of its PUBACK."""

    def __init__(self, port: int, count: int, devices: int = 4, window: int = 25) -> None:
        self.port, self.count, self.devices, self.window = port, count, devices, window
        self.acked: dict[tuple[int, int], float] = {}
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.clients: list[mqtt.Client] = []
        self.threads: list[threading.Thread] = []
        self.t0 = 0.0

    def start(self) -> None:
        self.t0 = time.monotonic()
        for d in range(self.devices):
            share = list(range(d, self.count, self.devices))
            t = threading.Thread(target=self._run, args=(d, share), daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, dev: int, seqs: list[int]) -> None:
        slots = threading.Semaphore(self.window)
        mids: dict[int, int] = {}
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-device-{dev}",
                        protocol=mqtt.MQTTv311, clean_session=True)
        c.max_inflight_messages_set(self.window)

        def on_publish(_c, _u, mid, _rc, _p) -> None:
            seq = mids.pop(mid, None)
            if seq is not None:
                with self.lock:
                    self.acked[(dev, seq)] = time.monotonic()
            slots.release()

        c.on_publish = on_publish
        try:
            c.connect("127.0.0.1", self.port, keepalive=30)
        except OSError:
            if self.halt.is_set():
                return  # the broker was killed before this client connected: it published nothing
            raise
        c.loop_start()
        self.clients.append(c)
        pad = b"x" * 80  # ~100-byte payloads, like the contract's readings
        for seq in seqs:
            while not slots.acquire(timeout=0.2):
                if self.halt.is_set():
                    return
            if self.halt.is_set():
                return
            info = c.publish(TOPIC.format(device=dev), b"%d:%d:" % (dev, seq) + pad, qos=1)
            mids[info.mid] = seq

    def n_acked(self) -> int:
        with self.lock:
            return len(self.acked)

    def stop(self) -> None:
        """Stop publishing and close the clients (no reconnects)."""
        self.halt.set()
        for t in self.threads:
            t.join(timeout=10)
        for c in list(self.clients):
            c.loop_stop()
            try:
                c.disconnect()
            except Exception:  # noqa: BLE001, S110 - the broker is gone
                pass


def _rate(times: list[float], t0: float, lo: float, hi: float) -> float:
    """Messages per second of the acks between fractions ``lo`` and ``hi`` of ``times``."""
    n = len(times)
    a, b = int(lo * n), max(int(hi * n) - 1, int(lo * n) + 1)
    start = t0 if a == 0 else times[a - 1]
    return (b - a + 1) / max(times[b] - start, 1e-9) if n > 1 else float("nan")


# ---------------------------------------------------------------------- scenarios
def prepare_session(broker: Broker) -> None:
    """Start the broker, create the subscriber's session, restart with SIGTERM (saves it)."""
    broker.start()
    sub = Subscriber(broker.port)
    sub.connect(subscribe=True)
    sub.disconnect()
    broker.stop()
    broker.start()


def offline(broker: Broker, count: int) -> dict:
    """Scenario 1: subscriber away, ``count`` acknowledged, kill -9, restart, count arrivals."""
    dev = Devices(broker.port, count, DEVICES, WINDOW)
    dev.start()
    wait_for(lambda: dev.n_acked() >= count, 900, interval_s=0.01, what="every PUBACK")
    broker.kill9()
    t_last = max(dev.acked.values())
    dev.stop()
    times = sorted(dev.acked.values())
    db = broker.db_bytes() if isinstance(broker, Mosquitto) else None
    broker.start()
    sub = Subscriber(broker.port)
    sub.connect(subscribe=False)
    sub.drain(set(dev.acked))
    sub.disconnect()
    lost = len(set(dev.acked) - sub.got)
    return {"acked": len(dev.acked), "arrived": len(sub.got & set(dev.acked)), "lost": lost,
            "publish_rate_per_s": count / (t_last - dev.t0),
            "rate_first_10pct_per_s": _rate(times, dev.t0, 0.0, 0.1),
            "rate_last_10pct_per_s": _rate(times, dev.t0, 0.9, 1.0),
            "db_bytes_at_kill": db}


def online(broker: Broker, count: int, kills: int) -> dict:
    """Scenario 2: subscriber connected, kill -9 when half of ``count`` are acknowledged."""
    runs = []
    for _ in range(kills):
        sub = Subscriber(broker.port)
        sub.connect(subscribe=False)
        dev = Devices(broker.port, count, DEVICES, WINDOW)
        dev.start()
        wait_for(lambda: dev.n_acked() >= count // 2, 600, interval_s=0.005, what="half the PUBACKs")  # noqa: B023
        t_kill = time.monotonic()
        broker.kill9()
        dev.stop()
        acked = dict(dev.acked)
        broker.start()  # the subscriber's paho loop reconnects by itself
        sub.drain(set(acked))
        sub.disconnect()
        missing = set(acked) - sub.got
        runs.append({"acked": len(acked), "lost": len(missing),
                     "publish_rate_per_s": len(acked) / (t_kill - dev.t0)})
    return {"kills": runs, "lost_total": sum(r["lost"] for r in runs),
            "acked_total": sum(r["acked"] for r in runs),
            "publish_rate_per_s_median": sorted(r["publish_rate_per_s"] for r in runs)[len(runs) // 2]}


VARIANTS: dict[str, list[str] | None] = {
    "current": None,
    "interval-5": ["autosave_interval 5"],
    "changes-1": ["autosave_on_changes true", "autosave_interval 1"],
    "changes-100": ["autosave_on_changes true", "autosave_interval 100"],
    "changes-1000": ["autosave_on_changes true", "autosave_interval 1000"],
}


def make_broker(name: str, workdir: Path) -> Broker | None:
    if name == "rabbitmq":
        return RabbitMQ(workdir) if RABBITMQ_SERVER.exists() else None
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}, rabbitmq")
    return Mosquitto(workdir, name, VARIANTS[name])


def main(argv: list[str] | None = None) -> int:
    global DEVICES, WINDOW  # the run's client shape, set before any client starts
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=5000, help="messages of the offline scenario")
    ap.add_argument("--online-count", type=int, default=6000, help="messages per kill of the online scenario")
    ap.add_argument("--kills", type=int, default=3, help="kills of the online scenario")
    ap.add_argument("--variants", default="interval-5,changes-1,changes-100,changes-1000,rabbitmq")
    ap.add_argument("--devices", type=int, default=DEVICES, help="publishing clients")
    ap.add_argument("--window", type=int, default=WINDOW, help="un-acknowledged messages per client")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "mqtt_durability.json"))
    args = ap.parse_args(argv)
    DEVICES, WINDOW = args.devices, args.window
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("paho").setLevel(logging.ERROR)
    results: dict = {"count": args.count, "online_count": args.online_count, "kills": args.kills,
                     "devices": args.devices, "window_per_device": args.window, "payload_bytes": 86,
                     "mosquitto": subprocess.run(["mosquitto", "-h"], capture_output=True, text=True,
                                                 check=False).stdout.splitlines()[0],
                     "machine": f"{platform.machine()}, {os.cpu_count()} cores", "variants": {}}
    with tempfile.TemporaryDirectory(prefix="iotflink-durability-") as tmp:
        os.chmod(tmp, 0o755)  # noqa: S103 - a directory the broker (another user) must enter
        for name in args.variants.split(","):
            workdir = Path(tmp) / name
            workdir.mkdir()
            broker = make_broker(name, workdir)
            if broker is None:
                results["variants"][name] = {"skipped": f"{RABBITMQ_SERVER} not installed"}
                log.info("%s: skipped (not installed)", name)
                continue
            log.info("%s: %s", name, broker.settings)
            try:
                prepare_session(broker)
                res = {"settings": broker.settings, "offline": offline(broker, args.count)}
                log.info("%s offline: %s", name, res["offline"])
                res["online"] = online(broker, args.online_count, args.kills)
                log.info("%s online: %s", name, res["online"])
                if isinstance(broker, RabbitMQ):
                    res["version"] = broker.version
                results["variants"][name] = res
            finally:
                broker.cleanup()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'variant':14} {'offline lost':>14} {'pub/s':>8} {'first10%':>9} {'last10%':>8}"
          f" {'online lost':>14} {'pub/s':>8}")
    for name, r in results["variants"].items():
        if "skipped" in r:
            print(f"{name:14} skipped: {r['skipped']}")
            continue
        o, n = r["offline"], r["online"]
        print(f"{name:14} {o['lost']:>6}/{o['acked']:<7} {o['publish_rate_per_s']:8.0f} "
              f"{o['rate_first_10pct_per_s']:9.0f} {o['rate_last_10pct_per_s']:8.0f} "
              f"{n['lost_total']:>6}/{n['acked_total']:<7} {n['publish_rate_per_s_median']:8.0f}")
    print(f"results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

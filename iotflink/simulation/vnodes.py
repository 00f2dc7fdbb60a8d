"""Virtual ESP32 nodes as a data source: build ``esp32/build/virtual_node`` if needed, run N of
them against an MQTT broker, wait for them and return their JSON summaries (one per device).

Devices whose specs differ only in their id run in one process, up to
:data:`DEVICES_PER_PROCESS` each (:func:`plan_processes`): the node's ``--devices-file`` mode
simulates them on one event loop, each with its own MQTT connection, client id, credential,
topic, seq file and firmware-core state (outbox, batching, drop counters), exactly as separate
processes would, so a fleet of thousands costs a handful of processes.

A virtual node (``esp32/host/virtual_node.cpp``, see ``esp32/README.md`` "Virtual node") is the
firmware core plus libmosquitto: it plays a project data file as its sensor, publishes each
message at QoS 1 (MQTT v5) on ``sensors/{device_id}/telemetry`` per docs/CONTRACT.md, keeps
unacknowledged messages in its bounded outbox (also during a simulated outage) and persists its
sequence numbers in a file. Each node authenticates with its device's credential
(:mod:`iotflink.runtime.mqtt_auth`; the password file's path is passed, never the password).

Timestamps: each node shifts its data set by whole weeks so that the data set's last event falls
in the week before the node starts (contract "Replay time"), so every ``ts`` lies in
[2020-01-01, start time] and the bridge's ``ts`` checks accept it.

Accounting (the summary of :class:`NodeResult`):

* ``published``: distinct seqs the broker accepted (PUBACK reason code < 0x80). A message is
  counted once even if it was sent twice after a lost PUBACK, so ``published`` is exactly the
  number of distinct ``(device_id, seq)`` the broker received.
* ``acked_ranges``: those seqs as inclusive ``[lo, hi]`` ranges (:meth:`NodeResult.acked_seqs`).
* ``seq_begin`` .. ``seq_end`` (exclusive): every seq the node handed out in this run;
  ``messages = seq_end - seq_begin``. Each such seq either reached the broker or is dropped.
* ``dropped``: readings-samples that did not reach the broker: ``drops.buffer`` and
  ``drops.storage`` (no seq was handed out) plus ``messages - published`` (outbox overflow during
  an outage, held-queue overflow before the clock was set, refused by the broker, still unsent at
  exit).
* ``readings``: data rows the node played; ``invalid``: single readings rejected by the range
  check (the rest of their message is still sent).
* ``sends``: MQTT messages published (resends after a reconnect included). With
  ``samples_per_message`` N > 1 a node sends batches (docs/CONTRACT.md "Batches"): N samples of
  consecutive seqs in one message, acknowledged as a unit, so the counts above (seqs, one per
  sample) are unchanged while ``sends`` falls to about 1/N of them.
* ``start_ms``: wall time (epoch ms) the node's pacing clock started (its process's start).
* ``backpressure_s``: wall seconds the node waited for its outbox to drain below half full
  (speedup 0, or :attr:`NodeSpec.backpressure`): how far the link held it behind its schedule.

Usage::

    from iotflink.simulation.vnodes import NodeSpec, run_nodes
    results = run_nodes([NodeSpec("nab-machine"), NodeSpec("femto-b1_1", outage_at=1000,
                         outage_s=100)], host="127.0.0.1", port=1883, run_dir=Path(".run"))
    published = sum(r.published for r in results)
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from iotflink.errors import IotFlinkError
from iotflink.runtime.mqtt_auth import CredentialError, CredentialStore
from iotflink.settings import PROJECT_ROOT, StackSettings, mqtt_auth_dir
from iotflink.simulation.replay import DATA_DIR

log = logging.getLogger(__name__)

#: Profiles the virtual node knows (device id = profile name unless NodeSpec.device_id is set).
PROFILES = ("nab-machine", "femto-b1_1", "occupancy-office")
#: The firmware's host build tree (shared with ``bash esp32/test.sh``'s plain build).
ESP32_DIR = PROJECT_ROOT / "esp32"
BUILD_DIR = ESP32_DIR / "build"
#: Most samples in one batch message (docs/CONTRACT.md "Batches"; the firmware's
#: ``kMaxSamplesPerMessage``).
MAX_SAMPLES_PER_MESSAGE = 100
#: Exit codes of virtual_node that come with a valid summary line (3: messages left unsent).
SUMMARY_EXIT_CODES = (0, 3)
#: Most devices one virtual_node process simulates by default (:class:`NodeGroup`): one event
#: loop serves them all, so 2,000 devices are 8 processes, not 2,000.
DEVICES_PER_PROCESS = 250


class VnodeError(IotFlinkError):
    """Building or running a virtual node failed (message names the node and its log file)."""


def binary_path(build_dir: Path = BUILD_DIR) -> Path:
    """Path of the virtual node executable in ``build_dir`` (it may not exist yet)."""
    return Path(build_dir) / "virtual_node"


def build(build_dir: Path = BUILD_DIR, jobs: int = 2, timeout_s: float = 900.0) -> Path:
    """Configure (once) and build the ``virtual_node`` target; returns the executable's path.

    Reuses ``build_dir`` when it holds a CMake cache (an up-to-date target builds in well
    under a second); configures it otherwise with the same generator ``esp32/test.sh`` uses
    (Ninja when installed, so the two share the tree). Needs cmake, g++, libgtest-dev and
    libmosquitto-dev (``deps/apt.txt``).

    Raises:
        VnodeError: cmake is missing, configuring or building failed (output quoted), it took
            longer than ``timeout_s`` seconds, or the build produced no executable.
    """
    build_dir = Path(build_dir)
    cmake = shutil.which("cmake")
    if cmake is None:
        raise VnodeError("cmake not found; install the packages of deps/apt.txt")
    cmds: list[list[str]] = []
    if not (build_dir / "CMakeCache.txt").exists():
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        cmds.append([cmake, "-S", str(ESP32_DIR), "-B", str(build_dir), *gen,
                     "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DFW_SANITIZE=OFF"])
    cmds.append([cmake, "--build", str(build_dir), "--target", "virtual_node", f"-j{jobs}"])
    for cmd in cmds:
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,  # noqa: S603
                                 check=False)
        except subprocess.TimeoutExpired as exc:
            raise VnodeError(f"{' '.join(cmd)} took more than {timeout_s:.0f} s") from exc
        if res.returncode != 0:
            tail = "\n".join((res.stdout + res.stderr).splitlines()[-30:])
            raise VnodeError(f"{' '.join(cmd)} failed (exit {res.returncode}):\n{tail}")
    exe = binary_path(build_dir)
    if not exe.exists():
        raise VnodeError(f"{exe} was not built (is libmosquitto-dev installed? see CMake output)")
    return exe


@dataclass(frozen=True)
class NodeSpec:
    """One virtual node to run.

    Fields:
        profile: one of :data:`PROFILES` (data file and sensor channels).
        device_id: MQTT/payload device id; default the profile name. Give distinct ids to run
            several nodes of one profile.
        speedup: event time / speedup = wall time; 0 = as fast as PUBACKs allow (at most
            ``max_inflight`` unacked messages).
        limit: play only the first ``limit`` data rows (None = all).
        outage_at: before data row ``outage_at`` (0-based) the node waits for its PUBACKs and
            disconnects; None = no outage.
        outage_s: outage length in event-time seconds (also ``outage_s / speedup`` wall
            seconds when speedup > 0). The outbox holds 128 messages; a longer outage drops the
            oldest (counted in ``drops.outbox`` and ``dropped``).
        clock_late: the first ``clock_late`` readings are taken before "SNTP" sets the clock
            (held, then stamped).
        max_inflight: unacked QoS 1 messages at most (also capped by the broker's Receive
            Maximum).
        now_ms: wall time (epoch ms) the node computes its whole-week replay shift from
            (:func:`iotflink.simulation.replay.week_shift_ms`); None = the node's own clock at start.
        pace_origin_ms: with ``speedup > 0``, the origin of a shared event-time clock (epoch
            ms, replay time): a reading of event time ``t`` is due ``max(0, t - origin) /
            speedup`` s after the node starts. Nodes started together with the same origin,
            speedup and ``now_ms`` play on one clock, as a real fleet shares the wall clock;
            None = each node paces by its own data time from its first reading.
        samples_per_message: samples per MQTT message, 1..:data:`MAX_SAMPLES_PER_MESSAGE`; 1 =
            one reading per message (the single-reading payload), N > 1 = batches of N
            consecutive samples (docs/CONTRACT.md "Batches"; a partial batch at the end of the
            data). Each sample keeps its own seq and ts; the outbox (128 samples) acknowledges
            a batch as a unit and resends it after a reconnect.
        backpressure: with ``speedup > 0``, a node behind its pacing schedule (readings before
            ``pace_origin_ms`` are all due at once; data due faster than the broker's PUBACKs
            come back) waits while its outbox is half full, as at speedup 0, instead of
            playing on into a full outbox that drops the oldest: the replay's schedule is then
            a lower bound on when a reading is sent and loses nothing (``--backpressure``).
            While offline (``outage_at``) the outbox still fills and overflows as on a board.
            False: the node samples on schedule whatever the link does, as a board does.
        data_dir: the directory holding the profile's data files (``femto/``, ``nab/``,
            ``occupancy/``, laid out as the project's ``data/``); None = the project's ``data/``.
        extra_args: further ``virtual_node`` options, passed verbatim.
    """

    profile: str
    device_id: str | None = None
    speedup: float = 0.0
    limit: int | None = None
    outage_at: int | None = None
    outage_s: float = 0.0
    clock_late: int = 0
    max_inflight: int = 20
    now_ms: int | None = None
    pace_origin_ms: int | None = None
    samples_per_message: int = 1
    backpressure: bool = False
    data_dir: Path | None = None
    extra_args: tuple[str, ...] = ()

    @property
    def device(self) -> str:
        """The device id the node publishes as."""
        return self.device_id or self.profile

    def argv(self, exe: Path, host: str, port: int, seq_file: Path, password_file: Path | None = None,
             ca_file: Path | None = None) -> list[str]:
        """The command line that runs this node against ``host:port``, authenticated as its
        device id with the password in ``password_file`` (None: anonymous), over TLS verified
        with ``ca_file`` (None: plain MQTT).

        Raises:
            ValueError: unknown profile, negative speedup/limit, an outage without length,
                ``samples_per_message`` outside 1..:data:`MAX_SAMPLES_PER_MESSAGE`, or
                ``pace_origin_ms`` / ``backpressure`` without ``speedup > 0``.
        """
        argv = self.shared_argv(exe, host, port, ca_file)
        argv[3:3] = ["--device", self.device, "--seq-file", str(seq_file)]
        if password_file is not None:
            argv[3:3] = ["--username", self.device, "--password-file", str(password_file)]
        return argv

    def group_key(self) -> NodeSpec:
        """What devices must share to run in one process (every field but ``device_id``)."""
        return replace(self, device_id=None)

    def shared_argv(self, exe: Path, host: str, port: int, ca_file: Path | None = None) -> list[str]:
        """The command line of this spec without its device (no ``--device``, ``--seq-file``,
        credential): what every device of a multi-device process shares; the process adds
        ``--devices-file`` (:class:`NodeGroup`). Errors: as :meth:`argv`."""
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; known: {', '.join(PROFILES)}")
        if self.speedup < 0 or (self.limit is not None and self.limit < 0):
            raise ValueError("speedup and limit must be >= 0")
        if self.outage_at is not None and self.outage_s <= 0:
            raise ValueError("outage_at needs outage_s > 0")
        if self.pace_origin_ms is not None and self.speedup <= 0:
            raise ValueError("pace_origin_ms needs speedup > 0")
        if self.backpressure and self.speedup <= 0:
            raise ValueError("backpressure needs speedup > 0 (speedup 0 always waits for the outbox)")
        if not 1 <= self.samples_per_message <= MAX_SAMPLES_PER_MESSAGE:
            raise ValueError(f"samples_per_message must be 1..{MAX_SAMPLES_PER_MESSAGE}, "
                             f"not {self.samples_per_message}")
        argv = [str(exe), "--profile", self.profile, "--host", host,
                "--port", str(port), "--data-dir", str(self.data_dir or DATA_DIR), "--speedup", repr(self.speedup),
                "--max-inflight", str(self.max_inflight)]
        if self.limit is not None:
            argv += ["--limit", str(self.limit)]
        if self.outage_at is not None:
            argv += ["--outage-at", str(self.outage_at), "--outage-seconds", repr(self.outage_s)]
        if self.clock_late:
            argv += ["--clock-late", str(self.clock_late)]
        if self.now_ms is not None:
            argv += ["--now-ms", str(self.now_ms)]
        if self.pace_origin_ms is not None:
            argv += ["--pace-origin-ms", str(self.pace_origin_ms)]
        if self.backpressure:
            argv.append("--backpressure")
        if self.samples_per_message != 1:
            argv += ["--samples-per-message", str(self.samples_per_message)]
        if ca_file is not None:
            argv += ["--cafile", str(ca_file)]
        return argv + list(self.extra_args)


@dataclass(frozen=True)
class NodeResult:
    """What one node reported.

    Fields:
        spec: the node's :class:`NodeSpec`.
        returncode: 0, or 3 when messages were left unsent (they count in ``dropped``).
        summary: the node's JSON summary line, parsed (fields: module docstring and
            esp32/README.md "Virtual node").
        log_file: the node's stderr log (of its process: several devices' lines, each
            prefixed with its device id, when the process simulates several).
        wall_s: seconds from start to exit (a device of a multi-device process: from the
            process's start to the device's summary, its ``wall_s``).
    """

    spec: NodeSpec
    returncode: int
    summary: dict
    log_file: Path
    wall_s: float = field(default=0.0)

    @property
    def device_id(self) -> str:
        """The device id the node published as."""
        return self.summary["device_id"]

    @property
    def published(self) -> int:
        """Distinct messages the broker accepted (PUBACKed): exactly what reached the broker."""
        return int(self.summary["published"])

    @property
    def dropped(self) -> int:
        """Samples/messages that never reached the broker (see module docstring)."""
        return int(self.summary["dropped"])

    def acked_seqs(self) -> list[int]:
        """The seqs that reached the broker, ascending (from ``acked_ranges``)."""
        return [s for lo, hi in self.summary["acked_ranges"] for s in range(lo, hi + 1)]


def seq_file(run_dir: Path, device: str) -> Path:
    """Where a node's sequence mark lives under the stack's run dir (``vnodes/{device}.seq``)."""
    return Path(run_dir) / "vnodes" / f"{device}.seq"


@dataclass
class _Process:
    """One virtual_node process and the devices it simulates."""

    specs: list[NodeSpec]
    proc: subprocess.Popen
    out: Path
    err: Path
    t0: float
    end: float | None = None


def plan_processes(specs: Sequence[NodeSpec], devices_per_process: int) -> list[list[NodeSpec]]:
    """Splits ``specs`` into the device lists of the processes that run them: specs that differ
    only in ``device_id`` (:meth:`NodeSpec.group_key`) share a process, at most
    ``devices_per_process`` each, in spec order (first appearance of each key).

    Raises:
        ValueError: ``devices_per_process`` < 1.
    """
    if devices_per_process < 1:
        raise ValueError(f"devices_per_process must be >= 1, not {devices_per_process}")
    by_key: dict[NodeSpec, list[NodeSpec]] = {}
    for spec in specs:
        by_key.setdefault(spec.group_key(), []).append(spec)
    return [same[i:i + devices_per_process] for same in by_key.values()
            for i in range(0, len(same), devices_per_process)]


class NodeGroup:
    """Virtual nodes running as subprocesses (use :func:`run_nodes` unless you need to act
    while they run, e.g. restart the broker). Devices whose specs differ only in their device
    id run in one process, up to ``devices_per_process`` each (:func:`plan_processes`; the
    node's ``--devices-file``): each device keeps its own MQTT connection, client id,
    credential, topic, seq file and firmware-core state, and its own summary. Also a context
    manager: leaving it stops any node still running (SIGTERM, then SIGKILL after 10 s).
    """

    def __init__(self, specs: Sequence[NodeSpec], host: str, port: int, run_dir: Path,
                 exe: Path | None = None, reset_seq: bool = False, auth_dir: Path | None = None,
                 ca_file: Path | None = None, devices_per_process: int = DEVICES_PER_PROCESS) -> None:
        """Start the processes of ``specs``.

        Args:
            specs: the nodes; their device ids must be distinct.
            host, port: the MQTT broker.
            run_dir: the stack's run dir; seq files go to ``run_dir/vnodes/{device}.seq``,
                summaries to ``run_dir/vnodes/{device}.summary.json`` (written by :meth:`wait`
                for a multi-device process), stderr logs to ``run_dir/logs/vnode-{device}.log``
                (a multi-device process: ``vnodes-{first device}+{others}.log``, its device
                list ``run_dir/vnodes/{first device}+{others}.devices``).
            exe: the virtual node executable (default: :func:`build` it if missing).
            reset_seq: delete the seq files first, so each device starts at seq 0 (otherwise it
                continues above its previous run, as a rebooted board does).
            auth_dir: the broker's credentials (:class:`iotflink.runtime.mqtt_auth.CredentialStore`);
                default the stack's, ``run_dir/mosquitto/auth``. Every device needs an active
                credential there (``Stack.provision`` or ``python -m iotflink.cli device add``).
            ca_file: CA certificate for MQTT over TLS (``StackSettings.mqtt_ca_file``); None =
                plain MQTT.
            devices_per_process: most devices one process simulates (1 = a process per device).

        Raises:
            ValueError: duplicate device ids, a bad spec or ``devices_per_process`` < 1.
            VnodeError: a device has no credential, or the executable could not be built or
                started.
        """
        devices = [s.device for s in specs]
        if len(set(devices)) != len(devices):
            raise ValueError(f"device ids must be distinct: {devices}")
        plan = plan_processes(specs, devices_per_process)
        self.run_dir = Path(run_dir)
        store = CredentialStore(auth_dir if auth_dir is not None else mqtt_auth_dir(self.run_dir))
        passwords = {}
        active = {c["username"]: c["role"] for c in store.list()}  # one read of the index for the fleet
        for dev in devices:
            if active.get(dev) != "device":
                try:
                    store.get(dev, "device")  # raises, saying what is wrong
                except CredentialError as exc:
                    raise VnodeError(f"virtual node {dev}: {exc}") from exc
            passwords[dev] = store.password_file(dev)
        # default: (re)build incrementally, so a changed node source never runs stale
        self.exe = Path(exe) if exe is not None else build()
        (self.run_dir / "vnodes").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._procs: list[_Process] = []
        try:
            for group in plan:
                for spec in group:
                    if reset_seq:
                        seq_file(self.run_dir, spec.device).unlink(missing_ok=True)
                first = group[0].device
                if len(group) == 1:  # the single-device command line
                    name = first
                    out = self.run_dir / "vnodes" / f"{first}.summary.json"
                    err = self.run_dir / "logs" / f"vnode-{first}.log"
                    argv = group[0].argv(self.exe, host, port, seq_file(self.run_dir, first), passwords[first],
                                         ca_file)
                else:
                    name = f"{first}+{len(group) - 1}"
                    out = self.run_dir / "vnodes" / f"{name}.summaries.jsonl"
                    err = self.run_dir / "logs" / f"vnodes-{name}.log"
                    listing = self.run_dir / "vnodes" / f"{name}.devices"
                    listing.write_text("".join(f"{s.device} {passwords[s.device]} {seq_file(self.run_dir, s.device)}\n"
                                               for s in group))
                    argv = group[0].shared_argv(self.exe, host, port, ca_file)
                    argv[3:3] = ["--devices-file", str(listing)]
                with open(out, "wb") as fout, open(err, "ab") as ferr:
                    proc = subprocess.Popen(argv, stdout=fout, stderr=ferr,  # noqa: S603
                                            stdin=subprocess.DEVNULL, cwd=PROJECT_ROOT)
                log.info("started virtual node %s (%d device(s), pid %d): %s", name, len(group), proc.pid,
                         " ".join(argv))
                self._procs.append(_Process(group, proc, out, err, time.monotonic()))
        except OSError as exc:
            self.stop()
            raise VnodeError(f"starting {self.exe} failed: {exc}") from exc

    @property
    def pids(self) -> list[int]:
        """Process ids of the node processes, in spec order (one per process, not per device)."""
        return [p.proc.pid for p in self._procs]

    @property
    def devices_per_pid(self) -> dict[int, int]:
        """Devices each node process simulates (pid -> count)."""
        return {p.proc.pid: len(p.specs) for p in self._procs}

    def running(self) -> int:
        """How many devices have not finished yet (their process runs and has not printed their
        summary)."""
        n = 0
        for p in self._procs:
            if p.proc.poll() is None:
                n += len(p.specs) - (_summary_lines(p.out) if len(p.specs) > 1 else 0)
        return n

    def wait(self, timeout_s: float = 600.0) -> list[NodeResult]:
        """Wait until every node exited; return their results in spec order.

        Raises:
            VnodeError: a node did not exit within ``timeout_s`` seconds (all are then
                stopped), exited with a code other than 0 or 3, or printed no summary for a
                device.
        """
        deadline = time.monotonic() + timeout_s
        for p in self._procs:
            left = deadline - time.monotonic()
            try:
                p.proc.wait(timeout=max(left, 0.0))
            except subprocess.TimeoutExpired as exc:
                self.stop()
                raise VnodeError(f"virtual node {p.specs[0].device} still running after {timeout_s:.0f} s; "
                                 f"stopped all nodes; see {p.err}") from exc
            p.end = time.monotonic()
        by_device: dict[str, NodeResult] = {}
        for p in self._procs:
            rc = p.proc.returncode
            text = p.out.read_text(errors="replace").strip()
            if rc not in SUMMARY_EXIT_CODES or not text:
                raise VnodeError(f"virtual node {p.specs[0].device} exited with {rc}; see {p.err}")
            lines = text.splitlines()
            try:
                summaries = {s["device_id"]: s for s in map(json.loads, lines[-1:] if len(p.specs) == 1 else lines)}
            except (ValueError, KeyError, TypeError) as exc:
                raise VnodeError(f"virtual node {p.specs[0].device}: bad summary {text[-200:]!r}; "
                                 f"see {p.err}") from exc
            for spec in p.specs:
                summary = summaries.get(spec.device)
                if summary is None:
                    raise VnodeError(f"virtual node {spec.device} printed no summary (exit {rc}); see {p.err}")
                if len(p.specs) > 1:  # one summary file per device, as a single-device process writes
                    (self.run_dir / "vnodes" / f"{spec.device}.summary.json").write_text(json.dumps(summary) + "\n")
                wall = float(summary.get("wall_s", 0.0)) if len(p.specs) > 1 else (p.end or p.t0) - p.t0
                by_device[spec.device] = NodeResult(spec, rc, summary, p.err, wall)
        return [by_device[s.device] for p in self._procs for s in p.specs]

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every node still running (each device flushes for <= 3 s and prints its
        summary), then SIGKILL those still alive after ``timeout_s`` seconds."""
        for p in self._procs:
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for p in self._procs:
            try:
                p.proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait()

    def __enter__(self) -> NodeGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _summary_lines(out: Path) -> int:
    """Summary lines a multi-device process has written so far (one per finished device)."""
    try:
        with open(out, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def run_nodes(specs: Sequence[NodeSpec], host: str, port: int, run_dir: Path,
              timeout_s: float = 600.0, exe: Path | None = None,
              reset_seq: bool = False, auth_dir: Path | None = None,
              ca_file: Path | None = None, devices_per_process: int = DEVICES_PER_PROCESS) -> list[NodeResult]:
    """Run the nodes of ``specs`` at once against ``host:port`` and wait for all of them.

    Builds the executable first when it is missing (:func:`build`). See :class:`NodeGroup` for
    the arguments and the files written under ``run_dir``.

    Returns:
        One :class:`NodeResult` per spec, in spec order.

    Raises:
        ValueError: a bad spec or duplicate device ids.
        VnodeError: build or start failed, a node timed out (all are stopped) or failed.
    """
    with NodeGroup(specs, host, port, run_dir, exe=exe, reset_seq=reset_seq, auth_dir=auth_dir,
                   ca_file=ca_file, devices_per_process=devices_per_process) as group:
        return group.wait(timeout_s)


def totals(results: Sequence[NodeResult]) -> dict:
    """Accounting over several nodes: ``{"published": int, "dropped": int,
    "per_device": {device_id: {"published": int, "dropped": int}}}``."""
    per = {r.device_id: {"published": r.published, "dropped": r.dropped} for r in results}
    return {"published": sum(r.published for r in results),
            "dropped": sum(r.dropped for r in results), "per_device": per}


#: Shared-clock demo (:func:`default_demo_specs` with ``speedup > 0``): the NAB node's
#: connectivity outage starts this long (event time) after the shared clock's origin and lasts
#: :data:`DEMO_NAB_OUTAGE_S`: 120 readings at NAB's 5-min cadence fit the 128-message outbox.
DEMO_NAB_OUTAGE_AFTER_MS = 3 * 24 * 3_600_000
DEMO_NAB_OUTAGE_S = 10 * 3600.0


def default_demo_specs(limit: int | None = None, speedup: float = 0.0,
                       now_ms: int | None = None, samples_per_message: int = 1) -> list[NodeSpec]:
    """The demo's three devices (docs/CONTRACT.md "Demo devices").

    ``speedup == 0`` (or a ``limit``): each node plays its file as fast as PUBACKs allow; the
    FEMTO node has a 100 s outage (event time) before its 1,000th reading, flushed on reconnect
    (~110 messages, within the 128-message outbox).

    ``speedup > 0`` and no limit: the nodes play on one shared event-time clock (see
    :class:`NodeSpec` ``pace_origin_ms``), because independent clocks make a replay artefact of
    lateness: the data sets cover different weeks (after the whole-week shift: NAB 79 days up
    to about 4 days ago, occupancy 6 days inside NAB's last 8, FEMTO 8 h after both), and a
    node that runs ahead in event time carries the watermark past the others' readings (in one
    run 91 % of NAB was late). The clock starts at occupancy's first reading; NAB's 71 earlier
    days are due at once (a backlog, in order). The NAB node loses its connection
    :data:`DEMO_NAB_OUTAGE_AFTER_MS` after the origin for :data:`DEMO_NAB_OUTAGE_S` of event
    time (``outage / speedup`` wall seconds: longer than the job's 5 s idleness at speedups
    below 7,200, so its partition goes idle and the occupancy node carries the watermark on); its
    outbox flushes the queued readings on reconnect with their original timestamps, and those
    behind the allowed lateness reach ``sensor-late``.

    With ``speedup > 0`` every node has :attr:`NodeSpec.backpressure`: the NAB backlog (about
    20,700 readings due at once) and FEMTO's 7.8 h (about 5,600 readings per wall second at
    5,000x) come faster than one connection's PUBACKs (20 messages in flight; a few thousand
    per second on this 2-core machine), so a node on schedule would overflow its 128-message
    outbox; it waits for its PUBACKs instead, and only the outage queues readings.

    Args:
        limit: rows per data set (None = all).
        speedup: event-time seconds per wall second (0 = as fast as possible).
        now_ms: the wall time (epoch ms) the replay shift is computed from; default now.
        samples_per_message: every node's :attr:`NodeSpec.samples_per_message` (1 = single
            readings).
    """
    if speedup <= 0 or limit is not None:
        femto_outage = 1000 if limit is None or limit > 1000 else None
        own = {"speedup": speedup, "limit": limit, "samples_per_message": samples_per_message,
               "backpressure": speedup > 0}
        return [
            NodeSpec("nab-machine", **own),
            NodeSpec("femto-b1_1", outage_at=femto_outage,
                     outage_s=100.0 if femto_outage is not None else 0.0, **own),
            NodeSpec("occupancy-office", **own),
        ]
    from iotflink.simulation.replay import load_dataset  # noqa: PLC0415

    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    origin = load_dataset("occupancy", now)[0][0]
    nab_ts = [r[0] for r in load_dataset("nab", now)]
    outage_at = next(i for i, ts in enumerate(nab_ts) if ts >= origin + DEMO_NAB_OUTAGE_AFTER_MS)
    shared = {"speedup": speedup, "now_ms": now, "pace_origin_ms": origin,
              "samples_per_message": samples_per_message, "backpressure": True}
    return [
        NodeSpec("nab-machine", outage_at=outage_at, outage_s=DEMO_NAB_OUTAGE_S, **shared),
        NodeSpec("femto-b1_1", **shared),
        NodeSpec("occupancy-office", **shared),
    ]


def samples_per_message_arg(text: str) -> int:
    """argparse type of ``--samples-per-message``: an int in 1..:data:`MAX_SAMPLES_PER_MESSAGE`.

    Raises:
        argparse.ArgumentTypeError: not an integer, or outside the range.
    """
    try:
        n = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if not 1 <= n <= MAX_SAMPLES_PER_MESSAGE:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_SAMPLES_PER_MESSAGE}, not {n}")
    return n


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``iotflink vnodes`` (its arguments, :func:`run`) on the CLI's subparsers."""
    ap = sub.add_parser("vnodes", help="run the demo's virtual ESP32 nodes against the broker",
                        description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default=None, help="MQTT host (default: IOTFLINK_MQTT_HOST)")
    ap.add_argument("--port", type=int, default=None, help="MQTT port (default: IOTFLINK_MQTT_PORT)")
    ap.add_argument("--run-dir", type=Path, default=None, help="default: IOTFLINK_RUN_DIR")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--speedup", type=float, default=0.0)
    ap.add_argument("--samples-per-message", type=samples_per_message_arg, default=1, metavar="N",
                    help=f"samples per MQTT message, 1..{MAX_SAMPLES_PER_MESSAGE} (default 1: one "
                         "reading per message; N > 1: batches, docs/CONTRACT.md \"Batches\")")
    ap.set_defaults(func=run)
    return ap


def run(a: argparse.Namespace) -> int:
    """``iotflink vnodes``: run the demo's nodes until their data is sent; prints their totals
    (JSON). Exit status 0."""
    cfg = StackSettings.from_env()
    run_dir = a.run_dir or cfg.run_dir
    specs = default_demo_specs(a.limit, a.speedup, samples_per_message=a.samples_per_message)
    res = run_nodes(specs, a.host or cfg.mqtt_host, a.port or cfg.mqtt_port, run_dir,
                    auth_dir=cfg.mqtt_auth_dir if run_dir == cfg.run_dir else None, ca_file=cfg.mqtt_ca_file)
    json.dump(totals(res), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":  # pragma: no cover - manual use
    from iotflink import cli

    sys.exit(cli.main(["vnodes", *sys.argv[1:]]))

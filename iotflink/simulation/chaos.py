"""Fault injection on the local stack, with timing facts: the building blocks of the
fault tests (``tests/test_chaos.py``) and of ``bench/recovery_bench.py``.

Faults (each kills or stops one service of :class:`iotflink.runtime.stack.Stack`, starts it again,
waits until it is ready and returns a :class:`FaultTiming`):

- :func:`kill_taskmanager`: ``kill -9`` of a TaskManager's process group (the
  ``taskmanager.sh start-foreground`` shell and its JVM), then a new TaskManager. Ready means
  the JobManager lists a TaskManager id that was not there before the kill (the dead one can
  stay listed until its heartbeat times out, so "a TaskManager is registered" proves nothing).
  With several TaskManagers (``IOTFLINK_TASKMANAGERS``) and a job given, the one running most
  of that job's subtasks is killed, and the new one is started only once the job runs again on
  the survivors' slots, as a cluster that lost a host would run on: the failover to the
  survivors is measured (``extra["failover_s"]``), not a restart on the replacement.
- :func:`restart_kafka`: SIGTERM to the broker (controlled shutdown), then start it again.
  Ready: the broker answers a metadata request.
- :func:`restart_mosquitto`: SIGTERM to Mosquitto (it writes its persistence file, so queued
  QoS 1 messages of persistent sessions survive), then start it again. Ready: CONNACK.
- :func:`kill_mosquitto`: ``kill -9`` of Mosquitto (no chance to save), then start it again.
  What survives is what its last save wrote: with deploy/mosquitto.conf's
  ``autosave_on_changes true`` / ``autosave_interval 100``, all but at most the messages
  acknowledged since the last save (:data:`MOSQUITTO_KILL_WINDOW`). Ready: CONNACK.
- :func:`kill_bridge`: ``kill -9`` of the bridge, then a new bridge process. Ready: the new
  bridge holds its QoS 1 subscription (its stats file counts one SUBACK).

Supervision gap: nothing restarts a bridge that exited by itself. The bridge no longer exits
on Kafka errors (it re-sends with backoff), but a crash of the process remains possible;
:func:`ensure_bridge` notices that, records how it ended and starts a
new bridge, as a supervisor (systemd ``Restart=on-failure``, a container restart policy)
would in production. Every fault function calls it at the end, so a fault that made the
bridge exit is visible in :attr:`FaultTiming.bridge_restarts`.

Recovery after a fault is measured on the pipeline's output, not on process state
(:class:`iotflink.simulation.monitor.OutputMonitor`); :func:`wait_job_recovered` adds the job's
view (REST state RUNNING again, entered after the fault). The MQTT load that runs during a
fault is :class:`iotflink.simulation.load.ContinuousPublisher`.

Command line (against the stack described by the ``IOTFLINK_*`` environment)::

    iotflink chaos kill-taskmanager [--job JOB_ID] [--down-s 0] [--taskmanager NAME]
    iotflink chaos restart-kafka [--down-s 0]
    iotflink chaos restart-mosquitto
    iotflink chaos kill-mosquitto
    iotflink chaos kill-bridge

prints the :class:`FaultTiming` as JSON (plus ``job_running_s`` with ``--job``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from iotflink.errors import IotFlinkError, JobError, StackError
from iotflink.poll import PollTimeout, poll, wait_for
from iotflink.runtime.stack import Stack
from iotflink.settings import StackSettings

log = logging.getLogger(__name__)

#: The faults by CLI name.
FAULTS = ("kill-taskmanager", "restart-kafka", "restart-mosquitto", "kill-mosquitto", "kill-bridge")

#: Acknowledged QoS 1 messages that one ``kill -9`` of Mosquitto can lose, with
#: deploy/mosquitto.conf (``autosave_on_changes true``, ``autosave_interval 100``): Mosquitto
#: saves once 100 changes to its store have piled up, and each message acknowledged since is a
#: change. bench/mqtt_durability_bench.py measures it (93 of 5,000 queued in one run).
MOSQUITTO_KILL_WINDOW = 100


@dataclass
class FaultTiming:
    """Timing facts of one injected fault. Times are seconds from the kill / stop signal.

    Fields:
        fault: one of :data:`FAULTS`.
        service: the stack service hit.
        signal: ``SIGKILL`` (kill -9) or ``SIGTERM`` (graceful restart).
        old_pid / new_pid: the service's process before and after.
        t_fault: ``time.monotonic()`` when the signal was sent (reference of the other times;
            compare with :class:`OutputMonitor` samples, which use the same clock).
        fault_epoch_ms: wall clock of the signal, epoch ms (compare with Flink REST timestamps).
        down_s: until the old process was gone.
        start_s: until the new process was spawned (``down_s`` + any requested downtime).
        ready_s: until the new process answered its readiness probe.
        bridge_restarts: bridges found exited (and started again) by :func:`ensure_bridge`
            after this fault, each ``{"pid", "exit_code", "ready_s", "new_pid"}``.
        extra: fault-specific facts (e.g. TaskManager ids).
    """

    fault: str
    service: str
    signal: str
    old_pid: int | None
    t_fault: float
    fault_epoch_ms: int
    down_s: float = float("nan")
    start_s: float = float("nan")
    ready_s: float = float("nan")
    new_pid: int | None = None
    bridge_restarts: list[dict] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict, times rounded to ms."""
        out = asdict(self)
        for key in ("down_s", "start_s", "ready_s"):
            out[key] = round(out[key], 3)
        return out


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _begin(stack: Stack, fault: str, service: str, sig: str) -> FaultTiming:
    pid = stack.pid(service)
    if pid is None:
        raise StackError(f"{fault}: {service} is not running; see {stack.log_file(service)}")
    return FaultTiming(fault=fault, service=service, signal=sig, old_pid=pid,
                       t_fault=time.monotonic(), fault_epoch_ms=_now_ms())


def _stop(stack: Stack, timing: FaultTiming, kill: bool, down_for_s: float) -> None:
    stack.stop_service(timing.service, kill=kill)
    timing.down_s = time.monotonic() - timing.t_fault
    if down_for_s > 0:
        # deliberate downtime of the fault (the fault's duration), not synchronisation
        time.sleep(max(0.0, timing.t_fault + down_for_s - time.monotonic()))


def _restart(stack: Stack, timing: FaultTiming, ready_timeout_s: float,
             ready: Callable[[], bool] | None = None) -> None:
    timing.start_s = time.monotonic() - timing.t_fault
    stack.start(services=(timing.service,))
    if ready is not None:
        wait_for(ready, ready_timeout_s, interval_s=0.2, what=f"{timing.service} ready after {timing.fault}")
    timing.ready_s = time.monotonic() - timing.t_fault
    timing.new_pid = stack.pid(timing.service)


def _bounce(stack: Stack, fault: str, service: str, ready_timeout_s: float, kill: bool,
            down_for_s: float) -> FaultTiming:
    """Stop ``service`` (SIGKILL with ``kill``, else SIGTERM), keep it down ``down_for_s``, start
    it again and wait until it is ready; then :func:`ensure_bridge`. The body of every fault
    but the TaskManager's."""
    timing = _begin(stack, fault, service, "SIGKILL" if kill else "SIGTERM")
    _stop(stack, timing, kill=kill, down_for_s=down_for_s)
    _restart(stack, timing, ready_timeout_s)
    timing.bridge_restarts = ensure_bridge(stack, timing.t_fault)
    return timing


def _taskmanager_ids(stack: Stack) -> set[str]:
    return {tm["id"] for tm in stack.flink_rest.taskmanagers()}


def _job_on(stack: Stack, job_id: str, fault_epoch_ms: int, dead_id: str | None) -> bool:
    """True when job ``job_id`` entered RUNNING after ``fault_epoch_ms`` and every one of its
    subtasks is RUNNING on a TaskManager other than ``dead_id``."""
    info = stack.flink_rest.job(job_id)
    if info.get("state") != "RUNNING" or info.get("timestamps", {}).get("RUNNING", 0) <= fault_epoch_ms:
        return False
    subs = stack.job_subtasks(job_id)
    return bool(subs) and all(s["status"] == "RUNNING" and s["taskmanager_id"] != dead_id for s in subs)


def kill_taskmanager(stack: Stack, down_for_s: float = 0.0, ready_timeout_s: float = 120.0,
                     job_id: str | None = None, taskmanager: str | None = None,
                     failover_timeout_s: float = 180.0) -> FaultTiming:
    """``kill -9`` a TaskManager, start a new one, wait until the JobManager registered it.

    Args:
        stack: the running stack.
        down_for_s: keep the TaskManager dead this long (from the kill) before starting it.
        ready_timeout_s: longest wait for the new TaskManager to register.
        job_id: with several TaskManagers, kill the one running most of this job's subtasks
            (REST, :meth:`Stack.subtasks_per_taskmanager`) and start the new one only after the
            job runs again on the survivors (every subtask RUNNING elsewhere, job RUNNING
            since after the kill) or ``failover_timeout_s`` passed.
        taskmanager: the instance to kill (``flink-taskmanager``, ``flink-taskmanager-1``,
            ...); default: as ``job_id`` says, else the first.

    ``extra`` holds ``killed`` (instance), ``killed_taskmanager_id``, ``old_taskmanager_ids``,
    ``new_taskmanager_ids``, and with survivors and a job ``failover_s`` (None: the job did not
    run on the survivors within ``failover_timeout_s``) and ``subtasks_per_taskmanager`` before
    the kill and after the failover.

    Raises:
        StackError: the chosen TaskManager is not running.
        TimeoutError: the new TaskManager did not register within ``ready_timeout_s``.
    """
    names = stack.instances("flink-taskmanager")
    before: dict[str, int] = {}
    if taskmanager is None:
        taskmanager = names[0]
        if job_id is not None and len(names) > 1:
            before = stack.subtasks_per_taskmanager(job_id)
            taskmanager = max(names, key=lambda n: before.get(stack.taskmanager_resource_id(n) or "", 0))
    dead_id = stack.taskmanager_resource_id(taskmanager)
    old_ids = _taskmanager_ids(stack)
    timing = _begin(stack, "kill-taskmanager", taskmanager, "SIGKILL")
    timing.extra.update({"killed": taskmanager, "killed_taskmanager_id": dead_id})
    stack.stop_service(taskmanager, kill=True, instance_only=True)
    timing.down_s = time.monotonic() - timing.t_fault
    if job_id is not None and len(names) > 1:
        timing.extra["subtasks_per_taskmanager_before"] = before
        try:
            wait_for(lambda: _job_on(stack, job_id, timing.fault_epoch_ms, dead_id), failover_timeout_s,
                     interval_s=0.2, what=f"job {job_id} running on the surviving TaskManagers")
            timing.extra["failover_s"] = round(time.monotonic() - timing.t_fault, 3)
            timing.extra["subtasks_per_taskmanager_after"] = stack.subtasks_per_taskmanager(job_id)
        except TimeoutError as exc:
            log.warning("%s", exc)
            timing.extra["failover_s"] = None
    if down_for_s > 0:
        # deliberate downtime of the fault (the fault's duration), not synchronisation
        time.sleep(max(0.0, timing.t_fault + down_for_s - time.monotonic()))

    def new_tm_registered() -> bool:
        return bool(_taskmanager_ids(stack) - old_ids)

    timing.start_s = time.monotonic() - timing.t_fault
    stack.start(services=("flink-taskmanager",))  # starts the instances that are not running
    wait_for(new_tm_registered, ready_timeout_s, interval_s=0.2, what="a new TaskManager after kill-taskmanager")
    timing.ready_s = time.monotonic() - timing.t_fault
    timing.new_pid = stack.pid(taskmanager)
    timing.extra["old_taskmanager_ids"] = sorted(old_ids)
    timing.extra["new_taskmanager_ids"] = sorted(_taskmanager_ids(stack) - old_ids)
    timing.bridge_restarts = ensure_bridge(stack, timing.t_fault)
    return timing


def restart_kafka(stack: Stack, down_for_s: float = 0.0, ready_timeout_s: float = 120.0) -> FaultTiming:
    """Stop the Kafka broker (SIGTERM, controlled shutdown), start it again, wait for metadata.

    Args:
        stack: the running stack.
        down_for_s: keep the broker down this long (from the stop signal) before starting it.
        ready_timeout_s: unused beyond the stack's own readiness timeout (kept for symmetry).
    """
    return _bounce(stack, "restart-kafka", "kafka", ready_timeout_s, kill=False, down_for_s=down_for_s)


def restart_mosquitto(stack: Stack, down_for_s: float = 0.0, ready_timeout_s: float = 60.0) -> FaultTiming:
    """Stop Mosquitto (SIGTERM: it saves its persistence file), start it again, wait for CONNACK."""
    return _bounce(stack, "restart-mosquitto", "mosquitto", ready_timeout_s, kill=False, down_for_s=down_for_s)


def kill_mosquitto(stack: Stack, down_for_s: float = 0.0, ready_timeout_s: float = 60.0) -> FaultTiming:
    """``kill -9`` Mosquitto, start it again, wait for CONNACK.

    Persistent sessions and their queued QoS 1 messages come back from the last save of
    ``mosquitto.db``; a message acknowledged in the main-loop pass the kill hit may be lost (at
    most :data:`MOSQUITTO_KILL_WINDOW`). The bridge and the
    devices reconnect by themselves.
    """
    return _bounce(stack, "kill-mosquitto", "mosquitto", ready_timeout_s, kill=True, down_for_s=down_for_s)


def kill_bridge(stack: Stack, down_for_s: float = 0.0, ready_timeout_s: float = 60.0) -> FaultTiming:
    """``kill -9`` the bridge, start a new bridge process, wait until it holds its subscription."""
    return _bounce(stack, "kill-bridge", "bridge", ready_timeout_s, kill=True, down_for_s=down_for_s)


FAULT_FUNCTIONS: dict[str, Callable[..., FaultTiming]] = {
    "kill-taskmanager": kill_taskmanager,
    "restart-kafka": restart_kafka,
    "restart-mosquitto": restart_mosquitto,
    "kill-mosquitto": kill_mosquitto,
    "kill-bridge": kill_bridge,
}


def _exit_code_of(pid: int) -> int | None:
    """Exit status of our own exited child ``pid``, if nobody reaped it yet, else None."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if got != pid:
        return None
    return os.waitstatus_to_exitcode(status)


def bridge_exit_info(stack: Stack) -> dict[str, Any] | None:
    """How the bridge ended, if its pid file names a process that is gone; else None.

    Returns ``{"pid", "exit_code"}``. ``exit_code`` comes from ``waitpid`` when this process
    started the bridge and its status was not collected yet, else None (unknown, e.g. killed by
    a signal).
    """
    try:
        pid = int((stack.pid_dir / "bridge.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    if stack.pid("bridge") is not None:
        return None
    return {"pid": pid, "exit_code": _exit_code_of(pid)}


def ensure_bridge(stack: Stack, t_ref: float | None = None) -> list[dict]:
    """Start the bridge again if it exited by itself (the supervision gap; see module doc).

    Returns a list with one ``{"pid", "exit_code", "ready_s", "new_pid"}`` per restart (empty
    when the bridge was running). ``ready_s`` counts from ``t_ref`` (monotonic) if given.
    """
    info = bridge_exit_info(stack)
    if info is None:
        return []
    log.warning("bridge (pid %s) had exited (status %s); starting it again", info["pid"], info["exit_code"])
    stack.start(services=("bridge",))
    info["ready_s"] = round(time.monotonic() - (t_ref if t_ref is not None else time.monotonic()), 3)
    info["new_pid"] = stack.pid("bridge")
    return [info]


# ---------------------------------------------------------------------- recovery of a job
def wait_job_recovered(ctl, job_id: str, since_epoch_ms: int, timeout_s: float = 180.0) -> float:
    """Poll the REST API until the job is RUNNING again, every vertex RUNNING, and the job
    entered RUNNING after ``since_epoch_ms`` (its ``timestamps.RUNNING``); return the
    monotonic time it was first seen so.

    Raises:
        JobError: the job FAILED for good, or did not recover within ``timeout_s``.
    """
    def recovered() -> bool:
        try:
            info = ctl.job(job_id)
        except JobError:
            return False  # JobManager busy: try again
        if info["state"] in ("FAILED", "CANCELED", "FINISHED"):
            raise JobError(f"job {job_id} is {info['state']} after the fault")
        verts = info.get("vertices", [])
        return (info["state"] == "RUNNING" and bool(verts) and all(v["status"] == "RUNNING" for v in verts)
                and info.get("timestamps", {}).get("RUNNING", 0) >= since_epoch_ms)

    try:
        poll(recovered, timeout_s, interval_s=0.2, what=f"job {job_id} running again", retry_on=())
    except PollTimeout as exc:
        raise JobError(f"job {job_id} did not run again within {timeout_s:.0f} s of the fault") from exc
    return time.monotonic()


def job_restarts(ctl, job_id: str) -> int:
    """How many times the job restarted (the REST exceptions history length is a lower bound
    when it is truncated; ``numRestarts`` job metric when exposed)."""
    try:
        res = ctl.api.job_metrics(job_id, "numRestarts")
        if res:
            return int(float(res[0]["value"]))
    except (JobError, KeyError, ValueError):
        pass
    return -1


# ---------------------------------------------------------------------- CLI
def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``iotflink chaos`` (its arguments, :func:`run`) on the CLI's subparsers."""
    p = sub.add_parser("chaos", help="inject one fault into the local stack",
                       description="Inject one fault into the local stack; prints JSON facts.")
    p.add_argument("fault", choices=FAULTS)
    p.add_argument("--down-s", type=float, default=0.0, help="keep the service down this long (s) before restarting it")
    p.add_argument("--job", default=None, help="also wait until this Flink job runs again (REST) and report it")
    p.add_argument("--timeout-s", type=float, default=180.0)
    p.add_argument("--taskmanager", default=None, metavar="NAME",
                   help="kill-taskmanager: the instance to kill (flink-taskmanager, flink-taskmanager-1, ...); "
                        "default: the one running most of --job's subtasks, else the first")
    p.set_defaults(func=run, log_level=logging.INFO)
    return p


def run(args: argparse.Namespace) -> int:
    """``iotflink chaos FAULT [--down-s S] [--job JOB_ID] [--taskmanager NAME]``; prints JSON facts.

    Exit status: 0 the fault was injected and the service is back, 1 a project error.
    """
    for noisy in ("kafka", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stack = Stack(StackSettings.from_env())
    try:
        if args.fault == "kill-taskmanager":
            timing = kill_taskmanager(stack, down_for_s=args.down_s, job_id=args.job, taskmanager=args.taskmanager)
        else:
            timing = FAULT_FUNCTIONS[args.fault](stack, down_for_s=args.down_s)
        out = timing.to_dict()
        if args.job:
            from iotflink.runtime.flinkctl import FlinkCtl  # noqa: PLC0415

            t = wait_job_recovered(FlinkCtl(stack.s), args.job, timing.fault_epoch_ms, args.timeout_s)
            out["job_running_s"] = round(t - timing.t_fault, 3)
    except (IotFlinkError, TimeoutError) as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m iotflink.simulation.chaos ...``: the same as ``iotflink chaos ...``."""
    from iotflink import cli  # noqa: PLC0415 - the CLI imports this module

    return cli.main(["chaos", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

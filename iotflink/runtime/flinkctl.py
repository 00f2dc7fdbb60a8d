"""Control jobs on the Flink standalone cluster: submit with ``flink run -py``, and the REST API.

``FlinkCtl(settings).submit("sensor_windows")`` runs::

    $FLINK_HOME/bin/flink run -d -py jobs/sensor_windows.py -pyfs .run/pyfiles.zip [args...]

and a job that is a package (``jobs/rules/``) runs as a module from the same zip:
``flink run -d -pym jobs.rules -pyfs .run/pyfiles.zip [args...]``

with ``FLINK_CONF_DIR`` pointing at the stack's rendered configuration, so the client talks to
the cluster's REST endpoint. ``pyfiles.zip`` holds the project's Python packages (``jobs``,
``udfs``, ``iotflink``, ``bridge``) and ships them to the Python workers of every TaskManager,
also on other hosts. Everything else goes through the REST API (``/jobs/overview``,
``/jobs/:jid``, ``/jobs/:jid/stop``, ``/jobs/:jid/savepoints``, ``/jobs/:jid/exceptions``).

Savepoints: :meth:`FlinkCtl.savepoint` (the job keeps running),
:meth:`FlinkCtl.stop_with_savepoint` (the job ends FINISHED) and
``submit(name, savepoint=PATH)`` (``flink run -s PATH``) to resume; every job gives its
operators stable uids (``table.exec.uid.generation = ALWAYS``, ``jobs/common.py``), so the
state maps back. Jobs are named by id or by name (:meth:`FlinkCtl.resolve_job`).

Health: every job runs with a failure-rate restart strategy (``flink-conf/config.yaml``), so a
job that keeps failing ends FAILED. :meth:`FlinkCtl.job_health` gives each job's state, its
number of restarts and, for a FAILED, FAILING or RESTARTING job, the root exception of its
latest failure (:class:`JobHealth`); :meth:`FlinkCtl.failed_jobs` the unhealthy ones only.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
import zipfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from iotflink.errors import JobError
from iotflink.poll import PollTimeout, poll
from iotflink.runtime.flink_rest import FlinkRest
from iotflink.runtime.stack import create_topics, flink_env, flink_home
from iotflink.settings import PROJECT_ROOT, StackSettings

log = logging.getLogger(__name__)

#: Packages shipped to the cluster's Python workers.
PY_PACKAGES = ("jobs", "udfs", "iotflink", "bridge")

_JOB_ID = re.compile(r"JobID\s+([0-9a-f]{32})")

#: ``flink run`` clients this process runs at once: one per core. A client is a JVM that plans
#: the job and exits, CPU-bound (about 13 s for the window job here, README "Figures"); more
#: clients at once only share the cores, so every one of them finishes later (the first job
#: starts no sooner than the last), and on a loaded machine nine at once ran past their time-out.
#: A submission waits for a free client; its ``timeout_s`` counts from its client's start.
CLIENT_SLOTS = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")

#: Job states in which a job can take a savepoint or be stopped.
LIVE_STATES = ("RUNNING",)

#: Savepoint formats Flink accepts (``formatType``): canonical (portable across state
#: backends) and native (the backend's own format: faster to take and restore).
SAVEPOINT_FORMATS = ("CANONICAL", "NATIVE")

#: Job states that mean "failed or failing": the restart strategy gave up (FAILED, FAILING)
#: or the job is between a failure and its restart (RESTARTING).
UNHEALTHY_STATES = ("FAILED", "FAILING", "RESTARTING")

#: Job states after which a job never runs again.
TERMINAL_STATES = ("FAILED", "CANCELED", "FINISHED", "SUSPENDED")

#: At most this many lines of a root exception's message are kept (a Python traceback is cut
#: to its first and last line instead).
ROOT_EXCEPTION_MAX_LINES = 3

#: Longest line of a root exception kept, in characters (longer ones end in "...").
ROOT_EXCEPTION_MAX_CHARS = 400

_STACK_FRAME = re.compile(r"^\s+(at \S+\(|\.\.\. \d+ (more|common frames omitted)$|Suppressed: )")
_RECOVERY_SUPPRESSED = "Recovery is suppressed by "


@dataclass(frozen=True)
class JobHealth:
    """How a job on the cluster is doing, from the REST API (:meth:`FlinkCtl.job_health`).

    Fields:
        job_id: the job's id (32 hex digits).
        name: its ``pipeline.name``.
        state: Flink's job status: ``RUNNING``, ``RESTARTING``, ``FAILED``, ``FINISHED``,
            ``CANCELED``, ...
        start_time_ms: when the job was submitted, epoch ms (JobManager clock).
        restarts: restarts since submission: the job's ``numRestarts`` metric when the
            JobManager reports it, else the failures in the exception history that were
            followed by a restart (every entry but a FAILED job's last); ``None`` when neither
            could be read.
        restarts_lower_bound: ``restarts`` was counted from a truncated exception history
            (``web.exception-history-size`` entries kept), so the true number may be higher.
        root_exception: for a FAILED, FAILING or RESTARTING job, the innermost cause of its
            latest failure: the exception class and message, at most
            :data:`ROOT_EXCEPTION_MAX_LINES` lines joined by newlines (e.g.
            ``"java.lang.NumberFormatException: For input string: 'x'"``); ``None`` for other
            states, or when the JobManager recorded no exception.
        failure_time_ms: epoch ms of that latest failure; ``None`` with ``root_exception``.
        recovery_suppressed: the reason the latest failure was not restarted, when the
            JobManager gives one (``"Recovery is suppressed by
            FailureRateRestartBackoffTimeStrategy(...)"``: the restart budget is spent); else
            ``None``.
        earlier_failures: for a FAILED, FAILING or RESTARTING job, the older failures of the
            exception history, newest first, as ``(epoch ms, first line of the root cause)``;
            the first failure of a crash loop is often not the one that ended it (e.g. a Kafka
            timeout, then no TaskManager).
    """

    job_id: str
    name: str
    state: str
    start_time_ms: int
    restarts: int | None
    restarts_lower_bound: bool = False
    root_exception: str | None = None
    failure_time_ms: int | None = None
    recovery_suppressed: str | None = None
    earlier_failures: tuple[tuple[int, str], ...] = ()

    @property
    def unhealthy(self) -> bool:
        """True when the job is FAILED, FAILING or RESTARTING (:data:`UNHEALTHY_STATES`)."""
        return self.state in UNHEALTHY_STATES

    @property
    def restarts_text(self) -> str:
        """``restarts`` for display: ``"3"``, ``"16+"`` (lower bound) or ``"?"`` (unknown)."""
        if self.restarts is None:
            return "?"
        return f"{self.restarts}+" if self.restarts_lower_bound else str(self.restarts)

    def describe(self) -> str:
        """One line: ``job NAME (ID) STATE after N restarts: ROOT EXCEPTION`` (the root
        exception's lines joined by `` / ``; "no exception recorded" when there is none)."""
        root = (self.root_exception or "no exception recorded").replace("\n", " / ")
        return f"job {self.name} ({self.job_id}) {self.state} after {self.restarts_text} restarts: {root}"


def root_cause(stacktrace: str, max_lines: int = ROOT_EXCEPTION_MAX_LINES,
               max_chars: int = ROOT_EXCEPTION_MAX_CHARS) -> str:
    """The innermost cause of a Java stack trace (Flink's REST ``stacktrace`` field), as text.

    The trace's exceptions are its first line and each ``Caused by:`` line at column 0; the
    last one is the root cause. Its text is its header line (``class: message``, without
    ``Caused by:``) and the message lines that follow it up to the first stack frame. A
    message holding a Python traceback (a PyFlink UDF's error) keeps the header and the
    traceback's last line (the Python exception); any other message keeps its first
    ``max_lines`` lines. Lines longer than ``max_chars`` are cut and end in ``...``.

    Returns:
        the root cause, its lines joined by newlines; ``""`` for an empty trace.
    """
    lines = stacktrace.strip("\n").splitlines()
    starts = [i for i, line in enumerate(lines) if i == 0 or line.startswith("Caused by: ")]
    if not starts:
        return ""
    block: list[str] = []
    for line in lines[starts[-1]:]:
        if _STACK_FRAME.match(line):
            break
        if line.strip():
            block.append(line.rstrip())
    if not block:
        return ""
    block[0] = block[0].removeprefix("Caused by: ")
    tb = next((i for i, line in enumerate(block) if "Traceback (most recent call last):" in line), None)
    if tb is not None:
        tail = [line for line in block[tb + 1:] if not line.startswith((" ", "\t"))]
        block = block[:1] + tail[-1:]
    else:
        block = block[:max_lines]
    return "\n".join(line if len(line) <= max_chars else line[:max_chars - 3] + "..." for line in block)


class FlinkCtl:
    """Submit and control jobs on the cluster described by ``settings``."""

    def __init__(self, settings: StackSettings) -> None:
        self.s = settings
        #: the cluster's REST API (:class:`~iotflink.runtime.flink_rest.FlinkRest`)
        self.api = FlinkRest(settings.flink_rest_url)
        self.base = self.api.base

    # ------------------------------------------------------------------ REST
    def list_jobs(self) -> list[dict]:
        """Jobs on the cluster: dicts with ``jid``, ``name``, ``state``, ``start-time`` (ms)."""
        return self.api.jobs()

    def job(self, job_id: str) -> dict:
        """The REST API's ``/jobs/:jid`` (state, vertices, timestamps)."""
        return self.api.job(job_id)

    def resolve_job(self, ref: str, states: tuple[str, ...] = LIVE_STATES) -> str:
        """The id of the job ``ref`` names: a job id (32 hex digits) or a job name.

        A name must match exactly one job in ``states`` (by default RUNNING); an id is taken as
        it is if the cluster knows it (in any state).

        Raises:
            JobError: no such job, or the name is ambiguous (the matching ids are listed).
        """
        jobs = self.list_jobs()
        if _HEX_ID.match(ref):
            if any(j["jid"] == ref for j in jobs):
                return ref
            raise JobError(f"no job with id {ref} on the cluster at {self.base}")
        hits = [j for j in jobs if j["name"] == ref and j["state"] in states]
        if len(hits) == 1:
            return hits[0]["jid"]
        if len(hits) > 1:
            raise JobError(f"{len(hits)} jobs named {ref!r} are {'/'.join(states)}: "
                           f"{', '.join(j['jid'] for j in hits)}; give the job id")
        others = sorted({j["state"] for j in jobs if j["name"] == ref})
        raise JobError(f"no {'/'.join(states)} job named {ref!r} on the cluster at {self.base}"
                       + (f" (it is {', '.join(others)})" if others else ""))

    def cancel(self, job_id: str) -> None:
        """Cancel a job (no savepoint)."""
        self.api.cancel(job_id)

    # ------------------------------------------------------------------ health
    def exception_history(self, job_id: str) -> dict:
        """``/jobs/:jid/exceptions``'s ``exceptionHistory``: ``entries`` (newest first; each
        with ``exceptionName``, ``stacktrace``, ``timestamp`` in epoch ms, ``taskName``,
        ``concurrentExceptions``) and ``truncated`` (older entries were dropped).

        Raises:
            JobError: the REST call failed.
        """
        return self.api.exceptions(job_id)

    def _num_restarts(self, job_id: str) -> int | None:
        """The job's ``numRestarts`` metric; None when the JobManager reports none (a finished
        job has no metrics; a running one has none until the metric fetcher has run)."""
        try:
            res = self.api.job_metrics(job_id, "numRestarts")
            return int(float(res[0]["value"])) if res else None
        except (JobError, KeyError, IndexError, ValueError) as exc:
            log.debug("numRestarts of %s: %s", job_id, exc)
            return None

    def health(self, job: dict) -> JobHealth:
        """The :class:`JobHealth` of one job of :meth:`list_jobs` (``jid``, ``name``,
        ``state``, ``start-time``): reads its exception history and, unless it has ended, its
        ``numRestarts`` metric.

        Raises:
            JobError: the exception history could not be read.
        """
        job_id, state = job["jid"], job["state"]
        hist = self.exception_history(job_id)
        entries = sorted(hist.get("entries") or [], key=lambda e: e.get("timestamp", 0), reverse=True)
        # every recorded failure restarted the job, but the one that ended it
        counted = max(len(entries) - (1 if state in ("FAILED", "FAILING") and entries else 0), 0)
        metric = None if state in TERMINAL_STATES else self._num_restarts(job_id)
        restarts = counted if metric is None else max(metric, counted)
        lower_bound = bool(hist.get("truncated")) and (metric is None or counted >= metric)
        root = failed_at = suppressed = None
        earlier: tuple[tuple[int, str], ...] = ()
        if state in UNHEALTHY_STATES and entries:
            earlier = tuple((int(e.get("timestamp", 0)),
                             (root_cause(e.get("stacktrace") or e.get("exceptionName", "")) or "?").splitlines()[0])
                            for e in entries[1:])
            latest = entries[0]
            trace = latest.get("stacktrace") or latest.get("exceptionName", "")
            root = root_cause(trace) or None
            failed_at = latest.get("timestamp")
            first = trace.splitlines()[0] if trace else ""
            if _RECOVERY_SUPPRESSED in first:
                suppressed = first[first.index(_RECOVERY_SUPPRESSED):]
        return JobHealth(job_id=job_id, name=job.get("name", ""), state=state,
                         start_time_ms=int(job.get("start-time", 0)), restarts=restarts,
                         restarts_lower_bound=lower_bound, root_exception=root,
                         failure_time_ms=failed_at, recovery_suppressed=suppressed,
                         earlier_failures=earlier)

    def job_health(self, since_ms: int | None = None, states: Collection[str] | None = None) -> list[JobHealth]:
        """:class:`JobHealth` of every job the cluster knows, newest first.

        Args:
            since_ms: only jobs submitted at or after this epoch ms (JobManager clock).
            states: only jobs in one of these states (their health alone is read).

        Raises:
            JobError: the cluster is unreachable or a REST call failed.
        """
        jobs = sorted(self.list_jobs(), key=lambda j: j.get("start-time", 0), reverse=True)
        return [self.health(j) for j in jobs
                if (since_ms is None or j.get("start-time", 0) >= since_ms) and (states is None or j["state"] in states)]

    def failed_jobs(self, since_ms: int | None = None) -> list[JobHealth]:
        """The jobs that are FAILED, FAILING or RESTARTING (:data:`UNHEALTHY_STATES`), newest
        first, each with its root exception; ``[]`` when every job is fine.

        Args:
            since_ms: only jobs submitted at or after this epoch ms (e.g. the start of a demo
                run, so failed jobs of earlier runs on the same cluster do not count).

        Raises:
            JobError: the cluster is unreachable or a REST call failed.
        """
        return self.job_health(since_ms, UNHEALTHY_STATES)

    def _failure_text(self, job_id: str) -> str:
        """``JobHealth.describe()`` of a failed job, or ``"job ID FAILED"`` when even that
        cannot be read (the message of a JobError, never an exception itself)."""
        try:
            job = next((j for j in self.list_jobs() if j["jid"] == job_id), None)
            if job is not None:
                return self.health(job).describe()
        except JobError as exc:
            log.warning("could not read why job %s failed: %s", job_id, exc)
        return f"job {job_id} FAILED"

    def wait_state(self, job_id: str, states: set[str], timeout_s: float = 120.0) -> str:
        """Poll until the job reaches one of ``states``; returns the state.

        Raises:
            JobError: the job reached FAILED (when not wanted; the message names its root
                exception) or the timeout passed.
        """
        def state() -> str:
            now = self.job(job_id)["state"]
            if now == "FAILED" and "FAILED" not in states:
                raise JobError(f"{self._failure_text(job_id)}; see {self.s.log_dir}")
            return now

        try:
            return poll(state, timeout_s, interval_s=0.5, what=f"job {job_id} in {sorted(states)}",
                        until=lambda now: now in states, retry_on=())
        except PollTimeout as exc:
            raise JobError(f"job {job_id} still {exc.last or '?'} after {timeout_s:.0f} s (wanted {sorted(states)})") from exc

    def wait_running(self, job_id: str, timeout_s: float = 120.0) -> None:
        """Poll until the job is RUNNING and every task of it is RUNNING.

        Raises:
            JobError: the job reached FAILED (the message names its root exception), or the
                timeout passed.
        """
        def running() -> bool:
            info = self.job(job_id)
            if info["state"] == "FAILED":
                raise JobError(f"{self._failure_text(job_id)}; see {self.s.log_dir}")
            verts = info.get("vertices", [])
            return info["state"] == "RUNNING" and bool(verts) and all(v["status"] == "RUNNING" for v in verts)

        try:
            poll(running, timeout_s, interval_s=0.5, what=f"job {job_id} running", retry_on=())
        except PollTimeout as exc:
            raise JobError(f"job {job_id} not running after {timeout_s:.0f} s") from exc

    def _trigger(self, trigger_id: str, job_id: str, timeout_s: float) -> str:
        """Poll ``/jobs/:jid/savepoints/:trigger`` of a savepoint/stop request; return the location."""
        try:
            res = poll(lambda: self.api.savepoint_status(job_id, trigger_id), timeout_s, interval_s=0.5,
                       what=f"savepoint of {job_id}", until=lambda r: r["status"]["id"] == "COMPLETED", retry_on=())
        except PollTimeout as exc:
            raise JobError(f"savepoint of {job_id} did not complete in {timeout_s:.0f} s") from exc
        op = res.get("operation", {})
        if "failure-cause" in op:
            raise JobError(f"savepoint of {job_id} failed: {op['failure-cause'].get('stack-trace', '')[:800]}")
        return op["location"]

    def savepoint(self, job_id: str, target_dir: str | None = None, timeout_s: float = 300.0,
                  format_type: str | None = None) -> str:
        """Trigger a savepoint; the job keeps running. Returns its location (``file:`` URI).

        Args:
            job_id: the job's id.
            target_dir: directory (path or URI) the JobManager writes to; default: the
                cluster's ``execution.checkpointing.savepoint-dir``.
            timeout_s: how long to wait for completion (s).
            format_type: ``"CANONICAL"`` (default) or ``"NATIVE"``.

        Raises:
            JobError: bad ``format_type``, no savepoint directory configured or given, the
                savepoint failed (cause quoted) or did not complete within ``timeout_s``.
        """
        body: dict = {"cancel-job": False}
        if target_dir:
            body["target-directory"] = target_dir
        if format_type:
            body["formatType"] = _format_type(format_type)
        return self._trigger(self.api.trigger_savepoint(job_id, body), job_id, timeout_s)

    def stop_with_savepoint(self, job_id: str, drain: bool = False, target_dir: str | None = None,
                            timeout_s: float = 300.0, format_type: str | None = None) -> str:
        """Stop a job with a savepoint; returns the savepoint's location. The job ends FINISHED.

        ``drain=True`` first emits the maximum watermark, so every event-time window fires and
        every timer runs: use it at the end of a bounded replay, where no later event would
        ever advance the watermark. A drained job should not be resumed: its
        windows have fired already. Without ``drain`` the savepoint is meant for a resume
        (upgrade, rescale, move).

        Raises:
            JobError: as :meth:`savepoint`.
        """
        body: dict = {"drain": drain}
        if target_dir:
            body["targetDirectory"] = target_dir
        if format_type:
            body["formatType"] = _format_type(format_type)
        location = self._trigger(self.api.trigger_stop(job_id, body), job_id, timeout_s)
        # The exactly-once Kafka sinks commit their last transaction when the savepoint is
        # confirmed; only a FINISHED job guarantees read_committed readers see all of it.
        self.wait_state(job_id, {"FINISHED"}, timeout_s)
        return location

    def _operator_metric_ids(self, job_id: str, vertex_id: str) -> list[str]:
        """The vertex's metric ids without the subtask index (``"0.Source__readings[1].numRecordsOut"``
        -> ``"Source__readings[1].numRecordsOut"``), sorted, each once."""
        return sorted({m["id"].split(".", 1)[1] if m["id"].split(".", 1)[0].isdigit() else m["id"]
                       for m in self.api.vertex_metrics(job_id, vertex_id)})

    def _metric_sum(self, job_id: str, vertex_id: str, metric: str) -> int:
        """``metric`` summed over the vertex's subtasks (``subtasks/metrics?get=...&agg=sum``); 0
        when no subtask reports it."""
        res = self.api.subtask_metrics(job_id, vertex_id, metric, "sum")
        return int(float(res[0]["sum"])) if res else 0

    def source_records_read(self, job_id: str) -> int:
        """Records the job's source operator has emitted so far (sum over its subtasks).

        Reads the operator metric ``<source operator>.numRecordsOut`` of the vertex whose name
        starts with ``Source`` (``/jobs/:jid/vertices/:vid/subtasks/metrics?get=...&agg=sum``).

        Raises:
            JobError: the job has no source vertex.
        """
        info = self.job(job_id)
        src = next((v for v in info["vertices"] if v["name"].startswith("Source")), None)
        if src is None:
            raise JobError(f"job {job_id} has no source vertex")
        ids = self._operator_metric_ids(job_id, src["id"])
        wanted = [i for i in ids if i.startswith("Source") and i.endswith(".numRecordsOut")]
        if not wanted:
            wanted = [i for i in ids if i == "numRecordsOut"]
        return self._metric_sum(job_id, src["id"], wanted[0]) if wanted else 0

    def operator_metric_sum(self, job_id: str, vertex_contains: str, metric_suffix: str) -> int | None:
        """Sum over subtasks of an operator metric of the first vertex whose name contains
        ``vertex_contains`` (e.g. ``"GroupWindowAggregate"``, ``"numLateRecordsDropped"``);
        None when the job has no such vertex or metric (a finished job has no metrics)."""
        info = self.job(job_id)
        vert = next((v for v in info.get("vertices", []) if vertex_contains in v["name"]), None)
        if vert is None:
            return None
        wanted = [i for i in self._operator_metric_ids(job_id, vert["id"]) if i.endswith(metric_suffix)]
        if not wanted:
            return None
        return sum(self._metric_sum(job_id, vert["id"], metric) for metric in wanted)

    def input_watermarks(self, job_id: str) -> dict[str, int | None]:
        """The lowest ``currentInputWatermark`` (epoch ms) over the subtasks of each vertex that
        has an input (every vertex but the sources), by vertex name; ``None`` for a vertex
        that has received no watermark yet (Flink reports ``Long.MIN_VALUE`` then) or reports
        none. Read from ``/jobs/:jid/vertices/:vid/watermarks``."""
        out: dict[str, int | None] = {}
        for vert in self.job(job_id).get("vertices", []):
            if vert["name"].startswith("Source"):
                continue
            values = [int(float(m["value"])) for m in self.api.watermarks(job_id, vert["id"])
                      if m["id"].endswith("currentInputWatermark")]
            low = min(values) if values else None
            out[vert["name"]] = None if low is None or low == -(2**63) else low
        return out

    def drain_bounded_replay(self, job_id: str, bootstrap: str, topic: str, last_ts_ms: int,
                             horizon_ms: int = 31 * 24 * 3_600_000, timeout_s: float = 300.0) -> str:
        """End a bounded replay: fire every remaining window, commit the sinks, stop the job.

        Writes end-of-stream heartbeat records (:class:`iotflink.kafka_io.Heartbeat`: no
        sensor values) to every partition of ``topic`` with event time ``last_ts_ms +
        horizon_ms``, polls the job's vertices until each one's input watermark is past
        ``last_ts_ms + horizon_ms / 2`` (every window and its allowed lateness closed, and
        every window fired, before the stop), then stops the job with a drained savepoint and
        waits for FINISHED (the exactly-once sinks have committed).

        The heartbeats carry the watermark of every partition past the end of every window and
        its allowed lateness (``horizon_ms / 2``, 15.5 days, exceeds any window + lateness +
        out-of-orderness the project configures), so the last windows fire through ordinary
        watermark progress. The drain's own maximum watermark is not enough: a downstream
        ``StatusWatermarkValve`` ignores watermarks while the source is idle (every partition
        idle for ``idleness_ms`` after the last record), so it fired no window in our runs.
        Polling the watermark, not the records read, matters: the source emits the heartbeats'
        watermark only on its next periodic emit, after it has counted them as read.

        Returns:
            the savepoint's location.
        Raises:
            JobError: the watermark did not pass the heartbeats within ``timeout_s``, or the
                savepoint failed.
        """
        from iotflink.kafka_io import Heartbeat  # noqa: PLC0415

        target = last_ts_ms + horizon_ms // 2
        with Heartbeat(bootstrap, topic, last_ts_ms + horizon_ms):
            try:
                poll(lambda: self.input_watermarks(job_id), timeout_s, interval_s=0.5,
                     what=f"job {job_id}'s watermark past {target} ms", retry_on=(),
                     until=lambda marks: bool(marks) and all(m is not None and m >= target for m in marks.values()))
            except PollTimeout as exc:
                raise JobError(f"job {job_id}: the watermark did not pass the end-of-stream heartbeats "
                               f"({target} ms) within {timeout_s:.0f} s; input watermarks: {exc.last}") from exc
            return self.stop_with_savepoint(job_id, drain=True, timeout_s=timeout_s)

    # ------------------------------------------------------------------ checkpoints
    def checkpoints(self, job_id: str) -> dict:
        """``/jobs/:jid/checkpoints``: ``counts``, ``summary`` (state size, duration), ``latest``
        and ``history`` (each with ``checkpointed_size`` and ``state_size`` in bytes,
        ``end_to_end_duration`` in ms, ``status``)."""
        return self.api.checkpoints(job_id)

    # ------------------------------------------------------------------ submission
    def pyfiles_zip(self) -> Path:
        """Zip the project's Python packages for ``-pyfs`` (rebuilt on every submission).

        Written under a temporary name and renamed into place, so a ``flink run`` of another
        thread or process that is reading ``pyfiles.zip`` at that moment still reads a whole
        zip (its own, older one).
        """
        out = self.s.run_dir / "pyfiles.zip"
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".pyfiles-{os.getpid()}-{threading.get_ident()}.zip")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for pkg in PY_PACKAGES:
                for path in sorted((PROJECT_ROOT / pkg).rglob("*.py")):
                    zf.write(path, path.relative_to(PROJECT_ROOT).as_posix())
        os.replace(tmp, out)
        return out

    def submit(self, name: str, extra_args: list[str] | None = None, savepoint: str | None = None,
               allow_non_restored: bool = False, env_overrides: dict[str, str] | None = None,
               timeout_s: float = 300.0) -> str:
        """Submit ``jobs/<name>.py`` (or the package ``jobs/<name>/``, ``-pym jobs.<name>``)
        detached to the cluster; returns the job id.

        For ``sensor_windows`` the job's output topics are created first if missing (those of
        its ``IOTFLINK_WINDOW_INSTANCE``, so window jobs can run side by side).

        Args:
            name: module or package name under ``jobs/`` (e.g. ``"sensor_windows"``, ``"rules"``).
            extra_args: arguments passed to the job's ``main()``.
            savepoint: resume from this savepoint or retained checkpoint path.
            allow_non_restored: allow savepoint state that maps to no operator (``-n``).
            env_overrides: extra ``IOTFLINK_*`` variables for the client that builds the job
                graph (e.g. ``IOTFLINK_WINDOW_SIZE_MS``); the job's settings are read there.

        Raises:
            JobError: the module does not exist, or ``flink run`` failed (its output quoted).
            ConfigError: invalid window job settings (``sensor_windows``).
            StackError: Kafka refused to create an output topic.
        """
        script = PROJECT_ROOT / "jobs" / f"{name}.py"
        package = PROJECT_ROOT / "jobs" / name / "__main__.py"
        if not script.exists() and not package.exists():
            raise JobError(f"no job module {script} or package {package.parent}")
        if name == "sensor_windows":  # its output topics, an instance's own (IOTFLINK_WINDOW_INSTANCE)
            from iotflink.settings import WindowJobSettings  # noqa: PLC0415

            job_env = {**flink_env(self.s), **(env_overrides or {})}
            create_topics(self.s, names=WindowJobSettings.from_env(job_env).output_topics())
        entry = ["-py", str(script)] if script.exists() else ["-pym", f"jobs.{name}"]
        return self._run(name, entry, extra_args=extra_args, savepoint=savepoint,
                         allow_non_restored=allow_non_restored, env_overrides=env_overrides, timeout_s=timeout_s)

    def submit_script(self, script: Path, extra_args: list[str] | None = None, savepoint: str | None = None,
                      allow_non_restored: bool = False, env_overrides: dict[str, str] | None = None,
                      timeout_s: float = 300.0) -> str:
        """Submit the PyFlink script ``script`` detached (``flink run -d -py``); returns the job id.

        Arguments as :meth:`submit`; the project's packages ship with it (``-pyfs``).

        Raises:
            JobError: the script does not exist, or ``flink run`` failed (its output quoted).
        """
        if not script.is_file():
            raise JobError(f"no job script {script}")
        return self._run(script.stem, ["-py", str(script)], extra_args=extra_args, savepoint=savepoint,
                         allow_non_restored=allow_non_restored, env_overrides=env_overrides, timeout_s=timeout_s)

    def _run(self, name: str, entry: list[str], extra_args: list[str] | None, savepoint: str | None,
             allow_non_restored: bool, env_overrides: dict[str, str] | None, timeout_s: float) -> str:
        """``flink run -d`` of ``entry`` (``-py SCRIPT`` or ``-pym MODULE``) with the project's
        packages (``-pyfs``), once a client slot is free (:data:`CLIENT_SLOTS`); returns the job id.

        Raises:
            JobError: ``flink run`` failed (its output quoted).
        """
        argv = [str(flink_home() / "bin" / "flink"), "run", "-d"]
        if savepoint:
            argv += ["-s", savepoint]
            if allow_non_restored:
                argv.append("-n")
        argv += [*entry, "-pyfs", str(self.pyfiles_zip())]
        argv += list(extra_args or [])
        env = flink_env(self.s)
        env.update(env_overrides or {})
        with CLIENT_SLOTS:  # one client per core at a time (see CLIENT_SLOTS)
            log.info("submitting: %s", " ".join(argv))
            proc = subprocess.run(argv, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,  # noqa: S603
                                  timeout=timeout_s, check=False)
        out = proc.stdout + proc.stderr
        match = _JOB_ID.search(out)
        if proc.returncode != 0 or not match:
            raise JobError(f"flink run {name} failed (exit {proc.returncode}):\n{out[-3000:]}")
        return match.group(1)


def _format_type(value: str) -> str:
    """Normalise a savepoint format name.

    Raises:
        JobError: not one of :data:`SAVEPOINT_FORMATS` (any case).
    """
    up = value.upper()
    if up not in SAVEPOINT_FORMATS:
        raise JobError(f"savepoint format {value!r}: expected one of {', '.join(SAVEPOINT_FORMATS)}")
    return up

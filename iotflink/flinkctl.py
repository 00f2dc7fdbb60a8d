"""Control jobs on the Flink standalone cluster: submit with ``flink run -py``, and the REST API.

``FlinkCtl(settings).submit("sensor_windows")`` runs::

    $FLINK_HOME/bin/flink run -d -py jobs/sensor_windows.py -pyfs .run/pyfiles.zip [args...]

with ``FLINK_CONF_DIR`` pointing at the stack's rendered configuration, so the client talks to
the cluster's REST endpoint. ``pyfiles.zip`` holds the project's Python packages (``jobs``,
``udfs``, ``iotflink``, ``bridge``) and ships them to the Python workers of every TaskManager,
also on other hosts. Everything else goes through the REST API (``/jobs/overview``,
``/jobs/:jid``, ``/jobs/:jid/stop``, ``/jobs/:jid/savepoints``).

Savepoints (issue 5): :meth:`FlinkCtl.savepoint` (the job keeps running),
:meth:`FlinkCtl.stop_with_savepoint` (the job ends FINISHED) and
``submit(name, savepoint=PATH)`` (``flink run -s PATH``) to resume; every job gives its
operators stable uids (``table.exec.uid.generation = ALWAYS``, ``jobs/common.py``), so the
state maps back (PITFALLS 7). Jobs are named by id or by name (:meth:`FlinkCtl.resolve_job`).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from iotflink.errors import JobError
from iotflink.settings import PROJECT_ROOT, StackSettings
from iotflink.stack import Stack, flink_home

log = logging.getLogger(__name__)

#: Packages shipped to the cluster's Python workers.
PY_PACKAGES = ("jobs", "udfs", "iotflink", "bridge")

_JOB_ID = re.compile(r"JobID\s+([0-9a-f]{32})")
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")

#: Job states in which a job can take a savepoint or be stopped.
LIVE_STATES = ("RUNNING",)

#: Savepoint formats Flink accepts (``formatType``): canonical (portable across state
#: backends) and native (the backend's own format: faster to take and restore).
SAVEPOINT_FORMATS = ("CANONICAL", "NATIVE")


class FlinkCtl:
    """Submit and control jobs on the cluster described by ``settings``."""

    def __init__(self, settings: StackSettings) -> None:
        self.s = settings
        self.stack = Stack(settings)
        self.base = settings.flink_rest_url

    # ------------------------------------------------------------------ REST
    def rest(self, path: str, method: str = "GET", body: dict | None = None, timeout: float = 10.0) -> dict:
        """Call the Flink REST API; returns the decoded JSON answer.

        Raises:
            JobError: the cluster is unreachable or answered with an error status.
        """
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - cluster URL
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise JobError(f"Flink REST {method} {path}: HTTP {exc.code}: "
                           f"{exc.read().decode(errors='replace')[:500]}") from exc
        except OSError as exc:
            raise JobError(f"Flink REST API at {self.base} unreachable: {exc}") from exc
        return json.loads(raw) if raw else {}

    def list_jobs(self) -> list[dict]:
        """Jobs on the cluster: dicts with ``jid``, ``name``, ``state``, ``start-time`` (ms)."""
        return self.rest("/jobs/overview").get("jobs", [])

    def job(self, job_id: str) -> dict:
        """The REST API's ``/jobs/:jid`` (state, vertices, timestamps)."""
        return self.rest(f"/jobs/{job_id}")

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
        self.rest(f"/jobs/{job_id}", method="PATCH")

    def wait_state(self, job_id: str, states: set[str], timeout_s: float = 120.0) -> str:
        """Poll until the job reaches one of ``states``; returns the state.

        Raises:
            JobError: the job reached FAILED (when not wanted) or the timeout passed.
        """
        deadline = time.monotonic() + timeout_s
        state = "?"
        while time.monotonic() < deadline:
            state = self.job(job_id)["state"]
            if state in states:
                return state
            if state == "FAILED":
                raise JobError(f"job {job_id} FAILED; see {self.stack.log_dir}")
            time.sleep(0.5)
        raise JobError(f"job {job_id} still {state} after {timeout_s:.0f} s (wanted {sorted(states)})")

    def wait_running(self, job_id: str, timeout_s: float = 120.0) -> None:
        """Poll until the job is RUNNING and every task of it is RUNNING."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            info = self.job(job_id)
            if info["state"] == "FAILED":
                raise JobError(f"job {job_id} FAILED; see {self.stack.log_dir}")
            verts = info.get("vertices", [])
            if info["state"] == "RUNNING" and verts and all(v["status"] == "RUNNING" for v in verts):
                return
            time.sleep(0.5)
        raise JobError(f"job {job_id} not running after {timeout_s:.0f} s")

    def _trigger(self, path: str, body: dict, job_id: str, timeout_s: float) -> str:
        """POST a savepoint/stop request, poll ``/jobs/:jid/savepoints/:trigger``; return the location."""
        trig = self.rest(path, method="POST", body=body)["request-id"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            res = self.rest(f"/jobs/{job_id}/savepoints/{trig}")
            if res["status"]["id"] == "COMPLETED":
                op = res.get("operation", {})
                if "failure-cause" in op:
                    raise JobError(f"savepoint of {job_id} failed: {op['failure-cause'].get('stack-trace', '')[:800]}")
                return op["location"]
            time.sleep(0.5)
        raise JobError(f"savepoint of {job_id} did not complete in {timeout_s:.0f} s")

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
        return self._trigger(f"/jobs/{job_id}/savepoints", body, job_id, timeout_s)

    def stop_with_savepoint(self, job_id: str, drain: bool = False, target_dir: str | None = None,
                            timeout_s: float = 300.0, format_type: str | None = None) -> str:
        """Stop a job with a savepoint; returns the savepoint's location. The job ends FINISHED.

        ``drain=True`` first emits the maximum watermark, so every event-time window fires and
        every timer runs: use it at the end of a bounded replay, where no later event would
        ever advance the watermark (PITFALLS 3). A drained job should not be resumed: its
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
        location = self._trigger(f"/jobs/{job_id}/stop", body, job_id, timeout_s)
        # The exactly-once Kafka sinks commit their last transaction when the savepoint is
        # confirmed; only a FINISHED job guarantees read_committed readers see all of it.
        self.wait_state(job_id, {"FINISHED"}, timeout_s)
        return location

    def _operator_metric_ids(self, job_id: str, vertex_id: str) -> list[str]:
        """The vertex's metric ids without the subtask index (``"0.Source__readings[1].numRecordsOut"``
        -> ``"Source__readings[1].numRecordsOut"``), sorted, each once."""
        return sorted({m["id"].split(".", 1)[1] if m["id"].split(".", 1)[0].isdigit() else m["id"]
                       for m in self.rest(f"/jobs/{job_id}/vertices/{vertex_id}/metrics")})

    def _metric_sum(self, job_id: str, vertex_id: str, metric: str) -> int:
        """``metric`` summed over the vertex's subtasks (``subtasks/metrics?get=...&agg=sum``); 0
        when no subtask reports it."""
        res = self.rest(f"/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics?get={metric}&agg=sum")
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
            values = [int(float(m["value"])) for m in self.rest(f"/jobs/{job_id}/vertices/{vert['id']}/watermarks")
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
            deadline = time.monotonic() + timeout_s
            while True:
                marks = self.input_watermarks(job_id)
                if marks and all(m is not None and m >= target for m in marks.values()):
                    break
                if time.monotonic() > deadline:
                    raise JobError(f"job {job_id}: the watermark did not pass the end-of-stream heartbeats "
                                   f"({target} ms) within {timeout_s:.0f} s; input watermarks: {marks}")
                time.sleep(0.5)  # polling interval of a REST condition
            return self.stop_with_savepoint(job_id, drain=True, timeout_s=timeout_s)

    # ------------------------------------------------------------------ checkpoints
    def checkpoints(self, job_id: str) -> dict:
        """``/jobs/:jid/checkpoints``: ``counts``, ``summary`` (state size, duration), ``latest``
        and ``history`` (each with ``checkpointed_size`` and ``state_size`` in bytes,
        ``end_to_end_duration`` in ms, ``status``)."""
        return self.rest(f"/jobs/{job_id}/checkpoints")

    # ------------------------------------------------------------------ submission
    def pyfiles_zip(self) -> Path:
        """Zip the project's Python packages for ``-pyfs`` (rebuilt on every submission)."""
        out = self.s.run_dir / "pyfiles.zip"
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for pkg in PY_PACKAGES:
                for path in sorted((PROJECT_ROOT / pkg).rglob("*.py")):
                    zf.write(path, path.relative_to(PROJECT_ROOT).as_posix())
        return out

    def submit(self, name: str, extra_args: list[str] | None = None, savepoint: str | None = None,
               allow_non_restored: bool = False, env_overrides: dict[str, str] | None = None,
               timeout_s: float = 300.0) -> str:
        """Submit ``jobs/<name>.py`` detached to the cluster; returns the job id.

        Args:
            name: module name under ``jobs/`` (e.g. ``"sensor_windows"``).
            extra_args: arguments passed to the job's ``main()``.
            savepoint: resume from this savepoint or retained checkpoint path.
            allow_non_restored: allow savepoint state that maps to no operator (``-n``).
            env_overrides: extra ``IOTFLINK_*`` variables for the client that builds the job
                graph (e.g. ``IOTFLINK_WINDOW_SIZE_MS``); the job's settings are read there.

        Raises:
            JobError: the module does not exist, or ``flink run`` failed (its output quoted).
        """
        script = PROJECT_ROOT / "jobs" / f"{name}.py"
        if not script.exists():
            raise JobError(f"no job module {script}")
        argv = [str(flink_home() / "bin" / "flink"), "run", "-d"]
        if savepoint:
            argv += ["-s", savepoint]
            if allow_non_restored:
                argv.append("-n")
        argv += ["-py", str(script), "-pyfs", str(self.pyfiles_zip())]
        argv += list(extra_args or [])
        env = self.stack.flink_env()
        env.update(env_overrides or {})
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

"""A small client of the Flink REST API (the JobManager's HTTP endpoint, also the web UI).

``FlinkRest("http://127.0.0.1:8081")`` knows only the base URL: it works against any Flink
cluster (the local stack, a compose deployment, a MiniCluster given a ``rest.port``), with no
dependency on :class:`iotflink.runtime.stack.Stack`. Every call of the project to the REST
API goes through :meth:`FlinkRest.call`; the methods below name the endpoints the project
reads. Endpoints and fields: Flink documentation, "REST API"
(https://nightlies.apache.org/flink/flink-docs-release-2.0/docs/ops/rest_api/).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from iotflink.errors import JobError


class FlinkRestError(JobError):
    """A Flink REST call failed: the cluster did not answer (``status`` None) or answered with an
    HTTP error status (``status``: 404, 500, ...; the message quotes the answer's body)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class FlinkRest:
    """Client of the Flink REST API at ``base_url`` (e.g. ``http://127.0.0.1:8081``).

    Args:
        base_url: scheme, host and port of the JobManager's REST endpoint (no trailing ``/``
            needed).
        timeout_s: default socket time-out of a call (s).
    """

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"FlinkRest({self.base!r})"

    def call(self, path: str, method: str = "GET", body: dict | None = None, timeout: float | None = None) -> Any:
        """Call ``method path`` (``path`` starts with ``/``, may hold a query); returns the decoded
        JSON answer (``{}`` for an empty one).

        Raises:
            FlinkRestError: the cluster is unreachable (``status`` None) or answered with an
                error status (``status`` set, the body's first 500 characters quoted).
        """
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method,  # noqa: S310 - an http:// URL from the settings
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s if timeout is None else timeout) as resp:  # noqa: S310 - cluster URL
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise FlinkRestError(f"Flink REST {method} {path}: HTTP {exc.code}: "
                                 f"{exc.read().decode(errors='replace')[:500]}", status=exc.code) from exc
        except OSError as exc:
            raise FlinkRestError(f"Flink REST API at {self.base} unreachable: {exc}") from exc
        return json.loads(raw) if raw else {}

    # ------------------------------------------------------------------ cluster
    def overview(self) -> dict:
        """``/overview``: ``taskmanagers``, ``slots-total``, ``slots-available``,
        ``jobs-running``, ``flink-version``, ..."""
        return self.call("/overview")

    def taskmanagers(self) -> list[dict]:
        """``/taskmanagers``: one dict per registered TaskManager (``id``, ``slotsNumber``,
        ``freeSlots``, ``timeSinceLastHeartbeat`` ms, ...)."""
        return self.call("/taskmanagers").get("taskmanagers", [])

    # ------------------------------------------------------------------ jobs
    def jobs(self) -> list[dict]:
        """``/jobs/overview``: dicts with ``jid``, ``name``, ``state``, ``start-time`` (epoch ms)."""
        return self.call("/jobs/overview").get("jobs", [])

    def job(self, job_id: str) -> dict:
        """``/jobs/:jid``: ``state``, ``timestamps`` (state -> epoch ms), ``vertices`` (each
        ``id``, ``name``, ``status``, ``parallelism``), ``plan``."""
        return self.call(f"/jobs/{job_id}")

    def vertex(self, job_id: str, vertex_id: str) -> dict:
        """``/jobs/:jid/vertices/:vid``: ``subtasks`` (each ``subtask``, ``status``,
        ``taskmanager-id``, ``endpoint``)."""
        return self.call(f"/jobs/{job_id}/vertices/{vertex_id}")

    def cancel(self, job_id: str) -> None:
        """``PATCH /jobs/:jid``: cancel the job (no savepoint)."""
        self.call(f"/jobs/{job_id}", method="PATCH")

    def exceptions(self, job_id: str) -> dict:
        """``/jobs/:jid/exceptions``'s ``exceptionHistory``: ``entries`` (newest first; each with
        ``exceptionName``, ``stacktrace``, ``timestamp`` epoch ms, ``taskName``) and
        ``truncated``; an empty history when the JobManager gives none."""
        return self.call(f"/jobs/{job_id}/exceptions").get("exceptionHistory") or {"entries": [], "truncated": False}

    def checkpoints(self, job_id: str) -> dict:
        """``/jobs/:jid/checkpoints``: ``counts``, ``summary``, ``latest``, ``history`` (sizes in
        bytes, durations in ms)."""
        return self.call(f"/jobs/{job_id}/checkpoints")

    def job_metrics(self, job_id: str, names: str) -> list[dict]:
        """``/jobs/:jid/metrics?get=NAMES`` (comma-separated): ``[{"id", "value"}]``; ``[]``
        for a metric the JobManager does not report (yet)."""
        return self.call(f"/jobs/{job_id}/metrics?get={names}") or []

    def vertex_metrics(self, job_id: str, vertex_id: str, query: str = "") -> list[dict]:
        """``/jobs/:jid/vertices/:vid/metrics[?QUERY]``: the vertex's metric ids
        (``[{"id"}]``), or with ``get=...`` their values (``[{"id", "value"}]``)."""
        return self.call(f"/jobs/{job_id}/vertices/{vertex_id}/metrics" + (f"?{query}" if query else "")) or []

    def subtask_metrics(self, job_id: str, vertex_id: str, names: str, agg: str) -> list[dict]:
        """``/jobs/:jid/vertices/:vid/subtasks/metrics?get=NAMES&agg=AGG``: each metric
        aggregated over the vertex's subtasks (``[{"id", "min", "max", "sum", "avg"}]`` as
        ``agg`` asks)."""
        return self.call(f"/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics?get={names}&agg={agg}") or []

    def watermarks(self, job_id: str, vertex_id: str) -> list[dict]:
        """``/jobs/:jid/vertices/:vid/watermarks``: ``[{"id": "<subtask>.currentInputWatermark",
        "value"}]`` (epoch ms as text; ``Long.MIN_VALUE`` before the first watermark)."""
        return self.call(f"/jobs/{job_id}/vertices/{vertex_id}/watermarks") or []

    def backpressure(self, job_id: str, vertex_id: str) -> dict:
        """``/jobs/:jid/vertices/:vid/backpressure``: ``status`` (``"ok"`` once sampled),
        ``backpressureLevel``, ``subtasks`` (each ``ratio``, ``idleRatio``, ``busyRatio``)."""
        return self.call(f"/jobs/{job_id}/vertices/{vertex_id}/backpressure")

    # ------------------------------------------------------------------ savepoints
    def trigger_savepoint(self, job_id: str, body: dict) -> str:
        """``POST /jobs/:jid/savepoints``; returns the trigger id (``request-id``)."""
        return self.call(f"/jobs/{job_id}/savepoints", method="POST", body=body)["request-id"]

    def trigger_stop(self, job_id: str, body: dict) -> str:
        """``POST /jobs/:jid/stop`` (stop with a savepoint); returns the trigger id."""
        return self.call(f"/jobs/{job_id}/stop", method="POST", body=body)["request-id"]

    def savepoint_status(self, job_id: str, trigger_id: str) -> dict:
        """``/jobs/:jid/savepoints/:triggerid``: ``status.id`` (``IN_PROGRESS``, ``COMPLETED``)
        and ``operation`` (``location``, or ``failure-cause``)."""
        return self.call(f"/jobs/{job_id}/savepoints/{trigger_id}")

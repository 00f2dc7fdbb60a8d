"""Backpressure of running Flink jobs, read from the REST API, with the Kafka lag of their sources.

``iotflink backpressure [JOB] [--json]`` prints, for each job vertex (a chain of
operators that runs as one task):

- ``level`` / ``ratio``: ``/jobs/:jid/vertices/:vid/backpressure``; ``ratio`` is the largest
  share of time a subtask was backpressured (0.8 = 80 %), and Flink's level is
  ``OK`` (ratio <= 0.10), ``LOW`` (<= 0.50) or ``HIGH`` (> 0.50). Since Flink 1.13 the value
  is derived from the ``backPressuredTimeMsPerSecond`` metric, not from thread sampling, but
  the endpoint still answers ``{"status": "deprecated"}`` with no data until the
  JobManager's metric store holds a sample for the vertex: :func:`vertex_backpressure`
  polls until it has one.
- ``busy_ms_per_s`` / ``idle_ms_per_s`` / ``backpressured_ms_per_s``: the task metrics
  ``busyTimeMsPerSecond``, ``idleTimeMsPerSecond`` and ``backPressuredTimeMsPerSecond``,
  each the **maximum over subtasks** (ms per second, 0..1000; the busiest subtask is the one
  that limits the job). ``busy`` is ``None`` while Flink reports NaN (a source task that
  has not emitted yet).
- ``records_in_per_s`` / ``records_out_per_s``: ``numRecordsInPerSecond`` /
  ``numRecordsOutPerSecond`` of the task, **summed over subtasks** (records/s; Flink's meters
  average over the last 60 s, so they trail a change by up to a minute).

and, for each Kafka source (``KafkaSourceReader`` metrics), the lag per partition:

- ``live_lag = end_offset - (current_offset + 1)``: ``current_offset`` is the offset of the
  last record the source emitted (metric ``...topic.<t>.partition.<p>.currentOffset``) and
  ``end_offset`` the partition's end (``read_committed`` last stable offset, read from the
  broker now). This is the live figure.
- ``committed_lag = end_offset - committed_offset``: ``committedOffset`` is the next offset
  to read that Flink committed to the consumer group. The Kafka source commits only when a
  checkpoint completes, so this lags the live figure by up to one checkpoint interval (and
  stops moving while checkpoints stall, e.g. under backpressure without unaligned
  checkpoints). ``--group`` adds the group's offsets as the broker reports them
  (:func:`iotflink.kafka_io.consumer_lag`), which is the same quantity seen from Kafka.

The REST metrics come from the JobManager's metric store, refreshed on a metrics request
when its last fetch is older than ``metrics.fetcher.update-interval`` (the cluster's
``flink-conf/config.yaml``: 1 s; Flink's default 10 s): every figure here can be that old, plus
the time since the previous request. On a topic written transactionally, each commit marker takes an offset, so a fully
caught-up source shows a small positive lag there; ``sensor-readings`` is written by the
bridge without transactions.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from dataclasses import asdict, dataclass, field
from typing import Any

from iotflink.errors import JobError
from iotflink.poll import PollTimeout, poll
from iotflink.runtime.flink_rest import FlinkRest

#: Task metrics read per vertex; the first three are aggregated with ``max``, the others ``sum``.
TIME_METRICS = ("busyTimeMsPerSecond", "idleTimeMsPerSecond", "backPressuredTimeMsPerSecond")
RATE_METRICS = ("numRecordsInPerSecond", "numRecordsOutPerSecond")

#: ``<subtask>.<operator>.KafkaSourceReader.topic.<topic>.partition.<p>.<currentOffset|committedOffset>``
_OFFSET_METRIC = re.compile(
    r"^(?:(?P<subtask>\d+)\.)?(?P<operator>.+?)\.KafkaSourceReader\.topic\.(?P<topic>.+)"
    r"\.partition\.(?P<partition>\d+)\.(?P<kind>currentOffset|committedOffset)$")

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")

#: Job states shown by default (``backpressure`` without JOB).
RUNNING_STATES = ("RUNNING",)


@dataclass
class VertexReport:
    """Backpressure and throughput of one job vertex.

    Fields:
        id: vertex id (32 hex digits).
        name: vertex name (the chained operators, e.g. ``"Source: readings[1]"``).
        parallelism: number of subtasks.
        level: ``"OK"``, ``"LOW"``, ``"HIGH"``, or ``"?"`` if the REST API had no sample.
        ratio: largest backpressured share over subtasks (0..1), or None.
        busy_ms_per_s / idle_ms_per_s / backpressured_ms_per_s: max over subtasks (ms/s), or None.
        records_in_per_s / records_out_per_s: sum over subtasks (records/s), or None.
        inputs: ids of the vertices that feed this one (from the job plan).
        subtask_ratios: backpressured share of each subtask, by subtask index.
    """

    id: str
    name: str
    parallelism: int
    level: str = "?"
    ratio: float | None = None
    busy_ms_per_s: float | None = None
    idle_ms_per_s: float | None = None
    backpressured_ms_per_s: float | None = None
    records_in_per_s: float | None = None
    records_out_per_s: float | None = None
    inputs: list[str] = field(default_factory=list)
    subtask_ratios: list[float | None] = field(default_factory=list)


@dataclass
class PartitionLag:
    """Kafka lag of one source partition (offsets are Kafka offsets, lags are records).

    Fields:
        topic / partition: the Kafka partition.
        end_offset: the partition's end (last stable offset), or None if Kafka was unreachable.
        current_offset: offset of the last record the source emitted (metric), or None.
        live_lag: ``end_offset - (current_offset + 1)`` (never below 0), or None.
        committed_offset: next offset committed by Flink at the last completed checkpoint
            (metric ``committedOffset``), or None before the first commit.
        committed_lag: ``end_offset - committed_offset`` (never below 0), or None.
        group_committed_offset / group_lag: the same, as the broker reports the consumer group
            (only with ``--group``), or None.
    """

    topic: str
    partition: int
    end_offset: int | None = None
    current_offset: int | None = None
    live_lag: int | None = None
    committed_offset: int | None = None
    committed_lag: int | None = None
    group_committed_offset: int | None = None
    group_lag: int | None = None


@dataclass
class JobReport:
    """One job's vertices (in plan order, sources first) and its Kafka sources' lag.

    Fields:
        job_id / name / state: from ``/jobs/:jid``.
        vertices: one :class:`VertexReport` per vertex.
        source_lag: one :class:`PartitionLag` per (topic, partition) its Kafka sources read.
        errors: what could not be read (e.g. the broker was unreachable); empty when complete.
    """

    job_id: str
    name: str
    state: str
    vertices: list[VertexReport] = field(default_factory=list)
    source_lag: list[PartitionLag] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def live_lag_total(self) -> int | None:
        """Sum of ``live_lag`` over partitions (records), or None if any is unknown."""
        lags = [p.live_lag for p in self.source_lag]
        return None if not lags or any(x is None for x in lags) else sum(lags)  # type: ignore[misc]

    def vertex(self, needle: str) -> VertexReport:
        """The first vertex whose name contains ``needle``.

        Raises:
            KeyError: no vertex name contains it.
        """
        for v in self.vertices:
            if needle in v.name:
                return v
        raise KeyError(f"no vertex named like {needle!r} in job {self.job_id}")

    def upstream_of(self, vertex_id: str) -> list[VertexReport]:
        """Every vertex from which records flow into ``vertex_id`` (transitively), nearest first."""
        by_id = {v.id: v for v in self.vertices}
        out: list[VertexReport] = []
        todo = list(by_id[vertex_id].inputs)
        while todo:
            vid = todo.pop(0)
            if vid in by_id and by_id[vid] not in out:
                out.append(by_id[vid])
                todo.extend(by_id[vid].inputs)
        return out

    def to_dict(self) -> dict:
        """JSON-ready dict: the fields above plus ``live_lag_total``."""
        d = asdict(self)
        d["live_lag_total"] = self.live_lag_total
        return d


# --------------------------------------------------------------------------- REST readers


def _num(value: Any) -> float | None:
    """A metric value as float; None for missing, "NaN" or non-finite."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def resolve_jobs(ctl, job: str | None = None) -> list[dict]:
    """The jobs to report on, as ``/jobs/overview`` entries (``jid``, ``name``, ``state``).

    Args:
        ctl: a :class:`iotflink.runtime.flinkctl.FlinkCtl` (only ``list_jobs`` is used).
        job: a job id (32 hex digits), a job name, or None for every RUNNING job.

    Raises:
        JobError: no job has that id or name; or ``job`` is a name and no job of that name is
            running.
    """
    jobs = ctl.list_jobs()
    if job is None:
        return [j for j in jobs if j["state"] in RUNNING_STATES]
    if _JOB_ID.match(job):
        hits = [j for j in jobs if j["jid"] == job]
        if not hits:
            raise JobError(f"no job with id {job} on the cluster")
        return hits
    named = [j for j in jobs if j["name"] == job]
    running = [j for j in named if j["state"] in RUNNING_STATES]
    if running:
        return running
    if named:
        raise JobError(f"no RUNNING job named {job!r} (states: {sorted({j['state'] for j in named})})")
    raise JobError(f"no job named {job!r} on the cluster (names: {sorted({j['name'] for j in jobs})})")


def vertex_backpressure(api: FlinkRest, job_id: str, vertex_id: str, timeout_s: float = 30.0,
                        interval_s: float = 0.5) -> dict:
    """``/jobs/:jid/vertices/:vid/backpressure`` once it holds a sample.

    Polls while the answer's ``status`` is not ``"ok"`` (``"deprecated"``: the metric store
    has no sample for the vertex yet, e.g. right after the job started).

    Returns:
        the endpoint's JSON: ``{"status": "ok", "backpressureLevel": "ok"|"low"|"high",
        "end-timestamp": ms, "subtasks": [{"subtask", "backpressureLevel", "ratio",
        "idleRatio", "busyRatio"}, ...]}``; or the last answer (status not ``"ok"``) if none
        came within ``timeout_s``.
    """
    try:
        return poll(lambda: api.backpressure(job_id, vertex_id), timeout_s, interval_s=interval_s,
                    what=f"a backpressure sample of vertex {vertex_id}", until=lambda res: res.get("status") == "ok",
                    retry_on=())
    except PollTimeout as exc:
        return exc.last


def vertex_task_metrics(api: FlinkRest, job_id: str, vertex_id: str) -> dict[str, float | None]:
    """Task metrics of one vertex aggregated over subtasks.

    Returns:
        ``{metric: value}`` for :data:`TIME_METRICS` (max over subtasks, ms/s) and
        :data:`RATE_METRICS` (sum over subtasks, records/s); None where Flink has no finite
        value yet.
    """
    names = ",".join(TIME_METRICS + RATE_METRICS)
    res = api.subtask_metrics(job_id, vertex_id, names, "max,sum")
    out: dict[str, float | None] = {m: None for m in TIME_METRICS + RATE_METRICS}
    for item in res or []:
        mid = item.get("id")
        if mid in TIME_METRICS:
            out[mid] = _num(item.get("max"))
        elif mid in RATE_METRICS:
            out[mid] = _num(item.get("sum"))
    return out


def source_offsets(api: FlinkRest, job_id: str, vertex_id: str) -> dict[tuple[str, int], dict[str, int]]:
    """Kafka offsets a vertex's Kafka source reported, per (topic, partition).

    Reads every ``KafkaSourceReader.topic.<t>.partition.<p>.currentOffset`` /
    ``committedOffset`` metric of the vertex's subtasks (a partition is read by one subtask).

    Returns:
        ``{(topic, partition): {"current": last emitted offset, "committed": next offset
        committed}}``, each key present only when Flink reported a value >= 0; empty for a
        vertex without a Kafka source.
    """
    ids = [m["id"] for m in api.vertex_metrics(job_id, vertex_id)]
    wanted = [i for i in ids if _OFFSET_METRIC.match(i)]
    out: dict[tuple[str, int], dict[str, int]] = {}
    for chunk_start in range(0, len(wanted), 20):  # keep the URL short
        chunk = wanted[chunk_start:chunk_start + 20]
        query = urllib.parse.quote(",".join(chunk), safe=",")
        for item in api.vertex_metrics(job_id, vertex_id, f"get={query}"):
            m = _OFFSET_METRIC.match(item["id"])
            val = _num(item.get("value"))
            if not m or val is None or val < 0:
                continue
            key = (m["topic"], int(m["partition"]))
            out.setdefault(key, {})["current" if m["kind"] == "currentOffset" else "committed"] = int(val)
    return out


def compute_lag(offsets: dict[tuple[str, int], dict[str, int]],
                end_offsets: dict[str, dict[int, int]],
                group_offsets: dict[str, dict[int, int | None]] | None = None) -> list[PartitionLag]:
    """Combine source offsets with the topics' end offsets into :class:`PartitionLag` rows.

    Args:
        offsets: from :func:`source_offsets` (``current`` = last emitted offset,
            ``committed`` = next offset to read).
        end_offsets: ``{topic: {partition: end offset}}`` from the broker; a partition the
            source has not reported yet (it emitted nothing from it) counts from offset 0.
        group_offsets: optional ``{topic: {partition: committed offset or None}}`` of the
            consumer group, as the broker reports it.

    Returns:
        rows sorted by (topic, partition); lags are clamped at 0.
    """
    rows = []
    keys = set(offsets) | {(t, p) for t, parts in end_offsets.items() for p in parts}
    for topic, part in sorted(keys):
        cur = offsets.get((topic, part), {})
        end = end_offsets.get(topic, {}).get(part)
        row = PartitionLag(topic, part, end_offset=end, current_offset=cur.get("current"),
                           committed_offset=cur.get("committed"))
        if end is not None:
            nxt = row.current_offset + 1 if row.current_offset is not None else 0
            row.live_lag = max(0, end - nxt)
            if row.committed_offset is not None:
                row.committed_lag = max(0, end - row.committed_offset)
        if group_offsets is not None:
            g = group_offsets.get(topic, {}).get(part)
            row.group_committed_offset = g
            if g is not None and end is not None:
                row.group_lag = max(0, end - g)
        rows.append(row)
    return rows


def job_report(ctl, job_id: str, bootstrap: str | None, group: str | None = None,
               bp_timeout_s: float = 30.0) -> JobReport:
    """Read one job's backpressure, task metrics and source lag.

    Args:
        ctl: a :class:`iotflink.runtime.flinkctl.FlinkCtl` (its ``api`` and ``job`` are used).
        job_id: the job's id.
        bootstrap: Kafka ``host:port`` for the topics' end offsets (None: no lag).
        group: consumer group whose broker-side committed offsets are added (optional).
        bp_timeout_s: how long to poll each vertex's backpressure endpoint for a sample.

    Returns:
        a :class:`JobReport`; what could not be read is listed in ``errors``.

    Raises:
        JobError: the REST API is unreachable or does not know the job.
    """
    info = ctl.job(job_id)
    inputs = {n["id"]: [i["id"] for i in n.get("inputs", [])] for n in info.get("plan", {}).get("nodes", [])}
    report = JobReport(job_id, info.get("name", ""), info.get("state", "?"))
    offsets: dict[tuple[str, int], dict[str, int]] = {}
    for v in info.get("vertices", []):
        vr = VertexReport(v["id"], v["name"], int(v.get("parallelism", 0)), inputs=inputs.get(v["id"], []))
        bp = vertex_backpressure(ctl.api, job_id, v["id"], timeout_s=bp_timeout_s)
        if bp.get("status") == "ok":
            vr.level = str(bp.get("backpressureLevel") or bp.get("backpressure-level") or "?").upper()
            vr.subtask_ratios = [_num(s.get("ratio")) for s in sorted(bp.get("subtasks", []),
                                                                        key=lambda s: s.get("subtask", 0))]
            known = [r for r in vr.subtask_ratios if r is not None]
            vr.ratio = max(known) if known else None
        else:
            report.errors.append(f"vertex {v['name']!r}: no backpressure sample "
                                 f"(status {bp.get('status')!r}) after {bp_timeout_s:.0f} s")
        m = vertex_task_metrics(ctl.api, job_id, v["id"])
        vr.busy_ms_per_s = m["busyTimeMsPerSecond"]
        vr.idle_ms_per_s = m["idleTimeMsPerSecond"]
        vr.backpressured_ms_per_s = m["backPressuredTimeMsPerSecond"]
        vr.records_in_per_s = m["numRecordsInPerSecond"]
        vr.records_out_per_s = m["numRecordsOutPerSecond"]
        report.vertices.append(vr)
        if not vr.inputs:  # a source vertex
            offsets.update(source_offsets(ctl.api, job_id, v["id"]))
    if offsets and bootstrap:
        topics = sorted({t for t, _ in offsets})
        ends: dict[str, dict[int, int]] = {}
        group_offs: dict[str, dict[int, int | None]] | None = None
        try:
            from iotflink import kafka_io  # noqa: PLC0415 - kafka-python only when needed

            for topic in topics:
                ends[topic] = kafka_io.end_offsets(bootstrap, topic)
            if group:
                group_offs = {t: {p: r["committed"] for p, r in kafka_io.consumer_lag(bootstrap, group, t).items()}
                              for t in topics}
        except Exception as exc:  # noqa: BLE001 - report what is known, say what is not
            report.errors.append(f"Kafka at {bootstrap}: {exc}")
        report.source_lag = compute_lag(offsets, ends, group_offs)
    elif offsets:
        report.source_lag = compute_lag(offsets, {})
    return report


def reports(ctl, job: str | None, bootstrap: str | None, group: str | None = None,
            bp_timeout_s: float = 30.0) -> list[JobReport]:
    """:func:`job_report` for each job :func:`resolve_jobs` selects (``job``: id, name or None)."""
    return [job_report(ctl, j["jid"], bootstrap, group, bp_timeout_s) for j in resolve_jobs(ctl, job)]


# --------------------------------------------------------------------------- output
def _fmt(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 3] + "..."


def format_report(rep: JobReport, name_width: int = 56) -> str:
    """Human-readable table of one :class:`JobReport` (one line per vertex, then the lag)."""
    lines = [f"job {rep.job_id}  {rep.name}  {rep.state}"]
    hdr = (f"  {'vertex':{name_width}} {'par':>3} {'level':5} {'ratio':>5} {'busy':>5} {'idle':>5} "
           f"{'bp':>5} {'in/s':>9} {'out/s':>9}")
    lines += [hdr, "  " + " " * name_width + "                  (ms/s, max over subtasks)  (sum over subtasks)"]
    for v in rep.vertices:
        lines.append(f"  {_short(v.name, name_width):{name_width}} {v.parallelism:>3} {v.level:5} "
                     f"{_fmt(v.ratio, 2):>5} {_fmt(v.busy_ms_per_s):>5} {_fmt(v.idle_ms_per_s):>5} "
                     f"{_fmt(v.backpressured_ms_per_s):>5} {_fmt(v.records_in_per_s, 1):>9} "
                     f"{_fmt(v.records_out_per_s, 1):>9}")
    if rep.source_lag:
        with_group = any(p.group_committed_offset is not None for p in rep.source_lag)
        lines.append("  Kafka source lag (records): live = end - (currentOffset + 1); "
                     "committed = end - committedOffset (moves at checkpoints)")
        head = f"  {'topic':24} {'part':>4} {'end':>10} {'current':>10} {'live':>8} {'committed':>10} {'lag':>8}"
        if with_group:
            head += f" {'group off':>10} {'lag':>8}"
        lines.append(head)
        for p in rep.source_lag:
            row = (f"  {_short(p.topic, 24):24} {p.partition:>4} {_fmt(p.end_offset):>10} "
                   f"{_fmt(p.current_offset):>10} {_fmt(p.live_lag):>8} {_fmt(p.committed_offset):>10} "
                   f"{_fmt(p.committed_lag):>8}")
            if with_group:
                row += f" {_fmt(p.group_committed_offset):>10} {_fmt(p.group_lag):>8}"
            lines.append(row)
        lines.append(f"  total live lag: {_fmt(rep.live_lag_total)}")
    for err in rep.errors:
        lines.append(f"  ! {err}")
    return "\n".join(lines)


def to_json(reps: list[JobReport]) -> str:
    """``{"jobs": [JobReport.to_dict(), ...]}`` as indented JSON."""
    return json.dumps({"jobs": [r.to_dict() for r in reps]}, indent=2)

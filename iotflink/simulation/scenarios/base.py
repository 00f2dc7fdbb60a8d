"""What every scenario shares: its description, its checks, its figures, and the steps that
run a window job over a scenario's own readings topic on the local stack.

A scenario is a :class:`Scenario`: a name, a one-line summary and a ``run(stack, short, say)``
function that publishes the scenario's data, runs the real job(s) on ``stack`` (a started
:class:`iotflink.runtime.stack.Stack`), prints what happened through ``say`` and returns an
:class:`Outcome`: the checks of the example's claim and the figures it measured.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from iotflink import kafka_io
from iotflink.errors import IotFlinkError
from iotflink.poll import wait_for
from iotflink.settings import PROJECT_ROOT, WindowJobSettings

if TYPE_CHECKING:
    from iotflink.runtime.stack import Stack

log = logging.getLogger(__name__)

#: Where the CLI writes each scenario's measured figures (``scenario-<name>.json``).
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"

Say = Callable[[str], None]


class ScenarioError(IotFlinkError):
    """A scenario could not run to the point of checking its claim (a job failed, a topic
    did not fill in time)."""


@dataclass(frozen=True)
class Check:
    """One checked claim: ``name`` (what must hold), ``passed``, ``detail`` (the figures);
    ``timing``: a claim that depends on when things happen on this machine (a latency bound,
    or a fault landing between a checkpoint and output it does not cover): the CLI's exit
    status counts it, the tests do not assert it."""

    name: str
    passed: bool
    detail: str
    timing: bool = False


@dataclass
class Outcome:
    """What a scenario run returns.

    Fields:
        checks: the example's claims, each checked against what the run measured.
        figures: measured values (JSON-serialisable; units in the key names, e.g. ``_ms``).
    """

    checks: list[Check] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every check passed (and there is at least one)."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def check(self, name: str, passed: bool, detail: str, timing: bool = False) -> bool:
        """Add a check (``timing``: see :class:`Check`); returns ``passed``."""
        self.checks.append(Check(name, bool(passed), detail, timing))
        return bool(passed)


@dataclass(frozen=True)
class Scenario:
    """A runnable worked example.

    Fields:
        name: the CLI name (``patient-vitals``).
        summary: one line for ``scenario list``.
        run: ``run(stack, short, say) -> Outcome``; ``short`` = the shorter run of the tests.
        services: the stack services it needs (names of :data:`iotflink.runtime.stack.SERVICES`).
    """

    name: str
    summary: str
    run: Callable[[Stack, bool, Say], Outcome]
    services: tuple[str, ...] = ("kafka", "flink-jobmanager", "flink-taskmanager")


def write_results(name: str, outcome: Outcome, short: bool, results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``outcome``'s figures and checks to ``results_dir/scenario-<name>.json`` (a short
    run to ``scenario-<name>-short.json``, so it never replaces the full run's figures, which
    the README quotes); returns the path.

    The file holds ``{"scenario", "short", "measured_at" (UTC ISO), "passed", "figures",
    "checks": [{"name", "passed", "detail", "timing"}]}``.
    """
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"scenario-{name}{'-short' if short else ''}.json"
    doc = {"scenario": name, "short": short,
           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "passed": outcome.passed, "figures": outcome.figures,
           "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail, "timing": c.timing}
                      for c in outcome.checks]}
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    return path


def reset_topics(stack: Stack, topics: Iterable[str], groups: Iterable[str] = ()) -> None:
    """Delete ``topics`` and consumer ``groups`` if they exist, so a scenario's counts cover
    its own run only (a second run on the same stack starts from empty topics).

    Raises:
        TimeoutError: the broker still lists a deleted topic after 60 s.
    """
    kafka_io.delete_topics_and_groups(stack.s.kafka_bootstrap, topics, groups, client_id="iotflink-scenario")


def produce(bootstrap: str, topic: str, values: Iterable[dict], key_field: str = "device_id") -> int:
    """Write ``values`` (JSON) to ``topic``, key = ``value[key_field]``, with an idempotent
    ``acks=all`` producer; returns how many were written (all acknowledged on return).

    Raises:
        KafkaError: the broker refused a record.
    """
    from kafka import KafkaProducer  # noqa: PLC0415

    prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                         key_serializer=str.encode, value_serializer=lambda v: json.dumps(v).encode(),
                         linger_ms=5, client_id="iotflink-scenario")
    n = 0
    try:
        futures = [prod.send(topic, key=str(v[key_field]), value=v) for v in values]
        prod.flush()
        for fut in futures:
            fut.get(timeout=30)
            n += 1
    finally:
        prod.close()
    return n


@dataclass(frozen=True)
class WindowResult:
    """The output of one window job instance after a drained stop.

    Fields:
        cfg: the instance's settings.
        job_id: its Flink job id.
        aggregates: the final aggregate per window (``latest_by_key`` of the upsert topic):
            dicts with ``device_id``, ``sensor``, ``window_start_ms``, ``window_end_ms``,
            ``count``, ``min``, ``max``, ``mean`` (and ``local_date`` for daily windows).
        late: the records of the instance's late topic.
        dropped_late: the window operator's ``numLateRecordsDropped`` before the stop (0 when the
            late split is exact; None if the metric was not found).
    """

    cfg: WindowJobSettings
    job_id: str
    aggregates: list[dict]
    late: list[dict]
    dropped_late: int | None


@dataclass
class WindowJobs:
    """Window job instances submitted over one readings topic (:func:`start_window_jobs`).

    Fields:
        ctl: the cluster's :class:`iotflink.runtime.flinkctl.FlinkCtl`.
        topic: the readings topic every instance reads.
        cfgs: instance name -> its settings.
        jobs: instance name -> Flink job id (emptied once the jobs are stopped).
    """

    ctl: object
    topic: str
    cfgs: dict[str, WindowJobSettings]
    jobs: dict[str, str]

    def cancel(self) -> None:
        """Cancel the instances still running (on an error path)."""
        for job_id in self.jobs.values():
            try:
                self.ctl.cancel(job_id)
            except IotFlinkError as exc:
                log.warning("cancelling job %s: %s", job_id, exc)
        self.jobs.clear()


def submit_all(ctl, jobs: Mapping[str, tuple[str, list[str], Mapping[str, str]]]) -> dict[str, str]:
    """Submit several jobs at once (one ``flink run`` client per thread: each spends most of its
    time starting a JVM and planning, so they overlap well); returns name -> job id.

    Args:
        ctl: a :class:`iotflink.runtime.flinkctl.FlinkCtl`.
        jobs: name -> ``(job module under jobs/, job arguments, IOTFLINK_* overrides)``.
    Raises:
        JobError / ConfigError: a submission failed (the jobs that were submitted are cancelled).
    """
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        futures = {name: pool.submit(ctl.submit, module, list(args), env_overrides=dict(env))
                   for name, (module, args, env) in jobs.items()}
    done, errors = {}, []
    for name, fut in futures.items():
        try:
            done[name] = fut.result()
        except Exception as exc:  # noqa: BLE001 - re-raised below after cleaning up
            errors.append(exc)
    if errors:
        for job_id in done.values():
            try:
                ctl.cancel(job_id)
            except IotFlinkError as exc:
                log.warning("cancelling job %s: %s", job_id, exc)
        raise errors[0]
    return done


def start_window_jobs(stack: Stack, topic: str, instances: Mapping[str, Mapping[str, str]],
                      say: Say) -> WindowJobs:
    """Delete ``topic``, the instances' output topics and consumer groups
    (:func:`reset_topics`), create ``topic``, then submit ``jobs/sensor_windows`` once per
    instance (``IOTFLINK_WINDOW_INSTANCE`` = its name, ``IOTFLINK_TOPIC_READINGS`` = ``topic``,
    plus its own ``IOTFLINK_*`` settings) and wait until each is RUNNING.

    Args:
        instances: instance name (``[a-z0-9-]``) -> ``IOTFLINK_*`` overrides.
    Raises:
        JobError / ConfigError: submission failed, or invalid settings.
    """
    from iotflink.runtime.flinkctl import FlinkCtl  # noqa: PLC0415 - the CLI imports this package

    ctl = FlinkCtl(stack.s)
    envs = {name: {**env, "IOTFLINK_WINDOW_INSTANCE": name, "IOTFLINK_TOPIC_READINGS": topic}
            for name, env in instances.items()}
    cfgs = {name: WindowJobSettings.from_env({**stack.s.to_env(), **env}) for name, env in envs.items()}
    reset_topics(stack, [topic, *(t for c in cfgs.values() for t in c.output_topics())],
                 [c.consumer_group for c in cfgs.values()])
    stack.create_topics(names=[topic])
    run = WindowJobs(ctl, topic, cfgs, {})
    try:
        for name in envs:
            say(f"submitting jobs/sensor_windows as instance {name} ({cfgs[name].window_kind}; "
                f"{', '.join(f'{k}={v}' for k, v in sorted(instances[name].items()))})")
        run.jobs.update(submit_all(ctl, {name: ("sensor_windows", [], env) for name, env in envs.items()}))
        for job_id in run.jobs.values():
            ctl.wait_running(job_id)
    except BaseException:
        run.cancel()
        raise
    return run


def finish_window_jobs(stack: Stack, run: WindowJobs, written: int, last_ts_ms: int, say: Say,
                       timeout_s: float = 300.0) -> dict[str, WindowResult]:
    """Wait until each instance's source has read ``written`` records, end the bounded run
    with :meth:`FlinkCtl.drain_bounded_replay` (heartbeats carry the watermark past every
    window after ``last_ts_ms``, then a drained stop-with-savepoint commits the exactly-once
    sinks) and read each instance's aggregates and late records.

    Returns:
        instance name -> :class:`WindowResult`.
    Raises:
        ScenarioError: a job failed; TimeoutError: a source did not read every record in time.
    """
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    from iotflink import kafka_io  # noqa: PLC0415

    ctl = run.ctl
    try:
        def read_all() -> bool:
            done = True
            for j in run.jobs.values():
                if ctl.job(j)["state"] in ("FAILED", "FAILING"):
                    raise ScenarioError(f"job {j} failed: {[h.describe() for h in ctl.failed_jobs()]}")
                done = done and ctl.source_records_read(j) >= written
            return done
        wait_for(read_all, timeout_s, interval_s=0.5, what=f"instances {', '.join(run.jobs)} to read every reading")
        dropped = {name: ctl.operator_metric_sum(job_id, "GroupWindowAggregate", "numLateRecordsDropped")
                   for name, job_id in run.jobs.items()}

        def drain(name: str) -> None:
            ctl.drain_bounded_replay(run.jobs[name], stack.s.kafka_bootstrap, run.topic, last_ts_ms,
                                     timeout_s=timeout_s)
            say(f"instance {name}: every window fired, job stopped with a drained savepoint")

        # the instances read the same topic: drained at once (each writes the same end-of-stream
        # heartbeats, which every instance drops before its windows)
        with ThreadPoolExecutor(max_workers=max(1, len(run.jobs))) as pool:
            for fut in [pool.submit(drain, name) for name in run.jobs]:
                fut.result()
        out = {}
        for name, cfg in run.cfgs.items():
            aggs = list(kafka_io.latest_by_key(kafka_io.read_topic(stack.s.kafka_bootstrap,
                                                                   cfg.topics.aggregates)).values())
            late = [r["value"] for r in kafka_io.read_topic(stack.s.kafka_bootstrap, cfg.topics.late)]
            out[name] = WindowResult(cfg, run.jobs[name], aggs, late, dropped[name])
        run.jobs.clear()
        return out
    finally:
        run.cancel()  # only on an error path: the drained jobs are gone from run.jobs


def run_window_jobs(stack: Stack, topic: str, instances: Mapping[str, Mapping[str, str]],
                    readings: list[dict], say: Say, timeout_s: float = 300.0) -> dict[str, WindowResult]:
    """Run ``jobs/sensor_windows`` once per instance over ``readings`` on ``topic``:
    :func:`start_window_jobs`, write the readings (:func:`produce`), :func:`finish_window_jobs`.

    Args:
        instances: instance name (``[a-z0-9-]``) -> ``IOTFLINK_*`` overrides.
        readings: contract readings (``device_id``, ``seq``, ``ts`` epoch ms, ``readings``).
    Returns:
        instance name -> :class:`WindowResult`.
    Raises:
        as :func:`start_window_jobs` and :func:`finish_window_jobs`.
    """
    run = start_window_jobs(stack, topic, instances, say)
    try:
        written = produce(stack.s.kafka_bootstrap, topic, readings)
    except BaseException:
        run.cancel()
        raise
    say(f"wrote {written} readings to {topic}")
    return finish_window_jobs(stack, run, written, max(r["ts"] for r in readings), say, timeout_s)

"""Unit tests of the CLI's argument handling (``iotflink/cli.py``) and of the pure parts of
``iotflink/runtime/backpressure.py`` and ``iotflink/runtime/flinkctl.py``: no stack, a fake of ``FlinkCtl``.
"""

from __future__ import annotations

import json
import logging

import pytest

from iotflink import cli
from iotflink.errors import JobError
from iotflink.runtime import backpressure, flinkctl
from iotflink.runtime.flink_rest import FlinkRest

JID = "0123456789abcdef0123456789abcdef"
JID2 = "fedcba9876543210fedcba9876543210"


# --------------------------------------------------------------------------- dispatch with a fake
class FakeCtl:
    """What the CLI calls on :class:`iotflink.runtime.flinkctl.FlinkCtl`, recorded."""

    jobs = [{"jid": JID, "name": "sensor_windows", "state": "RUNNING"},
            {"jid": JID2, "name": "sensor_windows", "state": "FINISHED"}]

    def __init__(self, _settings=None):
        self.calls: list[tuple] = []
        FakeCtl.last = self

    def list_jobs(self):
        return self.jobs

    resolve_job = flinkctl.FlinkCtl.resolve_job
    base = "http://fake"

    def submit(self, name, extra_args=None, savepoint=None, allow_non_restored=False):
        self.calls.append(("submit", name, extra_args, savepoint, allow_non_restored))
        return JID2

    def savepoint(self, job_id, target_dir=None, timeout_s=0.0, format_type=None):
        self.calls.append(("savepoint", job_id, target_dir, timeout_s, format_type))
        return "file:/sp/savepoint-1"

    def stop_with_savepoint(self, job_id, drain=False, target_dir=None, timeout_s=0.0, format_type=None):
        self.calls.append(("stop", job_id, drain, target_dir, timeout_s, format_type))
        return "file:/sp/savepoint-2"

    def cancel(self, job_id):
        self.calls.append(("cancel", job_id))


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(flinkctl, "FlinkCtl", FakeCtl)
    return FakeCtl


def test_savepoint_by_name_and_by_id(fake, capsys):
    assert cli.main(["savepoint", "sensor_windows"]) == 0
    assert fake.last.calls == [("savepoint", JID, None, 300.0, None)]
    assert capsys.readouterr().out.strip() == "file:/sp/savepoint-1"
    assert cli.main(["savepoint", JID, "--dir", "file:///data/sp", "--format", "native", "--timeout-s", "60"]) == 0
    assert fake.last.calls == [("savepoint", JID, "file:///data/sp", 60.0, "native")]


def test_stop_options(fake, capsys):
    assert cli.main(["stop", "sensor_windows", "--savepoint-dir", "/tmp/sp", "--drain"]) == 0
    assert fake.last.calls == [("stop", JID, True, "/tmp/sp", 300.0, None)]
    assert capsys.readouterr().out.strip() == "file:/sp/savepoint-2"
    assert cli.main(["stop", JID]) == 0
    assert fake.last.calls == [("stop", JID, False, None, 300.0, None)]


def test_job_submit_from_savepoint(fake, capsys):
    assert cli.main(["job", "submit", "sensor_windows", "--from-savepoint", "/sp/savepoint-2", "-n"]) == 0
    assert fake.last.calls == [("submit", "sensor_windows", [], "/sp/savepoint-2", True)]
    assert capsys.readouterr().out.strip() == JID2
    # the old form still works: name then the job's own arguments
    assert cli.main(["job", "submit", "rules", "--rule", "bearing_failure"]) == 0
    assert fake.last.calls == [("submit", "rules", ["--rule", "bearing_failure"], None, False)]


def test_job_cancel_by_name(fake, capsys):
    assert cli.main(["job", "cancel", "sensor_windows"]) == 0
    assert fake.last.calls == [("cancel", JID)]
    assert cli.main(["job", "cancel", JID]) == 0
    assert fake.last.calls == [("cancel", JID)]


@pytest.mark.parametrize("argv, expected", [
    (["sensor_windows"], ("sensor_windows", [], None, False)),
    (["sensor_windows", "--from-savepoint", "/sp/savepoint-1"], ("sensor_windows", [], "/sp/savepoint-1", False)),
    (["sensor_windows", "--from-savepoint=file:///sp/x", "-n"], ("sensor_windows", [], "file:///sp/x", True)),
    (["--from-savepoint", "/sp", "--allow-non-restored", "rules", "--rule", "r1"],
     ("rules", ["--rule", "r1"], "/sp", True)),
    (["rules", "--rule", "r1"], ("rules", ["--rule", "r1"], None, False)),
    (["rules", "a", "--rule", "r1", "b"], ("rules", ["a", "--rule", "r1", "b"], None, False)),
    (["rules", "a", "--", "--from-savepoint", "x"], ("rules", ["a", "--from-savepoint", "x"], None, False)),
])
def test_job_submit_splits_its_options_from_the_jobs_arguments(fake, capsys, argv, expected):
    assert cli.main(["job", "submit", *argv]) == 0
    assert fake.last.calls == [("submit", *expected)]


def test_usage_errors_exit_2(fake, capsys):
    assert cli.main(["job", "submit", "sensor_windows", "-n"]) == 2
    assert "only applies with --from-savepoint" in capsys.readouterr().err
    for argv in (["job", "submit"], ["job", "submit", "--from-savepoint", "/sp"], ["job", "submit", "x", "--from-savepoint"],
                 ["job", "cancel"], ["job", "list", "--bogus"], ["stack", "status", "extra"],
                 ["savepoint"], ["stop"], ["savepoint", "j", "--format", "binary"],
                 ["stop", "j", "--timeout-s", "0"], ["backpressure", "--wait-s", "-1"], ["demo", "--parallelism", "0"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2, argv


def test_unknown_or_finished_job_is_an_error(fake, capsys, monkeypatch):
    assert cli.main(["savepoint", "no_such_job"]) == 1
    assert "no RUNNING job named 'no_such_job'" in capsys.readouterr().err
    assert cli.main(["savepoint", "ffffffffffffffffffffffffffffffff"]) == 1
    assert "no job with id" in capsys.readouterr().err
    monkeypatch.setattr(fake, "jobs", [{"jid": JID2, "name": "sensor_windows", "state": "FINISHED"}])
    assert cli.main(["stop", "sensor_windows"]) == 1
    assert "(it is FINISHED)" in capsys.readouterr().err


def test_ambiguous_name_lists_ids(fake, capsys, monkeypatch):
    monkeypatch.setattr(fake, "jobs", [{"jid": JID, "name": "w", "state": "RUNNING"},
                                       {"jid": JID2, "name": "w", "state": "RUNNING"}])
    assert cli.main(["stop", "w"]) == 1
    err = capsys.readouterr().err
    assert JID in err and JID2 in err and "give the job id" in err


def test_savepoint_format_type_is_checked():
    assert flinkctl._format_type("native") == "NATIVE"
    with pytest.raises(JobError, match="CANONICAL, NATIVE"):
        flinkctl._format_type("binary")


def test_existing_commands_still_parse():
    parser = cli.build_parser()
    assert parser.parse_args(["stack", "status"]).action == "status"
    assert parser.parse_args(["job", "list"]).action == "list"
    args = parser.parse_args(["rules", "deploy", "bearing_failure"])
    assert (args.action, args.rule) == ("deploy", ["bearing_failure"])
    args = parser.parse_args(["chaos", "kill-bridge", "--down-s", "2"])
    assert (args.fault, args.down_s) == ("kill-bridge", 2.0)
    args = parser.parse_args(["replay", "--dry-run", "--limit", "5"])
    assert (args.dry_run, args.limit, args.log_level) == (True, 5, logging.INFO)
    for command in ("demo", "vnodes", "transactions", "rules calibrate", "tls init d", "device list", "env", "topics"):
        assert callable(parser.parse_args(command.split()).func), command
    args = parser.parse_args(["backpressure", "sensor_windows", "--json", "--group", "g"])
    assert (args.job, args.json, args.group, args.wait_s) == ("sensor_windows", True, "g", 30.0)
    assert parser.parse_args(["backpressure"]).job is None


# --------------------------------------------------------------------------- backpressure parts
class FakeRest:
    """Answers the REST paths job_report reads, from canned JSON; counts backpressure polls."""

    def __init__(self):
        self.bp_polls = 0
        self.api = FlinkRest("http://flink.invalid:8081")
        self.api.call = self.rest  # the client's every call comes here

    def job(self, job_id):
        return {"jid": job_id, "name": "sensor_windows", "state": "RUNNING",
                "vertices": [{"id": "src", "name": "Source: readings[1]", "parallelism": 1},
                             {"id": "agg", "name": "GroupWindowAggregate[7] -> aggregates[9]: Writer",
                              "parallelism": 2}],
                "plan": {"nodes": [{"id": "agg", "inputs": [{"id": "src"}]}, {"id": "src"}]}}

    def list_jobs(self):
        return [{"jid": JID, "name": "sensor_windows", "state": "RUNNING"},
                {"jid": JID2, "name": "old", "state": "CANCELED"}]

    def rest(self, path, method="GET", body=None, timeout=None):
        if path.endswith("/backpressure"):
            self.bp_polls += 1
            if self.bp_polls == 1:
                return {"status": "deprecated"}  # no sample yet: must poll again
            hi = "/src/" in path
            return {"status": "ok", "backpressureLevel": "high" if hi else "ok",
                    "subtasks": [{"subtask": 0, "ratio": 0.93 if hi else 0.0},
                                 {"subtask": 1, "ratio": 0.2 if hi else "NaN"}]}
        if "/subtasks/metrics" in path:
            busy = 40.0 if "/src/" in path else 1000.0
            return [{"id": "busyTimeMsPerSecond", "max": busy, "sum": busy},
                    {"id": "idleTimeMsPerSecond", "max": "NaN", "sum": 0},
                    {"id": "backPressuredTimeMsPerSecond", "max": 930.0, "sum": 930.0},
                    {"id": "numRecordsInPerSecond", "max": 5, "sum": 10.5},
                    {"id": "numRecordsOutPerSecond", "max": 5, "sum": 9.5}]
        if path.endswith("/vertices/src/metrics"):
            return [{"id": "0.Source__readings[1].KafkaSourceReader.topic.sensor-readings.partition.0.currentOffset"},
                    {"id": "0.Source__readings[1].KafkaSourceReader.topic.sensor-readings.partition.0.committedOffset"},
                    {"id": "0.Source__readings[1].KafkaSourceReader.topic.sensor-readings.partition.1.currentOffset"},
                    {"id": "0.numRecordsIn"}]
        if "/vertices/src/metrics?get=" in path:
            return [{"id": "0.Source__readings[1].KafkaSourceReader.topic.sensor-readings.partition.0.currentOffset",
                     "value": "99"},
                    {"id": "0.Source__readings[1].KafkaSourceReader.topic.sensor-readings.partition.0.committedOffset",
                     "value": "50"},
                    {"id": "0.Source__readings[1].KafkaSourceReader.topic.sensor-readings.partition.1.currentOffset",
                     "value": "-1"}]  # nothing read yet from partition 1
        raise AssertionError(f"unexpected REST path {path}")


def test_job_report_polls_and_aggregates(monkeypatch):
    from iotflink import kafka_io  # noqa: PLC0415

    monkeypatch.setattr(kafka_io, "end_offsets", lambda bootstrap, topic: {0: 150, 1: 7, 2: 0})
    fake = FakeRest()
    rep = backpressure.job_report(fake, JID, "kafka:9092", bp_timeout_s=5)
    assert fake.bp_polls == 3  # one "deprecated" answer, then one per vertex
    src, agg = rep.vertices
    assert (src.level, src.ratio, src.subtask_ratios) == ("HIGH", 0.93, [0.93, 0.2])
    assert (agg.level, agg.ratio, agg.subtask_ratios) == ("OK", 0.0, [0.0, None])
    assert agg.busy_ms_per_s == 1000.0 and agg.idle_ms_per_s is None
    assert (agg.records_in_per_s, agg.records_out_per_s) == (10.5, 9.5)
    assert [v.name for v in rep.upstream_of("agg")] == [src.name]
    assert rep.vertex("GroupWindow") is agg
    lag = {p.partition: p for p in rep.source_lag}
    assert (lag[0].end_offset, lag[0].current_offset, lag[0].live_lag) == (150, 99, 50)
    assert (lag[0].committed_offset, lag[0].committed_lag) == (50, 100)
    assert (lag[1].current_offset, lag[1].live_lag, lag[1].committed_lag) == (None, 7, None)
    assert lag[2].live_lag == 0
    assert rep.live_lag_total == 57
    assert rep.errors == []
    text = backpressure.format_report(rep)
    assert "HIGH" in text and "total live lag: 57" in text
    doc = json.loads(backpressure.to_json([rep]))
    assert doc["jobs"][0]["live_lag_total"] == 57
    assert doc["jobs"][0]["vertices"][0]["level"] == "HIGH"


def test_job_report_without_kafka_says_so(monkeypatch):
    from iotflink import kafka_io  # noqa: PLC0415

    def boom(bootstrap, topic):
        raise OSError("no broker")
    monkeypatch.setattr(kafka_io, "end_offsets", boom)
    rep = backpressure.job_report(FakeRest(), JID, "kafka:9092", bp_timeout_s=5)
    assert any("no broker" in e for e in rep.errors)
    assert rep.live_lag_total is None


def test_backpressure_poll_gives_up():
    calls = []

    def rest(path, method="GET", body=None, timeout=None):
        calls.append(path)
        return {"status": "deprecated"}
    api = FlinkRest("http://flink.invalid:8081")
    api.call = rest
    res = backpressure.vertex_backpressure(api, JID, "v", timeout_s=0.2, interval_s=0.05)
    assert res == {"status": "deprecated"} and len(calls) >= 2


def test_resolve_jobs():
    fake = FakeRest()
    assert [j["jid"] for j in backpressure.resolve_jobs(fake)] == [JID]
    assert [j["jid"] for j in backpressure.resolve_jobs(fake, "sensor_windows")] == [JID]
    assert [j["jid"] for j in backpressure.resolve_jobs(fake, JID2)] == [JID2]
    with pytest.raises(JobError, match="no RUNNING job named 'old'"):
        backpressure.resolve_jobs(fake, "old")
    with pytest.raises(JobError, match="no job named 'x'"):
        backpressure.resolve_jobs(fake, "x")


def test_compute_lag_with_group_offsets():
    rows = backpressure.compute_lag({("t", 0): {"current": 9, "committed": 5}}, {"t": {0: 10}},
                                    {"t": {0: 4}})
    assert len(rows) == 1
    r = rows[0]
    assert (r.live_lag, r.committed_lag, r.group_committed_offset, r.group_lag) == (0, 5, 4, 6)


# --------------------------------------------------------------------------- job health
#: The REST ``stacktrace`` of a job that the failure-rate strategy gave up on (a failing cast,
#: as recorded by Flink 2.2.1; frames shortened).
SUPPRESSED_TRACE = (
    "org.apache.flink.runtime.JobException: Recovery is suppressed by FailureRateRestartBackoffTimeStrategy("
    "FailureRateRestartBackoffTimeStrategy(failuresIntervalMS=60000,backoffTimeMS=1000,maxFailuresPerInterval=2)\n"
    "\tat org.apache.flink.runtime.executiongraph.failover.ExecutionFailureHandler.handleFailure"
    "(ExecutionFailureHandler.java:213)\n"
    "\tat org.apache.pekko.dispatch.Mailbox.run(Mailbox.scala:233)\n"
    "Caused by: java.lang.NumberFormatException: For input string: 'poison-765'. Invalid character found.\n"
    "\tat org.apache.flink.table.data.binary.BinaryStringDataUtil.toInt(BinaryStringDataUtil.java:518)\n"
    "\tat StreamExecCalc$8.processElement(Unknown Source)\n"
    "\t... 3 more\n")
CAST_TRACE = ("java.lang.NumberFormatException: For input string: 'poison-811'. Invalid character found.\n"
              "\tat StreamExecCalc$8.processElement(Unknown Source)\n")
PYTHON_TRACE = (
    "java.lang.RuntimeException: Failed to close remote bundle\n"
    "\tat org.apache.flink.streaming.api.runners.python.beam.BeamPythonFunctionRunner.finishBundle(X.java:1)\n"
    "Caused by: java.lang.RuntimeException: Error received from SDK harness for instruction 4: "
    "Traceback (most recent call last):\n"
    '  File "/venv/lib/python3.11/site-packages/apache_beam/runners/worker/sdk_worker.py", line 295, in _execute\n'
    "    response = task()\n"
    "\n"
    "During handling of the above exception, another exception occurred:\n"
    "\n"
    "Traceback (most recent call last):\n"
    '  File "/srv/app/udfs/x.py", line 3, in eval\n'
    "    raise ValueError(f'poison record {v}')\n"
    "ValueError: poison record 7\n"
    "\n"
    "\tat org.apache.beam.runners.fnexecution.control.FnApiControlClient$ResponseStreamObserver.onNext(X.java:1)\n"
    "\t... 7 more\n")


@pytest.mark.parametrize("trace, expected", [
    (SUPPRESSED_TRACE, "java.lang.NumberFormatException: For input string: 'poison-765'. Invalid character found."),
    (CAST_TRACE, "java.lang.NumberFormatException: For input string: 'poison-811'. Invalid character found."),
    (PYTHON_TRACE, "java.lang.RuntimeException: Error received from SDK harness for instruction 4: "
                   "Traceback (most recent call last):\nValueError: poison record 7"),
    # a multi-line message keeps its first lines; a Suppressed block's own causes are not the root
    ("java.io.IOException: line one\nline two\nline three\nline four\n\tat a.B.c(B.java:1)\n"
     "\tSuppressed: java.lang.IllegalStateException: other\n\t\tat a.B.d(B.java:2)\n"
     "\t\tCaused by: java.lang.Error: not this one\n",
     "java.io.IOException: line one\nline two\nline three"),
    ("", ""),
    ("\n", ""),
])
def test_root_cause(trace, expected):
    assert flinkctl.root_cause(trace) == expected


def test_root_cause_cuts_long_lines():
    text = flinkctl.root_cause("java.lang.Error: " + "x" * 1000, max_chars=50)
    assert len(text) == 50 and text.endswith("...")


def _history(*entries, truncated=False):
    return {"exceptionHistory": {"entries": list(entries), "truncated": truncated}}


class HealthRest:
    """Canned answers of the REST paths FlinkCtl.health reads; records the paths."""

    def __init__(self, jobs, histories, metrics):
        self.jobs, self.histories, self.metrics, self.paths = jobs, histories, metrics, []

    def __call__(self, path, method="GET", body=None, timeout=10.0):
        self.paths.append(path)
        if path == "/jobs/overview":
            return {"jobs": self.jobs}
        jid = path.split("/")[2]
        if path.endswith("/exceptions"):
            return self.histories.get(jid, _history())
        if path.endswith("/metrics?get=numRestarts"):
            value = self.metrics.get(jid)
            return [] if value is None else [{"id": "numRestarts", "value": str(value)}]
        raise AssertionError(f"unexpected REST path {path}")


@pytest.fixture
def health_ctl():
    from iotflink.settings import StackSettings  # noqa: PLC0415

    ctl = flinkctl.FlinkCtl(StackSettings.from_env({}))
    failed = {"jid": JID, "name": "poison", "state": "FAILED", "start-time": 2_000}
    restarting = {"jid": JID2, "name": "sensor_windows", "state": "RESTARTING", "start-time": 3_000}
    running = {"jid": "a" * 32, "name": "rule", "state": "RUNNING", "start-time": 1_000}
    canceled = {"jid": "b" * 32, "name": "old", "state": "CANCELED", "start-time": 500}
    histories = {
        JID: _history({"exceptionName": "org.apache.flink.runtime.JobException", "timestamp": 1_700_000_003_000,
                       "stacktrace": SUPPRESSED_TRACE},
                      {"exceptionName": "java.lang.NumberFormatException", "timestamp": 1_700_000_002_000,
                       "stacktrace": CAST_TRACE},
                      {"exceptionName": "java.lang.NumberFormatException", "timestamp": 1_700_000_001_000,
                       "stacktrace": CAST_TRACE}),
        JID2: _history(*[{"exceptionName": "java.lang.Exception", "timestamp": t,
                          "stacktrace": f"java.lang.Exception: failure {t}\n\tat a.B.c(B.java:1)\n"}
                         for t in range(16)], truncated=True),
        "a" * 32: _history({"exceptionName": "java.lang.Exception", "timestamp": 5,
                            "stacktrace": "java.lang.Exception: once\n"}),
    }
    # the metric: the restarting job's fetcher has not run yet; the running one restarted once
    ctl.api.call = HealthRest([running, failed, canceled, restarting], histories, {"a" * 32: 1})
    return ctl


def test_job_health(health_ctl):
    by_id = {h.job_id: h for h in health_ctl.job_health()}
    assert [h.job_id for h in health_ctl.job_health()] == [JID2, JID, "a" * 32, "b" * 32]  # newest first
    failed = by_id[JID]
    assert (failed.state, failed.restarts, failed.restarts_text, failed.unhealthy) == ("FAILED", 2, "2", True)
    assert failed.root_exception == "java.lang.NumberFormatException: For input string: 'poison-765'. Invalid character found."
    assert failed.failure_time_ms == 1_700_000_003_000
    assert failed.recovery_suppressed.startswith("Recovery is suppressed by FailureRateRestartBackoffTimeStrategy(")
    assert [ms for ms, _ in failed.earlier_failures] == [1_700_000_002_000, 1_700_000_001_000]
    assert {cause for _, cause in failed.earlier_failures} == {
        "java.lang.NumberFormatException: For input string: 'poison-811'. Invalid character found."}
    restarting = by_id[JID2]
    assert (restarting.restarts, restarting.restarts_text) == (16, "16+")  # truncated history, no metric
    assert restarting.root_exception == "java.lang.Exception: failure 15" and restarting.recovery_suppressed is None
    running = by_id["a" * 32]
    assert (running.restarts, running.root_exception, running.unhealthy) == (1, None, False)
    assert running.earlier_failures == ()
    canceled = by_id["b" * 32]
    assert (canceled.restarts, canceled.root_exception) == (0, None)
    # a job that has ended has no metrics: none asked for
    assert not any("metrics" in p and ("/" + "b" * 32 + "/") in p for p in health_ctl.api.call.paths)
    assert "FAILED after 2 restarts: java.lang.NumberFormatException" in failed.describe()


def test_failed_jobs_and_since(health_ctl):
    assert [h.job_id for h in health_ctl.failed_jobs()] == [JID2, JID]
    assert [h.job_id for h in health_ctl.failed_jobs(since_ms=2_500)] == [JID2]
    assert [h.job_id for h in health_ctl.job_health(since_ms=1_000)] == [JID2, JID, "a" * 32]
    health_ctl.api.call.jobs = [j for j in health_ctl.api.call.jobs if j["state"] not in flinkctl.UNHEALTHY_STATES]
    assert health_ctl.failed_jobs() == []


def test_wait_state_names_the_root_exception(health_ctl):
    def job(job_id):
        return {"jid": job_id, "state": "FAILED"}
    health_ctl.job = job
    with pytest.raises(JobError, match=r"job poison \(\w+\) FAILED after 2 restarts: java.lang.NumberFormatException: "
                                       r"For input string: 'poison-765'"):
        health_ctl.wait_state(JID, {"RUNNING"}, timeout_s=5)
    with pytest.raises(JobError, match="FAILED after 2 restarts: java.lang.NumberFormatException"):
        health_ctl.wait_running(JID, timeout_s=5)
    assert health_ctl.wait_state(JID, {"FAILED"}, timeout_s=5) == "FAILED"


def test_job_list_prints_state_restarts_and_root_exception(health_ctl, monkeypatch, capsys):
    monkeypatch.setattr(flinkctl, "FlinkCtl", lambda _settings: health_ctl)
    assert cli.main(["job", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["JOB", "ID", "STATE", "RESTARTS", "NAME"]
    assert out[1].split() == [JID2, "RESTARTING", "16+", "sensor_windows"]
    assert out[2].strip() == "root exception at 1970-01-01 00:00:00 UTC: java.lang.Exception: failure 15"
    # 15 earlier failures, all different: the 5 newest, then how many more
    assert out[3].strip() == "earlier failures, newest first (15):"
    assert out[4].strip() == "1970-01-01 00:00:00 UTC  java.lang.Exception: failure 14"
    assert out[8].strip() == "1970-01-01 00:00:00 UTC  java.lang.Exception: failure 10"
    assert out[9].strip() == "... 10 more"
    assert out[10].split() == [JID, "FAILED", "2", "poison"]
    assert out[11].strip() == ("root exception at 2023-11-14 22:13:23 UTC: java.lang.NumberFormatException: "
                               "For input string: 'poison-765'. Invalid character found.")
    assert out[12].strip().startswith("not restarted: Recovery is suppressed by FailureRateRestartBackoffTimeStrategy(")
    # two equal earlier failures on one line
    assert out[13].strip() == "earlier failures, newest first (2):"
    assert out[14].strip() == ("2023-11-14 22:13:22 UTC  java.lang.NumberFormatException: "
                               "For input string: 'poison-811'. Invalid character found.  (x 2)")
    assert out[15].split() == ["a" * 32, "RUNNING", "1", "rule"]
    assert out[16].split() == ["b" * 32, "CANCELED", "0", "old"]
    assert len(out) == 17


def test_job_list_multi_line_root_exception_and_none():
    jobs = [flinkctl.JobHealth("c" * 32, "j", "FAILED", 0, None, root_exception="a: one\ntwo"),
            flinkctl.JobHealth("d" * 32, "k", "RESTARTING", 0, 3)]
    out = cli.format_job_list(jobs).splitlines()
    assert out[1].split() == ["c" * 32, "FAILED", "?", "j"]
    assert out[2:4] == ["    root exception: a: one", "        two"]
    assert out[5] == "    root exception: (none recorded by the JobManager)"
    assert cli.format_job_list([]) == "no jobs"


def test_demo_job_health_checks(health_ctl):
    from iotflink.simulation import demo  # noqa: PLC0415

    checks = demo.job_health_checks(health_ctl, since_ms=0)
    assert checks == [
        (f"job sensor_windows ({JID2}) RESTARTING", False, "java.lang.Exception: failure 15"),
        (f"job poison ({JID}) FAILED", False,
         "java.lang.NumberFormatException: For input string: 'poison-765'. Invalid character found."),
    ]
    health_ctl.api.call.jobs = [j for j in health_ctl.api.call.jobs if j["state"] not in flinkctl.UNHEALTHY_STATES]
    assert demo.job_health_checks(health_ctl, since_ms=0) == [
        ("no job FAILED or restarting", True, "2 jobs of this run, 1 restarts")]
    assert demo.job_health_checks(health_ctl, since_ms=10_000) == [
        ("no job FAILED or restarting", True, "0 jobs of this run, 0 restarts")]

"""Unit tests of the pure parts of ``iotflink/runtime/stack.py``, and one test of topic creation
on the Kafka of the ``stack`` fixture (tests/conftest.py)."""

from __future__ import annotations

import base64
import dataclasses
import re

import pytest
import yaml

from iotflink import cli
from iotflink.errors import ConfigError
from iotflink.runtime import stack
from iotflink.settings import StackSettings

#: Services of the module's ``stack`` fixture (tests/conftest.py), shared with the opting-in modules.
STACK_SERVICES = ("kafka",)
SHARED_STACK = True


@pytest.fixture(scope="module")
def kafka_stack(stack):
    """The ``stack`` fixture (this module's name ``stack`` is the stack module)."""
    return stack


#: What ``kafka-storage format -t`` accepts: 22 URL-safe base64 characters, not read as an option.
_CLUSTER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{21}$")


@pytest.mark.parametrize("first", range(256))
def test_kafka_cluster_id_never_starts_with_dash_or_underscore(first):
    """Every value of the first byte, the only one that decides the first character: 22
    characters, never a leading ``-`` (argparse4j would read it as an option) or ``_``."""
    raw = bytes([first]) + bytes(range(1, 16))
    cid = stack.kafka_cluster_id(raw)
    assert len(cid) == 22
    assert cid[0] not in "-_", (first, cid)
    assert _CLUSTER_ID.match(cid), cid
    # the id decodes back to the 16 bytes, with the first byte's top bit cleared
    decoded = base64.urlsafe_b64decode(cid + "==")
    assert decoded == bytes([first & 0x7F]) + raw[1:]


def test_kafka_cluster_id_worst_case_bytes():
    """All ones is the input whose plain base64 starts with ``_`` (and ``0xF8`` with ``-``)."""
    assert base64.urlsafe_b64encode(b"\xff" * 16).decode()[0] == "_"
    assert base64.urlsafe_b64encode(b"\xf8" + b"\0" * 15).decode()[0] == "-"
    for raw in (b"\xff" * 16, b"\xf8" + b"\0" * 15, b"\0" * 16):
        cid = stack.kafka_cluster_id(raw)
        assert len(cid) == 22 and _CLUSTER_ID.match(cid), cid


def test_kafka_cluster_id_random_ids_are_valid_and_distinct():
    ids = {stack.kafka_cluster_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(_CLUSTER_ID.match(cid) for cid in ids)


@pytest.mark.parametrize("raw", [b"", b"\0" * 15, b"\0" * 17])
def test_kafka_cluster_id_rejects_wrong_length(raw):
    with pytest.raises(ValueError, match="16 bytes"):
        stack.kafka_cluster_id(raw)


def test_service_status_is_a_frozen_record():
    st = stack.ServiceStatus("kafka", 1, True, False, stack.Path("/x.log"))
    assert (st.name, st.pid, st.running, st.ready, st.detail) == ("kafka", 1, True, False, "")
    with pytest.raises(AttributeError):
        st.ready = True  # type: ignore[misc]


# --------------------------------------------------------------------------- free ports
def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range():
    low, high = stack._ephemeral_range()
    ports = stack.free_ports(5)
    assert len(set(ports)) == 5
    assert all(not low <= p <= high and p >= stack.FREE_PORT_FLOOR for p in ports), ports
    socks = []
    try:
        for p in ports:  # each one can be bound now
            s = stack.socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", p))
    finally:
        for s in socks:
            s.close()


def test_free_ports_skip_a_port_in_use(monkeypatch):
    lo, _hi = stack._free_port_window()
    busy = stack.socket.socket()
    try:
        for port in range(lo, lo + 100):  # a port of the window, bound (not listening) by us
            try:
                busy.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
        taken = busy.getsockname()[1]

        class StartAtTaken:
            def randrange(self, _n):
                return taken - lo
        monkeypatch.setattr(stack.random, "SystemRandom", StartAtTaken)
        ports = stack.free_ports(3)
        assert taken not in ports and len(set(ports)) == 3
    finally:
        busy.close()


def test_free_port_window_follows_the_ephemeral_range(monkeypatch):
    monkeypatch.setattr(stack, "_ephemeral_range", lambda: (32_768, 60_999))
    assert stack._free_port_window() == (stack.FREE_PORT_FLOOR, 32_767)
    monkeypatch.setattr(stack, "_ephemeral_range", lambda: (15_000, 40_000))
    assert stack._free_port_window() == (40_001, 65_535)
    monkeypatch.setattr(stack, "_ephemeral_range", lambda: (1_024, 65_000))
    assert stack._free_port_window() is None
    ports = stack.free_ports(2)  # falls back to bind(0)
    assert len(set(ports)) == 2


def test_free_port_settings_use_five_distinct_ports(tmp_path):
    cfg = stack.free_port_settings(tmp_path / "run")
    ports = {cfg.kafka_port, cfg.kafka_controller_port, cfg.mqtt_port, cfg.flink_rest_port, cfg.flink_rpc_port}
    assert len(ports) == 5
    assert cfg.run_dir == tmp_path / "run"


# --------------------------------------------------------------------------- topics (real broker)
@pytest.mark.integration
def test_created_topics_are_in_the_metadata_when_create_topics_returns(kafka_stack):
    """Right after ``create_topics`` a fresh client sees every partition of every topic
    (``kafka_io.end_offsets`` asks the broker's metadata; before the wait it could see none)."""
    import dataclasses  # noqa: PLC0415

    from iotflink import kafka_io  # noqa: PLC0415

    cfg = kafka_stack.s
    assert set(cfg.topics.all()) <= kafka_io.list_topics(cfg.kafka_bootstrap)  # the stack's own, at start
    for round_no in range(3):
        topics = dataclasses.replace(cfg.topics, **{
            f.name: f"{getattr(cfg.topics, f.name)}-r{round_no}" for f in dataclasses.fields(cfg.topics)
            if isinstance(getattr(cfg.topics, f.name), str)})
        run = stack.Stack(dataclasses.replace(cfg, topics=topics))
        created = run.create_topics(partitions={topics.transactions: 1})
        assert sorted(created) == sorted(topics.all())
        for name in created:
            want = 1 if name == topics.transactions else topics.readings_partitions
            assert len(kafka_io.end_offsets(cfg.kafka_bootstrap, name)) == want, name


# --------------------------------------------------------------------------- several TaskManagers
def _stack_with(tmp_path, **changes):

    return stack.Stack(dataclasses.replace(stack.free_port_settings(tmp_path / "run"), **changes))


def test_taskmanagers_setting_is_read_refused_below_one_and_passed_on(tmp_path):

    assert StackSettings.from_env({}).taskmanagers == 1
    cfg = StackSettings.from_env({"IOTFLINK_TASKMANAGERS": "3"})
    assert cfg.taskmanagers == 3
    assert StackSettings.from_env(cfg.to_env()).taskmanagers == 3  # child processes see it
    assert stack.free_port_settings(tmp_path / "run", cfg).taskmanagers == 3
    with pytest.raises(ConfigError, match="IOTFLINK_TASKMANAGERS=0"):
        StackSettings.from_env({"IOTFLINK_TASKMANAGERS": "0"})


def test_each_taskmanager_has_its_own_process_name_log_pid_and_local_directory(tmp_path):
    st = _stack_with(tmp_path, taskmanagers=3)
    names = st.instances("flink-taskmanager")
    assert names == ["flink-taskmanager", "flink-taskmanager-1", "flink-taskmanager-2"]
    assert len({st.log_file(n) for n in names}) == 3
    assert st.log_file("flink-taskmanager") == st.log_dir / "flink-taskmanager.out"
    assert len({st._pid_file(n) for n in names}) == 3
    dirs = [st.taskmanager_dir(n) for n in names]
    assert dirs == [st.run_dir / "flink" / f"taskmanager-{i}" for i in range(3)]
    assert all(st.taskmanager_resource_id(n) is None for n in names)  # never started
    assert st.instances("kafka") == ["kafka"]
    assert st.instances("bridge") == ["bridge"]


def test_status_lists_every_taskmanager_instance_stopped(tmp_path):
    st = _stack_with(tmp_path, taskmanagers=2)
    rows = {s.name: s for s in st.status()}
    assert [n for n in rows if n.startswith("flink-taskmanager")] == ["flink-taskmanager", "flink-taskmanager-1"]
    assert not any(s.running or s.ready for s in rows.values())
    assert rows["flink-taskmanager-1"].log_file == st.log_dir / "flink-taskmanager-1.out"


def test_cli_taskmanagers_option(capsys):

    args = cli.build_parser().parse_args(["stack", "status", "--taskmanagers", "2"])
    assert args.taskmanagers == 2
    assert cli.build_parser().parse_args(["stack", "start"]).taskmanagers is None
    assert cli._cmd_stack(cli.build_parser().parse_args(["stack", "start", "--taskmanagers", "0"]),
                          stack.StackSettings.from_env({})) == 2
    assert "--taskmanagers must be at least 1" in capsys.readouterr().err


def test_flink_conf_spreads_a_jobs_slots_over_the_taskmanagers():
    """Flink 2's name of the former cluster.evenly-spread-out-slots: true."""

    conf = yaml.safe_load((stack.PROJECT_ROOT / "flink-conf" / "config.yaml").read_text())
    assert conf["taskmanager.load-balance.mode"] == "SLOTS"
    assert "cluster.evenly-spread-out-slots" not in conf

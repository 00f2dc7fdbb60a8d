"""Unit tests of iotflink.simulation.vnodes: the demo's node specs and their command lines (no services)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from iotflink.settings import WindowJobSettings
from iotflink.simulation.replay import load_dataset
from iotflink.simulation.vnodes import (
    DEMO_NAB_OUTAGE_AFTER_MS,
    NodeSpec,
    add_parser,
    default_demo_specs,
    plan_processes,
)

NOW = 1_795_325_989_769  # a fixed wall time (2026-11-22), so the whole-week shift is fixed


def test_shared_clock_demo_specs():
    specs = default_demo_specs(speedup=5000.0, now_ms=NOW)
    assert [s.profile for s in specs] == ["nab-machine", "femto-b1_1", "occupancy-office"]
    origin = load_dataset("occupancy", NOW)[0][0]
    assert {(s.speedup, s.now_ms, s.pace_origin_ms) for s in specs} == {(5000.0, NOW, origin)}
    nab_ts = [r[0] for r in load_dataset("nab", NOW)]
    (nab,) = [s for s in specs if s.outage_at is not None]
    assert nab.profile == "nab-machine"
    # the outage starts at the first NAB row 3 days after the origin, inside occupancy's span
    assert nab_ts[nab.outage_at] >= origin + DEMO_NAB_OUTAGE_AFTER_MS > nab_ts[nab.outage_at - 1]
    assert nab_ts[nab.outage_at] + nab.outage_s * 1000 < load_dataset("occupancy", NOW)[-1][0]
    # queued readings fit the 128-message outbox (5-min cadence), and the outage lasts longer
    # in wall time than the job's idleness, so the NAB partition goes idle
    assert nab.outage_s / 300 <= 128
    assert nab.outage_s / nab.speedup > WindowJobSettings().idleness_ms / 1000


def test_paced_demo_nodes_wait_for_their_outbox():
    """At speedup > 0 the demo's nodes get backpressure: NAB's backlog (rows before the shared
    clock's origin, all due at once) and FEMTO's 8 h come faster than 20 messages in flight are
    acknowledged, and a node on schedule would overflow its outbox."""
    origin = load_dataset("occupancy", NOW)[0][0]
    backlog = sum(ts < origin for ts, *_ in load_dataset("nab", NOW))
    assert backlog > 128  # more than the outbox holds
    for specs in (default_demo_specs(speedup=5000.0, now_ms=NOW), default_demo_specs(limit=50, speedup=5000.0)):
        assert [s.backpressure for s in specs] == [True, True, True]
        assert all("--backpressure" in s.argv(Path("/bin/vn"), "h", 1, Path("/tmp/s")) for s in specs)
    # speedup 0 always waits for the outbox: no flag
    assert not any(s.backpressure for s in default_demo_specs(speedup=0.0))
    assert "--backpressure" not in NodeSpec("nab-machine", speedup=10.0).argv(Path("/bin/vn"), "h", 1,
                                                                              Path("/tmp/s"))
    with pytest.raises(ValueError, match="backpressure needs speedup"):
        NodeSpec("nab-machine", backpressure=True).argv(Path("/bin/vn"), "h", 1, Path("/tmp/s"))


def test_own_clock_specs_without_speedup():
    specs = default_demo_specs(limit=None, speedup=0.0)
    assert all(s.pace_origin_ms is None and s.now_ms is None for s in specs)
    assert [s.outage_at for s in specs] == [None, 1000, None]


def test_argv_carries_the_shared_clock():
    spec = NodeSpec("nab-machine", speedup=10.0, now_ms=NOW, pace_origin_ms=NOW - 5)
    argv = spec.argv(Path("/bin/vn"), "127.0.0.1", 1883, Path("/tmp/seq"))
    assert argv[argv.index("--now-ms") + 1] == str(NOW)
    assert argv[argv.index("--pace-origin-ms") + 1] == str(NOW - 5)
    with pytest.raises(ValueError, match="pace_origin_ms needs speedup"):
        NodeSpec("nab-machine", pace_origin_ms=NOW).argv(Path("/bin/vn"), "h", 1, Path("/tmp/s"))


def test_samples_per_message_reaches_the_node_and_is_checked():
    exe = Path("/bin/vn")
    argv = NodeSpec("femto-b1_1", samples_per_message=10).argv(exe, "h", 1, Path("/tmp/s"))
    assert argv[argv.index("--samples-per-message") + 1] == "10"
    # the default (1) leaves the node's default: one reading per message
    assert "--samples-per-message" not in NodeSpec("femto-b1_1").argv(exe, "h", 1, Path("/tmp/s"))
    for bad in (0, 101):
        with pytest.raises(ValueError, match="samples_per_message must be 1..100"):
            NodeSpec("femto-b1_1", samples_per_message=bad).argv(exe, "h", 1, Path("/tmp/s"))
    for specs in (default_demo_specs(limit=50, samples_per_message=7),
                  default_demo_specs(speedup=5000.0, now_ms=NOW, samples_per_message=7)):
        assert [s.samples_per_message for s in specs] == [7, 7, 7]


def test_cli_option_samples_per_message():
    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers(dest="cmd"))
    assert ap.parse_args(["vnodes"]).samples_per_message == 1
    assert ap.parse_args(["vnodes", "--samples-per-message", "10"]).samples_per_message == 10
    for bad in ("0", "101", "ten"):
        with pytest.raises(SystemExit):
            ap.parse_args(["vnodes", "--samples-per-message", bad])


def test_devices_that_differ_only_in_id_share_a_process():
    fleet = [NodeSpec("femto-b1_1", device_id=f"f-{i}", speedup=10.0, limit=400) for i in range(7)]
    other = NodeSpec("femto-b1_1", device_id="f-late", speedup=10.0, limit=400, outage_at=5, outage_s=9.0)
    plan = plan_processes([fleet[0], other, *fleet[1:]], devices_per_process=3)
    assert [[s.device for s in g] for g in plan] == [["f-0", "f-1", "f-2"], ["f-3", "f-4", "f-5"], ["f-6"],
                                                      ["f-late"]]
    assert len(plan_processes(fleet, devices_per_process=1)) == 7
    with pytest.raises(ValueError, match="devices_per_process"):
        plan_processes(fleet, devices_per_process=0)


def test_shared_argv_is_argv_without_the_device():
    spec = NodeSpec("femto-b1_1", device_id="f-1", speedup=10.0, outage_at=3, outage_s=5.0,
                    samples_per_message=10, extra_args=("--quiet",))
    exe = Path("/bin/vn")
    shared = spec.shared_argv(exe, "h", 1)
    assert not {"--device", "--seq-file", "--username", "--password-file"} & set(shared)
    full = spec.argv(exe, "h", 1, Path("/tmp/f-1.seq"), Path("/auth/f-1.password"))
    device_part = ["--username", "f-1", "--password-file", "/auth/f-1.password", "--device", "f-1",
                   "--seq-file", "/tmp/f-1.seq"]
    assert full == shared[:3] + device_part + shared[3:]
    assert shared[-1] == "--quiet"

"""Integration test of the virtual ESP32 nodes (the firmware core + libmosquitto) against
the real Mosquitto broker and MQTT-to-Kafka bridge, on an isolated stack on free ports.

Each node plays a slice of a real data file. One node has a simulated connectivity outage: it
queues readings in its outbox while offline and flushes them, in order and with their original
timestamps, on reconnect. The test then reads ``sensor-readings`` back and checks, per device,
that exactly the seqs the node reports as PUBACKed (``acked_ranges``, i.e. ``seq_begin ..
seq_end`` less what it counted as dropped) are there, each once, in seq order within the
device's partition (key = device_id).
"""

from __future__ import annotations

import time

import pytest

from iotflink import kafka_io
from iotflink.poll import wait_for
from iotflink.runtime.stack import Stack
from iotflink.simulation.vnodes import NodeSpec, build, run_nodes

pytestmark = pytest.mark.integration

MIN_TS_MS = 1_577_836_800_000  # 2020-01-01: the bridge's floor


@pytest.fixture(scope="session")
def vnode_exe():
    """The virtual node executable, built (or brought up to date) in esp32/build."""
    return build()


#: Services of the module's ``stack`` fixture (tests/conftest.py).
STACK_SERVICES = ('kafka', 'mosquitto', 'bridge')


def _readings_by_device(stack: Stack, expected_total: int) -> dict[str, list[dict]]:
    """sensor-readings once the bridge forwarded ``expected_total`` records, by device."""
    wait_for(lambda: stack.bridge_stats()["forwarded"] >= expected_total, 60, interval_s=0.25,
             what=f"the bridge to forward {expected_total} records")
    records = kafka_io.read_topic(stack.s.kafka_bootstrap, stack.s.topics.readings)
    by_dev: dict[str, list[dict]] = {}
    for rec in records:  # read_topic orders by (partition, offset)
        by_dev.setdefault(rec["key"], []).append(rec)
    return by_dev


def _check_node(result, records: list[dict], now_ms: int) -> None:
    s = result.summary
    dev = result.device_id
    acked = result.acked_seqs()
    # accounting: every seq handed out reached the broker or is counted as dropped
    assert s["messages"] == s["seq_end"] - s["seq_begin"]
    assert len(acked) == result.published
    assert s["messages"] - result.published == result.dropped - s["drops"]["buffer"] - s["drops"]["storage"]
    assert all(s["seq_begin"] <= q < s["seq_end"] for q in acked)
    if acked:
        assert (s["first_seq"], s["last_seq"]) == (acked[0], acked[-1])
    # Kafka: one partition per device (key = device_id), each acked seq exactly once, in order
    assert len({r["partition"] for r in records}) <= 1
    seqs = [r["value"]["seq"] for r in records]
    assert seqs == acked, f"{dev}: Kafka seqs differ from the node's PUBACKed seqs"
    for r in records:
        v = r["value"]
        assert v["device_id"] == dev and r["key"] == dev
        assert MIN_TS_MS <= v["ts"] <= now_ms + 60_000
        assert v["readings"] and "drops" in v


def test_node_with_outage_delivers_every_reading_once_in_order(stack, vnode_exe):
    cfg = stack.s
    dlq_before = stack.bridge_stats()["dead_lettered"]
    # FEMTO: vibration every 10 s + temperature every 1 s; a 60 s outage queues ~66 messages
    # (outbox 128: nothing dropped), flushed on reconnect
    spec = NodeSpec("femto-b1_1", limit=2000, outage_at=800, outage_s=60.0)
    stack.provision([spec.device])  # the node's MQTT credential
    (res,) = run_nodes([spec], cfg.mqtt_host, cfg.mqtt_port, cfg.run_dir, timeout_s=60,
                       exe=vnode_exe, ca_file=cfg.mqtt_ca_file)
    s = res.summary
    print("node summary:", s)  # shown with -s or on failure
    assert res.returncode == 0, s
    assert s["readings"] == 2000 and s["unsent"] == 0
    assert s["connects"] == 2, "connected, then reconnected after the outage"
    assert res.published == s["messages"] and res.dropped == 0, s
    assert s["acked_ranges"] == [[s["seq_begin"], s["seq_end"] - 1]]
    by_dev = _readings_by_device(stack, res.published)
    _check_node(res, by_dev[res.device_id], int(time.time() * 1000))
    assert stack.bridge_stats()["dead_lettered"] == dlq_before
    # the flush after the outage re-sends queued readings with their original timestamps:
    # ts stays in data order (the replay keeps FEMTO's order in this slice)
    ts = [r["value"]["ts"] for r in by_dev[res.device_id]]
    assert ts == sorted(ts)


def test_three_nodes_at_once_one_with_outage_and_overflow(stack, vnode_exe):
    cfg = stack.s
    before = stack.bridge_stats()["forwarded"]
    specs = [
        # 300 s offline: ~330 FEMTO messages > 128-message outbox: the oldest are dropped
        NodeSpec("femto-b1_1", device_id="femto-b1_1-x", limit=1500, outage_at=400, outage_s=300.0),
        NodeSpec("nab-machine", limit=1500, outage_at=700, outage_s=3000.0),  # 10 readings queued
        NodeSpec("occupancy-office", limit=1500),
    ]
    stack.provision([s.device for s in specs])
    results = run_nodes(specs, cfg.mqtt_host, cfg.mqtt_port, cfg.run_dir, timeout_s=60,
                        exe=vnode_exe, ca_file=cfg.mqtt_ca_file)
    femto, nab, occ = results
    for r in results:
        print("node summary:", r.summary)  # shown with -s or on failure
    for r in results:
        assert r.returncode == 0 and r.summary["unsent"] == 0, r.summary
    assert femto.summary["drops"]["outbox"] > 0 and femto.dropped == femto.summary["drops"]["outbox"]
    assert len(femto.summary["acked_ranges"]) == 2, "a gap where the outbox overflowed"
    assert nab.dropped == 0 and occ.dropped == 0
    total = sum(r.published for r in results)
    by_dev = _readings_by_device(stack, before + total)
    now = int(time.time() * 1000)
    for r in results:
        _check_node(r, by_dev.get(r.device_id, []), now)


def test_devices_in_one_process_keep_their_own_connection_seq_and_outbox(stack, vnode_exe):
    """Six devices that differ only in their id run in one virtual_node process (its
    ``--devices-file`` mode): each connects with its own credential and publishes on its own
    topic, overflows its own outbox in the outage (300 s of FEMTO: about 330 samples for 128
    places) and reports its own exact accounting; Kafka holds exactly each device's PUBACKed
    seqs."""
    from iotflink.simulation.vnodes import NodeGroup  # noqa: PLC0415

    cfg = stack.s
    before = stack.bridge_stats()["forwarded"]
    specs = [NodeSpec("femto-b1_1", device_id=f"fleet-{i}", limit=600, outage_at=200, outage_s=300.0)
             for i in range(6)]
    stack.provision([s.device for s in specs])
    with NodeGroup(specs, cfg.mqtt_host, cfg.mqtt_port, cfg.run_dir, exe=vnode_exe, reset_seq=True,
                   ca_file=cfg.mqtt_ca_file) as group:
        assert list(group.devices_per_pid.values()) == [6], "one process for the six devices"
        results = group.wait(timeout_s=60)
    assert [r.device_id for r in results] == [s.device for s in specs]
    for r in results:
        s = r.summary
        print("node summary:", s)  # shown with -s or on failure
        assert r.returncode == 0 and s["unsent"] == 0 and s["readings"] == 600, s
        assert s["connects"] == 2, "its own connection: connected, then reconnected after the outage"
        assert (s["seq_begin"], s["seq_end"]) == (0, 600)
        assert s["drops"]["outbox"] > 0 and r.dropped == s["drops"]["outbox"], s
        assert r.published + r.dropped == 600
        assert len(s["acked_ranges"]) == 2, "a gap where its outbox overflowed"
        assert (cfg.run_dir / "vnodes" / f"{r.device_id}.summary.json").exists()
    by_dev = _readings_by_device(stack, before + sum(r.published for r in results))
    now = int(time.time() * 1000)
    for r in results:
        _check_node(r, by_dev.get(r.device_id, []), now)


def test_shared_clock_nodes_stamp_like_the_replayer_and_pace_together(stack, vnode_exe):
    """Two nodes on one shared event-time clock (``--now-ms``, ``--pace-origin-ms``), as the demo
    runs them: each reading carries exactly the replayer's timestamp for its data row (same
    whole-week shift from the same ``now``: the demo computes the clock's origin and the NAB
    outage row in Python from those), and a node whose data begin after the origin starts late
    by ``(first - origin) / speedup`` wall seconds."""
    from iotflink.simulation.replay import load_dataset  # noqa: PLC0415

    cfg = stack.s
    before = stack.bridge_stats()["forwarded"]
    now = int(time.time() * 1000)
    occ = [r[0] for r in load_dataset("occupancy", now)]
    nab = [r[0] for r in load_dataset("nab", now)]
    speedup = 1200.0  # 5-min NAB rows every 0.25 s, 1-min occupancy rows every 0.05 s
    delay_ms = 3_600_000  # the occupancy node's first reading is due 3 s after start
    origin = occ[0] - delay_ms
    shared = {"speedup": speedup, "now_ms": now, "pace_origin_ms": origin}
    specs = [NodeSpec("occupancy-office", device_id="occ-shared", limit=20, **shared),
             NodeSpec("nab-machine", device_id="nab-shared", limit=40, **shared)]  # weeks before the origin
    t0 = time.monotonic()
    stack.provision([s.device for s in specs])
    results = run_nodes(specs, cfg.mqtt_host, cfg.mqtt_port, cfg.run_dir, timeout_s=120, exe=vnode_exe,
                        ca_file=cfg.mqtt_ca_file)
    for r in results:
        print("node summary:", r.summary, "wall", r.wall_s)
        assert r.returncode == 0 and r.dropped == 0, r.summary
    by_dev = _readings_by_device(stack, before + sum(r.published for r in results))
    occ_ts = [r["value"]["ts"] for r in by_dev["occ-shared"]]
    nab_ts = [r["value"]["ts"] for r in by_dev["nab-shared"]]
    assert occ_ts == occ[:20]
    assert nab_ts == nab[:40]
    # occupancy's 20 rows (19 min of event time) end (delay + 19 min) / speedup = 3.95 s after
    # start at the earliest; NAB's rows, all before the origin, went out at once: the node was
    # done before occupancy's first row was even due (delay / speedup = 3 s; paced on its own
    # clock, its 40 rows would take 40 x 0.25 s = 10 s)
    # (the nodes' own wall_s: start to the last PUBACK)
    occ_wall, nab_wall = results[0].summary["wall_s"], results[1].summary["wall_s"]
    assert occ_wall >= (delay_ms + 19 * 60_000) / speedup / 1000 - 0.1
    assert nab_wall < delay_ms / speedup / 1000, (nab_wall, occ_wall)
    assert time.monotonic() - t0 < 60


def test_batched_node_with_outage_delivers_every_sample_once(stack, vnode_exe):
    """Batches (docs/CONTRACT.md "Batches"): a node sending 10 samples per MQTT message, with an
    outage in the middle (the outbox holds the samples and resends whole batches on reconnect).
    Every seq the node handed out is in ``sensor-readings`` exactly once (nothing went to the
    DLQ), in seq order, with one batch message per 10 samples and ``drops`` on each batch's
    last sample only."""
    cfg = stack.s
    before = stack.bridge_stats()
    spec = NodeSpec("femto-b1_1", device_id="femto-batched", limit=600, outage_at=250,
                    outage_s=30.0, samples_per_message=10)
    stack.provision([spec.device])
    (res,) = run_nodes([spec], cfg.mqtt_host, cfg.mqtt_port, cfg.run_dir, timeout_s=60,
                       exe=vnode_exe, ca_file=cfg.mqtt_ca_file)
    s = res.summary
    print("node summary:", s)  # shown with -s or on failure
    assert res.returncode == 0 and s["unsent"] == 0, s
    assert s["samples_per_message"] == 10 and s["connects"] == 2
    assert res.published == s["messages"] and res.dropped == 0, s
    assert s["acked_ranges"] == [[s["seq_begin"], s["seq_end"] - 1]]
    # FEMTO rows are 1 or 3 readings; 10 samples a message, a partial batch at the end
    batches = -(-s["messages"] // 10)
    assert batches <= s["sends"] < s["messages"] // 5, s
    by_dev = _readings_by_device(stack, before["forwarded"] + res.published)
    records = by_dev["femto-batched"]
    assert [r["value"]["seq"] for r in records] == res.acked_seqs()  # each once, in order
    assert len({r["partition"] for r in records}) == 1
    now = int(time.time() * 1000)
    for r in records:
        v = r["value"]
        assert v["device_id"] == r["key"] == "femto-batched" and v["readings"]
        assert MIN_TS_MS <= v["ts"] <= now + 60_000
    ts = [r["value"]["ts"] for r in records]
    assert ts == sorted(ts)
    with_drops = [r["value"]["seq"] for r in records if "drops" in r["value"]]
    assert len(with_drops) == s["sends"] and s["seq_end"] - 1 in with_drops
    after = stack.bridge_stats()
    assert after["dead_lettered"] == before["dead_lettered"]
    assert after["batches"] - before["batches"] == s["sends"]


def test_paced_node_with_a_backlog_waits_for_its_outbox(stack, vnode_exe):
    """A paced node whose rows all lie before the shared clock's origin has them all due at once
    (the demo's NAB node: 71 days before occupancy's first reading): 2,000 readings, far more than
    its 128-message outbox and 20 messages in flight. With backpressure it sends them as fast as
    its PUBACKs come back and drops none (``drops.outbox`` 0: the outbox never overflowed, not
    even for a message already in flight); every reading is in Kafka once, in order."""
    from iotflink.simulation.replay import load_dataset  # noqa: PLC0415

    cfg = stack.s
    before = stack.bridge_stats()["forwarded"]
    now = int(time.time() * 1000)
    n = 2000
    nab = [r[0] for r in load_dataset("nab", now)]
    spec = NodeSpec("nab-machine", device_id="nab-backlog", limit=n, speedup=5000.0, now_ms=now,
                    pace_origin_ms=nab[n - 1] + 1, backpressure=True)
    stack.provision([spec.device])
    (res,) = run_nodes([spec], cfg.mqtt_host, cfg.mqtt_port, cfg.run_dir, timeout_s=120,
                       exe=vnode_exe, ca_file=cfg.mqtt_ca_file)
    s = res.summary
    print("node summary:", s)  # shown with -s or on failure
    assert res.returncode == 0 and s["unsent"] == 0, s
    assert s["readings"] == n and s["connects"] == 1
    assert s["drops"]["outbox"] == 0 and res.dropped == 0, s
    assert res.published == s["messages"] == n
    assert s["acked_ranges"] == [[s["seq_begin"], s["seq_end"] - 1]]
    assert s["backpressure_s"] >= 0.0
    by_dev = _readings_by_device(stack, before + res.published)
    _check_node(res, by_dev[res.device_id], now)
    assert [r["value"]["ts"] for r in by_dev[res.device_id]] == nab[:n]

"""The bridge's memory stays bounded while Kafka is down.

Real stack on free ports (Kafka KRaft, Mosquitto, the bridge as a stack service; no Flink).
A publisher sends real readings (FEMTO Bearing1_1, NAB, occupancy, in the replayer's order)
at QoS 1 at a constant :data:`RATE_PER_S` the whole time. After a warm-up the Kafka broker is
stopped for :data:`OUTAGE_S` seconds, then started again. The bridge's RSS (``VmRSS`` of
``/proc/<pid>/status``, plus its children's: the Kafka producer's process) and its counters
(stats file) are sampled every second.

**The bound, and why.** The bridge holds at most ``max_inflight`` MQTT messages un-acked
(``IOTFLINK_BRIDGE_MAX_INFLIGHT``, 1,000): its CONNECT carries ``Receive Maximum =
max_inflight``, so Mosquitto stops sending and queues the rest for the persistent session, and
``on_message`` waits (blocking paho's thread) should a broker ignore it; a byte bound
(``IOTFLINK_BRIDGE_MAX_INFLIGHT_BYTES``, 16 MiB) caps large messages too, but real readings
never reach it (``bridge/service.py``). Each held message costs its payload (~120 bytes) and
topic, an ``_Entry`` holding the encoded record for a re-send, the record's copy in
kafka-python's batch and its future with two callbacks: well under
:data:`PER_MESSAGE_BYTES` (4 KiB). So::

    bound = RSS under load just before the outage (interpreter, paho, kafka-python, buffers)
          + max_inflight x 4 KiB            (~4 MiB)
          + 16 MiB slack                    (allocator fragmentation, kafka-python reconnects)

about 20 MiB above the pre-outage RSS. An unbounded bridge would take in the whole minute of
traffic instead, :data:`RATE_PER_S` x :data:`OUTAGE_S` = 30,000 messages at >= 1 KiB each
(the same objects, kept), i.e. >= 29 MiB more, so the bound tells the two apart. The test also
checks the mechanism: the bridge's ``pending`` count never exceeds ``max_inflight`` and its
``received`` count stays flat in the second half of the outage (QoS 1 messages wait at the
broker).

**Nothing lost.** After Kafka is back, every published ``(device_id, seq)`` must be in
``sensor-readings``. The bridge is at-least-once by contract (docs/CONTRACT.md: duplicates
are identified downstream by ``(device_id, seq)``), so duplicates are allowed and reported,
not failed.

**Bridge exit.** The bridge never exits on a Kafka failure: a record Kafka does not confirm
is sent again with backoff, and the acks wait. The test fails if the bridge process did not
survive the outage (memory would then be "bounded" only by dying).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import threading
import time

import pytest

from iotflink import kafka_io
from iotflink.poll import wait_for
from iotflink.runtime.stack import Stack
from iotflink.settings import BridgeSettings
from iotflink.simulation import chaos, monitor
from iotflink.simulation.replay import Message, build_messages, publish

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

#: Services of the module's ``stack`` fixture (tests/conftest.py).
STACK_SERVICES = ('kafka', 'mosquitto', 'bridge')

#: Publishing rate while the test runs (messages/s, QoS 1).
RATE_PER_S = 500
#: How long Kafka stays down (s), from the stop signal to the start of the new broker.
OUTAGE_S = 60
#: Messages in sensor-readings before Kafka is stopped (the bridge is warm, under load).
WARMUP_MESSAGES = 2_500
#: Generous upper bound of the memory one held (un-acked) message costs in the bridge.
PER_MESSAGE_BYTES = 4 * 1024
#: Slack for allocator fragmentation and kafka-python's reconnect machinery.
SLACK_BYTES = 16 * 1024 * 1024
#: Messages published in all: warm-up + outage + broker restart + some after (at RATE_PER_S).
TOTAL_MESSAGES = RATE_PER_S * (OUTAGE_S + 30)


def _own_rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _rss_bytes(pid: int) -> int | None:
    """RSS of the bridge process plus its children (its Kafka producer runs in one,
    ``bridge/producer_process.py``, holding the records' batch copies)."""
    own = _own_rss_bytes(pid)
    if own is None:
        return None
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
            children = [int(c) for c in fh.read().split()]
    except OSError:
        children = []
    return own + sum(_own_rss_bytes(c) or 0 for c in children)


class _Sampler(threading.Thread):
    """Every second: (monotonic time, bridge RSS bytes, bridge stats dict)."""

    def __init__(self, stack: Stack, pid: int) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.stack, self.pid = stack, pid
        self.samples: list[tuple[float, int | None, dict]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            t = time.monotonic()
            try:
                stats = self.stack.bridge_stats()
            except (OSError, ValueError):
                stats = {}
            self.samples.append((t, _rss_bytes(self.pid), stats))
            self._halt.wait(max(0.0, 1.0 - (time.monotonic() - t)))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def between(self, t0: float, t1: float) -> list[tuple[float, int | None, dict]]:
        return [s for s in self.samples if t0 <= s[0] <= t1]


class _Publisher(threading.Thread):
    def __init__(self, messages: list[Message], stack) -> None:
        super().__init__(name="publisher", daemon=True)
        self.messages, self.cfg = messages, stack.s
        self.credentials = stack.provision(sorted({m.device_id for m in messages}))
        self.result: dict | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = publish(self.messages, self.cfg.mqtt_host, self.cfg.mqtt_port, speedup=1.0, window=200,
                                  credentials=self.credentials, ca_file=self.cfg.mqtt_ca_file,
                                  client_id="memory-test-publisher", ack_timeout_s=120)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def _messages() -> list[Message]:
    """Real readings in the replayer's order, release clock rewritten to a constant rate."""
    msgs = build_messages(["femto", "nab", "occupancy"])[:TOTAL_MESSAGES]
    assert len(msgs) == TOTAL_MESSAGES
    return [dataclasses.replace(m, release_ms=i * 1000 // RATE_PER_S) for i, m in enumerate(msgs)]


def _mib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f} MiB"


def test_bridge_rss_bounded_while_kafka_down_and_nothing_lost(stack):
    cfg = stack.s
    max_inflight = BridgeSettings.from_env({**cfg.to_env()}).max_inflight
    pid = stack.pid("bridge")
    assert pid is not None
    rss_idle = _rss_bytes(pid)
    messages = _messages()
    payload_avg = statistics.mean(len(m.payload_bytes()) for m in messages[:2000])

    sampler = _Sampler(stack, pid)
    sampler.start()
    pub = _Publisher(messages, stack)
    with monitor.OutputMonitor(cfg.kafka_bootstrap, [cfg.topics.readings], interval_s=0.5) as mon:
        t_pub = time.monotonic()
        pub.start()
        wait_for(lambda: (mon.latest(cfg.topics.readings) or 0) >= WARMUP_MESSAGES, 60,
                 what=f"{WARMUP_MESSAGES} readings in Kafka (warm-up under load)")
        timing = chaos.restart_kafka(stack, down_for_s=OUTAGE_S)
    t_stop = timing.t_fault
    t_back = t_stop + timing.ready_s

    pub.join(timeout=300)
    assert pub.error is None, f"publisher failed: {pub.error!r}"
    assert pub.result and pub.result["acked"] == len(messages)
    published = {(m.device_id, m.seq) for m in messages}
    exits: list[dict] = list(timing.bridge_restarts)

    def all_in_kafka() -> bool:
        # supervise: a bridge that exited is started again, as systemd / a container restart
        # policy would; the exit itself fails the test below
        exits.extend(chaos.ensure_bridge(stack, t_stop))
        recs = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.readings)
        return published <= {(r["value"]["device_id"], r["value"]["seq"]) for r in recs}

    wait_for(all_in_kafka, 300, interval_s=2.0, what="every published (device_id, seq) in sensor-readings")
    t_done = time.monotonic()
    sampler.stop()
    bridge_survived = not exits and stack.pid("bridge") == pid
    exit_info = exits

    recs = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.readings)
    seen: dict[tuple, int] = {}
    for r in recs:
        key = (r["value"]["device_id"], r["value"]["seq"])
        seen[key] = seen.get(key, 0) + 1
    dups = {k: n for k, n in seen.items() if n > 1}

    before = [s for s in sampler.between(t_pub, t_stop) if s[1]]
    during = [s for s in sampler.between(t_stop, t_back) if s[1]]
    after = [s for s in sampler.between(t_back, t_done) if s[1]]
    rss_before = max(s[1] for s in before)
    bound = rss_before + max_inflight * PER_MESSAGE_BYTES + SLACK_BYTES
    rss_during = max(s[1] for s in during) if during else None
    rss_after = max(s[1] for s in after) if after else None
    pending_max = max((s[2].get("pending", 0) for s in sampler.samples), default=0)
    received_at_stop = next((s[2].get("received") for s in reversed(before) if s[2]), None)
    received_during = [s[2].get("received", 0) for s in during if s[2]]
    report = {
        "rate_per_s": RATE_PER_S, "outage_s": OUTAGE_S, "max_inflight": max_inflight,
        "payload_bytes_avg": round(payload_avg, 1), "published": len(messages),
        "rss_idle": rss_idle, "rss_before_outage_max": rss_before, "rss_during_outage_max": rss_during,
        "rss_after_outage_max": rss_after, "bound": bound, "pending_max": pending_max,
        "received_at_stop": received_at_stop, "received_during_outage_max": max(received_during, default=None),
        "kafka_stop_s": round(timing.down_s, 1), "kafka_ready_after_s": round(timing.ready_s, 1),
        "bridge_survived": bridge_survived, "bridge_exit": exit_info,
        "unique_in_kafka": len(seen), "records_in_kafka": len(recs), "duplicated_keys": len(dups),
        "rss_series_mib": [round(s[1] / 2**20, 1) for s in sampler.samples if s[1]],
    }
    print("\nBRIDGE MEMORY " + json.dumps({k: v for k, v in report.items() if k != "rss_series_mib"}), flush=True)
    print(f"BRIDGE RSS: idle {_mib(rss_idle)}, before outage max {_mib(rss_before)}, during outage max "
          f"{_mib(rss_during)}, after max {_mib(rss_after)}; bound {_mib(bound)}; pending max {pending_max} "
          f"(max_inflight {max_inflight}); {len(dups)} duplicated (device_id, seq)", flush=True)
    print(f"BRIDGE RSS series (MiB, 1 s): {report['rss_series_mib']}", flush=True)

    assert bridge_survived, (f"the bridge exited while Kafka was down ({exit_info}); with Kafka down for "
                             f"{OUTAGE_S} s it should wait (backpressure), not exit")
    assert len(during) >= OUTAGE_S - 5, f"only {len(during)} RSS samples during the outage"
    assert rss_during <= bound, f"bridge RSS {_mib(rss_during)} above the bound {_mib(bound)}"
    assert pending_max <= max_inflight
    # backpressure: in the second half of the outage (the broker long gone, max_inflight
    # messages un-acked) the bridge takes no MQTT message at all; they wait at the broker
    late_received = [s[2].get("received") for s in during if s[2] and s[0] >= t_stop + OUTAGE_S / 2]
    assert late_received and len(set(late_received)) == 1, f"received kept growing: {late_received}"
    assert published <= set(seen), f"lost: {sorted(published - set(seen))[:20]}"

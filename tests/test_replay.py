"""Unit tests of iotflink.simulation.replay: rebasing, ordering, seeded delays (no services needed)."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime

import pytest

from bridge.contract import validate
from iotflink.errors import ConfigError
from iotflink.simulation import replay
from iotflink.simulation.replay import DATA_DIR, WEEK_MS, build_messages, summarise, week_shift_ms

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a Thursday


def _utc_ms(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def plain():
    return build_messages(start_ms=START_MS)


def test_week_shift_lands_in_the_week_before_start():
    for last in (START_MS - 1, START_MS - WEEK_MS, START_MS - WEEK_MS - 1, 1_330_560_000_000, START_MS + 5):
        shifted = last + week_shift_ms(last, START_MS)
        assert START_MS - WEEK_MS <= shifted < START_MS
        assert week_shift_ms(last, START_MS) % WEEK_MS == 0


def test_counts_match_the_files(plain):
    s = summarise(plain)
    assert s["published"] == {"nab-machine": 22695, "femto-b1_1": 2803 + 28418, "occupancy-office": 8143}
    assert s["total"] == 22695 + 31221 + 8143 and s["delayed"] == 0 and s["held_back"] == 0


def test_each_data_set_keeps_weekday_and_time_of_day(plain):
    with open(DATA_DIR / "nab" / "machine_temperature_system_failure.csv", encoding="utf-8") as fh:
        nab_ts = [_utc_ms(r["timestamp"]) for r in csv.DictReader(fh)]
    got = [m.ts_ms for m in plain if m.device_id == "nab-machine"]
    shift = got[0] - nab_ts[0]
    assert shift % WEEK_MS == 0
    # file order kept, including the repeated hour 2014-01-07 02:00-02:55 (real disorder)
    assert got == [t + shift for t in nab_ts]
    rep = _utc_ms("2014-01-07 02:00:00") + shift
    assert sum(1 for t in got if t == rep) == 2
    for device in ("nab-machine", "femto-b1_1", "occupancy-office"):
        last = max(m.ts_ms for m in plain if m.device_id == device)
        assert START_MS - WEEK_MS <= last < START_MS, device


def test_femto_clock_fault_and_day0(plain):
    femto = [m for m in plain if m.device_id == "femto-b1_1"]
    vib = [m for m in femto if "h_rms_g" in m.readings]
    first = vib[0]
    shift = first.ts_ms - (replay.FEMTO_DAY0_MS + round(34779.065664 * 1000))
    assert shift % WEEK_MS == 0
    assert first.readings == {"h_rms_g": 0.56175, "v_rms_g": 0.43580, "peak_abs_g": 2.0100}
    # snapshot 2121 is stamped ~6 h early and kept in its file position
    jumps = [(a, b) for a, b in zip(vib, vib[1:]) if b.ts_ms < a.ts_ms]
    assert len(jumps) == 1
    assert 5 * 3600_000 < jumps[0][0].ts_ms - jumps[0][1].ts_ms < 7 * 3600_000
    assert {"temp_c"} == set(next(m for m in femto if "temp_c" in m.readings).readings)


def test_merged_in_event_time_order_with_seq_per_device(plain):
    releases = [m.release_ms for m in plain]
    assert releases == sorted(releases)
    for m in plain:
        assert m.release_ms >= m.ts_ms  # released at the running max of event time
    seqs: dict[str, int] = {}
    for m in plain:
        assert m.seq == seqs.get(m.device_id, 0)
        seqs[m.device_id] = m.seq + 1
    # disorder exists only where the files have it (NAB repeated hour, FEMTO snapshot 2121)
    back = [(a, b) for a, b in zip(plain, plain[1:]) if b.ts_ms < a.ts_ms and b.device_id == a.device_id]
    assert {b.dataset for _a, b in back} <= {"nab", "femto"}


def test_payloads_pass_the_contract(plain):
    for m in plain:
        out = validate(m.topic, m.payload_bytes(), START_MS)
        assert out["ts"] == m.ts_ms and out["seq"] == m.seq and out["device_id"] == m.device_id
    assert json.loads(plain[0].payload_bytes()) == plain[0].payload()
    assert plain[0].topic == f"sensors/{plain[0].device_id}/telemetry"


def test_seeded_delays_are_reproducible_and_bounded():
    kw = dict(start_ms=START_MS, datasets=["nab", "occupancy"], delay_fraction=0.1, delay_ms=7_000,
              late_fraction=0.02, late_ms=900_000)
    a = build_messages(seed=3, **kw)
    b = build_messages(seed=3, **kw)
    c = build_messages(seed=4, **kw)
    assert a == b
    assert [m.kind for m in a] != [m.kind for m in c]
    s = summarise(a)
    n = s["total"]
    assert 0.08 * n < s["delayed"] < 0.12 * n
    assert 0.01 * n < s["held_back"] < 0.03 * n
    assert sorted(m.release_ms for m in a) == [m.release_ms for m in a]
    plain = {(m.device_id, m.seq): m for m in build_messages(start_ms=START_MS, datasets=["nab", "occupancy"])}
    for m in a:
        base = plain[(m.device_id, m.seq)]
        assert m.ts_ms == base.ts_ms and m.readings == base.readings  # event time never changes
        extra = {"normal": 0, "delayed": 7_000, "held": 900_000}[m.kind]
        assert m.release_ms == base.release_ms + extra
    # a delayed message is published after every message released before its release time
    pos = {(m.device_id, m.seq): i for i, m in enumerate(a)}
    d = next(m for m in a if m.kind == "delayed")
    assert all(pos[(x.device_id, x.seq)] < pos[(d.device_id, d.seq)] for x in a if x.release_ms < d.release_ms)


def test_limit_is_per_data_set_and_rebased_on_the_slice():
    msgs = build_messages(["nab", "femto"], START_MS, limit=50)
    s = summarise(msgs)
    assert s["published"] == {"nab-machine": 50, "femto-b1_1": 50}
    nab = [m.ts_ms for m in msgs if m.device_id == "nab-machine"]
    assert START_MS - WEEK_MS <= max(nab) < START_MS
    assert nab == sorted(nab) and nab[1] - nab[0] == 300_000  # 5 min cadence


def test_bad_arguments():
    with pytest.raises(ConfigError):
        build_messages(["nope"], START_MS)
    with pytest.raises(ConfigError):
        build_messages(["nab"], START_MS, delay_fraction=0.8, late_fraction=0.3)
    with pytest.raises(ConfigError):
        build_messages(["nab"], START_MS, delay_ms=-1)


def test_cli_dry_run(capsys):
    assert replay.main(["--dry-run", "--datasets", "occupancy", "--limit", "10", "--start-ms", str(START_MS)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["published"] == {"occupancy-office": 10} and out["dry_run"] is True

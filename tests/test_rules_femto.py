"""The bearing rule on the real FEMTO Bearing1_1 run, against an independent computation.

The readings are built from ``data/femto/Bearing1_1_*.csv`` as the node publishes them
(docs/CONTRACT.md: device ``femto-b1_1``; one message per vibration snapshot with h_rms_g,
v_rms_g, peak_abs_g in g; one message per second with temp_c in degrees C; day 0 at
2012-03-01 UTC), in arrival order: by time, except that snapshots 2121 and 2122, whose
clock is about 6 h early, arrive after snapshot 2120. The rule (sql/rules/bearing_failure.sql)
runs on a MiniCluster; the test recomputes the same definition in plain Python over the CSV
rows: watermark lateness, baseline of the first 560 snapshots, spikes above 3x, first
temperature after the spike, first rise of 0.3 C from it, less than 60 s after the spike.
"""

from __future__ import annotations

import bisect
import csv
from datetime import datetime, timezone

import pytest

from iotflink.settings import PROJECT_ROOT, RulesSettings
from jobs.rules import alert_id, local_env, parse_rule_file, run_bounded

pytestmark = [pytest.mark.minicluster, pytest.mark.slow]

FEMTO = PROJECT_ROOT / "data" / "femto"
DAY0_MS = int(datetime(2012, 3, 1, tzinfo=timezone.utc).timestamp() * 1000)
DEVICE = "femto-b1_1"


def femto_readings() -> list[dict]:
    """Readings of Bearing1_1 in arrival order (dicts with the DDL's columns)."""
    items = []  # (arrival key s, kind, event time s, values)
    prev_t = 0.0
    with open(FEMTO / "Bearing1_1_vibration.csv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            t = float(r["time_of_day_s"])
            arrival = t if t > prev_t else prev_t + 0.001  # a faulty clock does not change arrival
            prev_t = max(prev_t, t)
            items.append((arrival, 0, t, {"h_rms_g": float(r["h_rms_g"]), "v_rms_g": float(r["v_rms_g"]),
                                          "peak_abs_g": float(r["peak_abs_g"])}))
    with open(FEMTO / "Bearing1_1_temperature.csv", encoding="utf-8") as fh:
        for i, r in enumerate(csv.DictReader(fh)):
            t = float(r["time_of_day_s"])
            items.append((t, 1 + i * 1e-9, t, {"temp_c": float(r["temp_c"])}))
    items.sort(key=lambda x: (x[0], x[1]))
    rows = []
    for seq, (_, _, t, values) in enumerate(items):
        ts = DAY0_MS + round(t * 1000)
        rows.append({"device_id": DEVICE, "seq": seq, "ts": ts, "readings": values, "ingest_ms": ts})
    return rows


def independent_alerts(rows: list[dict], params: dict[str, float], bound_ms: int):
    """The rule's definition in plain Python: returns (set of (S, T0, R) times, late seqs)."""
    late, on_time, max_ts = set(), [], None
    for r in rows:  # watermark = highest event time seen - bound; at or behind it = late
        if max_ts is not None and r["ts"] <= max_ts - bound_ms:
            late.add(r["seq"])
        else:
            on_time.append(r)
        max_ts = r["ts"] if max_ts is None else max(max_ts, r["ts"])
    on_time.sort(key=lambda r: (r["ts"], r["seq"]))
    n_base = int(params["baseline_snapshots"])
    vib = [r for r in on_time if "h_rms_g" in r["readings"]]
    base = 0.0
    for r in vib[:n_base]:
        base += r["readings"]["h_rms_g"]
    base /= n_base
    temps = [r for r in on_time if "temp_c" in r["readings"]]
    keys = [(r["ts"], r["seq"]) for r in temps]
    within = params["within_s"] * 1000
    out = set()
    for s in vib[n_base:]:
        if not s["readings"]["h_rms_g"] > params["spike_k"] * base:
            continue
        i = bisect.bisect_right(keys, (s["ts"], s["seq"]))
        if i >= len(temps):
            continue
        t0 = temps[i]
        for r in temps[i + 1:]:
            if r["ts"] - s["ts"] >= within:
                break
            if r["readings"]["temp_c"] >= t0["readings"]["temp_c"] + params["rise_c"]:
                out.add((s["ts"], t0["ts"], r["ts"]))
                break
    return out, late, base


def test_bearing_rule_on_femto_bearing1_1(tmp_path):
    rule = parse_rule_file(PROJECT_ROOT / "sql" / "rules" / "bearing_failure.sql")
    cfg = RulesSettings()
    rows = femto_readings()
    want, want_late, base = independent_alerts(rows, rule.params, cfg.out_of_orderness_ms)
    alerts, late = run_bounded(local_env(), cfg, rule, tmp_path, readings=rows, database="femto")
    got = {tuple(e["ts_ms"] for e in a["events"]) for a in alerts}
    assert len(got) == len(alerts)  # one alert per match, no duplicates
    assert got == want
    # calibration figures quoted in the rule header (k = 3, rise 0.3 C, 560-snapshot baseline)
    assert base == pytest.approx(0.37856, abs=1e-5)
    assert len(want) == 199
    assert all(a["alert_id"] == alert_id("bearing_failure", DEVICE, [e["ts_ms"] for e in a["events"]])
               for a in alerts)
    # snapshots 2121 and 2122 carry the clock fault (34726.86566 s, about 6 h early): they
    # are the late rows, and they are reported, not dropped silently
    assert {r["seq"] for r in late} == want_late
    assert len(want_late) == 2
    assert {(r["record_key"], r["ts"]) for r in late} == {(DEVICE, DAY0_MS + 34_726_866)}

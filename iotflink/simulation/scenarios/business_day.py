"""Scenario ``business-day``: daily totals in a business time zone across a DST change, checked
against an independent computation.

Data (real): the Numenta Anomaly Benchmark machine temperature series
(``data/nab/machine_temperature_system_failure.csv``, one reading every 5 min), its values in
file order laid on a 5 min grid that starts at local midnight of :data:`START_LOCAL` in
:data:`ZONE` and runs for :data:`DAYS` local days (two weeks; the short run 4 days), across the
end of daylight saving time on 2026-11-01 (clocks go back from 02:00 EDT to 01:00 EST: a 25 h
day, IANA tz database). The grid is in UTC epoch time, so the 25 h day holds 300 readings.

Job: ``jobs/sensor_windows`` with ``IOTFLINK_WINDOW_KIND=daily`` and
``IOTFLINK_WINDOW_TIME_ZONE`` = :data:`ZONE`: one window per local calendar day, from local
midnight to local midnight. Reference, computed here without Flink: each reading's local date
from Python's ``zoneinfo`` (``datetime.fromtimestamp(ts, ZoneInfo(zone)).date()``), then per
date the count, sum, min and max.

Claims checked: one aggregate per local date of the run, each with the reference's count, sum
(mean x count, to 1e-9 relative), min and max; the DST day is 25 h long (its window and its
count) and the others 24 h; nothing late.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import math
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from iotflink.simulation.replay import DATA_DIR
from iotflink.simulation.scenarios.base import Outcome, Say, Scenario, run_window_jobs

if TYPE_CHECKING:
    from iotflink.runtime.stack import Stack

NAME = "business-day"
ZONE = "America/New_York"
START_LOCAL = dt.date(2026, 10, 26)  # a Monday; the DST change is on Sunday 2026-11-01
SHORT_START_LOCAL = dt.date(2026, 10, 30)
DAYS, SHORT_DAYS = 14, 4
DST_DATE = "2026-11-01"
INTERVAL_MS = 300_000
DEVICE = "machine-temperature"
SENSOR = "temp"
TOPIC = "scenario-business-day"
INSTANCE = "business-day"
SETTINGS = {"IOTFLINK_WINDOW_KIND": "daily", "IOTFLINK_WINDOW_TIME_ZONE": ZONE,
            "IOTFLINK_OUT_OF_ORDERNESS_MS": "5000", "IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": "5000"}


def local_midnight_ms(day: dt.date, zone: str = ZONE) -> int:
    """Epoch ms of local midnight starting ``day`` in ``zone``."""
    return int(dt.datetime.combine(day, dt.time(0), tzinfo=ZoneInfo(zone)).timestamp() * 1000)


def generate(start: dt.date, days: int) -> list[dict]:
    """NAB machine temperatures on a 5 min grid from local midnight of ``start`` for ``days``
    local days (in :data:`ZONE`); contract readings ``{"device_id", "seq", "ts", "readings":
    {"temp": value}}`` in time order.

    Raises:
        ValueError: the data set has fewer rows than the grid needs.
    """
    begin, end = local_midnight_ms(start), local_midnight_ms(start + dt.timedelta(days=days))
    need = (end - begin) // INTERVAL_MS
    with open(DATA_DIR / "nab" / "machine_temperature_system_failure.csv", newline="", encoding="utf-8") as fh:
        values = [float(row["value"]) for row in itertools.islice(csv.DictReader(fh), need)]
    if len(values) < need:
        raise ValueError(f"the NAB series has {len(values)} rows, the grid needs {need}")
    return [{"device_id": DEVICE, "seq": i, "ts": begin + i * INTERVAL_MS, "readings": {SENSOR: v}}
            for i, v in enumerate(values)]


def reference_totals(readings: list[dict], zone: str = ZONE) -> dict[str, dict]:
    """Per local date (``YYYY-MM-DD`` in ``zone``, from ``zoneinfo``): ``{"count", "sum",
    "min", "max"}`` of the readings' values."""
    tz = ZoneInfo(zone)
    out: dict[str, dict] = {}
    for r in readings:
        date = dt.datetime.fromtimestamp(r["ts"] / 1000, tz).date().isoformat()
        v = r["readings"][SENSOR]
        t = out.setdefault(date, {"count": 0, "sum": 0.0, "min": math.inf, "max": -math.inf})
        t["count"] += 1
        t["sum"] += v
        t["min"], t["max"] = min(t["min"], v), max(t["max"], v)
    return out


def run(stack: Stack, short: bool, say: Say) -> Outcome:
    """Run the scenario on ``stack`` (Kafka and Flink); ``short``: 4 days instead of 14."""
    start, days = (SHORT_START_LOCAL, SHORT_DAYS) if short else (START_LOCAL, DAYS)
    readings = generate(start, days)
    say(f"NAB machine temperature, {len(readings)} readings every 5 min over {days} local days of {ZONE} "
        f"from {start} (DST ends {DST_DATE}: a 25 h day)")
    res = run_window_jobs(stack, TOPIC, {INSTANCE: SETTINGS}, readings, say)[INSTANCE]
    ref = reference_totals(readings)
    got = {a["local_date"]: a for a in res.aggregates}

    say("")
    say(f"daily totals in {ZONE}: job vs zoneinfo reference")
    say(f"  {'local date':10}  {'hours':>5}  {'count':>11}  {'sum (job)':>12}  {'sum (ref)':>12}  {'min':>7}  {'max':>7}")
    out = Outcome()
    mismatches = []
    for date in sorted(set(ref) | set(got)):
        r, a = ref.get(date), got.get(date)
        hours = (a["window_end_ms"] - a["window_start_ms"]) / 3_600_000 if a else float("nan")
        a_sum = a["mean"] * a["count"] if a else float("nan")
        say(f"  {date:10}  {hours:5.0f}  {(a or {}).get('count', '-'):>5}/{(r or {}).get('count', '-'):<5}  "
            f"{a_sum:12.3f}  {(r or {}).get('sum', float('nan')):12.3f}  {(a or {}).get('min', float('nan')):7.2f}  "
            f"{(a or {}).get('max', float('nan')):7.2f}")
        ok = (r is not None and a is not None and a["count"] == r["count"]
              and math.isclose(a_sum, r["sum"], rel_tol=1e-9) and math.isclose(a["min"], r["min"])
              and math.isclose(a["max"], r["max"]))
        if not ok:
            mismatches.append(date)
    lengths = {d: (a["window_end_ms"] - a["window_start_ms"]) / 3_600_000 for d, a in got.items()}
    out.figures = {"zone": ZONE, "days": days, "first_local_date": start.isoformat(), "readings": len(readings),
                   "dst_date": DST_DATE, "dst_day_hours": lengths.get(DST_DATE),
                   "dst_day_count": (got.get(DST_DATE) or {}).get("count"),
                   "dates_matching_reference": len(ref) - len(set(mismatches) & set(ref)),
                   "dates": len(ref), "late": len(res.late)}
    out.check("every local date's total equals the zoneinfo reference (count, sum, min, max)",
              not mismatches and len(got) == len(ref) == days,
              f"{len(ref) - len(mismatches)}/{len(ref)} dates match; {len(got)} aggregates; mismatches {mismatches or 'none'}")
    out.check(f"the DST day {DST_DATE} is 25 h (300 readings), every other day 24 h (288)",
              lengths.get(DST_DATE) == 25 and got.get(DST_DATE, {}).get("count") == 300
              and all(h == 24 for d, h in lengths.items() if d != DST_DATE)
              and all(a["count"] == 288 for d, a in got.items() if d != DST_DATE),
              f"{DST_DATE}: {lengths.get(DST_DATE)} h, {(got.get(DST_DATE) or {}).get('count')} readings; others "
              f"{sorted({h for d, h in lengths.items() if d != DST_DATE})} h")
    out.check("nothing late, nothing dropped", not res.late and not res.dropped_late,
              f"{len(res.late)} late records, numLateRecordsDropped {res.dropped_late}")
    return out


SCENARIO = Scenario(NAME, "two weeks of real machine temperatures across the end of DST: daily totals "
                          f"in {ZONE} (a 25 h day) equal an independent zoneinfo computation", run)

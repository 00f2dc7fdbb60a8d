"""Reference model of the window job (``jobs/sensor_windows.py``) in plain Python, for tests and
benchmarks: the dedup state (copy numbers under Flink's state TTL) and its size, window
assignment (tumbling, sliding, daily, session), and the lateness test of Flink's window operator.
The job itself runs none of this: it is Flink SQL; the tests compare the job's output with what
this model computes from the same input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from iotflink.settings import WindowJobSettings

#: Largest event time (Java ``Long.MAX_VALUE``, ms); :func:`cleanup_time` saturates at it like Flink.
LONG_MAX = 2**63 - 1


# --------------------------------------------------------------------------- deduplication model
@dataclass(frozen=True)
class DedupEntry:
    """The dedup state of one ``(device_id, seq)``: copies seen and the last write (ms)."""

    copies: int
    written_ms: int


def dedup_visible(entry: DedupEntry | None, now_ms: int, ttl_ms: int) -> bool:
    """Whether ``entry`` is still visible at processing time ``now_ms`` under a TTL of ``ttl_ms``.

    Flink's TTL (``TtlUtils.expired``): expired iff ``written + ttl <= now``; with
    NeverReturnExpired an expired value reads as absent even before cleanup removes it.
    """
    return entry is not None and entry.written_ms + ttl_ms > now_ms


def dedup_step(state: Mapping[tuple[str, int], DedupEntry], device_id: str, seq: int, now_ms: int,
               ttl_ms: int) -> tuple[dict[tuple[str, int], DedupEntry], int]:
    """One reading through the dedup: the model of the SQL operator, for unit tests.

    Args:
        state: ``(device_id, seq) -> DedupEntry`` before the reading (not modified).
        device_id, seq: the reading's identity (docs/CONTRACT.md).
        now_ms: processing time of the arrival (ms, the TaskManager's wall clock).
        ttl_ms: ``dedup_ttl_ms`` (> 0).

    Returns:
        ``(new_state, copy_no)``: ``copy_no == 1`` passes to the windows, ``> 1`` goes to
        sensor-duplicates. The entry is rewritten on every copy (OnCreateAndWrite), so it
        expires ``ttl_ms`` after the last copy.

    Raises:
        ValueError: ``ttl_ms`` is not positive.
    """
    if ttl_ms <= 0:
        raise ValueError(f"dedup TTL must be positive: {ttl_ms} ms")
    key = (device_id, seq)
    prev = state.get(key)
    copy_no = prev.copies + 1 if dedup_visible(prev, now_ms, ttl_ms) else 1
    new_state = dict(state)
    new_state[key] = DedupEntry(copy_no, now_ms)
    return new_state, copy_no


def dedup_expire(state: Mapping[tuple[str, int], DedupEntry], now_ms: int,
                 ttl_ms: int) -> dict[tuple[str, int], DedupEntry]:
    """The entries still visible at ``now_ms`` (what background cleanup converges to)."""
    return {k: v for k, v in state.items() if dedup_visible(v, now_ms, ttl_ms)}


#: Estimated RocksDB bytes per dedup key: key group (2) + device_id (~20) + seq (8) +
#: namespace (1) + TTL timestamp (8) + BIGINT accumulator row (~13), plus ~50 bytes of
#: RocksDB per-entry overhead (index, block framing). An estimate, not a measurement.
DEDUP_BYTES_PER_KEY = 100


def dedup_ttl(devices: int, readings_per_s_per_device: float, ttl_ms: int,
              bytes_per_key: int = DEDUP_BYTES_PER_KEY) -> dict[str, float]:
    """Size the dedup state: keys alive = devices x TTL x rate; bytes = keys x bytes per key.

    Default TTL (``IOTFLINK_DEDUP_TTL_MS`` = 1 h): longer than the longest redelivery gap
    we expect between two copies of a reading, which is the time a copy can wait before it
    is sent again:

    - bridge crash after Kafka acked but before the MQTT ack: the broker redelivers when the
      bridge reconnects (restart back-off, seconds) behind the messages queued for the
      persistent session meanwhile (an outage of minutes: the fault tests stop Kafka for 1 min);
    - the bridge's producer retries within ``delivery.timeout.ms`` (2 min by default);
    - a node that lost its PUBACK re-sends from its outbox when it reconnects, which can be
      as long as the outage itself; the project's sizing of a post-outage flush is an hour of
      readings (10,000 sensors, 36 million readings), so 1 h covers a full hour's outage.

    A copy arriving after the TTL is not dropped (it is counted twice in an aggregate if its
    window is still open, else it goes to sensor-late, where (device_id, seq) shows it).

    State at the default, 1 h TTL, :data:`DEDUP_BYTES_PER_KEY` = 100 B:

    - demo (3 devices, ~1 reading/s in all): ~3,600 keys, ~0.4 MB;
    - the fleet (8,000 devices every 5 s = 1,600 readings/s): 5.76 M keys,
      ~576 MB in RocksDB; incremental checkpoints upload only the new keys,
      1,600 keys/s x 100 B = 160 kB/s, ~4.8 MB per 30 s checkpoint. A 10 min TTL cuts it to
      960,000 keys, ~96 MB, if redeliveries are known to come sooner.

    Returns:
        ``{"keys": ..., "bytes": ..., "bytes_per_s_new": ...}``.
    """
    keys = devices * readings_per_s_per_device * ttl_ms / 1000.0
    return {"keys": keys, "bytes": keys * bytes_per_key,
            "bytes_per_s_new": devices * readings_per_s_per_device * bytes_per_key}


# --------------------------------------------------------------------------- window arithmetic
def window_bounds(ts_ms: int, size_ms: int) -> tuple[int, int]:
    """The tumbling window ``[start, end)`` holding event time ``ts_ms``, as Flink assigns it.

    Windows are aligned to the epoch (offset 0; the job sets ``table.local-time-zone=UTC``):
    ``start = ts - floor_mod(ts, size)``, also for negative ``ts``
    (``TimeWindow.getWindowStartWithOffset``).

    Args:
        ts_ms: event time, epoch ms.
        size_ms: window length, ms.

    Returns:
        ``(window_start_ms, window_end_ms)``; ``end = start + size``, exclusive.

    Raises:
        ValueError: ``size_ms`` is not positive.
    """
    if size_ms <= 0:
        raise ValueError(f"window size must be positive: {size_ms} ms")
    start = ts_ms - ts_ms % size_ms  # Python's % is floor_mod
    return start, start + size_ms


def cleanup_time(window_end_ms: int, allowed_lateness_ms: int) -> int:
    """Event time (ms) at which a window stops accepting elements and its state is dropped.

    ``window.maxTimestamp() + allowedLateness`` with ``maxTimestamp = end - 1``; saturates at
    :data:`LONG_MAX` like Flink.
    """
    value = window_end_ms - 1 + allowed_lateness_ms
    return LONG_MAX if value > LONG_MAX else value


def is_late(ts_ms: int, watermark_ms: int | None, size_ms: int, allowed_lateness_ms: int) -> bool:
    """Whether an event goes to the late side output instead of its window.

    The same test as Flink's window operator: ``cleanup_time(window) <= watermark``.

    Args:
        ts_ms: the event's time, epoch ms.
        watermark_ms: the current watermark, epoch ms; ``None`` before the first watermark
            (``CURRENT_WATERMARK`` is NULL then), which is never late.
        size_ms: window length, ms.
        allowed_lateness_ms: allowed lateness, ms (>= 0).
    """
    if watermark_ms is None:
        return False
    _, end = window_bounds(ts_ms, size_ms)
    return cleanup_time(end, allowed_lateness_ms) <= watermark_ms


def sliding_windows(ts_ms: int, size_ms: int, slide_ms: int) -> list[tuple[int, int]]:
    """The sliding windows ``[start, end)`` holding event time ``ts_ms``, latest first.

    Windows start every ``slide_ms`` from the epoch and last ``size_ms``, a multiple of the
    slide, so a value is in exactly ``size_ms / slide_ms`` windows: starts
    ``last - k * slide`` for ``k = 0 .. size/slide - 1``, ``last = ts - floor_mod(ts, slide)``
    (Flink's ``SlidingEventTimeWindows.assignWindows``, offset 0).

    Raises:
        ValueError: a non-positive size or slide, or a size that is not a multiple of the slide.
    """
    if size_ms <= 0 or slide_ms <= 0 or size_ms % slide_ms:
        raise ValueError(f"sliding window {size_ms} ms by {slide_ms} ms: need positive, size a multiple of slide")
    last = ts_ms - ts_ms % slide_ms
    return [(last - k * slide_ms, last - k * slide_ms + size_ms) for k in range(size_ms // slide_ms)]


def daily_window(ts_ms: int, time_zone: str) -> tuple[int, int, str]:
    """The local calendar day of ``time_zone`` holding event time ``ts_ms``.

    Returns:
        ``(start_ms, end_ms, local_date)``: epoch ms of the day's local midnight and of the next
        one (23 h or 25 h apart across a DST change), and the date as ``YYYY-MM-DD``.

    Raises:
        ZoneInfoNotFoundError: ``time_zone`` is not an IANA name.
    """
    import datetime as dt  # noqa: PLC0415
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    zone = ZoneInfo(time_zone)
    day = dt.datetime.fromtimestamp(ts_ms / 1000, zone).date()
    start = dt.datetime.combine(day, dt.time(), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000), day.isoformat()


def windows_of(ts_ms: int, cfg: WindowJobSettings) -> list[tuple[int, int, str | None]]:
    """Every window of ``cfg``'s kind holding event time ``ts_ms``: ``(start_ms, end_ms,
    local_date)``, ``local_date`` None except for daily windows. One window for tumbling and
    daily, ``size / slide`` for sliding (latest first); for session windows the value's own
    ``[ts, ts + gap)``, the window its lateness is judged by (its session is found by
    :class:`SessionModel`)."""
    if cfg.window_kind == "session":
        return [(ts_ms, ts_ms + cfg.window_gap_ms, None)]
    if cfg.window_kind == "sliding":
        return [(a, b, None) for a, b in sliding_windows(ts_ms, cfg.window_size_ms, cfg.slide_ms)]
    if cfg.window_kind == "daily":
        return [daily_window(ts_ms, cfg.time_zone)]
    return [(*window_bounds(ts_ms, cfg.window_size_ms), None)]


@dataclass
class SessionModel:
    """Session windows of one job run as the job computes them, for tests: one instance per run.

    State per (device_id, sensor): the open sessions ``[start, end)`` with their values. Feed
    the values of each record with :meth:`add` (judged at the watermark before the record),
    then the record's watermark with :meth:`advance`, which closes (fires) every session whose
    ``end - 1`` it reached (Flink's event-time timer at ``maxTimestamp + allowed lateness 0``).
    """

    gap_ms: int
    open: dict = field(default_factory=dict)  # (device_id, sensor) -> [[start, end, values], ...]
    fired: list = field(default_factory=list)  # [(device_id, sensor, start, end, values), ...]

    def add(self, key: tuple[str, str], ts_ms: int, value: float, watermark_ms: int | None) -> bool:
        """Add one value; returns False if it is late (its own ``[ts, ts + gap)`` is closed at
        ``watermark_ms``: it goes to sensor-late and no session), else True.

        An on-time value merges with every open session it touches (``TimeWindow.intersects``:
        ``start <= other.end and end >= other.start``).
        """
        if window_is_late(ts_ms + self.gap_ms, watermark_ms, 0):
            return False
        start, end, values = ts_ms, ts_ms + self.gap_ms, [value]
        keep = []
        for s in self.open.get(key, []):
            if s[0] <= end and s[1] >= start:
                start, end, values = min(start, s[0]), max(end, s[1]), values + s[2]
            else:
                keep.append(s)
        self.open[key] = keep + [[start, end, values]]
        return True

    def advance(self, watermark_ms: int | None) -> None:
        """Fire (and forget) every open session with ``end - 1 <= watermark_ms``."""
        for key, sessions in self.open.items():
            done = [s for s in sessions if window_is_late(s[1], watermark_ms, 0)]
            self.fired += [(*key, s[0], s[1], s[2]) for s in done]
            self.open[key] = [s for s in sessions if s not in done]

    def close(self) -> list[tuple]:
        """End of input (watermark MAX): every session fires; returns all fired sessions."""
        for key, sessions in self.open.items():
            self.fired += [(*key, s[0], s[1], s[2]) for s in sessions]
        self.open = {}
        return self.fired


def window_is_late(end_ms: int, watermark_ms: int | None, allowed_lateness_ms: int) -> bool:
    """Whether the window ending at ``end_ms`` (exclusive, epoch ms) takes no more values at
    ``watermark_ms``: ``cleanup_time(end, lateness) <= watermark`` (never before the first
    watermark). The test of :func:`is_late`, for a window of any kind."""
    return watermark_ms is not None and cleanup_time(end_ms, allowed_lateness_ms) <= watermark_ms

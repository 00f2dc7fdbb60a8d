"""Job ``anomaly``: z-score anomaly detection per (device_id, sensor), in the PyFlink DataStream API.

Pipeline (operator uids in brackets; every operator is named)::

    sensor-readings (Kafka, value read as UTF-8 text)                    [anomaly-source]
      -> parse (ProcessFunction): JSON + iotflink.schema check,          [anomaly-parse]
         one row per sensor value
         |-- unreadable record -> side output  -> sensor-anomaly-dlq    (source, reason, detail, raw)
      -> event time = the reading's ts (epoch ms); WatermarkStrategy:    [anomaly-watermarks]
         bounded out-of-orderness + idleness
      -> key by (device_id, sensor)                                      [anomaly-unwrap]
      -> score (KeyedProcessFunction): baseline in keyed state           [anomaly-score]
         |-- ts <= watermark   -> side output  -> sensor-anomaly-late   (the reading, the watermark)
         |-- alert             -> side output  -> alerts                (the alerts table's columns)
         `-- every other value -> sensor-scores                         (z, season_z, likelihood, baseline)

``build`` wires this from an injected source stream (raw JSON text) into injected sinks
(table descriptors), so tests run exactly this pipeline on a MiniCluster with file sinks;
``main`` alone wires Kafka. The sinks are Flink table sinks fed from the DataStreams
(``from_data_stream`` + one statement set attached to the stream environment): the Kafka
table connector gives record keys, exactly-once transactions and the same JSON encoding as
the SQL jobs' ``alerts`` table (``sql/ddl.sql``).

The model (plain functions of (state, reading); the Flink functions only call them)
---------------------------------------------------------------------------------
Per key (device_id, sensor) the job keeps a :class:`Baseline`: an exponentially weighted (EW)
mean and variance of the sensor's values, one more per time-of-day bin, the range of the
values seen, the newest event time, and the alert state.

*Baseline update* (Finch 2009, "Incremental calculation of weighted mean and variance",
University of Cambridge Computing Service, the exponentially weighted recurrences)::

    diff = x - mean;  incr = a * diff;  mean <- mean + incr;  var <- (1 - a) * (var + diff * incr)

with ``a = max(alpha, 1 / n)`` for the n-th reading of the baseline and
``alpha = 1 - 2 ** (-1 / half_life)`` (a reading's weight halves after ``half_life`` further
readings). With ``a = 1/n`` the same recurrence is the running mean and population variance
(Welford 1962, "Note on a method for calculating corrected sums of squares and products",
Technometrics 4(3)), so a young baseline is the plain average of all its readings and only
becomes exponentially weighted once ``1/n < alpha`` (n > ~1.44 half_life). Started at
``var = 0`` with a fixed ``alpha`` instead, the variance stays a small fraction of the true
one until n is several half-lives, and early z-scores are inflated (measured on Gaussian
noise: 0.13 of the true variance after 100 readings at half-life 1000).

*Time-of-day baselines.* The UTC day is cut into ``season_bins`` equal bins (12: two hours
each; :func:`season_bin` of the reading's event time), and each bin keeps its own EW mean
and variance, by the same recurrence over the readings that fell in it (its own n, the same
half-life counted in its own readings). A reading is also compared with the baseline of its
bin: a value normal by day but not at night is anomalous at night. This is the seasonal
profile of classical decomposition (Hyndman and Athanasopoulos, "Forecasting: Principles and
Practice", 3rd ed., 2021, ch. 3: a seasonal component per time of day), kept as a running
mean and variance per bin; NAB's HTM detector feeds the time of day to its model for the
same reason (its ``getScalarMetricWithTimeOfDayAnomalyParams``).

*Score* of a reading x against the baselines *before* x is absorbed (a one-step-ahead
prediction error, so a reading never dilutes its own score)::

    z        = (x - mean) / max(sqrt(var), 1e-9 * max(1, |mean|))    (the floor only avoids 0/0)
    season_z = the same against the baseline of x's time-of-day bin (null while that bin
               holds fewer than min_samples readings)
    strength = max(|z|, |season_z|)
    out_of_range: x > hi + t or x < lo - t,  t = range_tolerance * (hi - lo)
    likelihood = erf(strength / sqrt(2)) = 1 - 2 Q(strength),  1.0 when out of range   (0..1)

``lo``/``hi`` are the smallest and largest value the baseline absorbed. The range check is
the "spatial anomaly" of Numenta's detector in NAB (``nab/detectors/numenta/
numenta_detector.py``: a value beyond the range seen so far by more than
``SPATIAL_TOLERANCE = 0.05`` of it is an anomaly whatever the model says); it catches a
reading that leaves everything seen before even where the variance is wide. ``Q`` is the standard Gaussian tail.
The likelihood maps the standardised
deviation through the Gaussian tail as the anomaly likelihood of Ahmad, Lavin, Purdy and
Agha (2017, "Unsupervised real-time anomaly detection for streaming data", Neurocomputing
262:134-147: ``L_t = 1 - Q((short-term mean - mean) / std)``) does; there it is applied
one-sided to averaged raw anomaly scores, here two-sided to the reading's strength (a drop
is as anomalous as a rise). It is the probability that a Gaussian reading lies closer to the
mean than this one. A baseline with fewer than ``min_samples`` readings does not score (z
and likelihood null; no range check).

*Alerts, with hysteresis and a cooldown.* A scored reading is anomalous when ``strength >=
threshold`` or it is out of range. An alert is raised when ``alert_after`` consecutive
scored readings of a key are anomalous; the key is then in an alert episode. No new alert is
raised during an episode, so one excursion gives one alert. The episode lasts at least
``cooldown`` further readings and then ends at the first reading back within ordinary
variation (``strength < exit_level`` and in range): a Schmitt trigger (two levels instead of
one, so a score hovering at the threshold does not toggle) with a minimum hold, the
"suppress for N readings after a detection" of NAB's KNN-CAD and CAD-OSE detectors
(``nab/detectors/knncad``: ``probationaryPeriod / 5`` readings; ``context_ose``:
``restPeriod``): readings right after an alert that cross the threshold again raise no
second alert even if one of them dipped below the exit level. Anomalous readings are absorbed into
the baselines like any other: a lasting level shift becomes the new normal after a few
half-lives and its episode ends.

*Defaults* (``IOTFLINK_ANOMALY_*``, :class:`iotflink.settings.AnomalyJobSettings`): threshold
10, exit_level 2, alert_after 1, half_life 1000 readings, min_samples 30, season_bins 12,
range_tolerance 0.02, cooldown 20 readings, state TTL 7 days.

- ``threshold``, ``alert_after``, ``season_bins``, ``range_tolerance`` and ``cooldown`` were
  chosen on the Numenta Anomaly Benchmark (all 58 series, the same values for every series;
  ``bench/nab_score.py --engine python``, then confirmed through Flink), i.e. tuned on the
  corpus the figures below come from; ``bench/nab_tuning.py`` (and the README) gives the
  scores of the neighbouring values, of the model without each part, and a split-half
  check. A threshold of 10 sigma is far out for Gaussian noise (``2 Q(10) = 1.5e-23``); NAB's
  series are mostly not Gaussian, and 8 or 12 scored 62.2 or 61.9 against 64.0 (standard
  profile). ``alert_after = 1``: NAB rewards the earliest detection in a labelled window; 2 or
  3 consecutive readings scored 35.1 or 20.7. Without time-of-day baselines 55.7, without the
  range check 47.2, without the cooldown 62.5.
- ``exit_level = 2.0``: 2 sigma, the boundary beyond which the Western Electric rules start
  counting readings as signals (Western Electric Co., "Statistical Quality Control Handbook",
  1956: two of three consecutive points beyond 2 sigma); an episode ends once a reading is
  back within ordinary variation.
- ``half_life = 1000`` readings (83 min for a device every 5 s, 3.5 days at NAB's 5 min) and
  ``min_samples = 30`` (the relative standard error of a variance from n Gaussian samples is
  ``sqrt(2 / (n - 1)) = 26 %`` at n = 30), unchanged from the plain z-score model.
- ``state_ttl_ms = 7 days``: a key silent this long in event time starts a fresh baseline.
  The time-of-day baselines take days to learn; a sensor off for a day or a weekend keeps
  them (with 24 h, NAB's series with gaps of 1 to 7 days restarted cold: 61.8 instead of
  64.0, standard profile).

On the whole Numenta Anomaly Benchmark (58 series, these defaults for every series;
``bench/nab_score.py``), NAB's own scorer gives the job's own alerts as the detections 64.0
(standard) / 51.4 (reward low FP) / 69.9 (reward low FN), and the likelihood, thresholded
by NAB's optimiser, 50.3 / 22.0 / 61.7 (NAB's scoreboard: windowedGaussian 39.6, KNN CAD
58.0, HTM 70.5, standard profile). The plain z-score model before (threshold 4, alert_after
3, no time-of-day baselines, range check or cooldown) scored 30.1 / 26.1 / 32.4 with its
alerts and 40.5 / 26.5 / 48.4 with the likelihood.

*State expiry.* A baseline is dropped when its key has had no reading for ``state_ttl_ms``
of event time: an event-time timer at ``last_ts + state_ttl_ms`` clears it once the
watermark passes (at most one pending timer per key, re-armed lazily: :func:`on_timer`),
and a reading at ``ts >= last_ts + state_ttl_ms`` that arrives before the timer fired starts
afresh too (:func:`step`). Every reading after the timer fired is at or past it (older ones
are late), so the outputs do not depend on when the timer fires. The keyed state also
carries a Flink state TTL of ``state_ttl_ms`` in processing time (``OnCreateAndWrite``,
``NeverReturnExpired``) as a bound should the watermark stall.

*Late readings.* A reading is late when ``ts <= current watermark`` of the score operator (a
watermark W says no more elements with timestamp <= W will come, Flink "Timely Stream
Processing"); it goes, with that watermark, to ``sensor-anomaly-late`` and does not touch the
baseline. Nothing is dropped silently: every sensor value of a readable record is in exactly
one of sensor-scores or sensor-anomaly-late, every unreadable record is in sensor-anomaly-dlq.

*Correct at any parallelism.* All state is keyed by (device_id, sensor); the watermark of a
score subtask is the minimum over its inputs, so a reading is judged against a watermark no
later than its own source subtask's. Kafka keys ``sensor-readings`` by device_id, so one
partition, one source subtask and one parse subtask carry each key, in order.

Records
-------
- ``sensor-scores`` (key device_id): ``{device_id, sensor, seq, ts (epoch ms), value, ingest_ms,
  n (readings in the baseline before this one), mean, std (baseline before this one; std is
  the floored value used for z), z, likelihood (null while warming up), anomalous, in_alert
  (after this reading), alert_id (set on the reading that raised an alert), season_z (z
  against the reading's time-of-day bin; null while it warms up), out_of_range}``.
- ``alerts`` (key alert_id; at-least-once by default, ``IOTFLINK_ALERTS_DELIVERY``): the
  columns of the ``alerts`` table of ``sql/ddl.sql``: ``alert_id`` = SHA-256 hex of
  ``zscore_anomaly|<device_id>/<sensor>|<ts of each event>`` (:func:`jobs.rules.alert_id`,
  the rules' formula), ``rule_id = "zscore_anomaly"``, ``alert_key = "<device_id>/<sensor>"``,
  ``detection_ms`` (event time of the reading that raised it), ``emitted_at`` (wall clock),
  ``events`` (the ``alert_after`` anomalous readings, ``{ts_ms, seq, name, value}``),
  ``details`` (JSON text: z, season_z, out_of_range, likelihood, mean, std, n and the
  parameters).
- ``sensor-anomaly-late`` (key device_id): ``{device_id, seq, sensor, ts, value, ingest_ms,
  watermark_ms}``.
- ``sensor-anomaly-dlq`` (no key): ``{source: "anomaly", reason, detail, raw}``; ``raw`` is the
  record's value as text (UTF-8, undecodable bytes replaced by U+FFFD), null for a record
  without a value. Reasons: ``no_value``, ``malformed_json``, ``non_finite`` (also a JSON
  integer reading beyond the double range), the reasons of
  :func:`iotflink.schema.check_kafka_value` (``not_object``, ``missing_field``,
  ``unknown_field``, ``bad_type``, ``out_of_range``, ``ts_too_old``, ``ts_in_future``), and
  ``internal_error`` (a failure the parser did not foresee; the job still goes on). A JSON
  integer reading is taken as the nearest double (docs/CONTRACT.md). End-of-stream heartbeats
  (``iotflink.kafka_io.Heartbeat``: device ``__heartbeat__``, no readings) are not dead
  letters: they only advance the watermark.

Scores, late readings and dead letters are written exactly once
(``IOTFLINK_ANOMALY_DELIVERY_GUARANTEE``), visible to ``read_committed`` readers at each
checkpoint.

Throughput
----------
The Python functions run embedded in the TaskManager JVM (``python.execution-mode = thread``,
``IOTFLINK_ANOMALY_PYTHON_MODE``). At parallelism 1, on the raw stream, the job processed
2,732 records/s (5,460 sensor values/s) on this 2-core machine while other benchmarks ran
(1-min load 4 at the start, 22 at the end), 1.7 times the fleet rate of 1,600 readings/s,
and 3,492 to 5,387 records/s in quieter runs, 0.77 to 0.84 of the plain z-score model in
the same session; in the out-of-process mode, where every record crosses to a Python
worker and back at the parse and at the score, 267 records/s (``bench/anomaly_bench.py``,
``bench/results/anomaly.json``).

Watermarks are generated after parsing (the timestamp is inside the JSON), per parse subtask;
a parse subtask reading several Kafka partitions merges them, so the out-of-orderness bound
must also cover the skew between the partitions one subtask reads (10 s by default).

Run it (its three topics, ``sensor-scores``, ``sensor-anomaly-late`` and
``sensor-anomaly-dlq``, must exist: the broker does not create topics on first use)::

    iotflink job submit anomaly       # flink run -py jobs/anomaly.py
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
import sysconfig
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from iotflink import schema
from iotflink.errors import JobError, ValidationError
from iotflink.settings import PROJECT_ROOT, AnomalyJobSettings
from jobs import common
from jobs.common import job_configuration
from jobs.rules import alert_id as _rule_alert_id

log = logging.getLogger(__name__)

JOB_NAME = "anomaly"
#: ``rule_id`` of this job's alerts.
RULE_ID = "zscore_anomaly"
#: ``device_id`` of end-of-stream heartbeats (``iotflink.kafka_io.HEARTBEAT_DEVICE``; not
#: imported: that module loads the Kafka client, which the Flink workers do not need).
HEARTBEAT_DEVICE = "__heartbeat__"
#: Relative floor of the standard deviation in z (only avoids dividing by 0 on a constant
#: baseline; far below any sensor's resolution).
MIN_STD_REL = 1e-9
#: Flink's initial watermark (``Long.MIN_VALUE``): nothing is late before the first watermark.
NO_WATERMARK = -(2**63)
#: One day in ms (the period of the time-of-day baselines).
DAY_MS = 86_400_000


# =========================================================================== the model
class Reading(NamedTuple):
    """One sensor value of a ``sensor-readings`` record (one entry of its ``readings`` map)."""

    device_id: str
    sensor: str
    seq: int
    ts: int                 #: event time, epoch ms
    value: float            #: in the unit the sensor name's suffix gives
    ingest_ms: int | None   #: the bridge's clock, epoch ms


class Event(NamedTuple):
    """A reading as an alert lists it (an element of the ``events`` column of ``alerts``)."""

    ts_ms: int
    seq: int
    name: str
    value: float


class Params(NamedTuple):
    """The model's parameters (see the module doc; :func:`params` builds them from settings).

    Fields: ``threshold`` and ``exit_level`` (|z|), ``alert_after`` (readings),
    ``min_samples`` (readings), ``half_life`` (readings), ``ttl_ms`` (event-time ms),
    ``season_bins`` (time-of-day baselines per UTC day; 0: none), ``range_tolerance``
    (fraction of the range seen; ``inf``: no range check), ``cooldown`` (readings).
    """

    threshold: float
    exit_level: float
    alert_after: int
    min_samples: int
    half_life: float
    ttl_ms: int
    season_bins: int = 0
    range_tolerance: float = math.inf
    cooldown: int = 0


class Baseline(NamedTuple):
    """The keyed state of one (device_id, sensor).

    Fields:
        n: readings absorbed (>= 1).
        mean, var: EW mean and variance of the values (the sensor's unit and its square).
        last_ts: newest event time absorbed (epoch ms).
        timer_ms: the pending expiry timer (event time, ms), or None.
        in_alert: an alert episode is open (no new alert until it ends).
        streak: the consecutive anomalous readings so far (:class:`Event`, oldest first;
            fewer than ``alert_after``; empty during an episode).
        lo, hi: smallest and largest value absorbed (the sensor's unit).
        season: one entry per time-of-day bin (``season_bins`` of them): ``(n, mean, var)``
            of the readings absorbed in that bin, or None before the first.
        cooldown: readings still to come before the open episode may end (0 outside one).

    Flink keeps it pickled (``Types.PICKLED_BYTE_ARRAY``) as this class of ``jobs.anomaly``:
    a savepoint restores into code whose ``Baseline`` has the same fields; changing them
    needs a fresh start of the job's state (or a migration of the savepoint).
    """

    n: int
    mean: float
    var: float
    last_ts: int
    timer_ms: int | None
    in_alert: bool
    streak: tuple[Event, ...]
    lo: float = math.nan
    hi: float = math.nan
    season: tuple[tuple[int, float, float] | None, ...] = ()
    cooldown: int = 0


class Score(NamedTuple):
    """The score of one reading against the baseline before it.

    ``n``: readings in that baseline (0: none); ``mean``/``std``: that baseline (None when there
    is none; ``std`` floored as used for z when scored); ``z``/``likelihood``: None while the
    baseline has fewer than ``min_samples`` readings; ``season_z``: z against the baseline of
    the reading's time-of-day bin (None while either is warming up, or without
    ``season_bins``); ``out_of_range``: the value lies beyond the range seen so far by more
    than ``range_tolerance`` of it; ``likelihood``: ``erf(max(|z|, |season_z|) / sqrt 2)``,
    1.0 when out of range; ``anomalous``: ``max(|z|, |season_z|) >= threshold`` or out of
    range.
    """

    n: int
    mean: float | None
    std: float | None
    z: float | None
    likelihood: float | None
    anomalous: bool
    season_z: float | None = None
    out_of_range: bool = False


class Alert(NamedTuple):
    """An alert: id, key, the reading's event time, the anomalous readings, the measures
    (those of the reading's :class:`Score`)."""

    alert_id: str
    alert_key: str
    detection_ms: int
    events: tuple[Event, ...]
    z: float
    likelihood: float
    mean: float
    std: float
    n: int
    season_z: float | None = None
    out_of_range: bool = False


class Step(NamedTuple):
    """Result of :func:`step`: the new state, the reading's score, an alert or None, and the
    event-time timer to register (ms) or None."""

    state: Baseline
    score: Score
    alert: Alert | None
    timer: int | None


def params(cfg: AnomalyJobSettings) -> Params:
    """The model parameters of ``cfg``."""
    return Params(cfg.threshold, cfg.exit_level, cfg.alert_after, cfg.min_samples, cfg.half_life,
                  cfg.state_ttl_ms, cfg.season_bins, cfg.range_tolerance, cfg.cooldown)


def ew_alpha(half_life: float) -> float:
    """Smoothing factor whose weights halve every ``half_life`` readings:
    ``1 - 2 ** (-1 / half_life)`` (since ``(1 - alpha) ** half_life = 1/2``).

    Raises:
        ValueError: ``half_life`` is not positive.
    """
    if not half_life > 0:
        raise ValueError(f"half-life must be positive: {half_life}")
    return 1.0 - 2.0 ** (-1.0 / half_life)


#: :func:`ew_alpha` per half-life, computed once (the hot path needs it twice per reading).
_alpha = functools.lru_cache(maxsize=16)(ew_alpha)


def ew_update(mean: float, var: float, x: float, a: float) -> tuple[float, float]:
    """Absorb ``x`` with weight ``a`` (0 < a <= 1): Finch (2009)'s exponentially weighted
    mean and variance recurrence (module doc). Returns ``(mean, var)``."""
    diff = x - mean
    incr = a * diff
    return mean + incr, (1.0 - a) * (var + diff * incr)


def likelihood(z: float) -> float:
    """``erf(|z| / sqrt 2) = 1 - 2 Q(|z|)``: probability that a Gaussian reading is closer to
    the mean than ``z`` standard deviations (0..1; module doc for the source)."""
    return math.erf(abs(z) / math.sqrt(2.0))


def season_bin(ts_ms: int, bins: int) -> int:
    """The time-of-day bin of event time ``ts_ms``: ``bins`` equal slices of the UTC day,
    0 from midnight (``bins >= 1``)."""
    return (ts_ms % DAY_MS) * bins // DAY_MS


def out_of_range(x: float, lo: float, hi: float, tolerance: float) -> bool:
    """Whether ``x`` lies beyond ``[lo - t, hi + t]``, ``t = tolerance * (hi - lo)``: beyond
    the range seen so far by more than ``tolerance`` of it (the spatial anomaly of NAB's
    numenta detector; module doc). ``tolerance = inf``: never."""
    if tolerance == math.inf:
        return False
    margin = tolerance * (hi - lo)
    return x > hi + margin or x < lo - margin


def _z(x: float, mean: float, var: float) -> tuple[float, float]:
    """``(z, std)`` of ``x`` against ``(mean, var)``, std floored (:data:`MIN_STD_REL`)."""
    std = max(math.sqrt(var), MIN_STD_REL * max(abs(mean), 1.0))
    return (x - mean) / std, std


def alert_key(device_id: str, sensor: str) -> str:
    """``"<device_id>/<sensor>"``: the key of the job's state and its alerts (neither part can
    contain ``/``: docs/CONTRACT.md)."""
    return f"{device_id}/{sensor}"


def alert_id(key: str, events: tuple[Event, ...]) -> str:
    """SHA-256 hex of ``zscore_anomaly|<key>|<ts_ms of each event>``: the rules' formula
    (:func:`jobs.rules.alert_id`), so a replay of the same readings gives the same id."""
    return _rule_alert_id(RULE_ID, key, [e.ts_ms for e in events])


def is_late(ts_ms: int, watermark_ms: int) -> bool:
    """Whether a reading at ``ts_ms`` is behind the watermark: ``ts <= watermark``."""
    return ts_ms <= watermark_ms


def expired(state: Baseline, now_ms: int, ttl_ms: int) -> bool:
    """Whether ``state`` is gone at event time ``now_ms``: ``now >= last_ts + ttl``."""
    return now_ms >= state.last_ts + ttl_ms


def step(state: Baseline | None, r: Reading, p: Params) -> Step:
    """One reading (not late) through the model.

    Args:
        state: the key's baseline before ``r``, or None.
        r: the reading; its key is ``(r.device_id, r.sensor)``.
        p: parameters.

    Returns:
        :class:`Step`. The state expires first if ``r.ts >= last_ts + ttl`` (a fresh baseline;
        its pending timer stays). ``timer`` is set when the key had no pending timer: then one
        is due at ``r.ts + ttl`` (kept in ``state.timer_ms``).
    """
    pending = None if state is None else state.timer_ms
    if state is not None and expired(state, r.ts, p.ttl_ms):
        state = None
    if state is not None and len(state.season) != p.season_bins:
        # restored from a job with another season_bins (or from before the time-of-day
        # baselines, whose Baseline had no season, lo or hi): those start afresh
        state = state._replace(season=(None,) * p.season_bins)
    alert = None
    x = r.value
    b = season_bin(r.ts, p.season_bins) if p.season_bins else 0
    if state is None:
        score = Score(0, None, None, None, None, False)
        in_alert, streak, cooldown = False, (), 0
    elif state.n < p.min_samples:
        score = Score(state.n, state.mean, math.sqrt(state.var), None, None, False)
        in_alert, streak, cooldown = False, (), 0
    else:
        z, std = _z(x, state.mean, state.var)
        strength = abs(z)
        season_z = None
        if p.season_bins:
            cell = state.season[b]
            if cell is not None and cell[0] >= p.min_samples:
                season_z = _z(x, cell[1], cell[2])[0]
                strength = max(strength, abs(season_z))
        outside = out_of_range(x, state.lo, state.hi, p.range_tolerance)
        anomalous = outside or strength >= p.threshold
        score = Score(state.n, state.mean, std, z, 1.0 if outside else likelihood(strength), anomalous,
                      season_z, outside)
        in_alert, streak, cooldown = state.in_alert, state.streak, state.cooldown
        if in_alert:
            cooldown = max(cooldown - 1, 0)
            in_alert = cooldown > 0 or outside or strength >= p.exit_level
        elif anomalous:
            streak = streak + (Event(r.ts, r.seq, r.sensor, x),)
            if len(streak) >= p.alert_after:
                key = alert_key(r.device_id, r.sensor)
                alert = Alert(alert_id(key, streak), key, r.ts, streak, z, score.likelihood, state.mean, std,
                              state.n, season_z, outside)
                in_alert, streak, cooldown = True, (), p.cooldown
        else:
            streak = ()
    if state is None:
        n, mean, var, last_ts, lo, hi = 1, x, 0.0, r.ts, x, x
        season = ((None,) * p.season_bins)
    else:
        n = state.n + 1
        mean, var = ew_update(state.mean, state.var, x, max(_alpha(p.half_life), 1.0 / n))
        last_ts = max(state.last_ts, r.ts)
        lo, hi, season = state.lo, state.hi, state.season
        lo, hi = (min(lo, x), max(hi, x)) if lo <= hi else (x, x)  # NaN (no range yet): from x
    if p.season_bins:
        cell = season[b]
        if cell is None:
            cell = (1, x, 0.0)
        else:
            cn = cell[0] + 1
            cell = (cn, *ew_update(cell[1], cell[2], x, max(_alpha(p.half_life), 1.0 / cn)))
        season = season[:b] + (cell,) + season[b + 1:]
    timer = None
    if pending is None:
        pending = timer = last_ts + p.ttl_ms
    return Step(Baseline(n, mean, var, last_ts, pending, in_alert, streak, lo, hi, season, cooldown), score,
                alert, timer)


def on_timer(state: Baseline | None, timer_ms: int, p: Params) -> tuple[Baseline | None, int | None]:
    """An event-time timer of a key fired at ``timer_ms``.

    Returns:
        ``(state, next_timer)``: ``(None, None)`` when the baseline expired
        (``timer_ms >= last_ts + ttl``) or is already gone; the state unchanged and no timer
        when the timer is not the key's pending one (left from a baseline that the Flink
        state TTL removed); else the state with the timer re-armed at ``last_ts + ttl``, and
        that time to register.
    """
    if state is None:
        return None, None
    if state.timer_ms != timer_ms:
        return state, None
    if expired(state, timer_ms, p.ttl_ms):
        return None, None
    due = state.last_ts + p.ttl_ms
    return state._replace(timer_ms=due), due


# =========================================================================== parsing
def parse_value(text: str | None) -> tuple[list[Reading], int | None]:
    """Parse one ``sensor-readings`` record value.

    Args:
        text: the Kafka record's value as text, or None for a record without a value.

    Returns:
        ``(readings, None)`` with one :class:`Reading` per entry of ``readings`` (in the map's
        order), or ``([], ts)`` for an end-of-stream heartbeat at event time ``ts``.

    Raises:
        ValidationError: the record is not a reading; ``reason`` is ``no_value``,
            ``malformed_json``, ``non_finite`` or one of :data:`iotflink.schema.VALUE_REASONS`
            (:func:`iotflink.schema.check_kafka_value`, the one definition of a reading).
            JSON integer readings are taken as the nearest double first.
    """
    if text is None:
        raise ValidationError("no_value", "the Kafka record has no value")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, > 4300-digit integers, nesting
        raise ValidationError("malformed_json", str(exc)[:200]) from exc
    if type(value) is dict:
        if (value.get("device_id") == HEARTBEAT_DEVICE and value.get("readings") == {}
                and type(value.get("ts")) is int):
            return [], value["ts"]
        readings = value.get("readings")
        if type(readings) is dict:
            try:
                value["readings"] = {k: float(v) if type(v) is int else v for k, v in readings.items()}
            except OverflowError as exc:
                raise ValidationError("non_finite", "an integer reading is beyond the double range") from exc
    schema.check_kafka_value(value)
    d, seq, ts, ingest = value["device_id"], value["seq"], value["ts"], value["ingest_ms"]
    return [Reading(d, name, seq, ts, v, ingest) for name, v in value["readings"].items()], None


# =========================================================================== Flink types and columns
def reading_type():
    """Type of a parsed reading row (:class:`Reading`'s fields)."""
    from pyflink.common import Types  # noqa: PLC0415

    return Types.ROW_NAMED(list(Reading._fields), [Types.STRING(), Types.STRING(), Types.LONG(), Types.LONG(),
                                                   Types.DOUBLE(), Types.LONG()])


def _keyed_type():
    """``Row(key, reading)``: what ``key_by`` produces, keyed on field 0 (:func:`alert_key`)."""
    from pyflink.common import Types  # noqa: PLC0415

    return Types.ROW([Types.STRING(), reading_type()])


def _parsed_type():
    """``(Row(key, reading), ts)``: the parse output, the timestamp second, as the Java
    ``CustomTimestampAssigner`` / ``RemoveTimestampMapFunction`` of PyFlink expect it."""
    from pyflink.common import Types  # noqa: PLC0415

    return Types.TUPLE([_keyed_type(), Types.LONG()])


#: Columns of each output: (name, Flink SQL type). Every type info below is built fresh per
#: use: an ``OutputTag`` pickles its type info, which fails once that was converted to Java.
SCORE_COLUMNS = (("device_id", "STRING"), ("sensor", "STRING"), ("seq", "BIGINT"), ("ts", "BIGINT"),
                 ("value", "DOUBLE"), ("ingest_ms", "BIGINT"), ("n", "BIGINT"), ("mean", "DOUBLE"),
                 ("std", "DOUBLE"), ("z", "DOUBLE"), ("likelihood", "DOUBLE"), ("anomalous", "BOOLEAN"),
                 ("in_alert", "BOOLEAN"), ("alert_id", "STRING"), ("season_z", "DOUBLE"),
                 ("out_of_range", "BOOLEAN"))
LATE_COLUMNS = (("device_id", "STRING"), ("seq", "BIGINT"), ("sensor", "STRING"), ("ts", "BIGINT"),
                ("value", "DOUBLE"), ("ingest_ms", "BIGINT"), ("watermark_ms", "BIGINT"))
DLQ_COLUMNS = (("source", "STRING"), ("reason", "STRING"), ("detail", "STRING"), ("raw", "STRING"))
EVENT_TYPE_SQL = "ROW<ts_ms BIGINT, seq BIGINT, name STRING, `value` DOUBLE>"
#: The ``alerts`` table of ``sql/ddl.sql``.
ALERT_COLUMNS = (("alert_id", "STRING"), ("rule_id", "STRING"), ("alert_key", "STRING"),
                 ("detection_ms", "BIGINT"), ("emitted_at", "TIMESTAMP_LTZ(3)"),
                 ("events", f"ARRAY<{EVENT_TYPE_SQL}>"), ("details", "STRING"))
#: The alert rows the score function emits; :func:`build` turns ``emitted_ms`` into
#: ``emitted_at`` and the four ``event_*`` arrays (one element per event) into ``events``.
#: (Arrays of rows do not cross from an embedded Python function to Java intact in PyFlink
#: 2.2: its row converter reuses one Row object, so every element became the last one.)
ALERT_ROW_COLUMNS = (("alert_id", "STRING"), ("rule_id", "STRING"), ("alert_key", "STRING"),
                     ("detection_ms", "BIGINT"), ("emitted_ms", "BIGINT"), ("event_ts_ms", "ARRAY<BIGINT>"),
                     ("event_seq", "ARRAY<BIGINT>"), ("event_name", "ARRAY<STRING>"),
                     ("event_value", "ARRAY<DOUBLE>"), ("details", "STRING"))


def _type_info(columns: tuple[tuple[str, str], ...]):
    """A ``Types.ROW_NAMED`` for ``columns``."""
    from pyflink.common import Types  # noqa: PLC0415

    def one(sql: str):
        simple = {"STRING": Types.STRING, "BIGINT": Types.LONG, "DOUBLE": Types.DOUBLE, "BOOLEAN": Types.BOOLEAN}
        if sql in simple:
            return simple[sql]()
        if sql.startswith("ARRAY<") and sql[6:-1] in simple:
            return Types.BASIC_ARRAY(simple[sql[6:-1]]())
        raise JobError(f"no type info for {sql}")

    return Types.ROW_NAMED([c for c, _ in columns], [one(t) for _, t in columns])


def table_schema(columns: tuple[tuple[str, str], ...]):
    """A table ``Schema`` with ``columns`` (for a sink's ``TableDescriptor``)."""
    from pyflink.table import Schema  # noqa: PLC0415

    builder = Schema.new_builder()
    for name, sql in columns:
        builder.column(name, sql)
    return builder.build()


# =========================================================================== Flink functions
def _tags():
    """``(dlq, late, alerts)`` output tags, each with a fresh type info."""
    from pyflink.datastream import OutputTag  # noqa: PLC0415

    return (OutputTag("dead-letters", _type_info(DLQ_COLUMNS)), OutputTag("late-readings", _type_info(LATE_COLUMNS)),
            OutputTag("alerts", _type_info(ALERT_ROW_COLUMNS)))


def _process_function_base():
    from pyflink.datastream.functions import KeyedProcessFunction, ProcessFunction  # noqa: PLC0415

    return ProcessFunction, KeyedProcessFunction


_ProcessFunction, _KeyedProcessFunction = _process_function_base()


class ParseReadings(_ProcessFunction):
    """Raw record text -> ``(Row(key, reading), ts)`` per sensor value; unreadable records to the
    dead-letter side output (``Row(source, reason, detail, raw)``); heartbeats -> one row of
    device :data:`HEARTBEAT_DEVICE` that only carries its event time. Never raises on a record.
    """

    def __init__(self, dlq_tag) -> None:
        self._dlq = dlq_tag

    def process_element(self, value, ctx):
        from pyflink.common import Row  # noqa: PLC0415

        try:
            readings, heartbeat_ts = parse_value(value)
        except ValidationError as exc:
            yield self._dlq, Row(JOB_NAME, exc.reason, exc.detail, value)
            return
        except Exception as exc:  # noqa: BLE001 - one record must never fail the job
            log.warning("dead-lettering a record the parser failed on: %r", exc)
            yield self._dlq, Row(JOB_NAME, "internal_error", f"{type(exc).__name__}: {exc}"[:500], value)
            return
        if heartbeat_ts is not None:
            yield Row(HEARTBEAT_DEVICE, Row(HEARTBEAT_DEVICE, "", 0, heartbeat_ts, 0.0, None)), heartbeat_ts
            return
        for r in readings:
            yield Row(alert_key(r.device_id, r.sensor), Row(*r)), r.ts


def score_row(r: Reading, result: Step) -> tuple:
    """The sensor-scores row (:data:`SCORE_COLUMNS`) of ``r`` scored as ``result``."""
    s = result.score
    return (r.device_id, r.sensor, r.seq, r.ts, r.value, r.ingest_ms, s.n, s.mean, s.std, s.z, s.likelihood,
            s.anomalous, result.state.in_alert, None if result.alert is None else result.alert.alert_id,
            s.season_z, s.out_of_range)


def late_row(r: Reading, watermark_ms: int) -> tuple:
    """The sensor-anomaly-late row (:data:`LATE_COLUMNS`) of ``r``, late behind ``watermark_ms``."""
    return (r.device_id, r.seq, r.sensor, r.ts, r.value, r.ingest_ms, watermark_ms)


def alert_details(a: Alert, p: Params) -> str:
    """The ``details`` JSON text of alert ``a`` (measures at the reading that raised it and the
    parameters), keys sorted."""
    return json.dumps({"z": a.z, "likelihood": a.likelihood, "mean": a.mean, "std": a.std, "n": a.n,
                       "season_z": a.season_z, "out_of_range": a.out_of_range,
                       "threshold": p.threshold, "exit_level": p.exit_level, "alert_after": p.alert_after,
                       "half_life": p.half_life, "min_samples": p.min_samples, "season_bins": p.season_bins,
                       "range_tolerance": p.range_tolerance if math.isfinite(p.range_tolerance) else None,
                       "cooldown": p.cooldown}, sort_keys=True)


def alert_row(a: Alert, p: Params, emitted_ms: int) -> tuple:
    """The alert row (:data:`ALERT_ROW_COLUMNS`) of ``a``."""
    ev = a.events
    return (a.alert_id, RULE_ID, a.alert_key, a.detection_ms, emitted_ms, [e.ts_ms for e in ev],
            [e.seq for e in ev], [e.name for e in ev], [e.value for e in ev], alert_details(a, p))


def state_ttl_config(ttl_ms: int):
    """The keyed state's TTL: ``ttl_ms`` of processing time since the last write
    (``OnCreateAndWrite``), expired values never returned, expired entries removed
    incrementally (5 keys per state access, heap backend) and by RocksDB's compaction filter
    (Flink's two background cleanups).

    Built without a Py4J gateway, so it also works in a TaskManager's embedded interpreter:
    PyFlink 2.2's default background cleanup creates a ``java.time.Duration`` (the RocksDB
    filter's periodic compaction time) through the gateway, which a TaskManager does not have
    (the interpreter tries to launch one and the task fails with ``FileNotFoundError``). So the
    default is switched off and the same two strategies are set explicitly; the periodic
    compaction time given is never read by the conversion to Java, where Flink's default
    (30 days) applies.
    """
    from pyflink.common.time import Time  # noqa: PLC0415
    from pyflink.datastream.state import StateTtlConfig  # noqa: PLC0415

    return (StateTtlConfig.new_builder(Time.milliseconds(ttl_ms))
            .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
            .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
            .disable_cleanup_in_background()
            .cleanup_incrementally(5, False)
            .cleanup_in_rocksdb_compact_filter(1000, Time.days(30))
            .build())


class ScoreReadings(_KeyedProcessFunction):
    """The thin Flink wrapper of :func:`step` and :func:`on_timer` for one key's readings.

    State: one ``ValueState`` holding the pickled :class:`Baseline`, with a processing-time
    TTL of ``ttl_ms``. Main output: score rows; side outputs: late rows, alert rows.
    """

    def __init__(self, p: Params, late_tag, alerts_tag) -> None:
        self._p = p
        self._late, self._alerts = late_tag, alerts_tag
        self._state = None

    def open(self, runtime_context):
        from pyflink.common import Types  # noqa: PLC0415
        from pyflink.datastream.state import ValueStateDescriptor  # noqa: PLC0415

        desc = ValueStateDescriptor("baseline", Types.PICKLED_BYTE_ARRAY())
        desc.enable_time_to_live(state_ttl_config(self._p.ttl_ms))
        self._state = runtime_context.get_state(desc)

    def process_element(self, value, ctx):
        from pyflink.common import Row  # noqa: PLC0415

        if value[0] == HEARTBEAT_DEVICE:
            return
        r = Reading(value[0], value[1], value[2], value[3], value[4], value[5])
        watermark = ctx.timer_service().current_watermark()
        if is_late(r.ts, watermark):
            yield self._late, Row(*late_row(r, watermark))
            return
        result = step(self._state.value(), r, self._p)
        self._state.update(result.state)
        if result.timer is not None:
            ctx.timer_service().register_event_time_timer(result.timer)
        yield Row(*score_row(r, result))
        if result.alert is not None:
            yield self._alerts, Row(*alert_row(result.alert, self._p, time.time_ns() // 1_000_000))

    def on_timer(self, timestamp, ctx):
        state, next_timer = on_timer(self._state.value(), timestamp, self._p)
        if state is None:
            self._state.clear()
        elif next_timer is not None:
            self._state.update(state)
            ctx.timer_service().register_event_time_timer(next_timer)
        yield from ()  # PyFlink iterates over on_timer's result


# =========================================================================== pipeline
@dataclass(frozen=True)
class Sinks:
    """Where each output goes: a ``TableDescriptor`` (or a registered table's name) each, with
    the columns :data:`SCORE_COLUMNS`, :data:`ALERT_COLUMNS`, :data:`LATE_COLUMNS`,
    :data:`DLQ_COLUMNS`."""

    scores: Any
    alerts: Any
    late: Any
    dlq: Any


@dataclass(frozen=True)
class Outputs:
    """The job's four output DataStreams (rows of the sinks' columns; alerts with
    ``emitted_ms`` for ``emitted_at``)."""

    scores: Any
    alerts: Any
    late: Any
    dlq: Any


def watermark_strategy(cfg: AnomalyJobSettings):
    """Bounded out-of-orderness (``cfg.out_of_orderness_ms``) with idleness
    (``cfg.idleness_ms``): the watermark is ``max ts - out_of_orderness - 1``, emitted every
    ``pipeline.auto-watermark-interval`` (200 ms); a subtask without records for
    ``idleness_ms`` is marked idle. No timestamp assigner: :func:`build` adds the one reading
    the parsed ``ts``."""
    from pyflink.common import Duration, WatermarkStrategy  # noqa: PLC0415

    return (WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(cfg.out_of_orderness_ms))
            .with_idleness(Duration.of_millis(cfg.idleness_ms)))


def build(env, cfg: AnomalyJobSettings, source, sinks: Sinks, *, t_env=None,
          assign_watermarks: bool = True) -> Outputs:
    """Add the anomaly pipeline from ``source`` to ``sinks`` to ``env``; run it with
    ``env.execute(...)`` (the sinks' statement set is attached to ``env``).

    Args:
        env: the ``StreamExecutionEnvironment`` (:func:`configuration` applied: Python mode).
        cfg: model parameters, watermark, parallelism (:class:`AnomalyJobSettings`).
        source: DataStream of ``sensor-readings`` record values as text (None: no value).
        sinks: the four sinks (:class:`Sinks`).
        t_env: the ``StreamTableEnvironment`` of ``env`` that knows named sinks (default: a new one).
        assign_watermarks: True (always in ``main``): event time and watermarks come from
            :func:`watermark_strategy` on the parsed ``ts``. False: ``source`` already carries
            watermarks, which pass through unchanged (tests: a source with a watermark per
            record makes lateness a function of the input order).

    Returns:
        :class:`Outputs` (already connected to the sinks).

    Raises:
        JobError: Flink rejected the pipeline (its message attached).
    """
    try:
        from pyflink.datastream import DataStream, KeyedStream  # noqa: PLC0415
        from pyflink.java_gateway import get_gateway  # noqa: PLC0415
        from pyflink.table import StreamTableEnvironment  # noqa: PLC0415

        jvm = get_gateway().jvm
        dlq_tag, late_tag, alerts_tag = _tags()
        parsed = source.process(ParseReadings(dlq_tag), output_type=_parsed_type()) \
            .name("parse readings").uid("anomaly-parse")
        j_stream = parsed._j_data_stream  # noqa: SLF001 - PyFlink's own key_by / assign path, with uids
        if assign_watermarks:
            assigner = jvm.org.apache.flink.streaming.api.functions.python.eventtime.CustomTimestampAssigner()
            j_stream = j_stream.assignTimestampsAndWatermarks(
                watermark_strategy(cfg)._j_watermark_strategy.withTimestampAssigner(assigner))  # noqa: SLF001
            j_stream.name("event time + watermarks").uid("anomaly-watermarks")
        j_rows = j_stream.map(jvm.org.apache.flink.streaming.api.functions.python.eventtime.RemoveTimestampMapFunction(),
                              _keyed_type().get_java_type_info())
        j_rows.name("key by device_id/sensor").uid("anomaly-unwrap")
        from pyflink.common import Types  # noqa: PLC0415

        j_keyed = j_rows.keyBy(jvm.org.apache.flink.streaming.api.functions.python.KeyByKeySelector(),
                               Types.ROW([Types.STRING()]).get_java_type_info())
        keyed = KeyedStream(j_keyed, reading_type(), DataStream(j_rows))
        scores = keyed.process(ScoreReadings(params(cfg), late_tag, alerts_tag),
                               output_type=_type_info(SCORE_COLUMNS)).name("z-score").uid("anomaly-score")
        def side(stream, tag):
            # PyFlink's get_side_output adds an identity Python map (unnamed, a Python call per
            # record); the tag's typed rows need none
            return DataStream(stream._j_data_stream.getSideOutput(tag.get_java_output_tag()))  # noqa: SLF001

        out = Outputs(scores=scores, alerts=side(scores, alerts_tag), late=side(scores, late_tag),
                      dlq=side(parsed, dlq_tag))

        t_env = t_env or StreamTableEnvironment.create(env)
        targets = {}
        for name in ("scores", "alerts", "late", "dlq"):  # named tables: readable operator names
            target = getattr(sinks, name)
            if not isinstance(target, str):
                t_env.create_temporary_table(f"anomaly_{name}", target)
                target = f"anomaly_{name}"
            targets[name] = target
            t_env.create_temporary_view(f"anomaly_{name}_rows", getattr(out, name))
        stmts = t_env.create_statement_set()
        # an alert lists exactly alert_after events (step raises it when the streak reaches that)
        events = ", ".join(f"CAST(ROW(event_ts_ms[{i}], event_seq[{i}], event_name[{i}], event_value[{i}]) "
                           f"AS {EVENT_TYPE_SQL})" for i in range(1, cfg.alert_after + 1))
        alerts = t_env.sql_query(
            "SELECT alert_id, rule_id, alert_key, detection_ms, TO_TIMESTAMP_LTZ(emitted_ms, 3) AS emitted_at, "
            f"ARRAY[{events}] AS events, details FROM anomaly_alerts_rows")
        # statement order fixes the SQL operators' uids (table.exec.uid.generation = ALWAYS)
        stmts.add_insert(targets["scores"], t_env.from_path("anomaly_scores_rows"))
        stmts.add_insert(targets["alerts"], alerts)
        stmts.add_insert(targets["late"], t_env.from_path("anomaly_late_rows"))
        stmts.add_insert(targets["dlq"], t_env.from_path("anomaly_dlq_rows"))
        common.attach_as_datastream(t_env, stmts)
    except Exception as exc:  # py4j wraps Flink's errors; keep the cause
        raise JobError(f"cannot build {JOB_NAME}: {exc}") from exc
    return out


# =========================================================================== configuration, Kafka
def configuration(cfg: AnomalyJobSettings, *, use_kafka: bool = True,
                  extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """:func:`jobs.common.job_configuration` plus the Python execution mode (``cfg.python_mode``)
    and, for the embedded interpreter, the venv's site-packages and the project's root on
    ``python.pythonpath``: the embedded interpreter starts from the base installation's paths
    and does not read the venv's ``.pth`` files, so neither the venv's packages nor the
    project's editable install (``pip install -e .``) are importable there otherwise.

    Raises:
        JobError: a jar is missing (see :func:`jobs.common.job_configuration`).
    """
    site = sysconfig.get_paths()["purelib"]
    conf = {"python.execution-mode": cfg.python_mode,
            "python.pythonpath": os.pathsep.join([str(PROJECT_ROOT), site])}
    conf.update(extra or {})
    return job_configuration(cfg, JOB_NAME, use_kafka=use_kafka, extra=conf)  # type: ignore[arg-type]


def kafka_source(cfg: AnomalyJobSettings):
    """``KafkaSource`` of ``cfg.topics.readings``: group ``cfg.consumer_group`` from its committed
    offsets (earliest without any), ``read_committed``; the value as text via Kafka's
    ``StringDeserializer`` (UTF-8, undecodable bytes replaced; a record without a value
    becomes None, which the parser dead-letters as ``no_value``; Flink's ``SimpleStringSchema``
    would fail the job on it)."""
    from pyflink.datastream.connectors.kafka import KafkaOffsetResetStrategy, KafkaOffsetsInitializer, KafkaSource  # noqa: PLC0415
    from pyflink.java_gateway import get_gateway  # noqa: PLC0415
    from pyflink.util.java_utils import get_java_class  # noqa: PLC0415

    jvm = get_gateway().jvm
    builder = (KafkaSource.builder().set_bootstrap_servers(cfg.kafka_bootstrap).set_topics(cfg.topics.readings)
               .set_group_id(cfg.consumer_group)
               .set_starting_offsets(KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST))
               .set_property("isolation.level", "read_committed"))
    deserializer = get_java_class(jvm.org.apache.flink.kafka.shaded.org.apache.kafka.common.serialization.StringDeserializer)
    builder._j_builder.setDeserializer(  # noqa: SLF001 - PyFlink has no wrapper for valueOnly(Class)
        jvm.org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema
        .valueOnly(deserializer))
    return builder.build()


def kafka_sink(cfg: AnomalyJobSettings, topic: str, columns, key_field: str | None, guarantee: str, role: str):
    """A Kafka table sink (``TableDescriptor``): JSON value of ``columns``, raw ``key_field`` as
    the key (None: no key), ``guarantee`` (exactly-once: transactional id prefix
    ``<consumer_group>-<role>``, ``cfg.transaction_timeout_ms``)."""
    from pyflink.table import TableDescriptor  # noqa: PLC0415

    b = (TableDescriptor.for_connector("kafka").schema(table_schema(columns))
         .option("topic", topic).option("properties.bootstrap.servers", cfg.kafka_bootstrap)
         .option("value.format", "json").option("value.fields-include", "ALL")
         .option("sink.delivery-guarantee", guarantee))
    if key_field:
        b = b.option("key.format", "raw").option("key.fields", key_field)
    if guarantee == "exactly-once":
        b = (b.option("sink.transactional-id-prefix", f"{cfg.consumer_group}-{role}")
             .option("properties.transaction.timeout.ms", str(cfg.transaction_timeout_ms)))
    return b.build()


def kafka_sinks(cfg: AnomalyJobSettings) -> Sinks:
    """The job's Kafka sinks: scores and late readings keyed by device_id, alerts by alert_id
    (``cfg.alerts_delivery``), dead letters without a key."""
    g = cfg.delivery_guarantee
    return Sinks(scores=kafka_sink(cfg, cfg.scores_topic, SCORE_COLUMNS, "device_id", g, "scores"),
                 alerts=kafka_sink(cfg, cfg.topics.alerts, ALERT_COLUMNS, "alert_id", cfg.alerts_delivery, "alerts"),
                 late=kafka_sink(cfg, cfg.late_topic, LATE_COLUMNS, "device_id", g, "late"),
                 dlq=kafka_sink(cfg, cfg.dlq_topic, DLQ_COLUMNS, None, g, "dlq"))


def create_job(cfg: AnomalyJobSettings, extra: Mapping[str, str] | None = None):
    """The Kafka job as ``main()`` submits it: ``(env, outputs)``, not executed.

    Raises:
        JobError: a jar is missing, or the pipeline cannot be built.
    """
    from pyflink.common import Types, WatermarkStrategy  # noqa: PLC0415

    from jobs.common import create_stream_env  # noqa: PLC0415

    env = create_stream_env(configuration(cfg, use_kafka=True, extra=extra))
    source = env.from_source(kafka_source(cfg), WatermarkStrategy.no_watermarks(), "sensor-readings",
                             Types.STRING()).name("sensor-readings").uid("anomaly-source")
    return env, build(env, cfg, source, kafka_sinks(cfg))


def main(argv: list[str] | None = None) -> None:
    """Submit the job against Kafka with :meth:`AnomalyJobSettings.from_env` (``flink run``).

    Raises:
        ConfigError: invalid ``IOTFLINK_*`` settings.
        JobError: a jar is missing, or the pipeline cannot be built or submitted.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = AnomalyJobSettings.from_env()
    log.info("settings: %s", cfg)
    env, _ = create_job(cfg)
    try:
        client = env.execute_async(JOB_NAME)
    except Exception as exc:
        raise JobError(f"cannot submit {JOB_NAME}: {exc}") from exc
    log.info("submitted %s: job id %s", JOB_NAME, client.get_job_id())


__all__ = ["Reading", "Event", "Params", "Baseline", "Score", "Alert", "Step", "Sinks", "Outputs", "params",
           "ew_alpha", "ew_update", "likelihood", "season_bin", "out_of_range", "alert_key", "alert_id", "is_late", "expired", "step",
           "on_timer", "parse_value", "state_ttl_config", "score_row", "late_row", "alert_row", "alert_details", "ParseReadings",
           "ScoreReadings", "watermark_strategy", "build", "configuration", "kafka_source", "kafka_sink",
           "kafka_sinks", "create_job", "main", "SCORE_COLUMNS", "LATE_COLUMNS", "DLQ_COLUMNS",
           "ALERT_COLUMNS", "ALERT_ROW_COLUMNS", "JOB_NAME", "RULE_ID", "HEARTBEAT_DEVICE", "NO_WATERMARK", "DAY_MS"]


if __name__ == "__main__":
    # `flink run -py jobs/anomaly.py` runs this file as __main__; the functions and the pickled
    # state must refer to the importable module (shipped with -pyfs), not to __main__, which a
    # TaskManager's interpreter does not have ("Can't pickle <class '__main__.Baseline'>")
    from jobs import anomaly as _module  # noqa: PLW0406 - see the comment above

    _module.main(sys.argv[1:])

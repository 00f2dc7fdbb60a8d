"""The exactness checks of a run of the pipeline, shared by the demo
(:mod:`iotflink.simulation.demo`) and the scenarios that run the whole path
(:mod:`iotflink.simulation.scenarios.smart_factory`, :mod:`iotflink.simulation.scenarios.storm`).

What they check, from counts the caller takes from the broker, the topics and the job:

- every published message is in ``sensor-readings`` or the bridge's DLQ (the bridge forwards
  at least once and dead-letters what it cannot read: nothing lost);
- every extra copy of a reading (same ``device_id``, ``seq``) is in ``sensor-duplicates`` (the
  window job's dedup keeps the first copy and writes the others there);
- every sensor value of a unique reading is in exactly one aggregate's ``count`` or in
  ``sensor-late`` (the window job's exact late split, README "The late split is exact");
- the window operator dropped no row as late (its ``numLateRecordsDropped`` is 0): the late
  flag and the window agree.
"""

from __future__ import annotations

#: One check: ``(name, passed, detail)``.
Check = tuple[str, bool, str]


def exactness_checks(published: int, readings_records: int, dlq_records: int, values_in: int, counted: int,
                     late: int, dropped_late: int | None, unique_readings: int | None = None,
                     duplicates: int | None = None) -> list[Check]:
    """The exactness checks as ``(name, passed, detail)``, in the order of the module docstring.

    Args:
        published: messages (single readings or samples of a batch, as the caller counts
            ``readings_records``) the broker acknowledged.
        readings_records: records of ``sensor-readings`` that are readings (watermark
            heartbeats excluded), copies included.
        dlq_records: records of the bridge's dead-letter topic (``sensor-dlq``).
        values_in: sensor values of the unique readings.
        counted: the sum of ``count`` over the final aggregate of every window.
        late: records of ``sensor-late`` (one sensor value each).
        dropped_late: the window operator's ``numLateRecordsDropped``; None (the metric was not
            found) fails its check.
        unique_readings / duplicates: distinct ``(device_id, seq)`` in ``sensor-readings`` and
            records of ``sensor-duplicates``; the duplicates check is made only when both are
            given.
    """
    checks = [("every published message is in sensor-readings or sensor-dlq",
               readings_records + dlq_records == published, f"{readings_records} + {dlq_records} vs {published}")]
    if unique_readings is not None and duplicates is not None:
        checks.append(("every extra copy of a reading is in sensor-duplicates",
                       readings_records - unique_readings == duplicates,
                       f"{readings_records} records - {unique_readings} unique vs {duplicates}"))
    checks += [
        ("every sensor value is in one aggregate count or in sensor-late",
         counted + late == values_in, f"{counted} + {late} vs {values_in} (values of unique readings)"),
        ("the window operator dropped no row as late (its numLateRecordsDropped)",
         dropped_late == 0, f"{dropped_late}"),
    ]
    return checks


def reading_records_in_kafka(stack, tries: int = 20) -> int:
    """Records of the stack's readings topic that are readings: the sum of its end offsets less
    the watermark heartbeats the bridges wrote, read while no heartbeat moved (heartbeats keep
    coming while the bridges run; up to ``tries`` reads, the last one taken as it is).

    Args:
        stack: an :class:`iotflink.runtime.stack.Stack` whose bridges run.
    """
    from iotflink import kafka_io  # noqa: PLC0415

    cfg = stack.s
    for _ in range(tries):
        h0 = stack.bridge_stats().get("heartbeats", 0)
        end = sum(kafka_io.end_offsets(cfg.kafka_bootstrap, cfg.topics.readings).values())
        if stack.bridge_stats().get("heartbeats", 0) == h0:
            break
    return end - h0

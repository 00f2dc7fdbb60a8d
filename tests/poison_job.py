"""A Flink SQL job that fails on its first row, on every (re)start: a deterministic poison record.

Submitted by ``tests/test_restart_strategy.py`` with ``flink run -py`` (``FlinkCtl.submit_script``)::

    poison_job.py [NAME] [KEY=VALUE ...]

``NAME`` (default ``poison-job``) becomes ``pipeline.name``; every ``KEY=VALUE`` overrides the
project's job configuration (:func:`jobs.common.job_configuration`), e.g. a small failure-rate
budget ``restart-strategy.failure-rate.max-failures-per-interval=2``.

The job reads ``datagen`` rows (10 per second, ``v`` a random BIGINT in [1, 1000]) and writes
``CAST('poison-<v>' AS INT)`` to a ``blackhole`` sink: the first row throws
``java.lang.NumberFormatException: For input string: 'poison-<v>'`` in the Calc operator, about
0.1 s after the tasks run. Only JVM operators; no Kafka, no Python worker.
"""

from __future__ import annotations

import logging
import sys

from iotflink.settings import WindowJobSettings
from jobs.common import create_table_env, job_configuration

log = logging.getLogger(__name__)


def main(argv: list[str]) -> None:
    """Build and submit the job (detached under ``flink run -d``).

    Raises:
        ValueError: an argument after the name is not ``KEY=VALUE``.
    """
    args = list(argv)
    name = args.pop(0) if args and "=" not in args[0] else "poison-job"
    overrides = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ValueError(f"expected KEY=VALUE, got {arg!r}")
        overrides[key] = value
    conf = job_configuration(WindowJobSettings.from_env(), name, use_kafka=False, extra=overrides)
    t_env = create_table_env(conf)
    t_env.execute_sql("CREATE TABLE src (v BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '10', "
                      "'fields.v.min' = '1', 'fields.v.max' = '1000')")
    t_env.execute_sql("CREATE TABLE snk (n INT) WITH ('connector' = 'blackhole')")
    log.info("submitting %s with %s", name, overrides)
    t_env.execute_sql("INSERT INTO snk SELECT CAST(CONCAT('poison-', CAST(v AS STRING)) AS INT) FROM src")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main(sys.argv[1:])

"""``iotflink bridge [--stats-file F] [--stats-interval-s S] [--log-level L]`` (``python -m bridge``
is the same).

Runs the MQTT-to-Kafka bridge with :class:`iotflink.settings.BridgeSettings` read from the
environment until SIGTERM/SIGINT. Exit status: 0 clean stop, 1 a project or configuration
error (e.g. Kafka unreachable at start). Kafka failures after the start do not end the bridge:
it re-sends with backoff and reports ``kafka_blocked`` / ``dlq_blocked`` in its stats.
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

from iotflink.errors import IotFlinkError
from iotflink.settings import BridgeSettings

log = logging.getLogger("bridge")


def add_parser(cli_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``iotflink bridge`` (:func:`run`) on the CLI's subparsers. Its ``--log-level``
    (default INFO) is the root logger's level, which the CLI configures."""
    p = cli_sub.add_parser("bridge", help="run the MQTT-to-Kafka bridge until SIGTERM/SIGINT",
                           description=__doc__.split("\n\n")[1])
    p.add_argument("--stats-file", type=Path, help="write the counters here as JSON (atomically, periodically)")
    p.add_argument("--stats-interval-s", type=float, default=5.0, help="seconds between stats logs/writes")
    p.add_argument("--log-level", default="INFO", type=str.upper,
                   choices=["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"])
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the bridge until a signal; returns the exit status."""
    if logging.getLogger().level > logging.DEBUG:
        # kafka-python logs every connection at INFO; keep its warnings and errors only
        logging.getLogger("kafka").setLevel(logging.WARNING)
    from bridge.service import Bridge  # noqa: PLC0415 - after logging is configured

    try:
        settings = BridgeSettings.from_env()
        bridge = Bridge(settings)
        bridge.start()
    except (IotFlinkError, ValueError) as exc:
        log.error("bridge cannot start: %s", exc)
        return 1
    except Exception as exc:  # noqa: BLE001 - e.g. kafka.errors.NoBrokersAvailable
        log.error("bridge cannot start: %r (Kafka %s)", exc, settings.kafka_bootstrap)
        return 1

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        bridge.request_stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return bridge.run_until(stats_file=args.stats_file, stats_interval_s=args.stats_interval_s)

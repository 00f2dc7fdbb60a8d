"""``python -m bridge [--stats-file F] [--stats-interval-s S] [--log-level L]``.

Runs the MQTT-to-Kafka bridge with :class:`iotflink.settings.BridgeSettings` read from the
environment until SIGTERM/SIGINT. Exit status: 0 clean stop, 1 a project or configuration
error (e.g. Kafka unreachable at start). Kafka failures after the start do not end the bridge:
it re-sends with backoff and reports ``kafka_blocked`` / ``dlq_blocked`` in its stats.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from iotflink.errors import IotFlinkError
from iotflink.settings import BridgeSettings

log = logging.getLogger("bridge")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the bridge until a signal, return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bridge", description=__doc__.split("\n\n")[1])
    parser.add_argument("--stats-file", type=Path, help="write the counters here as JSON (atomically, periodically)")
    parser.add_argument("--stats-interval-s", type=float, default=5.0, help="seconds between stats logs/writes")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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


if __name__ == "__main__":
    sys.exit(main())

"""``iotflink``: the project's small command-line interface.

Usage (from the repository root, with the venv's python)::

    python -m iotflink.cli stack start|stop|status     # the local stack
    python -m iotflink.cli topics                      # create the project's Kafka topics
    python -m iotflink.cli job submit sensor_windows   # `flink run -py` to the cluster
    python -m iotflink.cli job list | job cancel JOB_ID
    python -m iotflink.cli env                         # every environment variable and its value
    python -m iotflink.cli rules validate|deploy|list|stop RULE

Every command reads :class:`iotflink.settings.StackSettings` from the environment.
Exit status: 0 success, 1 a project error (message on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
import sys

from iotflink import settings as settings_mod
from iotflink.errors import IotFlinkError
from iotflink.settings import StackSettings

log = logging.getLogger(__name__)


def _cmd_stack(args: argparse.Namespace, cfg: StackSettings) -> int:
    from iotflink.stack import Stack  # noqa: PLC0415

    stack = Stack(cfg)
    if args.action == "start":
        stack.start(progress=lambda m: print(f"[stack] {m}", flush=True))
        print(f"[stack] Flink web UI: {cfg.flink_rest_url}   Kafka: {cfg.kafka_bootstrap}   "
              f"MQTT: {cfg.host}:{cfg.mqtt_port}")
    elif args.action == "stop":
        stack.stop()
        print("[stack] stopped")
    else:
        bad = 0
        for st in stack.status():
            state = "ready" if st.ready else ("running, not answering" if st.running else "stopped")
            bad += not st.ready
            print(f"{st.name:18} {state:24} pid={st.pid or '-':<8} log={st.log_file}")
        return 0 if bad == 0 else 3
    return 0


def _cmd_topics(_args: argparse.Namespace, cfg: StackSettings) -> int:
    from iotflink.stack import Stack  # noqa: PLC0415

    created = Stack(cfg).create_topics()
    print(f"created: {', '.join(created) if created else 'none (all present)'}")
    return 0


def _cmd_job(args: argparse.Namespace, cfg: StackSettings) -> int:
    from iotflink import flinkctl  # noqa: PLC0415

    ctl = flinkctl.FlinkCtl(cfg)
    if args.action == "submit":
        job_id = ctl.submit(args.name, extra_args=args.rest)
        print(job_id)
    elif args.action == "list":
        for job in ctl.list_jobs():
            print(f"{job['jid']}  {job['state']:10}  {job['name']}")
    elif args.action == "cancel":
        ctl.cancel(args.name)
        print(f"cancelled {args.name}")
    return 0


def _cmd_env(_args: argparse.Namespace, _cfg: StackSettings) -> int:
    for name, default in settings_mod.ENV_VARS.items():
        print(f"{name}={settings_mod.env(name)}" + ("" if settings_mod.env(name) == default else "   # set"))
    return 0


def _cmd_rules(args: argparse.Namespace, _cfg: StackSettings) -> int:
    from iotflink import rules_cli  # noqa: PLC0415

    return rules_cli.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m iotflink.cli``."""
    parser = argparse.ArgumentParser(prog="iotflink", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="start, stop or show the local stack")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.set_defaults(func=_cmd_stack)

    p = sub.add_parser("topics", help="create the project's Kafka topics")
    p.set_defaults(func=_cmd_topics)

    p = sub.add_parser("job", help="submit, list or cancel Flink jobs on the cluster")
    p.add_argument("action", choices=["submit", "list", "cancel"])
    p.add_argument("name", nargs="?", default="", help="job module (submit) or job id (cancel)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="extra arguments for the job")
    p.set_defaults(func=_cmd_job)

    p = sub.add_parser("env", help="print every environment variable the project reads")
    p.set_defaults(func=_cmd_env)

    p = sub.add_parser("rules", help="validate, deploy, list or stop detection rules")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_rules)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args, StackSettings.from_env())
    except IotFlinkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

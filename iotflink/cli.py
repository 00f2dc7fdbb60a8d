"""``iotflink``: the project's small command-line interface.

Usage (``iotflink`` is installed into the venv by setup, ``pip install -e .``; without the
venv activated it is ``.venv/bin/iotflink``; ``python -m iotflink.cli`` is the same)::

    iotflink stack start|stop|status     # the local stack
    iotflink topics                      # create the project's Kafka topics
    iotflink job submit sensor_windows   # `flink run -py` to the cluster (a package: -pym)
    iotflink job submit sensor_windows --from-savepoint PATH [--allow-non-restored]
    IOTFLINK_WINDOW_INSTANCE=vitals IOTFLINK_WINDOW_KIND=sliding iotflink job submit sensor_windows
    iotflink job list | job cancel JOB
    iotflink backpressure [JOB] [--json] [--group GROUP]
    iotflink savepoint JOB [--dir DIR] [--format canonical|native]
    iotflink stop JOB [--savepoint-dir DIR] [--drain]
    iotflink env                         # every environment variable and its value
    iotflink rules validate|deploy|list|stop RULE|alerts|render-ddl RULE|howto|calibrate
    iotflink chaos kill-taskmanager|restart-kafka|restart-mosquitto|kill-mosquitto|kill-bridge
    iotflink device add ID [--out FILE] [--role bridge] | device list [--all] | device revoke ID
    iotflink tls init DIR [--host NAME ...]   # CA + broker certificate (docker-compose)
    iotflink demo [--speedup X] [--limit N]   # what `make demo` runs
    iotflink replay [--datasets nab,femto,occupancy] [--dry-run] ...
    iotflink vnodes [--speedup X]        # the demo's virtual ESP32 nodes
    iotflink transactions [--jsonl FILE] # TabFormer card transactions into Kafka
    iotflink scenario list | scenario NAME [--short]   # worked examples, checked
    iotflink bridge [--stats-file F] [--stats-interval-s S]   # the MQTT-to-Kafka bridge (python -m bridge)

Every command's options: ``iotflink COMMAND --help``. The modules behind ``rules``, ``chaos``,
``demo``, ``replay``, ``vnodes``, ``transactions``, ``scenario`` and ``bridge`` each register their
own subcommand (``add_parser(subparsers)``, which sets ``func``) and keep a ``python -m`` entry
that runs the same parser.

JOB is a job id (32 hex digits) or a job name (``pipeline.name``, e.g. ``sensor_windows``)
that matches exactly one RUNNING job.

- ``job list``: every job the cluster knows, newest first: id, state, restarts since
  submission (``16+``: at least, from a truncated exception history; ``?``: unknown) and
  name; under a FAILED, FAILING or RESTARTING job, the root exception of its latest failure
  with its time (UTC), why it was not restarted when the restart strategy gave up, and the
  earlier failures of its exception history (consecutive equal ones on one line, ``(x N)``;
  see :meth:`iotflink.runtime.flinkctl.FlinkCtl.job_health`).

- ``backpressure``: per vertex of each running job (or of JOB): backpressure level and ratio,
  busy / idle / backpressured ms per second (max over subtasks), records in / out per second
  (sum over subtasks), and the Kafka lag of the job's sources per partition (live, from the
  source's offsets; and committed, which moves at checkpoints). See
  :mod:`iotflink.runtime.backpressure`. ``--json`` prints ``{"jobs": [...]}`` instead of tables.
- ``savepoint``: take a savepoint, the job keeps running; prints the savepoint's location.
- ``stop``: stop with a savepoint (``--drain``: fire every event-time window first; do not
  resume a drained job); prints the location.
- ``job submit NAME --from-savepoint PATH``: resume a job from a savepoint (or a retained
  checkpoint); ``--allow-non-restored`` (``-n``) lets state without a matching operator be
  skipped. Other arguments go to the job; put them after ``--`` if they could be mistaken
  for these options.
- ``job submit sensor_windows``: several window jobs run side by side when each has its own
  ``IOTFLINK_WINDOW_INSTANCE`` (pipeline name ``sensor_windows-<instance>``; consumer group,
  transactional ids and output topics suffixed ``-<instance>``, created at submission) and its
  own window settings (``IOTFLINK_WINDOW_KIND`` etc., :class:`iotflink.settings.WindowJobSettings`),
  read from the submitting environment.

- ``device add ID``: create device ID's MQTT credential (a random password; the broker keeps
  its hash) and print the lines for the node's ``config.h`` (``--out FILE``: write them to
  FILE, mode 0600, instead of printing the password). The device may publish only on
  ``sensors/ID/telemetry``. ``device revoke ID``: the broker refuses the credential from now
  on and closes the device's open connection. Both reload the running broker (SIGHUP), no
  restart. ``device list``: the credentials (no secrets); ``--all`` also revoked ones. See
  :mod:`iotflink.runtime.mqtt_auth` and the README's "Security" section.

Every command reads :class:`iotflink.settings.StackSettings` from the environment.
Exit status: 0 success, 1 a project error (message on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from iotflink import settings as settings_mod
from iotflink.errors import IotFlinkError
from iotflink.settings import StackSettings
from iotflink.simulation import scenarios

if TYPE_CHECKING:
    from iotflink.runtime.flinkctl import JobHealth

log = logging.getLogger(__name__)


def _cmd_stack(args: argparse.Namespace, cfg: StackSettings) -> int:
    from iotflink.runtime.stack import Stack  # noqa: PLC0415

    if getattr(args, "bridges", None) is not None:
        if args.bridges < 1:
            print("--bridges must be at least 1", file=sys.stderr)
            return 2
        import dataclasses  # noqa: PLC0415

        cfg = dataclasses.replace(cfg, bridges=args.bridges)
    if getattr(args, "taskmanagers", None) is not None:
        if args.taskmanagers < 1:
            print("--taskmanagers must be at least 1", file=sys.stderr)
            return 2
        import dataclasses  # noqa: PLC0415

        cfg = dataclasses.replace(cfg, taskmanagers=args.taskmanagers)
    stack = Stack(cfg)
    if args.action == "start":
        stack.start(progress=lambda m: print(f"[stack] {m}", flush=True))
        print(f"[stack] Flink web UI: {cfg.flink_rest_url}   Kafka: {cfg.kafka_bootstrap}   "
              f"MQTT: {cfg.host}:{cfg.mqtt_port} ({'TLS, ' if cfg.mqtt_tls else ''}a credential per device: "
              "iotflink device add ID)")
    elif args.action == "stop":
        stack.stop()
        print("[stack] stopped")
    else:
        bad = 0
        for st in stack.status():
            state = "ready" if st.ready else ("running, not answering" if st.running else "stopped")
            bad += not st.ready
            print(f"{st.name:20} {state:24} pid={st.pid or '-':<8} log={st.log_file}")
        return 0 if bad == 0 else 3
    return 0


def _cmd_topics(_args: argparse.Namespace, cfg: StackSettings) -> int:
    from iotflink.runtime.stack import Stack  # noqa: PLC0415

    created = Stack(cfg).create_topics()
    print(f"created: {', '.join(created) if created else 'none (all present)'}")
    return 0


class UsageError(Exception):
    """Bad command-line usage found after argparse (exit status 2)."""


def _cmd_job(args: argparse.Namespace, cfg: StackSettings) -> int:
    from iotflink.runtime import flinkctl  # noqa: PLC0415

    ctl = flinkctl.FlinkCtl(cfg)
    if args.action == "submit":
        if args.allow_non_restored and args.from_savepoint is None:
            raise UsageError("--allow-non-restored only applies with --from-savepoint")
        job_id = ctl.submit(args.name, extra_args=args.job_args, savepoint=args.from_savepoint,
                            allow_non_restored=args.allow_non_restored)
        print(job_id)
    elif args.action == "list":
        print(format_job_list(ctl.job_health()))
    elif args.action == "cancel":
        job_id = ctl.resolve_job(args.job)
        ctl.cancel(job_id)
        print(f"cancelled {job_id}")
    return 0


#: Most lines of earlier failures ``job list`` prints under one job.
EARLIER_FAILURE_LINES = 5


def _utc(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch_ms / 1000))


def format_job_list(jobs: list[JobHealth]) -> str:
    """The ``job list`` table: one line per job (id, state, restarts, name), and under a job
    with a root exception (FAILED, FAILING, RESTARTING) that exception, indented, with the
    failure's time in UTC; if the restart strategy gave up, its reason; then the earlier
    failures (at most :data:`EARLIER_FAILURE_LINES` lines, consecutive equal root causes
    merged). ``"no jobs"`` for an empty list."""
    if not jobs:
        return "no jobs"
    out = [f"{'JOB ID':32}  {'STATE':11}  {'RESTARTS':>8}  NAME"]
    for job in jobs:
        out.append(f"{job.job_id:32}  {job.state:11}  {job.restarts_text:>8}  {job.name}")
        if not job.unhealthy and job.root_exception is None:
            continue
        when = f" at {_utc(job.failure_time_ms)}" if job.failure_time_ms else ""
        root = (job.root_exception or "(none recorded by the JobManager)").splitlines()
        out.append(f"    root exception{when}: {root[0]}")
        out.extend(f"        {line}" for line in root[1:])
        if job.recovery_suppressed:
            out.append(f"    not restarted: {job.recovery_suppressed}")
        runs: list[list] = []  # [newest ms, cause, count] of consecutive equal causes
        for at_ms, cause in job.earlier_failures:
            if runs and runs[-1][1] == cause:
                runs[-1][2] += 1
            else:
                runs.append([at_ms, cause, 1])
        if runs:
            out.append(f"    earlier failures, newest first ({len(job.earlier_failures)}):")
            for at_ms, cause, count in runs[:EARLIER_FAILURE_LINES]:
                out.append(f"        {_utc(at_ms)}  {cause}" + (f"  (x {count})" if count > 1 else ""))
            if len(runs) > EARLIER_FAILURE_LINES:
                out.append(f"        ... {len(runs) - EARLIER_FAILURE_LINES} more")
    return "\n".join(out)


def _cmd_backpressure(args: argparse.Namespace, cfg: StackSettings) -> int:
    from iotflink.runtime import backpressure, flinkctl  # noqa: PLC0415

    ctl = flinkctl.FlinkCtl(cfg)
    reps = backpressure.reports(ctl, args.job, cfg.kafka_bootstrap, group=args.group,
                                bp_timeout_s=args.wait_s)
    if args.json:
        print(backpressure.to_json(reps))
    elif not reps:
        print("no running jobs")
    else:
        print("\n\n".join(backpressure.format_report(r) for r in reps))
    return 0


def _cmd_savepoint(args: argparse.Namespace, cfg: StackSettings) -> int:
    from iotflink.runtime import flinkctl  # noqa: PLC0415

    ctl = flinkctl.FlinkCtl(cfg)
    job_id = ctl.resolve_job(args.job)
    print(ctl.savepoint(job_id, target_dir=args.dir, timeout_s=args.timeout_s, format_type=args.format))
    return 0


def _cmd_stop(args: argparse.Namespace, cfg: StackSettings) -> int:
    from iotflink.runtime import flinkctl  # noqa: PLC0415

    ctl = flinkctl.FlinkCtl(cfg)
    job_id = ctl.resolve_job(args.job)
    location = ctl.stop_with_savepoint(job_id, drain=args.drain, target_dir=args.savepoint_dir,
                                       timeout_s=args.timeout_s, format_type=args.format)
    print(location)
    return 0


def device_config_lines(device_id: str, password: str, cfg: StackSettings) -> str:
    """The ``esp32/board/config.h`` lines of a provisioned device: id, username, password
    and broker URI (``mqtts://`` with TLS, then the CA certificate must go into
    ``FW_MQTT_CA_PEM``)."""
    scheme = "mqtts" if cfg.mqtt_tls else "mqtt"
    lines = [f'#define FW_DEVICE_ID "{device_id}"',
             f'#define FW_MQTT_USERNAME "{device_id}"',
             f'#define FW_MQTT_PASSWORD "{password}"',
             f'#define FW_MQTT_URI "{scheme}://{cfg.mqtt_host}:{cfg.mqtt_port}"  // the broker as the node reaches it']
    if cfg.mqtt_ca_file is not None:
        lines.append(f"// FW_MQTT_CA_PEM: the PEM text of {cfg.mqtt_ca_file}")
    return "\n".join(lines) + "\n"


def _cmd_device(args: argparse.Namespace, cfg: StackSettings) -> int:
    import datetime as dt  # noqa: PLC0415
    import os  # noqa: PLC0415

    from iotflink.poll import wait_for  # noqa: PLC0415
    from iotflink.runtime.stack import Stack  # noqa: PLC0415

    stack = Stack(cfg)
    store = stack.credentials
    if args.action == "list":
        rows = store.list(include_revoked=args.all)
        print(f"{'username':40} {'role':7} {'created (UTC)':20} revoked (UTC)")
        for r in rows:
            def utc(ms):
                return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"
            print(f"{r['username']:40} {r['role']:7} {utc(r['created_ms']):20} {utc(r['revoked_ms'])}")
        return 0
    if not args.id:
        raise UsageError(f"device {args.action} needs a device id")
    if args.action == "add":
        cred = store.add(args.id, role=args.role)
        if stack.reload_mosquitto():
            wait_for(lambda: stack.mqtt_connack(cred.username, cred.password) == 0, 20,
                     what=f"mosquitto to accept {args.id}")
            state = "the running broker accepts it now"
        else:
            state = "the broker reads it when it starts"
        print(f"password file: {store.password_file(args.id)} (mode 0600)")
        if args.role == "bridge":
            print(f"bridge {args.id}: credential created ({state}); it may read sensors/+/telemetry and "
                  f"publish nothing (IOTFLINK_MQTT_BRIDGE_USER={args.id})")
            return 0
        text = device_config_lines(args.id, cred.password, cfg)
        print(f"device {args.id}: credential created ({state}); it may publish only on {cred.topic}")
        if args.out:
            fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            print(f"config.h lines written to {args.out} (mode 0600)")
        else:
            print("config.h lines for the node (esp32/board/config.h; never commit them):")
            print(text, end="")
        return 0
    # revoke
    stack.revoke(args.id)
    running = stack.pid("mosquitto") is not None
    print(f"device {args.id}: credential revoked; "
          + ("the running broker refuses it now and has closed its open connection, if any"
             if running else "the broker refuses it when it starts"))
    return 0


def _cmd_tls(args: argparse.Namespace, _cfg: StackSettings) -> int:
    from pathlib import Path  # noqa: PLC0415

    from iotflink.runtime import mqtt_auth  # noqa: PLC0415

    ca = mqtt_auth.make_ca(Path(args.dir), args.host or ["mosquitto", "localhost", "127.0.0.1"])
    print(f"CA certificate (give it to the clients): {ca}")
    print(f"broker certificate and key: {ca.parent / 'server.crt'}, {ca.parent / 'server.key'} (0600)")
    return 0


def _cmd_env(_args: argparse.Namespace, _cfg: StackSettings) -> int:
    for name, default in settings_mod.ENV_VARS.items():
        print(f"{name}={settings_mod.env(name)}" + ("" if settings_mod.env(name) == default else "   # set"))
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The one argument parser of ``iotflink`` (and ``python -m iotflink.cli``): a subparser
    per command; each sets ``func`` (called with the parsed arguments, returns the exit
    status) and may set ``log_level`` (the root logger's level, default WARNING; ``-v``: DEBUG).
    """
    from bridge import cli as bridge_cli  # noqa: PLC0415
    from iotflink.runtime import rules_cli  # noqa: PLC0415
    from iotflink.simulation import chaos, demo, replay, transactions, vnodes  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="iotflink", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("stack", help="start, stop or show the local stack")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--bridges", type=int, default=None, metavar="N",
                   help="bridge processes sharing the MQTT load (shared subscription); default IOTFLINK_BRIDGES (1)")
    p.add_argument("--taskmanagers", type=int, default=None, metavar="N",
                   help="Flink TaskManagers, each with its own slots and local state directory, as on "
                        "separate hosts; default IOTFLINK_TASKMANAGERS (1)")
    p.set_defaults(func=_with_stack_settings(_cmd_stack))

    p = sub.add_parser("topics", help="create the project's Kafka topics")
    p.set_defaults(func=_with_stack_settings(_cmd_topics))

    p = sub.add_parser("job", help="submit, list or cancel Flink jobs on the cluster")
    job_sub = p.add_subparsers(dest="action", required=True)
    j = job_sub.add_parser("submit", allow_abbrev=False,
                           help="submit jobs/NAME.py (flink run -py) or the package jobs/NAME/ (-pym) detached; prints the job id",
                           usage="iotflink job submit NAME [--from-savepoint PATH [--allow-non-restored]] "
                                 "[job args ...] [-- job args ...]",
                           description="Other arguments, and every one after --, go to the job's main().")
    j.add_argument("name", metavar="NAME", help="job module or package under jobs/ (e.g. sensor_windows, rules)")
    j.add_argument("--from-savepoint", metavar="PATH", default=None,
                   help="resume from this savepoint or retained checkpoint")
    j.add_argument("-n", "--allow-non-restored", action="store_true",
                   help="skip savepoint state that maps to no operator (with --from-savepoint)")
    j.set_defaults(func=_with_stack_settings(_cmd_job), job_args=[], accepts_job_args=True)
    j = job_sub.add_parser("list", help="every job the cluster knows, newest first, with failures")
    j.set_defaults(func=_with_stack_settings(_cmd_job))
    j = job_sub.add_parser("cancel", help="cancel a job")
    j.add_argument("job", metavar="JOB", help="job id or name")
    j.set_defaults(func=_with_stack_settings(_cmd_job))

    p = sub.add_parser("backpressure", help="backpressure, busy time, rates and source lag of running jobs")
    p.add_argument("job", nargs="?", default=None, help="job id or name (default: every running job)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--group", default=None,
                   help="also show this Kafka consumer group's committed offsets as the broker has them")
    p.add_argument("--wait-s", type=_positive_float, default=30.0,
                   help="how long to poll each vertex's backpressure endpoint for a sample (s)")
    p.set_defaults(func=_with_stack_settings(_cmd_backpressure))

    p = sub.add_parser("savepoint", help="take a savepoint of a running job (it keeps running)")
    p.add_argument("job", help="job id or name")
    p.add_argument("--dir", default=None, help="target directory (default: the cluster's savepoint dir)")
    p.add_argument("--format", choices=["canonical", "native"], default=None)
    p.add_argument("--timeout-s", type=_positive_float, default=300.0)
    p.set_defaults(func=_with_stack_settings(_cmd_savepoint))

    p = sub.add_parser("stop", help="stop a running job with a savepoint")
    p.add_argument("job", help="job id or name")
    p.add_argument("--savepoint-dir", default=None, help="target directory (default: the cluster's)")
    p.add_argument("--drain", action="store_true",
                   help="emit the max watermark first so every window fires (do not resume afterwards)")
    p.add_argument("--format", choices=["canonical", "native"], default=None)
    p.add_argument("--timeout-s", type=_positive_float, default=300.0)
    p.set_defaults(func=_with_stack_settings(_cmd_stop))

    p = sub.add_parser("env", help="print every environment variable the project reads")
    p.set_defaults(func=_with_stack_settings(_cmd_env))

    rules_cli.add_parser(sub)

    p = sub.add_parser("device", help="add, list or revoke device credentials of the MQTT broker")
    p.add_argument("action", choices=["add", "list", "revoke"])
    p.add_argument("id", nargs="?", default="", help="device id (add, revoke)")
    p.add_argument("--out", default=None, help="add: write the config.h lines to this file (0600)")
    p.add_argument("--all", action="store_true", help="list: also revoked credentials")
    p.add_argument("--role", choices=["device", "bridge"], default="device",
                   help="add: a device (default) or a bridge credential (e.g. for docker-compose)")
    p.set_defaults(func=_with_stack_settings(_cmd_device))

    p = sub.add_parser("tls", help="make a local CA and the broker's TLS certificate")
    p.add_argument("action", choices=["init"])
    p.add_argument("dir", help="directory for ca.crt, ca.key, server.crt, server.key")
    p.add_argument("--host", action="append", default=None,
                   help="a name or IP clients use for the broker (repeatable; default mosquitto, localhost, 127.0.0.1)")
    p.set_defaults(func=_with_stack_settings(_cmd_tls))

    chaos.add_parser(sub)
    demo.add_parser(sub)
    replay.add_parser(sub)
    vnodes.add_parser(sub)
    transactions.add_parser(sub)
    bridge_cli.add_parser(sub)
    scenarios.add_parser(sub)  # scenario list | scenario NAME [--short] (iotflink/simulation/scenarios)
    # further commands register here the same way: module.add_parser(sub), which sets
    # func(args) -> exit status
    return parser


def _with_stack_settings(cmd: Callable[[argparse.Namespace, StackSettings], int]
                         ) -> Callable[[argparse.Namespace], int]:
    """A command of this module as a ``func``: ``cmd(args, StackSettings.from_env())``."""
    def run(args: argparse.Namespace) -> int:
        return cmd(args, StackSettings.from_env())
    return run


def main(argv: list[str] | None = None) -> int:
    """Run the CLI (``argv`` default: ``sys.argv[1:]``); returns the exit status.

    ``job submit`` passes the words it does not know, and every word after ``--``, to the job.
    Elsewhere an unknown word is a usage error (argparse: ``SystemExit`` 2).
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not getattr(args, "accepts_job_args", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if "--" in extra:
            extra.remove("--")
        args.job_args = extra
    level = logging.DEBUG if args.verbose else getattr(args, "log_level", logging.WARNING)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"usage error: {exc}", file=sys.stderr)
        return 2
    except IotFlinkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

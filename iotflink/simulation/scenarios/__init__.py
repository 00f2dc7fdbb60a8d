"""Worked examples of the field as runnable, checked scenarios on the local stack.

``iotflink scenario list`` shows them, one line each;
``iotflink scenario NAME [--short]`` (or ``make scenario NAME=...``) starts the
local stack's services the scenario needs (:class:`iotflink.runtime.stack.Stack`, left running
afterwards; ``make down`` stops it), publishes the scenario's data (real data from ``data/``
where the project has it, seeded generated data otherwise), runs the real job(s) on the
cluster, prints what happened and checks the example's claim. The measured figures go to
``bench/results/scenario-NAME.json``. Exit status: 0 every check held, 1 a check failed or
the run failed, 2 an unknown scenario.

Each scenario is a module of this package with a ``SCENARIO`` (:class:`Scenario`); the
registry :data:`SCENARIOS` lists them in order. ``tests/test_scenarios.py`` runs each one's
short version on one shared stack.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from iotflink.simulation.scenarios import (
    black_friday,
    business_day,
    fleet,
    patient_vitals,
    payment_fraud,
    smart_factory,
    smart_meter,
    storm,
)
from iotflink.simulation.scenarios.base import RESULTS_DIR, Outcome, Say, Scenario, write_results

if TYPE_CHECKING:
    from collections.abc import Callable

    from iotflink.runtime.stack import Stack
    from iotflink.settings import StackSettings

#: Every scenario by name, in the order ``scenario list`` shows them.
SCENARIOS: dict[str, Scenario] = {s.name: s for s in (patient_vitals.SCENARIO, business_day.SCENARIO,
                                                      payment_fraud.SCENARIO, black_friday.SCENARIO,
                                                      smart_factory.SCENARIO, smart_meter.SCENARIO,
                                                      storm.SCENARIO, fleet.SCENARIO)}


def say(msg: str) -> None:
    """Print one progress line of a scenario (``[scenario] ...``)."""
    print(f"[scenario] {msg}" if msg else "", flush=True)


def report(name: str, outcome: Outcome, seconds: float) -> str:
    """The summary block of a run: one ``[OK ]`` / ``[FAIL]`` line per check."""
    lines = ["=" * 72, f"scenario {name}", "-" * 72]
    lines += [f"[{'OK ' if c.passed else 'FAIL'}] {c.name}: {c.detail}" for c in outcome.checks]
    lines += [f"scenario took {seconds:.0f} s; {'every check held' if outcome.passed else 'a check FAILED'}",
              "=" * 72]
    return "\n".join(lines)


def run(name: str, cfg: StackSettings, short: bool = False, results: bool = True,
        runner: Callable[[Stack, Say], Outcome] | None = None) -> int:
    """Start the services scenario ``name`` needs on the stack of ``cfg``, run it, print its
    report and (``results``) write its figures to ``bench/results/scenario-NAME.json``
    (``scenario-NAME-short.json`` for a short run). ``runner(stack, say)`` runs it with other
    settings than the registry's full or short plan (a scenario module's own ``main``).

    Returns the exit status: 0 every check held, 1 otherwise.
    Raises:
        KeyError: no scenario ``name``.
        IotFlinkError: the stack did not start or a job failed.
    """
    from iotflink.runtime.stack import Stack  # noqa: PLC0415

    scenario = SCENARIOS[name]
    stack = Stack(cfg)
    t0 = time.monotonic()
    say(f"{name}: {scenario.summary}")
    say(f"starting the local stack ({', '.join(scenario.services)}) ...")
    stack.start(services=scenario.services, progress=lambda m: say("  " + m))
    outcome = runner(stack, say) if runner is not None else scenario.run(stack, short, say)
    print(report(name, outcome, time.monotonic() - t0))
    if results:
        print(f"figures written to {write_results(name, outcome, short)}")
    return 0 if outcome.passed else 1


def _cmd(args: argparse.Namespace) -> int:
    if args.name == "list":
        width = max(len(n) for n in SCENARIOS)
        for scenario in SCENARIOS.values():
            print(f"{scenario.name:{width}}  {scenario.summary}")
        return 0
    if args.name not in SCENARIOS:
        print(f"usage error: no scenario {args.name!r}; `scenario list` shows them: {', '.join(SCENARIOS)}",
              file=sys.stderr)
        return 2
    from iotflink.settings import StackSettings  # noqa: PLC0415 (the CLI imports this module at start)

    return run(args.name, StackSettings.from_env(), short=args.short, results=not args.no_results)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scenario`` command to the CLI's ``subparsers`` (``iotflink/cli.py``); its
    handler is called as ``func(args)`` and reads ``StackSettings.from_env()``."""
    p = subparsers.add_parser("scenario", help="run a worked example on the local stack and check its claim",
                              description="scenario list | scenario NAME [--short] [--no-results]")
    p.add_argument("name", help="a scenario name, or `list`")
    p.add_argument("--short", action="store_true", help="the shorter run the tests use")
    p.add_argument("--no-results", action="store_true",
                   help=f"do not write the figures to {RESULTS_DIR.name}/scenario-NAME.json")
    p.set_defaults(func=_cmd)

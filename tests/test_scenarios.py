"""Every scenario of ``iotflink.simulation.scenarios`` as a test: its short run on the stack the
integration modules share (Kafka and the Flink cluster on free ports, tests/conftest.py), and
the claim it checks must hold.

Each scenario publishes its own data to its own topics, runs the real jobs on the cluster,
stops them with a drained savepoint and checks its claim against a computation of its own
(``Outcome.checks``); the test fails on any failed check, naming it, except timing checks
(``Check.timing``: a latency bound), which depend on the machine's load. The short runs of all
scenarios run at once (a thread each: their topics, consumer groups and jobs are their own,
and the cluster has a slot for every job), so their job start-ups and drains overlap; each
scenario's test then checks its own outcome. The pure parts (data generation, the references)
are tested without services.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest

from iotflink.simulation import scenarios
from iotflink.simulation.scenarios import business_day, patient_vitals, payment_fraud

STACK_SERVICES = ("kafka", "flink-jobmanager", "flink-taskmanager")
SHARED_STACK = True


def test_registry_lists_each_scenario_once_with_a_summary(capsys):
    from iotflink.cli import main  # noqa: PLC0415

    assert main(["scenario", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(scenarios.SCENARIOS)
    assert main(["scenario", "no-such-scenario"]) == 2


def test_patient_vitals_data_and_reference():
    readings = patient_vitals.generate(3)
    assert readings == patient_vitals.generate(3)  # seeded
    assert len(readings) == 3 * patient_vitals.DURATION_MIN * 12
    onset = patient_vitals.reference_onset(readings, patient_vitals.ABNORMAL_PATIENT)
    # above 120 from minute 3: the 5 min mean crosses 120 once most of the last 5 min is abnormal
    assert patient_vitals.BASE_MS + 3 * 60_000 < onset < patient_vitals.BASE_MS + 8 * 60_000
    assert patient_vitals.reference_onset(readings, "patient-02") is None


def test_business_day_reference_has_the_25_hour_day():
    readings = business_day.generate(business_day.SHORT_START_LOCAL, business_day.SHORT_DAYS)
    totals = business_day.reference_totals(readings)
    assert {d: t["count"] for d, t in totals.items()} == {
        (business_day.SHORT_START_LOCAL + dt.timedelta(days=i)).isoformat(): 300 if i == 2 else 288
        for i in range(business_day.SHORT_DAYS)}


def test_payment_fraud_reference_matches():
    def txn(seq, card, ts, failed):
        return {"seq": seq, "card_id": card, "ts": ts, "errors": "Bad PIN" if failed else None}

    txns = [txn(0, "a", 0, True), txn(1, "a", 1_000, False), txn(2, "a", 2_000, True), txn(3, "a", 3_000, True),
            txn(4, "a", 4_000, True),  # a 4th failure does not start a second match
            txn(5, "b", 0, True), txn(6, "b", 200_000, True), txn(7, "b", 300_000, True),  # 300 s: not within
            txn(8, "b", 310_000, True)]  # 6, 7, 8 within 110 s
    assert payment_fraud.reference_matches(txns) == {("a", (0, 2, 3)), ("b", (6, 7, 8))}
    assert payment_fraud.percentile(list(range(1, 11)), 0.5) == 5
    assert payment_fraud.percentile(list(range(1, 101)), 0.99) == 99
    plan = payment_fraud.plan(100, 20, 3)
    assert plan == payment_fraud.plan(100, 20, 3) and sum(d for _, _, d in plan) >= 9


#: The scenarios whose short run this module checks on its shared Kafka + Flink stack. The smart
#: factory needs Mosquitto, bridges and hundreds of virtual-node processes, so its pure parts are
#: tested in tests/test_smart_factory.py and its run is a CLI command (README, "Scenarios").
SHORT_RUN = [name for name in scenarios.SCENARIOS if name != "smart-factory"]


@pytest.fixture(scope="module")
def short_runs(stack):
    """Every scenario's short run on ``stack``, all at once: name -> ``(outcome or the
    exception it raised, its output lines)``."""
    lines: dict[str, list[str]] = {name: [] for name in SHORT_RUN}

    def one(name: str):
        try:
            return scenarios.SCENARIOS[name].run(stack, True, lines[name].append)
        except Exception as exc:  # noqa: BLE001 - re-raised by the scenario's own test
            return exc

    with ThreadPoolExecutor(max_workers=len(SHORT_RUN)) as pool:
        futures = {name: pool.submit(one, name) for name in SHORT_RUN}
    return {name: (fut.result(), lines[name]) for name, fut in futures.items()}


@pytest.mark.integration
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", SHORT_RUN)
def test_scenario_claim_holds(short_runs, name):
    outcome, lines = short_runs[name]
    if isinstance(outcome, Exception):
        raise AssertionError(f"scenario {name} failed to run: {outcome!r}\n--- output:\n" + "\n".join(lines)) \
            from outcome
    # a timing claim (a latency bound) depends on the machine's load: printed, never asserted here
    failed = [f"{c.name}: {c.detail}" for c in outcome.checks if not c.passed and not c.timing]
    assert outcome.checks and not failed, "\n".join(failed + ["--- output:"] + lines)

"""Every scenario of ``iotflink.scenarios`` as a test: its short run on one stack shared by the
module (Kafka and the Flink cluster on free ports), and the claim it checks must hold.

Each scenario publishes its own data to its own readings topic, runs the real jobs on the
cluster, stops them with a drained savepoint and checks its claim against a computation of
its own (``Outcome.checks``); the test fails on any failed check, naming it. The pure parts
(data generation, the references) are tested without services.
"""

from __future__ import annotations

import datetime as dt

import pytest

from iotflink import scenarios
from iotflink.scenarios import business_day, patient_vitals

STACK_SERVICES = ("kafka", "flink-jobmanager", "flink-taskmanager")


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


@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", list(scenarios.SCENARIOS))
def test_scenario_claim_holds(stack, name):
    lines: list[str] = []
    outcome = scenarios.SCENARIOS[name].run(stack, True, lines.append)
    failed = [f"{c.name}: {c.detail}" for c in outcome.checks if not c.passed]
    assert outcome.checks and not failed, "\n".join(failed + ["--- output:"] + lines)

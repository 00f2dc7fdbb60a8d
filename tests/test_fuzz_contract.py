"""CI slice of bench/fuzz_contract.py: 5,000 seeded payloads through contract.validate and the
bridge's message handler, no property violation, every reason code seen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import fuzz_contract as fz
from bridge import contract

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def report():
    return fz.run(5000, seed=1)


def test_no_property_violation(report):
    for name, path in report["paths"].items():
        assert path["payloads"] == 5000, name
        assert path["violations"] == {}, (name, path["violation_examples"])
        assert sum(path["outcomes"].values()) == 5000, name
    assert report["violations_total"] == 0


def test_every_reason_occurs_on_both_paths(report):
    # guaranteed by the generator: every reason has a category whose cases are checked to
    # end in that reason (expectation_mismatch would be a violation), and CYCLE holds every
    # category once per 50 cases
    for name, path in report["paths"].items():
        assert set(path["outcomes"]) == {fz.FORWARDED, *contract.REASONS}, name
    assert report["paths"]["contract.validate"]["outcomes"] == report["paths"]["Bridge._on_message"]["outcomes"]


def test_every_reason_has_a_targeted_category():
    targeted = set()
    for name in set(fz.CYCLE):
        for case in fz.generate(len(fz.CYCLE), 7):
            if case.category == name and case.expected:
                targeted.add(case.expected)
    assert targeted == {fz.FORWARDED, *contract.REASONS}
    assert len(fz.CYCLE) == 50 and set(fz.CYCLE) == set(fz.CATEGORIES)


def test_generation_is_deterministic_and_any_case_can_be_rebuilt():
    first = [(c.category, c.topic, c.payload) for c in fz.generate(200, 3)]
    again = [(c.category, c.topic, c.payload) for c in fz.generate(200, 3)]
    assert first == again
    assert [(c.category, c.topic, c.payload) for c in fz.generate(1, 3, start=137)] == [first[137]]
    assert first != [(c.category, c.topic, c.payload) for c in fz.generate(200, 4)]


def test_generation_does_not_depend_on_the_hash_seed():
    code = ("import hashlib; from bench import fuzz_contract as fz; h = hashlib.sha256()\n"
            "for c in fz.generate(2000, 1): h.update(c.topic + b'|' + c.payload + b'|' + c.category.encode())\n"
            "print(h.hexdigest())")
    root = Path(__file__).resolve().parents[1]
    digests = {subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=root,
                              env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}).stdout
               for seed in ("1", "2")}
    assert len(digests) == 1


def test_the_bench_finds_a_contract_that_forwards_out_of_range_integers(monkeypatch):
    # the bench must not be vacuous: a contract that lets seq 2^63 through, or crashes on
    # it, is reported on both paths
    real = contract.validate

    def lax(topic, payload, now_ms):
        try:
            return real(topic, payload, now_ms)
        except contract.ValidationError as exc:
            if exc.reason != "out_of_range":
                raise
            if b'"seq":9223372036854775808' in payload:
                raise RuntimeError("boom") from exc
            value = real(topic, payload.replace(b'"seq":', b'"seq":0,"x":', 1), now_ms)
            value["seq"] = 2**63
            return value

    monkeypatch.setattr(contract, "validate", lax)
    # the bridge validates through validate_message (one reading or a batch); the fuzzed
    # payloads are single readings
    monkeypatch.setattr(contract, "validate_message", lambda topic, payload, now_ms: [lax(topic, payload, now_ms)])
    r = fz.run(1000, seed=1)
    c, b = r["paths"]["contract.validate"]["violations"], r["paths"]["Bridge._on_message"]["violations"]
    assert c.get("unexpected_exception") and c.get("forwarded_fails_schema") and c.get("forwarded_not_flink_readable")
    assert b.get("internal_error") and b.get("forwarded_fails_schema") and b.get("forwarded_not_flink_readable")
    assert r["violations_total"] > 0

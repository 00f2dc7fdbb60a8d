"""The figures behind the card rules' thresholds, from the TabFormer transactions
(``data/tabformer``; see data/ATTRIBUTION.md). The bearing rules' calibration is
:mod:`iotflink.testing.bearing` (``iotflink rules calibrate`` prints both;
``bench/bearing_calibrate.py`` also confirms the bearing figures on Flink)."""

from __future__ import annotations

import csv
from typing import Any

from iotflink.settings import PROJECT_ROOT

TABFORMER_CSV = PROJECT_ROOT / "data" / "tabformer" / "User0_credit_card_transactions.csv"


def calibrate_cards() -> dict[str, Any]:
    """Figures behind the card rules' thresholds: percentiles of TabFormer user 0's purchase
    amounts (USD) and the share below 500 USD. (The bearing rules are calibrated by
    ``bench/bearing_calibrate.py``, on :mod:`iotflink.testing.bearing`.)"""
    amounts = sorted(float(r["Amount"].lstrip("$")) for r in csv.DictReader(open(TABFORMER_CSV, encoding="utf-8"))
                     if float(r["Amount"].lstrip("$")) > 0)
    pct = {p: amounts[min(len(amounts) - 1, int(p / 100 * len(amounts)))] for p in (50, 90, 99, 99.5, 99.9)}
    share_500 = sum(a < 500 for a in amounts) / len(amounts)
    return {"purchases": len(amounts), "amount_percentiles_usd": pct, "share_below_500_usd": round(share_500, 4)}

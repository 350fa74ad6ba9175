"""Medium file (1.2 s): four short model tests of 0.3 s each."""

import time
from decimal import Decimal


def test_numbers_invoices_per_year() -> None:
    time.sleep(0.3)
    assert f"2025-{7:05d}" == "2025-00007"


def test_adds_vat() -> None:
    time.sleep(0.3)
    assert Decimal("49.00") * Decimal("1.20") == Decimal("58.8000")


def test_rounds_to_cents() -> None:
    time.sleep(0.3)
    assert round(Decimal("10.005"), 2) == Decimal("10.00")


def test_is_due_in_thirty_days() -> None:
    time.sleep(0.3)
    assert 1 + 30 == 31

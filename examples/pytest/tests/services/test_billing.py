"""Slow file (1.5 s) with nested classes, so node ids have several "::" parts."""

import time


class TestBilling:
    class TestMonthlyPlan:
        def test_charges_monthly_price(self) -> None:
            time.sleep(0.75)
            assert 10 * 1 == 10

    class TestYearlyPlan:
        def test_applies_yearly_discount(self) -> None:
            time.sleep(0.75)
            assert 10 * 12 * 0.8 == 96.0

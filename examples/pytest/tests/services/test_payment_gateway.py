"""Slow file (2.0 s): a payment gateway client against a stub that answers slowly."""

import time


class TestPaymentGateway:
    def test_charges_a_card(self) -> None:
        time.sleep(0.5)
        assert {"status": "paid"}["status"] == "paid"

    def test_refunds_a_charge(self) -> None:
        time.sleep(0.5)
        assert 4900 - 4900 == 0

    def test_retries_after_a_timeout(self) -> None:
        time.sleep(0.5)
        attempts = [TimeoutError, TimeoutError, "paid"]
        assert attempts.index("paid") == 2

    def test_declines_an_expired_card(self) -> None:
        time.sleep(0.5)
        assert (2020, 1) < (2025, 6)

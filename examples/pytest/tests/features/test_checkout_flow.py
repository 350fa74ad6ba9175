"""Slowest file (4.0 s): end-to-end checkout, each test standing in for a browser session.

Few lines, long sleeps: sized by bytes, this file looks cheap; its timings show otherwise.
"""

import time

CART = {"mug": 2, "poster": 1}
PRICES_CENTS = {"mug": 1200, "poster": 2500}


def test_adds_items_to_the_cart() -> None:
    time.sleep(1.0)
    assert sum(CART.values()) == 3


def test_pays_by_card() -> None:
    time.sleep(1.0)
    assert sum(PRICES_CENTS[item] * count for item, count in CART.items()) == 4900


def test_applies_a_coupon() -> None:
    time.sleep(1.0)
    assert round(4900 * 0.9) == 4410


def test_shows_the_receipt() -> None:
    time.sleep(1.0)
    assert f"Total: {4900 / 100:.2f} EUR" == "Total: 49.00 EUR"

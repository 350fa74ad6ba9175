"""Medium file (1.0 s): syncing stock with a warehouse stub."""

import time


def test_decrements_stock_on_sale() -> None:
    time.sleep(0.5)
    assert 10 - 2 == 8


def test_flags_items_out_of_stock() -> None:
    time.sleep(0.5)
    assert [name for name, count in {"mug": 0, "poster": 3}.items() if count == 0] == ["mug"]

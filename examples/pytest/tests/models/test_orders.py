"""Medium file (1.0 s)."""

import time


def test_sums_line_items() -> None:
    time.sleep(0.5)
    assert sum([3, 4, 5]) == 12


def test_empty_without_line_items() -> None:
    time.sleep(0.5)
    assert not []

"""Medium-fast file (0.8 s)."""

import time


def test_pads_numbers() -> None:
    time.sleep(0.4)
    assert str(7).rjust(3, "0") == "007"


def test_truncates_long_strings() -> None:
    time.sleep(0.4)
    assert "abcdefgh"[:5] == "abcde"

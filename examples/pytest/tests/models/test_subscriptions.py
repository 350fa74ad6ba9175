"""Medium file (1.0 s)."""

import time


def test_renews_monthly() -> None:
    time.sleep(0.5)
    assert (1 % 12) + 1 == 2


def test_cancels_at_period_end() -> None:
    time.sleep(0.5)
    assert not {"active": False}["active"]

"""Fast file (~0.05 s). Holds the one test that fails on demand.

SHARDRUN_EXAMPLE_FAIL=1 makes `test_fails_only_on_demand` fail; anything else lets it pass.
"""

import os
import time


def test_adds_two_numbers() -> None:
    time.sleep(0.02)
    assert 2 + 3 == 5


def test_adds_negative_numbers() -> None:
    assert -2 + -3 == -5


def test_multiplies() -> None:
    time.sleep(0.02)
    assert 6 * 7 == 42


def test_fails_only_on_demand() -> None:
    assert os.environ.get("SHARDRUN_EXAMPLE_FAIL", "0") != "1"

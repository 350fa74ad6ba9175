"""Slow file (2.0 s): exports that render a whole report."""

import csv
import io
import time


def test_exports_csv() -> None:
    time.sleep(1.0)
    out = io.StringIO()
    csv.writer(out).writerows([["order", "total"], ["42", "49.00"]])
    assert out.getvalue().splitlines()[1] == "42,49.00"


def test_exports_a_monthly_summary() -> None:
    time.sleep(1.0)
    assert sum([1200, 2500, 1200]) // 3 == 1633

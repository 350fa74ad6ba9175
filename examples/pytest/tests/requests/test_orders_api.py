"""Slow file (2.5 s), parametrized: five order endpoints of 0.5 s each."""

import time

import pytest


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/orders"),
        ("POST", "/orders"),
        ("GET", "/orders/42"),
        ("PATCH", "/orders/42"),
        ("DELETE", "/orders/42"),
    ],
)
def test_order_endpoint(method: str, path: str) -> None:
    time.sleep(0.5)
    assert method in {"GET", "POST", "PATCH", "DELETE"}
    assert path.startswith("/orders")

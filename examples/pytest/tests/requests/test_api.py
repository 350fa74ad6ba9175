"""Slow file (1.5 s), parametrized: three request-like cases of 0.5 s each."""

import time

import pytest


@pytest.mark.parametrize("resource", ["users", "orders", "products"])
def test_lists_resource(resource: str) -> None:
    time.sleep(0.5)
    assert f"/api/{resource}".startswith("/api/")

"""What to do when a test's outside requirement (ruby, redis-server, chromium) is missing."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(reason: str) -> NoReturn:
    """Skip on a developer machine, but fail in CI (CI=true): `.ci/run` installs every
    requirement there, so a skip would hide a missing install."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run must install it)")
    pytest.skip(reason)

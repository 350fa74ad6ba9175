"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def evidence(tmp_path: Path) -> Path:
    """A directory the inner tests write what they saw into."""
    path = tmp_path / "evidence"
    path.mkdir()
    return path

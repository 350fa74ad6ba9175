"""Writing files and small generated suites into tmp_path."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

# The inner suites' own pytest.ini: it makes the suite pytest's rootdir, so shardrun's
# pyproject settings (warnings as errors) do not reach the inner runs.
PYTEST_INI = "[pytest]\n"


def write(path: Path, text: str | bytes) -> Path:
    """`text` (or bytes) into `path`, its directories made as needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write_files(root: Path, files: Mapping[str, str]) -> Path:
    """Each file (name relative to `root`) with its text dedented; `root` is returned."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


def write_pytest_suite(root: Path, files: Mapping[str, str]) -> Path:
    """A pytest suite whose own pytest.ini makes it pytest's rootdir."""
    return write_files(root, {"pytest.ini": PYTEST_INI, **files})

"""Which test files a run covers, and which framework runs them.

Globs follow each framework's own defaults so `shardrun plan spec/` selects what `rspec
spec/` would run and `shardrun plan tests/` what `pytest tests/` would collect.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shardrun.errors import InputError

FRAMEWORKS = ("rspec", "pytest")

# rspec's default --pattern; pytest's default python_files.
FILE_PATTERNS: dict[str, tuple[str, ...]] = {
    "rspec": ("**/*_spec.rb",),
    "pytest": ("**/test_*.py", "**/*_test.py"),
}
DEFAULT_PATHS: dict[str, str] = {"rspec": "spec", "pytest": "."}
# Directories never holding the suite's own tests: VCS metadata and installed packages for
# both; pytest also skips its default norecursedirs (build, dist, venv, dot-directories).
_ALWAYS_SKIPPED = frozenset({".git", ".hg", ".svn", "node_modules", "site-packages"})
SKIPPED_DIRS: dict[str, frozenset[str]] = {
    "rspec": _ALWAYS_SKIPPED,
    "pytest": _ALWAYS_SKIPPED
    | {".tox", ".nox", ".venv", "venv", "__pycache__", "build", "dist", ".eggs", ".shardrun"},
}
GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class Suite:
    """The files of one run, relative to `root`, sorted (so every node lists them alike)."""

    framework: str
    root: Path
    files: tuple[str, ...]


def detect_framework(root: Path) -> str:
    """`.rspec` or a `spec/` directory means RSpec, as parallel_tests and knapsack assume."""
    if (root / ".rspec").is_file() or (root / "spec").is_dir():
        return "rspec"
    return "pytest"


def discover(paths: Sequence[str], framework: str | None, root: Path) -> Suite:
    """Expand files, directories and globs under `root` into the suite's test files.

    An explicitly named file is kept even if it does not match the pattern (rspec and
    pytest both run a file you name); directories and globs are filtered by the pattern.
    """
    framework = framework or detect_framework(root)
    if framework not in FRAMEWORKS:
        raise InputError(f"--framework: unknown framework {framework!r}; use rspec or pytest")
    selected: set[str] = set()
    for raw in paths or (DEFAULT_PATHS[framework],):
        selected.update(_expand(raw, framework, root))
    if not selected:
        shown = " ".join(paths) if paths else DEFAULT_PATHS[framework]
        patterns = ", ".join(FILE_PATTERNS[framework])
        raise InputError(
            f"no {framework} test files under {shown} (looked for {patterns}); "
            "pass the test directory or --framework"
        )
    return Suite(framework, root, tuple(sorted(selected)))


def _expand(raw: str, framework: str, root: Path) -> list[str]:
    if GLOB_CHARACTERS & set(raw):
        matches = sorted(glob.glob(raw, root_dir=root, recursive=True))
        if not matches:
            raise InputError(f"{raw}: the pattern matches no file; check the path")
        files: list[str] = []
        for match in matches:
            files.extend(_expand_existing(root / match, framework, root))
        return files
    path = root / raw
    if not path.exists():
        raise InputError(f"{raw}: no such file or directory; pass paths relative to {root}")
    return _expand_existing(path, framework, root)


def _expand_existing(path: Path, framework: str, root: Path) -> list[str]:
    if path.is_file():
        return [_relative(path, root)]
    return [
        _relative(candidate, root)
        for pattern in FILE_PATTERNS[framework]
        for candidate in path.glob(pattern)
        if candidate.is_file()
        and not SKIPPED_DIRS[framework] & set(candidate.relative_to(path).parts[:-1])
    ]


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise InputError(
            f"{path}: outside the project root {root}; run shardrun from the project root"
        ) from None

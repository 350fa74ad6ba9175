"""Which test files a run covers, and which framework runs them.

Globs follow each framework's own defaults so `shardrun plan spec/` selects what `rspec
spec/` would run, `shardrun plan tests/` what `pytest tests/` would collect, `test/` what
`bin/rails test` runs (`*_test.rb`) and `features/` what `cucumber` runs.

Without `--framework` the framework is the one whose files the paths hold (by default:
`spec/`, `test/`, `features/`, and pytest's files when the project configures pytest). A
project with several is refused with their names, never run in part: one run is one
framework.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shardrun.errors import InputError

FRAMEWORKS = ("rspec", "pytest", "minitest", "cucumber")

# rspec's default --pattern; pytest's default python_files; what `bin/rails test` and
# `rake test` load (test/**/*_test.rb); cucumber's feature files.
FILE_PATTERNS: dict[str, tuple[str, ...]] = {
    "rspec": ("**/*_spec.rb",),
    "pytest": ("**/test_*.py", "**/*_test.py"),
    "minitest": ("**/*_test.rb",),
    "cucumber": ("**/*.feature",),
}
DEFAULT_PATHS: dict[str, str] = {
    "rspec": "spec", "pytest": ".", "minitest": "test", "cucumber": "features",
}
# Files whose presence says a project runs pytest: only then is the whole tree searched
# for Python test files when other frameworks' files exist (a Rails app's tree is large).
PYTEST_MARKERS = ("pytest.ini", "conftest.py", "pyproject.toml", "setup.cfg", "tox.ini")
# Directories never holding the suite's own tests: VCS metadata and installed packages for
# both; pytest also skips its default norecursedirs (build, dist, venv, dot-directories).
_ALWAYS_SKIPPED = frozenset({".git", ".hg", ".svn", "node_modules", "site-packages"})
SKIPPED_DIRS: dict[str, frozenset[str]] = {
    "rspec": _ALWAYS_SKIPPED,
    "minitest": _ALWAYS_SKIPPED,
    "cucumber": _ALWAYS_SKIPPED,
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
    """With no test file found for any framework: `.rspec` or a `spec/` directory means
    RSpec, as parallel_tests and knapsack assume; else pytest."""
    if (root / ".rspec").is_file() or (root / "spec").is_dir():
        return "rspec"
    return "pytest"


def frameworks_found(paths: Sequence[str], root: Path) -> dict[str, int]:
    """Each framework with test files under `paths` (its default paths when none), and
    how many. pytest's whole-tree search without paths only when pytest is configured."""
    found: dict[str, int] = {}
    for framework in FRAMEWORKS:
        if paths:
            files = {file for raw in paths for file in _expand(raw, framework, root)
                     if _is_framework_file(file, framework)}
        elif framework == "pytest" and not any((root / m).is_file() for m in PYTEST_MARKERS):
            continue
        elif (root / DEFAULT_PATHS[framework]).is_dir():
            files = set(_expand_existing(root / DEFAULT_PATHS[framework], framework, root))
        else:
            continue
        if files:
            found[framework] = len(files)
    return found


def _is_framework_file(file: str, framework: str) -> bool:
    """A named file belongs to the framework whose pattern it matches (a file a user names
    is kept whatever its name once the framework is chosen, see `discover`)."""
    name = file.rsplit("/", 1)[-1]
    return any(Path(name).match(pattern.removeprefix("**/"))
               for pattern in FILE_PATTERNS[framework])


def choose_framework(paths: Sequence[str], root: Path) -> str:
    """The one framework whose files `paths` hold; InputError naming them when several."""
    found = frameworks_found(paths, root)
    if len(found) == 1:
        return next(iter(found))
    if not found:
        return detect_framework(root)
    shown = " ".join(paths) if paths else "the project"
    listed = ", ".join(f"{framework} ({count} files)" for framework, count in found.items())
    raise InputError(
        f"{shown} holds tests of several frameworks: {listed}; a run covers one: pass "
        f"--framework {'|'.join(found)} (and its paths), one run each"
    )


def discover(paths: Sequence[str], framework: str | None, root: Path) -> Suite:
    """Expand files, directories and globs under `root` into the suite's test files.

    An explicitly named file is kept even if it does not match the pattern (rspec and
    pytest both run a file you name); directories and globs are filtered by the pattern.
    """
    if framework is not None and framework not in FRAMEWORKS:
        raise InputError(
            f"--framework: unknown framework {framework!r}; use {', '.join(FRAMEWORKS)}")
    framework = framework or choose_framework(paths, root)
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

"""`shardrun timings import`: match what a timing file recorded to the files of this checkout.

Why a module of its own: a timing file is often made elsewhere (a CI container with the
project at `/app`, a developer's laptop, a knapsack report keyed `/spec/...`). The history
keeps only files that exist under the project root, so an import from the wrong directory
used to keep nothing and say "0 files", exit 0. This module decides, key by key, what is
kept and says why the rest was dropped, so the CLI can tell the user what to do.

Reads the file system (does a file exist under root) but imports neither redis, rq nor
subprocess (DESIGN.md rule 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shardrun.plan.timings import Durations, file_of_unit, is_absolute_key, is_project_key


@dataclass
class ImportMatch:
    """What became of one timing file's keys against a project root.

    `durations` holds only the kept entries, keyed relative to the root. The counts are
    of files (examples follow their file).
    """

    durations: Durations
    recorded: int = 0  # files the timing file names
    found: int = 0  # of them, kept: they exist under the root
    slash_stripped: int = 0  # of the found, keyed "/spec/x_spec.rb" in the file
    foreign_absolute: int = 0  # dropped: absolute paths of another machine
    outside: int = 0  # dropped: "../" keys that leave the project
    missing: int = 0  # dropped: relative paths with no file under the root
    renamed: dict[str, str] = field(default_factory=dict)


def match_to_root(durations: Durations, root: Path) -> ImportMatch:
    """Keep the keys whose file exists under `root`, rewriting "/spec/x" to "spec/x"
    when that file exists; count the rest by reason."""
    match = ImportMatch(Durations({}, {}, durations.source))
    for key, seconds in durations.files.items():
        kept = _place(key, root, match)
        if kept is not None:
            match.durations.files[kept] = seconds
    for unit, seconds in durations.examples.items():
        kept_file = match.renamed.get(file_of_unit(unit))
        if kept_file is not None:
            match.durations.examples[kept_file + unit[len(file_of_unit(unit)):]] = seconds
    return match


def _place(key: str, root: Path, match: ImportMatch) -> str | None:
    """The root-relative key for `key`, or None (after counting why it was dropped)."""
    match.recorded += 1
    if is_absolute_key(key):
        relative = key.lstrip("/")
        if is_project_key(relative) and (root / relative).is_file():
            match.slash_stripped += 1
            return _keep(key, relative, match)
        match.foreign_absolute += 1
        return None
    if not is_project_key(key):
        match.outside += 1
        return None
    if (root / key).exists():
        return _keep(key, key, match)
    match.missing += 1
    return None


def _keep(original: str, relative: str, match: ImportMatch) -> str:
    match.found += 1
    match.renamed[original] = relative
    return relative


def describe(match: ImportMatch, root_label: str) -> str:
    """One line for the user: what was kept, what was dropped and why, what to do."""
    parts = [f"{match.recorded} files recorded, {match.found} found under {root_label}"]
    if match.slash_stripped:
        parts.append(f'{match.slash_stripped} keyed with a leading "/" kept without it')
    if match.foreign_absolute:
        parts.append(f"{match.foreign_absolute} absolute paths of another machine dropped")
    if match.outside:
        parts.append(f'{match.outside} paths leaving the project ("..") dropped')
    if match.missing and match.found:
        parts.append(f"{match.missing} not found (deleted or renamed) dropped")
    line = "; ".join(parts)
    if match.recorded and not match.found:
        line += " (pass --root or run from the project's root)"
    if match.durations.examples:
        line += f"; {len(match.durations.examples)} examples"
    return line

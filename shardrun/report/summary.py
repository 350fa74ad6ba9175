"""What a person reads after a run: the terminal summary and the command to rerun failures.

Why a module of its own: report.py decides what happened (merge, exactly-once accounting,
merged JUnit XML); this module only words it for a terminal. It reads a RunReport and
never feeds back into it, so report.py does not import it.

Pure (DESIGN.md rule 1): data in, lines of text out.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence

from shardrun.models import BatchResult
from shardrun.plan.timings import file_of_unit
from shardrun.report.merge import (
    FAILED_OUTCOMES,
    CaseResult,
    RunReport,
    latest_per_shard,
)
from shardrun.report.shared_time import file_shared_seconds, hooks_outside_tests, own_seconds

# Minitest has none: it selects tests by name, not by file and id on one command line.
_RERUN_PREFIX = {"rspec": "rspec", "pytest": "python -m pytest", "cucumber": "cucumber"}
# Ids rspec, pytest or cucumber select a test by: a file, `file[1:2]`,
# `file.py::Class::test[param]`, `file.feature:12` (a scenario).
_SELECTOR = re.compile(r"^[^:\[\]]+(?:\[[\d:]+\]|\.py::.+|\.feature:\d+)?$")

# Beyond this many batches the summary shows one line per worker instead of per batch.
MAX_BATCH_LINES = 12

def rerun_command(report: RunReport, framework: str) -> str | None:
    """A command that reruns exactly the failed and errored tests, or None if none failed.

    Each test by the id its framework selects it with (the rspec example id, the pytest
    node id). A whole file (one that failed to load) wins over ids inside it: rspec given
    both runs only the ids.
    """
    prefix = _RERUN_PREFIX.get(framework)
    targets = [_rerun_target(case) for case in report.cases
               if case.outcome in FAILED_OUTCOMES and (case.id or case.file)]
    targets = [target for target in targets if target and not target.startswith("(")]
    if prefix is None or not targets:
        return None
    whole_files = {target for target in targets if target == file_of_unit(target)}
    chosen = dict.fromkeys(target for target in targets
                           if target in whole_files or file_of_unit(target) not in whole_files)
    return " ".join([prefix, *(shlex.quote(target) for target in chosen)])


def _rerun_target(case: CaseResult) -> str:
    """The test's id when a framework selects tests by it: a file, an rspec example id, a
    pytest node id. A `command` batch's testcase ids are not: its `file:line` instead."""
    if case.id.endswith(" (incomplete)"):
        return case.unit
    if _SELECTOR.match(case.id):
        return case.id
    return f"{case.file}:{case.line}" if case.file and case.line else case.file or case.unit


def label_of(case: CaseResult) -> str:
    """How a person finds the test: a pytest node id, or `path:line name` (rspec)."""
    if "::" in case.id and not case.id.endswith(")"):
        return case.id
    where = f"{case.file}:{case.line}" if case.file and case.line else case.id or case.file
    return f"{where} {case.name}" if case.name and case.name != where else where


def summary_lines(report: RunReport, *, framework: str, slowest: int = 5,
                  wall_seconds: float | None = None, timed: bool = True) -> list[str]:
    """What a person reads after the run: counts, each failure with where to look, how to
    rerun them, how the plan held up (`timed`: whether the plan had timings to predict
    from), what is slow, and any unit not run as planned."""
    lines = _failure_lines(report)
    lines += [f"Flaky (failed, then passed on attempt {case.attempt}): {label_of(case)}"
              for case in report.flaky]
    lines += [f"Polluted (failed in a runner earlier batches had used, passed in a fresh "
              f"process: state an earlier batch left behind): {label_of(case)}"
              for case in report.polluted]
    command = rerun_command(report, framework)
    lines += ["Rerun the failures:", f"  {command}"] if command else []
    lines += _shard_lines(report.results, timed) + _slowest_lines(report, slowest)
    lines += [f"Not run: {case.id or case.unit}: {case.message}" for case in report.crashed]
    lines += [f"Note: {note}" for note in report.notes]
    if report.empty_units:
        lines.append("Ran with zero examples: " + ", ".join(report.empty_units))
    if report.unplanned_files:
        names = (file or "(unknown file)" for file in report.unplanned_files)
        lines.append("Reported but never planned (kept in the report): " + ", ".join(names))
    lines += _speedup_lines(report, wall_seconds)
    lines.append(_time_line(report, wall_seconds))
    failed = report.failures + report.errors  # the one count: errors count as failed
    lines.append(f"{report.tests - failed - report.skipped} passed, {failed} failed"
                 + (f", {report.skipped} skipped" if report.skipped else ""))
    return lines


def _time_line(report: RunReport, wall_seconds: float | None) -> str:
    """rspec's and pytest's "in X s" is the time the run took; summed over N workers, the
    tests' own seconds are about N times that, so they are named as what they are. The
    counts are the last line's alone: a summary that counts twice invites a mismatch."""
    tests = f"{report.seconds:.1f} s of test time"
    if wall_seconds is None:
        return f"Finished ({tests})"
    return f"Finished in {wall_seconds:.1f} s ({tests})"


def _speedup_lines(report: RunReport, wall_seconds: float | None) -> list[str]:
    """This run's wall time against the same tests back to back in one process: their own
    seconds, the hooks each file's tests share once (report/shared_time.py), plus one
    boot, so that a user sees what the workers bought. One boot is the cheapest start the
    run saw: the least time a batch that started its test process spent outside its tests
    and their files' hooks (any batch's if every one ran in a warm runner).
    """
    inside: dict[tuple[int, int, str], float] = {}  # (shard, attempt, worker) -> test seconds
    for case in report.cases:
        if case.origin in ("", "interrupted"):  # what a runner ran, not what shardrun made up
            key = (case.batch_id, case.attempt, case.worker)
            inside[key] = inside.get(key, 0.0) + case.seconds
    if not wall_seconds or not inside:
        return []
    booted: list[float] = []  # seconds outside tests of batches that started a process
    reused: list[float] = []  # ... of batches run in a warm runner (shardrun/work/warm.py)
    for result in report.results:
        key = (result.batch_id, result.attempt, result.worker)
        if key in inside:
            hooks = math.fsum(hooks_outside_tests(result).values())
            outside = result.outcome.wall_seconds - inside[key] - hooks
            (reused if result.warm else booted).append(outside)
    own = math.fsum(own_seconds(case) for case in report.cases)
    shared = math.fsum(file_shared_seconds(report.results).values())
    serial = own + shared + max(min(booted or reused or [0.0]), 0.0)
    workers = len({worker for _, _, worker in inside})
    return [f"{_plural(workers, 'worker')}: {wall_seconds:.1f} s; back to back these tests "
            f"take ~{serial:.0f} s ({serial / wall_seconds:.1f}x)"]


def _plural(count: int, word: str) -> str:
    plural = word + ("es" if word.endswith(("s", "ch", "sh", "x")) else "s")
    return f"{count} {word}" if count == 1 else f"{count} {plural}"


def _failure_lines(report: RunReport) -> list[str]:
    """Failed and errored testcases; lost units are listed apart, under "Not run"."""
    crashed = set(report.crashed)
    lines = []
    for case in report.cases:
        if case.outcome in FAILED_OUTCOMES and case not in crashed:
            label = "FAILED" if case.outcome == "failed" else "ERROR"
            lines.append(f"  {label} {label_of(case)}: {_first_line(case)}")
    return ["Failures:", *lines] if lines else []


def _first_line(case: CaseResult) -> str:
    for text in (case.message, case.details):
        for line in text.splitlines():
            if line.strip():
                return " ".join(line.split())
    return "(no message)"


def _shard_lines(results: Sequence[BatchResult], timed: bool) -> list[str]:
    latest = latest_per_shard(results)
    if len(latest) > MAX_BATCH_LINES:
        return _worker_lines(latest, timed)
    lines = [f"  shard {result.batch_id} attempt {result.attempt} on "
             f"{_worker_name(result.worker_index, result.worker)}: "
             + _versus(result.predicted_seconds, result.outcome.wall_seconds, timed)
             for result in latest]
    return [_heading("Shards", timed), *lines] if lines else []


def _worker_lines(results: Sequence[BatchResult], timed: bool) -> list[str]:
    """Queue mode runs many batches: predicted vs actual summed per worker instead."""
    totals: dict[tuple[int, str], list[float]] = {}
    for result in results:
        entry = totals.setdefault((result.worker_index, result.worker), [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += result.predicted_seconds
        entry[2] += result.outcome.wall_seconds
    lines = [f"  {_worker_name(index, worker)}: {_plural(int(count), 'batch')}, "
             f"{_versus(predicted, actual, timed)}"
             for (index, worker), (count, predicted, actual) in sorted(totals.items())]
    return [_heading("Workers", timed), *lines]


def _worker_name(index: int, worker: str) -> str:
    """'w2 (host:pid)': the tag `--verbose` lines carry, and which process it was."""
    return f"w{index} ({worker})"


def _heading(what: str, timed: bool) -> str:
    if timed:
        return f"{what} (predicted vs actual):"
    return f"{what} (no timings yet, so nothing was predicted; the next run plans from these):"


def _versus(predicted: float, actual: float, timed: bool) -> str:
    """Without timings the plan balanced file sizes, whose "seconds" mean nothing."""
    if not timed:
        return f"actual {actual:.1f} s"
    return f"predicted {predicted:.1f} s, actual {actual:.1f} s ({actual - predicted:+.1f} s)"


def _slowest_lines(report: RunReport, count: int) -> list[str]:
    """Each file's tests and, once, the hooks they share: a file that spends 2 s creating
    records in a before(:all) is a slow file, however quick its examples."""
    per_file: dict[str, float] = {}
    for case in report.cases:
        if case.file:
            per_file[case.file] = per_file.get(case.file, 0.0) + own_seconds(case)
    for file, shared in file_shared_seconds(report.results).items():
        if file in per_file:
            per_file[file] += shared
    slowest = sorted(per_file.items(), key=lambda item: -item[1])[:count]
    ranked = [f"  {seconds:.1f} s  {file}" for file, seconds in slowest]
    return ["Slowest files:", *ranked] if ranked and count > 0 else []


def github_annotations(report: RunReport) -> list[str]:
    """`::error` workflow commands: GitHub shows each failure on the file and line."""
    lines = []
    for case in report.cases:
        if case.outcome not in FAILED_OUTCOMES:
            continue
        where = f"file={_escape_property(case.file)}" if case.file else ""
        if case.file and case.line:
            where += f",line={case.line}"
        title = _escape_property(f"{case.classname} {case.name}".strip())
        properties = ",".join(part for part in (where, f"title={title}") if part)
        lines.append(f"::error {properties}::{_escape_data(case.message or case.outcome)}")
    return lines


def github_step_summary(report: RunReport, framework: str) -> str:
    """Markdown for $GITHUB_STEP_SUMMARY: the counts, the failures, the rerun command."""
    status = "passed" if report.passed else "failed"
    rows = [
        f"### shardrun: {status}",
        "",
        "| tests | failures | errors | skipped | flaky | test time s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {report.tests} | {report.failures} | {report.errors} | {report.skipped} | "
        f"{len(report.flaky)} | {report.seconds:.1f} |",
    ]
    failed = [case for case in report.cases if case.outcome in FAILED_OUTCOMES]
    if failed:
        rows += ["", "| failed | where | message |", "| --- | --- | --- |"]
        rows += [f"| `{_cell(case.name)}` | `{case.file}:{case.line or ''}` | "
                 f"{_cell(_first_line(case))} |" for case in failed]
    command = rerun_command(report, framework)
    if command:
        rows += ["", "Rerun the failures:", "", "```", command, "```"]
    return "\n".join(rows) + "\n"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")

"""What a person sees in a terminal and in a CI log while `shardrun run` runs (issue 21).

Real runs of a small pytest suite through `python -m shardrun run`: once on a
pseudo-terminal (pty), as a person at a shell sees it, once with plain pipes, as a CI log
gets it. The terminal gets its opening line before any result, one progress line redrawn
in place that counts tests, and with --verbose each test's result line tagged with its
worker; -vv adds the test's captured output. A CI log gets plain progress lines instead of
carriage returns.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.files import write_pytest_suite
from support.runs import (
    RUN_TIMEOUT_SECONDS,
    clean_env,
    junit_cases,
    run_options,
    shardrun,
    shardrun_argv,
)

SUITE = {
    "tests/test_shop.py": """
        import time

        def test_lists_products():
            time.sleep(0.3)

        def test_prints_a_receipt():
            print("receipt total: 42")
            time.sleep(0.3)

        def test_charges_the_card():
            time.sleep(0.3)
            assert 1 + 1 == 3, "card declined"
    """,
    "tests/test_users.py": """
        import time

        def test_signs_up():
            time.sleep(0.3)

        def test_logs_in():
            time.sleep(0.3)
    """,
    "tests/test_reports.py": """
        import time

        def test_exports():
            time.sleep(0.3)
    """,
}
TESTS = 6
# A live line: "[w2] PASSED tests/test_shop.py::test_lists_products 0.30s".
LIVE_LINE = re.compile(r"^\[w(\d+)\] (PASSED|FAILED|ERROR|SKIPPED) (\S+) (\d+\.\d\d)s$")
# "\r" + erase line: how the progress line is redrawn on a terminal.
REDRAW = "\r\x1b[2K"


@dataclass(frozen=True)
class PtyRun:
    returncode: int
    text: str  # everything the terminal received, "\r\n" as "\n"


def run_on_a_terminal(cwd: Path, *args: str) -> PtyRun:
    """`shardrun run ARGS` with its stdout and stderr on a pty, read to the end."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(shardrun_argv(*args), cwd=cwd, env=clean_env(),
                               stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
    os.close(terminal)
    received = bytearray()
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], deadline - time.monotonic())
            if not ready:
                break
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(controller)
    returncode = process.wait(timeout=RUN_TIMEOUT_SECONDS)
    return PtyRun(returncode, received.decode(errors="replace").replace("\r\n", "\n"))


def live_lines(text: str) -> list[re.Match[str]]:
    lines = (line.rsplit(REDRAW, 1)[-1] for line in text.split("\n"))
    return [match for line in lines if (match := LIVE_LINE.match(line))]


def progress_lines(text: str) -> list[str]:
    """Each state the redrawn progress line showed: '[###...] 4 tests, ...'."""
    parts = (part.split("\n", 1)[0] for part in text.split(REDRAW)[1:])
    return [part for part in parts if re.match(r"^\[[#.]+\] ", part)]


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    return write_pytest_suite(tmp_path / "suite", SUITE)


def test_a_terminal_sees_the_start_progress_by_tests_and_each_result(
    suite: Path, tmp_path: Path
) -> None:
    ran = run_on_a_terminal(suite, "tests", "-w", "2", "--verbose", *run_options(tmp_path))
    assert ran.returncode == 1, ran.text
    text = ran.text
    # The opening line comes first, before anything ran.
    assert text.startswith("shardrun run: 2 workers; finding the tests under tests\n"), (
        text[:300])
    # Each test's result as it finished, tagged with the worker that ran it: every test
    # of the JUnit once, and the failed one twice (its retry).
    lives = live_lines(text)
    junit = junit_cases(tmp_path / "run.xml")
    failed = "tests/test_shop.py::test_charges_the_card"
    assert sorted(match[3] for match in lives) == sorted([failed, *(
        f"tests/{classname.split('.')[-1]}.py::{name}" for classname, name, _ in junit)]), text
    assert {match[1] for match in lives} <= {"1", "2"}
    assert [match[3] for match in lives if match[2] == "FAILED"] == [failed, failed]
    assert text.index("shardrun run: ") < text.index(lives[0][0])
    # The progress line is redrawn in place and counts tests; its ETA is never negative.
    redraws = progress_lines(text)
    assert redraws, text
    assert all(re.search(r"\] \d+ tests, \d+ failed, \d+ flaky", line) for line in redraws)
    assert not re.search(r"ETA -", text)
    assert re.search(rf"\] {TESTS} tests, 1 failed, 0 flaky, (\d+)/\1 units", redraws[-1])
    # The summary counts once, on its last line, and names the failure by its node id.
    assert "  FAILED tests/test_shop.py::test_charges_the_card: AssertionError: card declined" \
        in text
    assert text.rstrip("\n").splitlines()[-2] == f"{TESTS - 1} passed, 1 failed"


def test_a_second_run_knows_how_many_tests_are_left(suite: Path, tmp_path: Path) -> None:
    """With the first run's history the line counts planned tests and those left."""
    first = shardrun(suite, "tests", "-w", "2", *run_options(tmp_path))
    assert first.returncode == 1, first.stdout + first.stderr
    ran = run_on_a_terminal(suite, "tests", "-w", "2", *run_options(tmp_path))
    assert ran.returncode == 1, ran.text
    redraws = progress_lines(ran.text)
    assert all(re.search(rf"\] \d+/{TESTS} tests, .* \d+ left", line) for line in redraws), redraws
    assert f"] {TESTS}/{TESTS} tests, 1 failed, 0 flaky, 0 left" in redraws[-1]
    assert "[########################]" in redraws[-1]
    assert not live_lines(ran.text), "no --verbose: no result lines"


def test_very_verbose_shows_what_a_test_printed(suite: Path, tmp_path: Path) -> None:
    ran = run_on_a_terminal(suite, "tests/test_shop.py", "-w", "1", "-vv",
                            *run_options(tmp_path))
    assert ran.returncode == 1, ran.text
    lines = [line.rsplit(REDRAW, 1)[-1] for line in ran.text.split("\n")]
    receipt = next(index for index, line in enumerate(lines)
                   if LIVE_LINE.match(line) and "test_prints_a_receipt" in line)
    assert lines[receipt + 1:receipt + 3] == ["    stdout:", "    | receipt total: 42"], lines
    failed = next(index for index, line in enumerate(lines)
                  if line.startswith("[w1] FAILED tests/test_shop.py::test_charges_the_card"))
    assert "card declined" in "\n".join(lines[failed:failed + 4])


def test_a_ci_log_gets_plain_lines_and_the_results(suite: Path, tmp_path: Path) -> None:
    """No terminal: no carriage returns; a plain progress line (the first, at most one
    every 10 s, and the last), and with --verbose the same result lines."""
    completed = shardrun(suite, "tests", "-w", "2", "-v", *run_options(tmp_path))
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "\r" not in completed.stdout and "\x1b" not in completed.stdout
    progress = [line for line in completed.stdout.splitlines() if line.startswith("progress: ")]
    assert 1 <= len(progress) <= 3, completed.stdout  # a run of a few seconds
    assert re.match(rf"progress: {TESTS} tests, 1 failed, 0 flaky, (\d+)/\1 units", progress[-1])
    assert len(live_lines(completed.stdout)) == TESTS + 1, completed.stdout  # + the retry

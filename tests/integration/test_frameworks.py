"""Minitest and Cucumber suites through `shardrun run` and `shardrun ci`: real processes.

Each suite holds a passing, a failing, a skipped and an erroring test, and a test that
ends its process. The merged JUnit's set of (classname, name, outcome) must equal what the
suite gives run plainly: for Cucumber its own `--format junit`; for Minitest, which has no
JUnit formatter in Debian's package, the tests written into the suite (with the counts of
a plain `ruby -Itest` run checked against shardrun's).
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
from support.files import write_files
from support.runs import (
    RUN_TIMEOUT_SECONDS,
    assert_each_once,
    clean_ci_env,
    junit_cases,
    run_command,
    run_options,
    shardrun,
)

from shardrun.runners import get_runner
from shardrun.work.accounting import reconcile
from shardrun.work.warm import RunnerProcess

RUNNERS = ("fork", "reuse", "fresh")

# --- Minitest

MINITEST_CLEAN = {
    "test/test_helper.rb": """
        require "minitest/autorun"
    """,
    "test/models/a_test.rb": """
        require "test_helper"

        class ATest < Minitest::Test
          def test_passes
            assert_equal 2, 1 + 1
          end

          def test_fails
            assert_equal 3, 1 + 1
          end

          def test_skips
            skip "not yet"
          end

          def test_errors
            raise ArgumentError, "boom"
          end
        end
    """,
    "test/spec_style_test.rb": """
        require "test_helper"

        describe "Spec style" do
          it "adds" do
            _(1 + 1).must_equal 2
          end
        end
    """,
    # A test file that requires another: each class counts for the file it is written in.
    "test/shared_test.rb": """
        require "test_helper"

        class SharedTest < Minitest::Test
          def test_shared
            assert true
          end
        end
    """,
    "test/uses_shared_test.rb": """
        require_relative "shared_test"

        class UsesSharedTest < SharedTest
          def test_own
            assert true
          end
        end
    """,
}
MINITEST_CLEAN_CASES = {
    ("SharedTest", "test_shared", "passed"), ("UsesSharedTest", "test_shared", "passed"),
    ("UsesSharedTest", "test_own", "passed"),
    ("ATest", "test_passes", "passed"), ("ATest", "test_fails", "failed"),
    ("ATest", "test_skips", "skipped"), ("ATest", "test_errors", "error"),
    ("Spec style", "test_0001_adds", "passed"),
}
# One test that ends its process per run: the tests batched after it go back to the
# queue once (accounting.py), so a second such test in the retry could make a third one
# "never ran", an error but not the serial outcome.
ENDINGS = {"exit": ("exit 0", "interrupted: the process exited (exit 0) during the batch"),
           "exit!": ("exit!(0)", "interrupted: the runner exited with code 0")}


def minitest_hostile(ending: str) -> dict[str, str]:
    return {
        "test/exits_test.rb": f"""
            require "test_helper"

            module Admin
              class ExitsTest < Minitest::Test
                def test_ends_its_process
                  {ENDINGS[ending][0]}
                end

                def test_runs_after
                  assert true
                end
              end
            end
        """,
        "test/broken_test.rb": """
            require "test_helper"

            class BrokenTest < Minitest::Test
              def test_never_loaded
              end
            end
            raise "this file does not load"
        """,
    }


MINITEST_HOSTILE_CASES = {
    ("Admin::ExitsTest", "test_ends_its_process", "error"),
    ("Admin::ExitsTest", "test_runs_after", "passed"),
    ("test/broken_test.rb", "test/broken_test.rb", "error"),
}


def messages(junit: Path) -> dict[str, str]:
    """Testcase name -> the message of its error or failure."""
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        for child in case:
            if child.tag in ("error", "failure"):
                found[case.get("name", "")] = child.get("message", "")
    return found


@pytest.mark.usefixtures("require_minitest")
@pytest.mark.parametrize("runners", RUNNERS)
@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_a_minitest_suite_runs_every_test_once_with_its_outcome(
    ending: str, runners: str, tmp_path: Path
) -> None:
    """`exit` or `exit!` inside a test is an error, a file that fails to load is an error
    of that file, and no other test is lost, in every runner mode."""
    root = write_files(tmp_path / "suite", {**MINITEST_CLEAN, **minitest_hostile(ending)})
    completed = shardrun(root, "test", "-w", "2", "--retries", "0", "--runners", runners,
                         *run_options(tmp_path))
    assert completed.returncode == 1, completed.stdout + completed.stderr
    cases = junit_cases(tmp_path / "run.xml")
    assert_each_once(cases, frozenset(MINITEST_CLEAN_CASES | MINITEST_HOSTILE_CASES))
    found = messages(tmp_path / "run.xml")
    assert found["test_ends_its_process"].startswith(ENDINGS[ending][1])
    assert "this file does not load" in found["test/broken_test.rb"]


SERIAL_COUNTS = re.compile(r"(\d+) runs, \d+ assertions, (\d+) failures, (\d+) errors, (\d+) skips")


@pytest.mark.usefixtures("require_minitest")
def test_minitest_counts_agree_with_a_plain_ruby_run(tmp_path: Path) -> None:
    root = write_files(tmp_path / "suite", MINITEST_CLEAN)
    serial = run_command(["ruby", "-Itest", "-e",
                          'Dir["test/**/*_test.rb"].sort.each { |f| require File.expand_path(f) }'],
                         root)
    match = SERIAL_COUNTS.search(serial.stdout)
    assert serial.returncode == 1 and match, serial.stdout + serial.stderr
    runs, failures, errors, skips = map(int, match.groups())
    completed = shardrun(root, "-w", "2", "--retries", "0", *run_options(tmp_path))
    assert completed.returncode == 1, completed.stdout + completed.stderr
    outcomes = Counter(outcome for _, _, outcome in junit_cases(tmp_path / "run.xml").elements())
    assert (sum(outcomes.values()), outcomes["failed"], outcomes["error"], outcomes["skipped"]) == (
        runs, failures, errors, skips)


@pytest.mark.usefixtures("require_minitest")
def test_minitest_listed_ids_select_one_test_each_and_runner_args_narrow_them(
    tmp_path: Path,
) -> None:
    """The listing's ids are units the server runs one by one; `-n` from the runner
    arguments narrows a batch as Minitest's own filter would."""
    root = write_files(tmp_path / "suite", MINITEST_CLEAN)
    runner = get_runner("minitest", root)
    out_dir = tmp_path / "listing"
    out_dir.mkdir()
    argv = runner.list_examples_argv(["test/models/a_test.rb", "test/spec_style_test.rb"], out_dir)
    assert argv is not None
    listing = run_command(argv, root)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    ids = runner.parse_examples(listing.stdout, out_dir)
    assert sorted(ids) == sorted([
        "test/models/a_test.rb::ATest#test_errors", "test/models/a_test.rb::ATest#test_fails",
        "test/models/a_test.rb::ATest#test_passes", "test/models/a_test.rb::ATest#test_skips",
        "test/spec_style_test.rb::Spec style#test_0001_adds",
    ])
    server = runner.server_argv()
    assert server is not None
    process = RunnerProcess("minitest", server, root, clean_ci_env(), tmp_path / "log")
    try:
        for test_id in ids:
            batch = process.run(runner.batch_arguments([test_id]), tmp_path / "log", fork=True,
                                timeout_seconds=RUN_TIMEOUT_SECONDS)
            settled = reconcile([test_id], batch.events, batch.outcome)
            assert [test.id for test in settled.tests] == [test_id]
        files = ["test/models/a_test.rb"]
        batch = process.run(runner.batch_arguments(files, ["-n", "/passes|fails/"]),
                            tmp_path / "log", fork=True, timeout_seconds=RUN_TIMEOUT_SECONDS)
        settled = reconcile(files, batch.events, batch.outcome)
        assert sorted(test.name for test in settled.tests) == ["test_fails", "test_passes"]
        assert settled.unrun == ()
    finally:
        process.stop()


# --- Cucumber

CUCUMBER_SERIAL = {
    "features/step_definitions/steps.rb": """
        Given(/^the number (\\d+)$/) { |n| @n = n.to_i }
        Then(/^it is (\\d+)$/) { |m| raise "expected #{m}, got #{@n}" unless @n == m.to_i }
        Then(/^the step calls exit$/) { exit 0 }
        Then(/^the process ends$/) { exit!(0) }
    """,
    "features/arithmetic.feature": """
        Feature: Arithmetic
          Scenario: adds
            Given the number 2
            Then it is 2

          Scenario: fails
            Given the number 2
            Then it is 3

          Scenario: is not written yet
            Given a step nobody defined

          Scenario Outline: rows
            Given the number <n>
            Then it is <m>

            Examples:
              | n | m |
              | 1 | 1 |
              | 2 | 5 |
    """,
    "features/exits.feature": """
        Feature: Exits
          Scenario: calls exit in a step
            Given the number 1
            Then the step calls exit

          Scenario: runs after exit
            Given the number 4
            Then it is 4
    """,
}
# exit! ends cucumber's process: a serial run writes no JUnit, so this feature is only
# run through shardrun; cucumber itself rescues `exit` in a step as a failure.
CUCUMBER_ENDS_ITS_PROCESS = {
    "features/hard_exit.feature": """
        Feature: Hard exit
          Scenario: ends the process
            Given the number 1
            Then the process ends

          Scenario: runs after the end
            Given the number 3
            Then it is 3
    """,
}
CUCUMBER_HARD_EXIT_CASES = {
    ("Hard exit", "ends the process", "error"), ("Hard exit", "runs after the end", "passed"),
}


def cucumber_serial(root: Path, out: Path) -> Counter[tuple[str, str, str]]:
    """`cucumber --format junit` over the suite: one file per feature, summed."""
    completed = run_command(["cucumber", "--format", "junit", "--out", str(out),
                             "--format", "progress", "features"], root)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    cases: Counter[tuple[str, str, str]] = Counter()
    for report in sorted(out.glob("*.xml")):
        cases += junit_cases(report)
    return cases


@pytest.mark.usefixtures("require_cucumber")
@pytest.mark.parametrize("runners", RUNNERS)
def test_a_cucumber_suite_gives_the_serial_runs_scenarios(runners: str, tmp_path: Path) -> None:
    root = write_files(tmp_path / "suite", CUCUMBER_SERIAL)
    serial = cucumber_serial(root, tmp_path / "serial")
    assert len(serial) == 7 and ("Exits", "calls exit in a step", "failed") in serial
    write_files(root, CUCUMBER_ENDS_ITS_PROCESS)
    completed = shardrun(root, "features", "-w", "2", "--retries", "0", "--runners", runners,
                         *run_options(tmp_path))
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert_each_once(junit_cases(tmp_path / "run.xml"),
                     frozenset(set(serial) | CUCUMBER_HARD_EXIT_CASES))
    found = messages(tmp_path / "run.xml")
    assert found["ends the process"].startswith("interrupted: the runner exited with code 0")
    [rerun] = [line.split() for line in completed.stdout.splitlines()
               if line.strip().startswith("cucumber ")]
    assert "features/arithmetic.feature:6" in rerun  # the scenario, not its failing step


@pytest.mark.usefixtures("require_cucumber")
def test_cucumber_ci_nodes_together_give_the_serial_run(
    tmp_path: Path, private_redis: str
) -> None:
    """Two `shardrun ci` nodes of one build: the leader's merged JUnit is the serial run's,
    and both nodes fail the build."""
    root = write_files(tmp_path / "suite", CUCUMBER_SERIAL)
    serial = cucumber_serial(root, tmp_path / "serial")
    merged = two_failing_ci_nodes(root, "features", private_redis, tmp_path)
    assert_each_once(junit_cases(merged), frozenset(serial))


@pytest.mark.usefixtures("require_minitest")
def test_minitest_ci_nodes_together_run_every_test_once(
    tmp_path: Path, private_redis: str
) -> None:
    """Two `shardrun ci` nodes of one build on a Minitest suite: the leader's merged JUnit
    holds every test once with its outcome, and both nodes fail the build."""
    root = write_files(tmp_path / "suite", MINITEST_CLEAN)
    merged = two_failing_ci_nodes(root, "test", private_redis, tmp_path)
    assert_each_once(junit_cases(merged), frozenset(MINITEST_CLEAN_CASES))


def two_failing_ci_nodes(root: Path, path: str, redis_url: str, tmp_path: Path) -> Path:
    """Two `shardrun ci` nodes of one build on a suite with a failing test: both must fail
    the build, and exactly one (the leader) writes the merged JUnit, which is returned."""
    build = uuid.uuid4().hex
    nodes = []
    for index in range(2):
        env = clean_ci_env(SHARDRUN_BUILD_ID=build, SHARDRUN_NODE_INDEX=str(index),
                           SHARDRUN_NODE_TOTAL="2")
        argv = [sys.executable, "-m", "shardrun", "ci", path, "--redis-url", redis_url,
                "--workers", "1", "--retries", "0",
                "--junit-out", str(tmp_path / f"merged-{index}.xml"),
                "--timings", str(tmp_path / "timings.json")]
        nodes.append(subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [node.communicate(timeout=RUN_TIMEOUT_SECONDS)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [1, 1], "\n".join(outputs)
    merged = list(tmp_path.glob("merged-*.xml"))
    assert len(merged) == 1, "\n".join(outputs)  # the leader's
    return merged[0]

"""shardrun's pytest plugin on real pytest sessions (pytester), real workers, real Redis.

`pytest --shardrun`, `--shardrun-group/--shardrun-groups` and `--shardrun-record`
(shardrun/pytest_plugin/), loaded the way users get it: through the `pytest11` entry
point of the installed package. The sessions under test run in subprocesses
(`runpytest_subprocess`) wherever shardrun starts workers, and in this process only to
collect.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from shardrun.plan.history import History
from shardrun.plan.timings import Durations
from shardrun.pytest_plugin import _parsers, session

pytest_plugins = ["pytester"]

TWO_FILES = {
    "test_good": "def test_one():\n    pass\n\ndef test_two():\n    pass\n",
    "test_bad": "def test_bad():\n    assert 1 == 2\n",
}


@pytest.fixture
def session_env(monkeypatch: pytest.MonkeyPatch, redis_url: str, pytester: pytest.Pytester) -> str:
    """The inner sessions see the machine's Redis and none of the outer run's settings."""
    for name in ("SHARDRUN_WORKER_INDEX", "SHARDRUN_TIMINGS", "SHARDRUN_WORKERS",
                 "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_ADDOPTS", "VIRTUAL_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SHARDRUN_REDIS_URL", redis_url)
    pytester.makeini("[pytest]\n")
    return redis_url


def junit_outcomes(report: Path) -> dict[str, str]:
    """name -> outcome of a JUnit report."""
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[case.get("name", "")] = "failed" if failed else "passed"
    return outcomes


@pytest.mark.parametrize("plugins", [[], ["-p", "no:xdist"]], ids=["xdist-n", "shardrun-n"])
def test_a_failing_test_makes_pytest_shardrun_exit_1(
    pytester: pytest.Pytester, session_env: str, plugins: list[str]
) -> None:
    """With pytest-xdist installed `-n` is xdist's and shardrun reads it; without (here:
    blocked), the plugin offers `-n` itself. Either way xdist never runs the session."""
    pytester.makepyfile(**TWO_FILES)
    result = pytester.runpytest_subprocess(*plugins, "--shardrun", "-n", "2",
                                           "--junitxml=report.xml")
    assert result.ret == 1, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines([
        f"*2 pytest files on 2 local workers*under {sys.executable} (--python, pytest *",
        "2 passed, 1 failed*",
        "merged JUnit: report.xml",
    ])
    assert "[gw0]" not in result.stdout.str()  # no xdist worker ran anything
    assert junit_outcomes(pytester.path / "report.xml") == {
        "test_one": "passed", "test_two": "passed", "test_bad": "failed"}


def test_addopts_shardrun_runs_only_the_paths_and_passes_options_to_every_batch(
    pytester: pytest.Pytester, session_env: str
) -> None:
    """A project that puts --shardrun in addopts: the batches' own pytest sessions see it
    too and must not start shardrun again; -k reaches them; `other/` is not run."""
    pytester.makeini("[pytest]\naddopts = --shardrun\n")
    tests = pytester.mkpydir("tests")
    (tests / "test_a.py").write_text("def test_a():\n    pass\n\ndef test_skipme():\n"
                                     "    raise AssertionError('deselected by -k')\n")
    (tests / "test_b.py").write_text("def test_b():\n    pass\n")
    other = pytester.mkpydir("other")
    (other / "test_other.py").write_text("def test_other():\n    assert False\n")
    result = pytester.runpytest_subprocess("-n", "2", "tests", "-k", "not skipme",
                                           "--junitxml", "out.xml")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*2 pytest files on 2 local workers*", "2 passed, 0 failed*"])
    assert junit_outcomes(pytester.path / "out.xml") == {"test_a": "passed", "test_b": "passed"}


@pytest.mark.parametrize(("args", "message"), [
    (["-n", "0"], "shardrun: error: -n 0: --shardrun needs at least one worker*"),
    (["test_good.py::test_one"], "shardrun: error: test_good.py::test_one: --shardrun runs "
                                 "whole files*"),
    (["--shardrun-group", "1", "--shardrun-groups", "2"],
     "shardrun: error: --shardrun runs the whole suite*use one of them"),
])
def test_bad_input_is_one_line_and_exit_2(
    pytester: pytest.Pytester, session_env: str, args: list[str], message: str
) -> None:
    pytester.makepyfile(**TWO_FILES)
    result = pytester.runpytest_subprocess("--shardrun", *args)
    assert result.ret == 2, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()


def test_the_shardrun_command_line_from_pytests_own_parser(
    pytester: pytest.Pytester, session_env: str
) -> None:
    """How pytest read the command line decides what is a path: `-k tests` keeps its
    value, the path `tests` goes to shardrun, and shardrun's own options reach no batch."""
    pytester.mkpydir("tests")
    config = pytester.parseconfig("--shardrun", "-n", "3", "-k", "tests", "tests", "-x",
                                  "--junitxml=out.xml", "--shardrun-timings", "t.json",
                                  "-p", "no:randomly", "--basetemp=/tmp/shared", "-vvv")
    argv = session.shardrun_argv(config, _parsers[config.pluginmanager])
    assert argv == ["run", "tests", "--framework", "pytest", "--python", sys.executable,
                    "--workers", "3", "--junit-out", "out.xml", "--fail-fast", "1",
                    "--timings", "t.json", "--verbose", "--verbose",
                    "--", "-k", "tests", "-x", "-p", "no:randomly", "-vvv", "--numprocesses=0"]


def test_without_paths_shardrun_plans_pytests_testpaths(
    pytester: pytest.Pytester, session_env: str
) -> None:
    pytester.mkpydir("tests")
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    config = pytester.parseconfig("--shardrun")
    assert session.session_paths(config) == ["tests"]


def make_suite(pytester: pytest.Pytester) -> None:
    """7 files of 1 to 4 tests."""
    for index in range(7):
        body = "".join(f"def test_{index}_{case}():\n    pass\n\n" for case in range(index % 4 + 1))
        pytester.makepyfile(**{f"test_file{index}": body})


def collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest_inprocess("--collect-only", "-q", *args)
    assert result.ret == 0, result.stdout.str()
    return [line for line in result.outlines if "::" in line]


def test_groups_partition_the_suite(pytester: pytest.Pytester, session_env: str) -> None:
    make_suite(pytester)
    everything = collected(pytester)
    groups = [collected(pytester, "--shardrun-group", str(group), "--shardrun-groups", "3")
              for group in (1, 2, 3)]
    assert all(groups), "every group got some tests"
    assert sorted(test for group in groups for test in group) == sorted(everything)
    result = pytester.runpytest_inprocess("--shardrun-group", "2", "--shardrun-groups", "3")
    result.stdout.fnmatch_lines([
        "shardrun: group 2 of 3: * of 7 files; split from file sizes (no timing file "
        "committed in the checkout), plan digest *",
    ])
    result.assert_outcomes(passed=len(groups[1]), deselected=len(everything) - len(groups[1]))


def test_groups_follow_the_committed_history_and_agree_under_xdist(
    pytester: pytest.Pytester, session_env: str
) -> None:
    """A committed history where one file takes 10 s and six 1 s: in 2 groups the slow
    file is alone in its group. xdist's workers each select the same group."""
    make_suite(pytester)
    history = History(pytester.path / ".shardrun" / "timings.json")
    history.record(Durations({f"test_file{index}.py": 10.0 if index == 3 else 1.0
                              for index in range(7)}, {}, "test"))
    history.save()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "suite"]):
        subprocess.run([*git, *argv], cwd=pytester.path, check=True)
    alone = [collected(pytester, "--shardrun-group", str(group), "--shardrun-groups", "2")
             for group in (1, 2)]
    slow_group = next(group for group in alone if any("test_file3" in test for test in group))
    assert {test.split("::")[0] for test in slow_group} == {"test_file3.py"}
    result = pytester.runpytest_subprocess("-n", "2", "--shardrun-group", "1",
                                           "--shardrun-groups", "2")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=len(alone[0]))
    result = pytester.runpytest_inprocess("--shardrun-group", "1", "--shardrun-groups", "2")
    result.stdout.fnmatch_lines(["shardrun: group 1 of 2: * files, * s of 16.0 s; split from "
                                 ".shardrun/timings.json as committed, plan digest *"])


def test_bad_group_numbers_are_pytest_usage_errors(
    pytester: pytest.Pytester, session_env: str
) -> None:
    make_suite(pytester)
    result = pytester.runpytest_inprocess("--shardrun-group", "0", "--shardrun-groups", "3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--shardrun-group 0: groups are numbered 1 to 3*"])
    result = pytester.runpytest_inprocess("--shardrun-groups", "3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--shardrun-group I and --shardrun-groups N go together*"])


def test_record_under_xdist_then_shardrun_plans_from_the_recording(
    pytester: pytest.Pytester, session_env: str
) -> None:
    pytester.makepyfile(
        test_slow="import time\n\ndef test_slow():\n    time.sleep(0.5)\n",
        test_fast="def test_fast():\n    pass\n\ndef test_faster():\n    pass\n",
    )
    result = pytester.runpytest_subprocess("-n", "2", "--shardrun-record")
    assert result.ret == 0, result.stdout.str()
    timings = pytester.path / ".shardrun" / "timings.json"
    result.stdout.fnmatch_lines([f"shardrun: recorded 3 tests of 2 whole files into {timings}"])
    history = History.load(timings)
    slow = history.files()["test_slow.py"]
    assert len(slow.samples) == 1, "only xdist's controller records"
    assert slow.estimate >= 0.5
    assert history.estimate("test_slow.py::test_slow") == slow.estimate
    assert (history.estimate("test_fast.py") or 0) < 0.5

    result = pytester.runpytest_subprocess("--shardrun", "-n", "2")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*2 pytest files on 2 local workers*planned from timings "
                                 "from earlier runs", "3 passed, 0 failed*"])
    assert len(History.load(timings).files()["test_slow.py"].samples) == 2


def test_the_plugin_costs_a_session_nothing_it_does_not_use() -> None:
    """pytest imports the plugin in every session: it must not pull in shardrun's CLI,
    Redis, RQ or the planner until an option asks for them."""
    probe = ("import sys, pytest, shardrun.pytest_plugin\n"
             "heavy = ('click', 'redis', 'rq', 'junitparser', 'psutil', 'shardrun.cli', "
             "'shardrun.plan', 'shardrun.run')\n"
             "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n")
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout
    assert output.strip() == "[]"

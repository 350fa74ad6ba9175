"""Timing input from the real tools: rspec and pytest run here and write the files we parse.

Nothing in these tests is hand-written JUnit: each test runs the tiny suites under
tests/fixtures/suites/ (copied to tmp_path, so the runs leave no caches in the tree) and
checks that shardrun.plan.timings reads what the tool wrote. Totals are checked against an
independent reading of the same file (stdlib ElementTree / json), not against constants.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
from support.files import write_files, write_pytest_suite
from support.runs import shardrun

from shardrun.plan.history import History
from shardrun.plan.timings import normalize_path, parse_rspec_json, read_junit

SUITES = Path(__file__).resolve().parent.parent / "fixtures" / "suites"
SLEEP_SECONDS = 0.05  # every example in the fixture suites sleeps this long
RUN_TIMEOUT_SECONDS = 120

RSPEC_FILES = {"spec/calculator_spec.rb": 2, "spec/models/user_spec.rb": 3}
RSPEC_EXAMPLE_IDS = {
    "spec/calculator_spec.rb[1:1]",
    "spec/calculator_spec.rb[1:2]",
    "spec/models/user_spec.rb[1:1]",
    "spec/models/user_spec.rb[1:2:1]",
    "spec/models/user_spec.rb[1:2:2]",
}
PYTEST_FILES = {"check_math.py": 2, "checks/check_strings.py": 3}
PYTEST_NODE_IDS = {
    "check_math.py::test_adds",
    "check_math.py::test_subtracts",
    "checks/check_strings.py::TestUpper::test_upper",
    "checks/check_strings.py::TestUpper::test_param[x.y]",
    "checks/check_strings.py::TestUpper::test_param[z]",
}


def copy_suite(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(SUITES / name, tmp_path / name))


def run(argv: list[str], cwd: Path) -> None:
    """Run a real test tool; its output is shown only when it fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    proc = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS
    )
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"


def junit_seconds_by_file(path: Path, suite: Path) -> dict[str, float]:
    """Independent reading of a JUnit file the test itself just generated (trusted input)."""
    totals: dict[str, float] = {}
    for case in ElementTree.parse(path).iter("testcase"):
        file = case.get("file") or classname_to_file(case.get("classname", ""), suite)
        key = normalize_path(file)
        totals[key] = totals.get(key, 0.0) + float(case.get("time", "0"))
    return totals


def classname_to_file(classname: str, suite: Path) -> str:
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end]) + ".py"
        if (suite / candidate).is_file():
            return candidate
    raise AssertionError(f"no module for classname {classname!r}")


def assert_plausible(files: dict[str, float], expected_counts: dict[str, int]) -> None:
    assert set(files) == set(expected_counts)
    for path, count in expected_counts.items():
        assert files[path] >= count * SLEEP_SECONDS * 0.9, path


@pytest.mark.ruby
def test_rspec_junit_formatter_output(require_ruby: None, tmp_path: Path) -> None:
    suite = copy_suite("rspec_small", tmp_path)
    report = tmp_path / "rspec.xml"
    run(["rspec", "--format", "RspecJunitFormatter", "--out", str(report)], cwd=suite)
    durations = read_junit(report)
    assert durations.source == str(report)
    assert_plausible(durations.files, RSPEC_FILES)
    assert durations.files == pytest.approx(junit_seconds_by_file(report, suite))
    assert durations.examples == {}  # the formatter writes no example ids


@pytest.mark.ruby
def test_rspec_json_output(require_ruby: None, tmp_path: Path) -> None:
    suite = copy_suite("rspec_small", tmp_path)
    report = tmp_path / "rspec.json"
    run(["rspec", "--format", "json", "--out", str(report)], cwd=suite)
    durations = parse_rspec_json(report.read_text(), str(report))
    assert set(durations.examples) == RSPEC_EXAMPLE_IDS
    assert_plausible(durations.files, RSPEC_FILES)
    raw = json.loads(report.read_text())["examples"]
    for path in RSPEC_FILES:
        run_times = [e["run_time"] for e in raw if normalize_path(e["file_path"]) == path]
        assert durations.files[path] == pytest.approx(sum(run_times))
        in_file = [s for unit, s in durations.examples.items() if unit.startswith(path + "[")]
        assert durations.files[path] == pytest.approx(sum(in_file))


@pytest.mark.parametrize("family", ["xunit1", "xunit2"])
def test_pytest_junitxml_output(tmp_path: Path, family: str) -> None:
    suite = copy_suite("pytest_small", tmp_path)
    report = tmp_path / f"pytest-{family}.xml"
    run(
        [
            sys.executable, "-m", "pytest", "-c", str(suite / "pytest.ini"),
            "--rootdir", str(suite), "-p", "no:cacheprovider", "-q",
            f"--junitxml={report}", "-o", f"junit_family={family}",
        ],
        cwd=suite,
    )  # fmt: skip
    has_file_attribute = 'file="' in report.read_text()
    assert has_file_attribute == (family == "xunit1")
    for root in (None, suite):  # the dotted classname rule with and without the root known
        durations = read_junit(report, root=root)
        assert set(durations.examples) == PYTEST_NODE_IDS
        assert_plausible(durations.files, PYTEST_FILES)
        assert durations.files == pytest.approx(junit_seconds_by_file(report, suite))
        for path, seconds in durations.files.items():
            in_file = [s for unit, s in durations.examples.items() if unit.startswith(path + "::")]
            assert seconds == pytest.approx(sum(in_file))


@pytest.mark.ruby
def test_real_reports_feed_history_and_estimates(require_ruby: None, tmp_path: Path) -> None:
    suite = copy_suite("rspec_small", tmp_path)
    junit, rspec_json = tmp_path / "rspec.xml", tmp_path / "rspec.json"
    run(
        ["rspec", "--format", "RspecJunitFormatter", "--out", str(junit),
         "--format", "json", "--out", str(rspec_json)],
        cwd=suite,
    )  # fmt: skip
    history = History(suite / ".shardrun" / "timings.json")
    history.record(read_junit(junit))
    history.record(parse_rspec_json(rspec_json.read_text(), str(rspec_json)))
    history.save(suite)
    reloaded = History.load(suite / ".shardrun" / "timings.json")
    assert set(reloaded.files()) == set(RSPEC_FILES)
    assert all(len(stats.samples) == 2 for stats in reloaded.files().values())
    estimates = reloaded.estimates(
        ["spec/calculator_spec.rb", "spec/models/user_spec.rb[1:2:2]", "spec/new_spec.rb"], suite
    )
    assert estimates["spec/calculator_spec.rb"] >= 2 * SLEEP_SECONDS * 0.9
    assert estimates["spec/models/user_spec.rb[1:2:2]"] >= SLEEP_SECONDS * 0.9
    assert estimates["spec/new_spec.rb"] > 0  # not on disk: the median of known files


def learned_twice(root: Path, path: str, tmp_path: Path) -> History:
    """Two `shardrun run` of the suite at -w 2: the first learns, the second plans from
    it; the history they leave."""
    timings = tmp_path / "timings.json"
    for attempt in ("learn", "plan"):
        completed = shardrun(root, path, "--workers", "2", "--retries", "0",
                             "--timings", str(timings), "--junit-out", str(tmp_path / "run.xml"))
        assert completed.returncode == 0, f"{attempt}: {completed.stdout}{completed.stderr}"
    return History.load(timings)


HOOK_SECONDS = 1.0  # the before(:all) of spec/hook_spec.rb
HOOK_SUITE = {
    ".rspec": "",
    "spec/hook_spec.rb": f"""
        RSpec.describe "records made once for the file" do
          before(:all) {{ sleep {HOOK_SECONDS} }}
          it("reads one") {{ expect(1).to eq(1) }}
          it("reads two") {{ expect(2).to eq(2) }}
        end
    """,
    **{f"spec/plain_{index}_spec.rb": f"""
        RSpec.describe "plain {index}" do
          it("a") {{ sleep {SLEEP_SECONDS} }}
          it("b") {{ sleep {SLEEP_SECONDS} }}
        end
    """ for index in range(4)},
}


@pytest.mark.ruby
def test_a_before_all_hook_is_priced_into_its_file_and_that_file_runs_first(
    require_ruby: None, tmp_path: Path
) -> None:
    """An example's run time leaves out its groups' before(:context) hooks (`let_it_be`,
    `before(:all)`): a history of example times priced a file that spends 1 s in one at
    a few milliseconds, and queue mode sent it out last, to end the run 1 s late."""
    history = learned_twice(write_files(tmp_path / "suite", HOOK_SUITE), "spec", tmp_path)
    assert history.files()["spec/hook_spec.rb"].estimate >= HOOK_SECONDS
    assert history.files()["spec/plain_0_spec.rb"].estimate < HOOK_SECONDS / 2
    planned = history.runs()[-1]
    [hook_batch] = [batch for batch in planned.batches
                    if any(unit.startswith("spec/hook_spec.rb") for unit in batch.units)]
    assert "spec/hook_spec.rb" in hook_batch.units  # whole: a piece would pay the hook again
    assert hook_batch.predicted_seconds >= HOOK_SECONDS
    assert hook_batch.index == 0  # the first batch sent out


FIXTURE_SECONDS = 1.0  # the module fixture of tests/test_db.py
FIXTURE_SUITE = {
    "tests/test_db.py": f"""
        import time

        import pytest


        @pytest.fixture(scope="module")
        def database():
            time.sleep({FIXTURE_SECONDS})
            return "db"


        def test_reads(database):
            time.sleep({SLEEP_SECONDS})


        def test_writes(database):
            time.sleep({SLEEP_SECONDS})


        def test_deletes(database):
            time.sleep({SLEEP_SECONDS})


        def test_lists(database):
            time.sleep({SLEEP_SECONDS})
    """,
    **{f"tests/test_plain_{index}.py": f"""
        import time


        def test_a():
            time.sleep({2 * SLEEP_SECONDS})


        def test_b():
            time.sleep({2 * SLEEP_SECONDS})
    """ for index in range(4)},
}


def test_a_module_fixture_is_its_files_not_its_first_tests_and_the_file_runs_whole(
    tmp_path: Path,
) -> None:
    """pytest sets a module-scoped fixture up in the first test that uses it. Split into
    its tests, the file paid it in every piece (4 x 1 s for 1.2 s of work), and the
    history priced its first test at the fixture."""
    history = learned_twice(write_pytest_suite(tmp_path / "suite", FIXTURE_SUITE), "tests",
                            tmp_path)
    assert history.files()["tests/test_db.py"].estimate >= FIXTURE_SECONDS
    assert max(stats.estimate for test, stats in history.examples().items()
               if test.startswith("tests/test_db.py::")) < FIXTURE_SECONDS / 2
    [db_batch] = [batch for batch in history.runs()[-1].batches
                  if any(unit.startswith("tests/test_db.py") for unit in batch.units)]
    assert "tests/test_db.py" in db_batch.units  # whole: a piece would set it up again

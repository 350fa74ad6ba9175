"""Timing files of knapsack, parallel_tests and pytest-split, used on the first run."""

from __future__ import annotations

import json
from pathlib import Path

from support.files import write

from shardrun.plan.existing import existing_timings
from shardrun.plan.gather import PlanRequest, prepare


def rspec_project(root: Path, *names: str) -> Path:
    for name in names:
        write(root / "spec" / f"{name}_spec.rb", "describe 'x' do\nend\n")
    return root


def test_knapsack_and_parallel_tests_files_are_imported_for_rspec(tmp_path: Path) -> None:
    rspec_project(tmp_path, "a", "b", "c")
    write(tmp_path / "knapsack_rspec_report.json",
          json.dumps({"spec/a_spec.rb": 3.5, "spec/b_spec.rb": 1.0, "spec/gone_spec.rb": 2}))
    write(tmp_path / "tmp" / "parallel_runtime_rspec.log", "spec/c_spec.rb:2.5\n")
    write(tmp_path / ".test_durations", json.dumps({"tests/test_a.py::test_x": 1.0}))
    found = existing_timings(tmp_path, "rspec")
    assert found.line == ("timings: imported 2 files from knapsack_rspec_report.json and "
                          "1 file from tmp/parallel_runtime_rspec.log (no shardrun history yet)")
    assert [sorted(durations.files) for durations in found.durations] == [
        ["spec/a_spec.rb", "spec/b_spec.rb"], ["spec/c_spec.rb"]]


def test_pytest_split_durations_for_pytest(tmp_path: Path) -> None:
    write(tmp_path / "tests" / "test_a.py", "def test_x():\n    pass\n")
    write(tmp_path / ".test_durations", json.dumps({"tests/test_a.py::test_x": 1.25}))
    write(tmp_path / "knapsack_rspec_report.json", json.dumps({"tests/test_a.py": 9.0}))
    found = existing_timings(tmp_path, "pytest")
    assert found.line == ("timings: imported 1 file from .test_durations "
                          "(no shardrun history yet)")
    assert found.durations[0].files == {"tests/test_a.py": 1.25}


def test_a_broken_or_foreign_file_is_named_and_skipped(tmp_path: Path) -> None:
    rspec_project(tmp_path, "a")
    write(tmp_path / "knapsack_minitest_report.json", "{")
    write(tmp_path / "tmp" / "parallel_runtime_test.log", "/app/test/x_test.rb:2.0\n")
    found = existing_timings(tmp_path, "minitest")
    assert found.durations == ()
    assert found.line is not None
    assert found.line.startswith("timings: knapsack_minitest_report.json not used (")
    assert found.line.endswith("; tmp/parallel_runtime_test.log not used (none of its 1 "
                               "files is in this project)")


def test_nothing_to_import_says_nothing(tmp_path: Path) -> None:
    assert existing_timings(rspec_project(tmp_path, "a"), "rspec").line is None


def test_prepare_imports_only_without_history_or_from_junit(tmp_path: Path) -> None:
    rspec_project(tmp_path, "a", "b")
    write(tmp_path / "knapsack_rspec_report.json",
          json.dumps({"spec/a_spec.rb": 4.0, "spec/b_spec.rb": 1.0}))
    timings = tmp_path / "timings.json"
    request = PlanRequest(tmp_path, ("spec",), None, 2, timings)
    planned = prepare(request)
    assert planned.timed and planned.estimates == {"spec/a_spec.rb": 4.0, "spec/b_spec.rb": 1.0}
    assert planned.notes == ("timings: imported 2 files from knapsack_rspec_report.json "
                             "(no shardrun history yet)",)
    planned.history.save(tmp_path)  # as a run does at its end
    assert prepare(request).notes == ()  # a history exists now: it is what plans
    write(tmp_path / "rspec.json", json.dumps({"spec/a_spec.rb": 1.0}))
    fresh = PlanRequest(tmp_path, ("spec",), None, 2, tmp_path / "new.json", ("rspec.json",))
    assert prepare(fresh).notes == ()  # --from-junit given: the user chose the timings

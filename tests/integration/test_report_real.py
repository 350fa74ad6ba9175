"""Real rspec and pytest runs, split in two batches and merged, against one serial run.

The suites are written into tmp_path: per framework two files holding a passing, a
failing and a skipped example, and a second passing file. Each batch runs in the
framework's runner server and is settled as a worker settles it; the serial run is the
framework's own command with its own JUnit formatter.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lxml import etree

from shardrun.models import BatchResult
from shardrun.report.junit_writer import junit_xml
from shardrun.report.merge import RunReport, merge
from shardrun.report.summary import rerun_command
from shardrun.runners import get_runner
from shardrun.work.accounting import reconcile
from shardrun.work.warm import RunnerProcess

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "fixtures" / "junit-shardrun.xsd"
RUN_TIMEOUT = 120  # seconds; these suites take well under one

RSPEC_FILES = {
    "spec/a_spec.rb": """\
RSpec.describe "Adder" do
  it "adds" do
    expect(1 + 1).to eq(2)
  end

  it "subtracts wrongly" do
    expect(3 - 1).to eq(1)
  end

  it "multiplies later" do
    skip "not written yet"
  end
end
""",
    "spec/b_spec.rb": """\
RSpec.describe "Banner" do
  it "greets" do
    expect("hi").to start_with("h")
  end
end
""",
}

PYTEST_FILES = {
    "pytest.ini": "[pytest]\n",  # keeps this suite out of the repository's own config
    "tests/test_a.py": """\
import pytest


def test_adds():
    assert 1 + 1 == 2


class TestSubtract:
    def test_wrongly(self):
        assert 3 - 1 == 1


@pytest.mark.skip(reason="not written yet")
def test_multiplies():
    pass
""",
    "tests/test_b.py": """\
def test_greets():
    assert "hi".startswith("h")
""",
}


def write_suite(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def rspec_argv(files: list[str], junit: Path) -> list[str]:
    return ["rspec", "--no-color", "--format", "progress", "--format", "RspecJunitFormatter",
            "--out", str(junit), *files]


def pytest_argv(files: list[str], junit: Path) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
            "-o", "junit_family=xunit2", f"--junitxml={junit}", *files]


def run_batch(root: Path, framework: str, index: int, units: list[str]) -> BatchResult:
    """Run one batch for real, as a worker runs and settles it."""
    runner = get_runner(framework, root)
    server = runner.server_argv()
    assert server is not None
    log = root / f"batch{index}.log"
    process = RunnerProcess("key", server, root, {**os.environ}, log)
    started = time.time()
    try:
        batch = process.run(runner.batch_arguments(units), log, fork=True,
                            timeout_seconds=RUN_TIMEOUT)
    finally:
        process.stop()
    settled = reconcile(units, batch.events, batch.outcome)
    return BatchResult(
        run_id="real", batch_id=index, attempt=1, worker=f"localhost:{index}",
        worker_index=index, units=tuple(units), outcome=batch.outcome, started_at=started,
        finished_at=time.time(), predicted_seconds=1.0, tests=settled.tests,
        unrun=settled.unrun, unrun_reason=settled.unrun_reason,
        empty_units=settled.empty_units,
    )


def outcomes_in(xml: bytes) -> list[tuple[str, str, str]]:
    """(classname, name, outcome) of every testcase, read straight from the XML."""
    found = []
    for case in etree.fromstring(xml).iter("testcase"):
        tags = {child.tag for child in case}
        outcome = next((tag for tag in ("error", "failure", "skipped") if tag in tags), "passed")
        found.append((case.get("classname"), case.get("name"), outcome))
    return sorted(found)


def merged_against_serial(
    root: Path, framework: str, argv_for, files: list[str]
) -> RunReport:
    """Run the files in two batches, merge, validate, and compare with one serial run."""
    batches = [run_batch(root, framework, i, [file]) for i, file in enumerate(files)]
    serial = subprocess.run(argv_for(files, root / "serial.xml"), cwd=root, capture_output=True,
                            text=True, timeout=RUN_TIMEOUT, check=False)
    assert serial.returncode == 1, serial.stdout + serial.stderr
    report = merge(files, batches)
    merged = junit_xml(report).encode("utf-8")
    schema = etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))
    assert schema.validate(etree.fromstring(merged)), schema.error_log
    assert outcomes_in(merged) == outcomes_in((root / "serial.xml").read_bytes())
    assert (report.tests, report.failures, report.errors, report.skipped) == (4, 1, 0, 1)
    return report


def rerun(root: Path, command: str | None) -> str:
    assert command is not None
    argv = shlex.split(command)
    if argv[0] == "python":
        argv[0] = sys.executable
    process = subprocess.run(argv, cwd=root, capture_output=True, text=True,
                             timeout=RUN_TIMEOUT, check=False)
    return process.stdout


@pytest.mark.ruby
@pytest.mark.usefixtures("require_ruby")
def test_rspec_shards_merge_like_a_serial_run(tmp_path: Path) -> None:
    write_suite(tmp_path, RSPEC_FILES)
    report = merged_against_serial(tmp_path, "rspec", rspec_argv,
                                   ["spec/a_spec.rb", "spec/b_spec.rb"])
    [failure] = [case for case in report.cases if case.outcome == "failed"]
    assert (failure.file, failure.line) == ("spec/a_spec.rb", 7)
    command = rerun_command(report, "rspec")
    assert command == "rspec 'spec/a_spec.rb[1:2]'"
    assert "1 example, 1 failure" in rerun(tmp_path, command)


def test_pytest_shards_merge_like_a_serial_run(tmp_path: Path) -> None:
    write_suite(tmp_path, PYTEST_FILES)
    report = merged_against_serial(tmp_path, "pytest", pytest_argv,
                                   ["tests/test_a.py", "tests/test_b.py"])
    command = rerun_command(report, "pytest")
    assert command == "python -m pytest tests/test_a.py::TestSubtract::test_wrongly"
    assert "1 failed in" in rerun(tmp_path, command)

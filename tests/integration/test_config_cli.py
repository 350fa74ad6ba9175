"""Settings and first-run timings through the real `shardrun` CLI, in a Rails-style project.

The project has spec/, a .shardrun.toml and a knapsack report, and no pyproject.toml: the
settings file's values, SHARDRUN_* variables and command-line options must each reach a
real run (private Redis, real rspec), in that order of strength, and the knapsack report
must plan the first run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.files import write_files, write_pytest_suite
from support.runs import clean_env, run_command, shardrun_argv

from shardrun.models import Batch, BatchResult
from shardrun.queue import RunQueue, connect

SPECS = {
    f"spec/{name}_spec.rb": f"""
        RSpec.describe "{name}" do
          it "works" do
            sleep 0.1
            expect(1).to eq(1)
          end
        end
    """
    for name in ("alpha", "beta", "gamma")
}
SETTINGS = """
    junit-out = "reports/file.xml"
    timings = "tmp/shardrun-timings.json"
    retries = 0

    [run]
    workers = 2
"""
KNAPSACK = {"spec/alpha_spec.rb": 4.0, "spec/beta_spec.rb": 1.0, "spec/gamma_spec.rb": 1.5,
            "spec/removed_spec.rb": 9.0}


def cli(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_command([sys.executable, "-m", "shardrun", *args], root, clean_env(**env))


@pytest.fixture
def rails_project(tmp_path: Path) -> Path:
    root = write_files(tmp_path / "shop", {**SPECS, ".shardrun.toml": SETTINGS})
    (root / "knapsack_rspec_report.json").write_text(json.dumps(KNAPSACK))
    return root


@pytest.mark.ruby
@pytest.mark.usefixtures("require_ruby")
def test_file_then_environment_then_command_line_and_knapsack_on_the_first_run(
    rails_project: Path,
) -> None:
    first = run_command(shardrun_argv(), rails_project,
                        clean_env(SHARDRUN_JUNIT_OUT="reports/env.xml"))
    assert first.returncode == 0, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == "shardrun run: 2 workers; finding the tests"  # [run] workers
    assert ("shardrun run: timings: imported 3 files from knapsack_rspec_report.json "
            "(no shardrun history yet)") in lines
    assert any("planned from timings from earlier runs" in line for line in lines)
    assert (rails_project / "reports" / "env.xml").is_file()  # env beats the file
    assert not (rails_project / "reports" / "file.xml").exists()
    history = json.loads((rails_project / "tmp" / "shardrun-timings.json").read_text())
    assert sorted(history["files"]) == ["spec/alpha_spec.rb", "spec/beta_spec.rb",
                                        "spec/gamma_spec.rb"]

    second = run_command(shardrun_argv("-n", "1"), rails_project, clean_env())
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.splitlines()[0] == "shardrun run: 1 worker; finding the tests"
    assert "knapsack" not in second.stdout  # the history plans from now on
    assert (rails_project / "reports" / "file.xml").is_file()


def test_config_lists_each_source(rails_project: Path) -> None:
    shown = cli(rails_project, "config", "run", "--mode", "static", SHARDRUN_RETRIES="2",
                SHARDRUN_REDIS_URL="redis://:secret@redis:6379/0")
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in shown.stdout.splitlines()[1:]}
    assert rows["junit-out"] == "reports/file.xml .shardrun.toml"
    assert rows["workers"] == "2 .shardrun.toml [run]"
    assert rows["retries"] == "2 env SHARDRUN_RETRIES"
    assert rows["mode"] == "static command line"
    assert rows["redis-url"] == "redis://***@redis:6379/0 env SHARDRUN_REDIS_URL"
    assert "secret" not in shown.stdout


@pytest.mark.parametrize(("settings", "env", "expected"), [
    ("wrokers = 2\n", {}, ".shardrun.toml: unknown key 'wrokers' (did you mean 'workers'?)"),
    ("[run]\nmode = 3\n", {}, ".shardrun.toml [run]: mode = 3: 3 is not one of 'queue', "
                              "'static'"),
    ("", {"SHARDRUN_LEASE_SECONDS": "soon"}, "env SHARDRUN_LEASE_SECONDS=soon: 'soon' is not "
                                              "a valid float range"),
])
def test_a_bad_setting_is_one_line_exit_2_before_anything_runs(
    rails_project: Path, settings: str, env: dict[str, str], expected: str
) -> None:
    (rails_project / ".shardrun.toml").write_text(settings)
    failed = run_command(shardrun_argv(), rails_project, clean_env(**env))
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert failed.stderr.startswith(f"shardrun: error: {expected}")
    assert len(failed.stderr.splitlines()) == 1 and failed.stdout == ""


def test_pytest_split_durations_plan_the_first_split(tmp_path: Path) -> None:
    root = write_pytest_suite(tmp_path, {
        f"tests/test_{name}.py": "def test_it():\n    pass\n" for name in "abcd"})
    (root / "pyproject.toml").write_text("[tool.shardrun]\nworkers = 2\n")
    (root / ".test_durations").write_text(json.dumps(
        {"tests/test_a.py::test_it": 6.0, "tests/test_b.py::test_it": 2.0,
         "tests/test_c.py::test_it": 2.0, "tests/test_d.py::test_it": 2.0}))
    planned = cli(root, "plan", "--index", "0")
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.split() == ["tests/test_a.py"]  # 6 s alone against 2 + 2 + 2
    assert planned.stderr == ("timings: imported 4 files from .test_durations "
                              "(no shardrun history yet)\n")


def test_a_worker_configured_by_its_file_and_environment_alone(
    redis_url: str, unique_id: str, tmp_path: Path
) -> None:
    """No options: the [worker] section gives the command (so the command framework, as
    `run --command`) and --burst, SHARDRUN_* the Redis and the run."""
    root = write_pytest_suite(tmp_path / "app", {
        "test_small.py": "def test_one():\n    pass\n\n\ndef test_two():\n    assert 2 == 2\n"})
    (root / ".shardrun.toml").write_text(
        "[worker]\nburst = true\n"
        f'command = "{sys.executable} -m pytest -p no:cacheprovider {{files}} '
        '--junit-xml {junit}"\n')
    connection = connect(redis_url)
    run_queue = RunQueue(connection, unique_id)
    try:
        run_queue.enqueue([Batch(unique_id, 0, ("test_small.py",), 1.0, 120.0)])
        worker = cli(root, "worker", SHARDRUN_REDIS_URL=redis_url, SHARDRUN_RUN_ID=unique_id)
        result = run_queue.wait_result(5)
        assert worker.returncode == 0, worker.stdout + worker.stderr
        assert isinstance(result, BatchResult), worker.stderr
        assert result.error is None and result.outcome.exit_code == 0
        assert sorted(test.outcome for test in result.tests) == ["passed", "passed"]
    finally:
        run_queue.delete()
        connection.close()

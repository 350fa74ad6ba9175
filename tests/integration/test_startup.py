"""What `shardrun` does before the first test and after the last (issue 19): the CLI
imports only the command it runs, local workers are forks of the coordinator, and every
phase of a run is marked where SHARDRUN_PHASES asks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from support.files import write_pytest_suite
from support.runs import clean_env, run_command, run_options, shardrun_argv

from shardrun.run.forked import WORKER_PROCESS_NAME, ForkedProcess, fork_child

# What `shardrun --help` must not import: each is a command's own code.
COMMAND_MODULES = ("shardrun.cli.run", "shardrun.cli.plan", "shardrun.cli.worker",
                   "shardrun.cli.timings", "shardrun.cli.dashboard", "shardrun.run.coordinator",
                   "shardrun.queue", "redis", "rq")


def test_help_imports_no_commands_code() -> None:
    """`shardrun --help` in a new interpreter: the commands' modules stay unimported."""
    probe = ("import sys\nfrom shardrun.cli.main import cli\n"
             "try:\n    cli.main(['--help'], prog_name='shardrun')\n"
             "except SystemExit:\n    pass\n"
             f"print('loaded:', *(m for m in {COMMAND_MODULES!r} if m in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                               check=True)
    assert "Commands:" in completed.stdout
    assert completed.stdout.strip().splitlines()[-1] == "loaded:", completed.stdout


# --- local workers are forks of the coordinator (run/forked.py)


def exits_with_3() -> None:
    raise SystemExit(3)  # as a worker's SIGTERM handler ends it


def sleeps() -> None:
    time.sleep(60)


def test_a_forked_child_reports_its_exit_status() -> None:
    with tempfile.TemporaryFile() as log:
        child = fork_child(exits_with_3, log, Path.cwd(), {}, signal.SIGKILL)
        assert child.wait(timeout=30) == 3
    assert child.poll() == 3


def test_a_forked_child_killed_by_a_signal_reports_it_negative() -> None:
    with tempfile.TemporaryFile() as log:
        child: ForkedProcess = fork_child(sleeps, log, Path.cwd(), {}, signal.SIGKILL)
    assert child.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(timeout=0.05)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == -signal.SIGTERM


def test_a_forked_child_writes_to_its_log_in_its_directory_and_environment(
    tmp_path: Path,
) -> None:
    def entry() -> None:  # through the descriptor: pytest's capture holds sys.stdout
        seen = (os.getcwd(), os.environ["STARTUP_PROBE"], Path("/proc/self/comm").read_text())
        os.write(1, " ".join(seen).encode())

    with (tmp_path / "child.log").open("ab") as log:
        child = fork_child(entry, log, tmp_path, {"STARTUP_PROBE": "seen"}, signal.SIGKILL)
        assert child.wait(timeout=30) == 0
    assert (tmp_path / "child.log").read_text().split() == [str(tmp_path), "seen",
                                                            WORKER_PROCESS_NAME]
    assert "STARTUP_PROBE" not in os.environ  # the parent's environment is its own


PHASED_SUITE = {"tests/test_a.py": "def test_a():\n    pass\n",
                "tests/test_b.py": "def test_b():\n    pass\n"}
# The coordinator's milestones, in the order `shardrun run` must reach them: the workers
# (and their runners' boot) start before the history is read and the suite planned; they
# are asked to stop as the last result comes in and stop while the report is written.
COORDINATOR_ORDER = ("cli imported", "redis ready", "workers started", "planned",
                     "batched", "enqueued", "last result", "merged", "junit written",
                     "history saved", "workers stopped", "redis stopped", "exit")


def test_a_run_marks_its_phases_in_order(tmp_path: Path) -> None:
    """Every process marks its phases; the coordinator's come in the order above, and
    each worker and each runner (one per worker, booted ahead) marks its own."""
    suite = write_pytest_suite(tmp_path / "suite", PHASED_SUITE)
    phases = tmp_path / "phases"
    completed = run_command(
        [*shardrun_argv("tests", "-w", "2", *run_options(tmp_path))], suite,
        clean_env(SHARDRUN_PHASES=str(phases)))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    marks = [line.split(" ", 2) for line in phases.read_text().splitlines()]
    coordinator = marks[0][1]
    order = [phase for _, pid, phase in marks if pid == coordinator]
    assert order == list(COORDINATOR_ORDER)
    workers = {pid for _, pid, phase in marks if phase == "worker start"}
    assert len(workers) == 2 and coordinator not in workers
    assert [phase for _, _, phase in marks].count("runner booted") == 2

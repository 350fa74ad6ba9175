"""What `shardrun` does before the first test and after the last (issue 19): the CLI
imports only the command it runs."""

from __future__ import annotations

import subprocess
import sys

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

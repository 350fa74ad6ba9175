"""bench/queue_simulation.py --history DIR replays any folder of timing versions (issue 22)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from support.files import write
from support.runs import run_command

REPO_ROOT = Path(__file__).resolve().parents[2]
FILES = [f"spec/f{index}_spec.rb" for index in range(12)]


def junit(seconds: dict[str, float]) -> str:
    cases = "".join(f'<testcase classname="x" name="t" file="{name}" time="{value}"/>'
                    for name, value in seconds.items())
    return f'<?xml version="1.0"?><testsuite name="rspec">{cases}</testsuite>'


def test_replays_versions_in_three_formats(tmp_path: Path) -> None:
    first = {name: 1.0 + index for index, name in enumerate(FILES)}
    second = {name: 12.0 - index for index, name in enumerate(FILES)}
    third = {name: 3.0 for name in FILES}
    project = tmp_path / "history" / "app"
    write(project / "2025-01-01.xml", junit(first))
    write(project / "2025-02-01.json", json.dumps(second))  # knapsack
    write(project / "2025-03-01.log", "".join(f"{k}:{v}\n" for k, v in third.items()))
    completed = run_command([sys.executable, "bench/queue_simulation.py", "--history",
                             str(tmp_path / "history")], REPO_ROOT)
    assert completed.returncode == 0, completed.stderr
    rows = [line for line in completed.stdout.splitlines() if line.startswith("| 2 |")]
    assert len(rows) == 1 and rows[0].startswith("| 2 | 2 |")  # N = 2, two steps
    assert str(tmp_path / "history") in completed.stdout


def test_a_folder_without_two_versions_is_a_clear_error(tmp_path: Path) -> None:
    write(tmp_path / "only.json", json.dumps({"spec/a_spec.rb": 1.0}))
    completed = run_command([sys.executable, "bench/queue_simulation.py", "--history",
                             str(tmp_path)], REPO_ROOT)
    assert completed.returncode == 2 and "nothing to replay" in completed.stderr

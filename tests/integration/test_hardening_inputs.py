"""Hostile and broken inputs through the real CLI: one line on stderr, the documented exit
code (2 input, 3 infrastructure), never a traceback with 1 (issue 17; docs/hardening.md).

Each test runs `python -m shardrun` as a process on real files.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from support.files import write
from support.hostile import full_directory, one_line_error, read_only_directory, shardrun

DEEP_JSON = "[" * 100_000 + "]" * 100_000
ESCAPE_NAME = "spec/evil\x1b]2;pwned\x07\x1b[2J_spec.rb"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An RSpec-shaped tree of eight small files (nothing runs them here)."""
    root = tmp_path / "project"
    for index in range(8):
        write(root / "spec" / f"f{index}_spec.rb", "describe 'x' do\n  it('a') { }\nend\n")
    return root


def history(root: Path, files: dict[str, list[float]]) -> Path:
    path = root / ".shardrun" / "timings.json"
    entries = {name: {"samples": samples} for name, samples in files.items()}
    return write(path, json.dumps({"version": 1, "files": entries}))


def shards_of(stdout: str) -> list[int]:
    """The file count of each `shard N:` line of `shardrun plan`."""
    return [int(line.split()[2]) for line in stdout.splitlines() if line.startswith("shard ")]


# --- JSON nested 100,000 deep: RecursionError before


def test_deep_json_import_is_one_line_exit_2(project: Path) -> None:
    write(project / "deep.json", DEEP_JSON)
    line = one_line_error(shardrun("timings", "import", "deep.json", cwd=project), 2)
    assert "deep.json" in line and "nested too deeply" in line


def test_deep_json_from_junit_is_one_line_exit_2(project: Path) -> None:
    write(project / "deep.json", DEEP_JSON)
    completed = shardrun("plan", "spec", "-w", "2", "--from-junit", "deep.json", cwd=project)
    assert "nested too deeply" in one_line_error(completed, 2)


def test_deep_json_history_is_moved_aside_exit_2(project: Path) -> None:
    write(project / ".shardrun" / "timings.json", DEEP_JSON)
    line = one_line_error(shardrun("plan", "spec", "-w", "2", cwd=project), 2)
    assert "corrupt" in line and "nested too deeply" in line
    assert [p.name.startswith("timings.json.corrupt-")
            for p in (project / ".shardrun").iterdir()] == [True]


# --- absurd and negative samples


def test_sample_of_1e308_in_an_import_is_refused(project: Path) -> None:
    write(project / "big.json", '{"spec/f0_spec.rb": 1e308, "spec/f1_spec.rb": 1e308}')
    line = one_line_error(shardrun("timings", "import", "big.json", cwd=project), 2)
    assert "1e+308" in line and "30 days" in line


def test_sample_of_1e308_in_the_history_is_not_an_overflow(project: Path) -> None:
    history(project, {"spec/f0_spec.rb": [1e308], "spec/f1_spec.rb": [1e308]})
    for command in (["plan", "spec", "-w", "2"], ["dashboard", "export"]):
        line = one_line_error(shardrun(*command, cwd=project), 2)
        assert "timing history is corrupt" in line
        history(project, {"spec/f0_spec.rb": [1e308], "spec/f1_spec.rb": [1e308]})


def test_negative_history_samples_do_not_put_every_file_on_shard_0(project: Path) -> None:
    history(project, {"spec/f0_spec.rb": [-100.0], "spec/f1_spec.rb": [-50.0]})
    completed = shardrun("plan", "spec", "-w", "4", cwd=project)
    assert completed.returncode == 0, completed.stderr
    assert shards_of(completed.stdout) == [2, 2, 2, 2]
    assert "untimed plan" in completed.stdout and "ratio -" in completed.stdout


def test_plan_without_information_spreads_files_and_says_so(tmp_path: Path) -> None:
    """Empty files and no history: every estimate 0 (issue 22)."""
    for index in range(10):
        write(tmp_path / "spec" / f"f{index}_spec.rb", "")
    completed = shardrun("plan", "spec", "-w", "4", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert shards_of(completed.stdout) == [3, 3, 2, 2]
    assert "untimed plan" in completed.stdout and "ratio 1.000" not in completed.stdout


# --- keys outside the project


def test_history_keys_outside_the_root_are_neither_kept_nor_shown(project: Path) -> None:
    outside = {"../../etc/passwd": [3.0], "/etc/passwd": [3.0], "spec/f0_spec.rb": [1.0]}
    history(project, outside)
    completed = shardrun("timings", "show", cwd=project)
    assert completed.returncode == 0, completed.stderr
    assert "passwd" not in completed.stdout and "spec/f0_spec.rb" in completed.stdout
    assert "2 entries" in completed.stderr  # said once, not silently


def test_import_keeps_no_key_outside_the_root(project: Path) -> None:
    write(project / "report.json", json.dumps(
        {"../../etc/passwd": 1.0, "/etc/passwd": 2.0, "spec/f0_spec.rb": 3.0}))
    completed = shardrun("timings", "import", "report.json", cwd=project)
    assert completed.returncode == 0, completed.stderr
    kept = json.loads((project / ".shardrun" / "timings.json").read_text())["files"]
    assert list(kept) == ["spec/f0_spec.rb"]
    assert "1 absolute paths of another machine dropped" in completed.stdout
    assert '1 paths leaving the project ("..") dropped' in completed.stdout


# --- encodings


def test_iso_8859_1_junit_is_read(project: Path) -> None:
    xml = ('<?xml version="1.0" encoding="ISO-8859-1"?>\n<testsuite name="caf\xe9">'
           '<testcase classname="caf\xe9" name="d\xe9j\xe0 vu" file="./spec/f0_spec.rb" '
           'time="2.5"/></testsuite>\n').encode("iso-8859-1")
    write(project / "latin1.xml", xml)
    completed = shardrun("timings", "import", "latin1.xml", cwd=project)
    assert completed.returncode == 0, completed.stderr
    kept = json.loads((project / ".shardrun" / "timings.json").read_text())["files"]
    assert kept["spec/f0_spec.rb"]["samples"] == [2.5]


# --- options and settings


def test_empty_command_is_an_error(project: Path) -> None:
    line = one_line_error(shardrun("run", "spec", "--command", "", cwd=project), 2)
    assert "--command" in line and "empty" in line


def test_empty_command_in_pyproject_is_an_error(project: Path) -> None:
    write(project / "pyproject.toml", '[tool.shardrun]\ncommand = "  "\n')
    assert "empty" in one_line_error(shardrun("run", "spec", cwd=project), 2)


def test_too_many_local_workers_are_refused_before_any_starts(project: Path) -> None:
    completed = shardrun("run", "spec", "-w", "100000", cwd=project)
    line = one_line_error(completed, 2)
    assert "--workers 100000" in line and "at most" in line
    assert not list((project / ".shardrun").glob("logs/*/worker-*.log"))


# --- terminal escapes in file names


def test_file_names_with_escape_sequences_reach_the_terminal_escaped(project: Path) -> None:
    write(project / ESCAPE_NAME, "")
    write(project / "report.json", json.dumps({ESCAPE_NAME: 500.0}))
    outputs = []
    for command in (["plan", "spec", "-w", "2"], ["plan", "spec", "--index", "0", "--total", "1"],
                    ["timings", "import", "report.json"], ["timings", "show"]):
        completed = shardrun(*command, cwd=project)
        assert completed.returncode == 0, completed.stderr
        outputs.append(completed.stdout)
    text = "".join(outputs)
    assert "\x1b" not in text and "\x07" not in text
    assert "spec/evil\\x1b]2;pwned\\x07\\x1b[2J_spec.rb" in text


# --- files that cannot be written (root ignores permissions: real read-only/full mounts)


def test_read_only_shardrun_dir_is_one_line(project: Path) -> None:
    with read_only_directory(project / ".shardrun"):
        completed = shardrun("run", "spec", "-w", "1", cwd=project)
    line = one_line_error(completed, 2)
    assert ".shardrun" in line and "cannot write" in line


def test_import_into_a_read_only_history_dir_is_exit_2(project: Path) -> None:
    write(project / "report.json", '{"spec/f0_spec.rb": 1.0}')
    with read_only_directory(project / ".shardrun"):
        completed = shardrun("timings", "import", "report.json", cwd=project)
    assert "timing history" in one_line_error(completed, 2)


def test_full_disk_for_the_history_is_exit_3(project: Path) -> None:
    write(project / "report.json", '{"spec/f0_spec.rb": 1.0}')
    with full_directory(project / "full") as full:
        completed = shardrun("timings", "import", "report.json", "--timings",
                             str(full / "timings.json"), cwd=project)
    line = one_line_error(completed, 3)
    assert "No space left" in line and "timing history" in line


@pytest.mark.parametrize("command", [["dashboard", "html", "--out"],
                                     ["dashboard", "export", "--out"]])
def test_full_device_for_the_dashboard_is_exit_3(project: Path, command: list[str]) -> None:
    os.symlink("/dev/full", project / "out.html")
    line = one_line_error(shardrun(*command, "out.html", cwd=project), 3)
    assert "out.html" in line and "No space left" in line
    assert (project / "out.html").is_symlink()


FAKE_RUNNER = """
import pathlib, sys
junit, files = sys.argv[1], sys.argv[2:]
cases = "".join(f'<testcase classname="x" name="{f}" file="{f}" time="0.01"/>' for f in files)
pathlib.Path(junit).write_text(f'<testsuite name="fake">{cases}</testsuite>')
with open("ran-by-the-configured-command.txt", "a") as evidence:
    evidence.write("\\n".join(files) + "\\n")
"""


def test_command_in_pyproject_is_what_run_runs(project: Path) -> None:
    """`[tool.shardrun] command` reached click as `command`, not `command_template`: ignored."""
    write(project / "fake_runner.py", FAKE_RUNNER)
    write(project / "pyproject.toml",
          f'[tool.shardrun]\ncommand = "{sys.executable} fake_runner.py {{junit}} {{files}}"\n')
    completed = shardrun("run", "spec", "-w", "1", cwd=project)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    ran = (project / "ran-by-the-configured-command.txt").read_text().split()
    assert sorted(ran) == [f"spec/f{index}_spec.rb" for index in range(8)]


def test_fifo_as_the_history_is_refused_not_read_forever(project: Path) -> None:
    os.mkfifo(project / "timings.fifo")
    completed = shardrun("plan", "spec", "-w", "2", "--timings", "timings.fifo", cwd=project)
    assert "not a regular file" in one_line_error(completed, 2)

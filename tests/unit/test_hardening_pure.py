"""The pure parts of the hardening work (issue 17, 22): printable names, import matching,
the history's merge and clamping, zero-second plans, settings names."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from support.files import write

from shardrun.cli.configuration import schema_of
from shardrun.cli.main import cli
from shardrun.config import settings_from
from shardrun.models import Plan
from shardrun.plan.history import History
from shardrun.plan.imports import describe, match_to_root
from shardrun.plan.planner import plan_shards
from shardrun.plan.timings import Durations, is_project_key
from shardrun.report.merge import merge
from shardrun.report.runlog import build_run_record
from shardrun.report.terminal import printable

# A run record of no batches, for the history's "runs" section.
RECORD = build_run_record("run", Plan(1, (), 0.0, 0.0, 0.0), [], merge([], []), 0.0)


def test_printable_escapes_every_control_character() -> None:
    shown = printable("spec/a\x1b[2J\x07\x9b\n\tb_spec.rb")
    assert shown == "spec/a\\x1b[2J\\x07\\x9b\\n\\tb_spec.rb"
    assert printable("spec/café_spec.rb") == "spec/café_spec.rb"


def test_project_keys_stay_inside_the_project() -> None:
    assert is_project_key("spec/a_spec.rb")
    for key in ("/etc/passwd", "../../etc/passwd", "spec/../../x", "C:/Users/a.rb", ""):
        assert not is_project_key(key), key


def test_import_match_keeps_slash_keys_that_exist_and_counts_the_rest(tmp_path: Path) -> None:
    write(tmp_path / "spec" / "a_spec.rb", "")
    durations = Durations(
        {"/spec/a_spec.rb": 2.0, "/Users/dev/app/spec/b_spec.rb": 1.0, "spec/gone_spec.rb": 1.0,
         "../x_spec.rb": 1.0},
        {"/spec/a_spec.rb[1:1]": 2.0}, "knapsack.json")
    match = match_to_root(durations, tmp_path)
    assert match.durations.files == {"spec/a_spec.rb": 2.0}
    assert match.durations.examples == {"spec/a_spec.rb[1:1]": 2.0}
    assert (match.recorded, match.found, match.slash_stripped, match.foreign_absolute,
            match.outside, match.missing) == (4, 1, 1, 1, 1, 1)


def test_import_from_the_wrong_directory_says_what_to_do(tmp_path: Path) -> None:
    files = {f"spec/{index}_spec.rb": 1.0 for index in range(75)}
    line = describe(match_to_root(Durations(files, {}, "r"), tmp_path), ".")
    assert line == "75 files recorded, 0 found under . (pass --root or run from the project's root)"


def test_history_merges_with_what_another_process_saved(tmp_path: Path) -> None:
    path = tmp_path / "timings.json"
    first, second = History.load(path), History.load(path)
    first.record(Durations({"spec/a_spec.rb": 1.0}, {}, "run 1"), at=1.0)
    first.add_run(replace(RECORD, run_id="run 1"))
    second.record(Durations({"spec/a_spec.rb": 3.0}, {}, "run 2"), at=2.0)
    second.add_run(replace(RECORD, run_id="run 2"))
    first.save()
    second.save()
    second.save()  # a second save adds nothing again
    merged = History.load(path)
    assert merged.files()["spec/a_spec.rb"].samples == (1.0, 3.0)
    assert [run.run_id for run in merged.runs()] == ["run 1", "run 2"]


def test_history_clamps_negative_samples_and_drops_outside_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "timings.json", json.dumps({"version": 1, "files": {
        "spec/a_spec.rb": {"samples": [-5.0, 2.0, -1.0]}, "/etc/passwd": {"samples": [1.0]}}}))
    history = History.load(path)
    assert history.files()["spec/a_spec.rb"].samples == (0.0, 2.0, 0.0)
    assert list(history.files()) == ["spec/a_spec.rb"] and history.ignored_keys == 1
    outside = Durations({"../../etc/passwd": 1.0, "spec/b_spec.rb": -2.0}, {}, "x")
    assert history.record(outside) == 1
    assert history.files()["spec/b_spec.rb"].samples == (0.0,)


def test_zero_second_units_are_dealt_out_by_count() -> None:
    plan = plan_shards({f"spec/{index}_spec.rb": 0.0 for index in range(10)}, 4)
    assert [len(shard.units) for shard in plan.shards] == [3, 3, 2, 2]


def test_command_setting_fills_the_command_template_parameter(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.shardrun]\ncommand = "bin/test {files}"\nworkers = 4\n')
    _, layered = settings_from(tmp_path, schema_of(cli), {})
    assert layered.default_map["run"] == {"command_template": "bin/test {files}", "workers": 4}

"""shardrun.plan.history: recording samples, the history file (save, load, corrupt, newer),
and estimates for units with and without history.

Durations are built inline here; parsing the files they come from is tested in
test_timings.py.
"""

from __future__ import annotations

import json
import os
import statistics
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.files import write

from shardrun.errors import InputError
from shardrun.plan.estimate import DEFAULT_SECONDS_PER_BYTE, FALLBACK_SECONDS
from shardrun.plan.history import DEFAULT_HISTORY_PATH, SAMPLES_KEPT, History
from shardrun.plan.timings import Durations

# ---------------------------------------------------------------- history: record, estimate


def test_missing_history_is_empty(tmp_path: Path) -> None:
    history = History.load(tmp_path / "timings.json")
    assert history.files() == {}
    assert history.estimate("spec/a_spec.rb") is None
    assert not (tmp_path / "timings.json").exists()
    assert Path(".shardrun/timings.json") == DEFAULT_HISTORY_PATH


def test_record_keeps_the_last_samples_and_estimates_the_median(tmp_path: Path) -> None:
    history = History.load(tmp_path / "timings.json")
    for run in range(SAMPLES_KEPT + 3):
        seconds = 100.0 if run == SAMPLES_KEPT else 2.0 + run / 100  # one outlier run
        history.record(Durations({"./spec/a_spec.rb": seconds}, {}, "run"), at=1000.0 + run)
    stats = history.files()["spec/a_spec.rb"]
    assert len(stats.samples) == SAMPLES_KEPT
    assert stats.samples[-1] == pytest.approx(2.12)
    assert stats.samples[0] == pytest.approx(2.03)
    assert stats.updated_at == 1000.0 + SAMPLES_KEPT + 2
    assert 2.0 < stats.estimate < 2.15  # the 100 s outlier does not move it
    assert history.estimate("./spec/a_spec.rb") == stats.estimate


def test_record_examples_and_estimate_them(tmp_path: Path) -> None:
    history = History(tmp_path / "timings.json")
    history.record(Durations({"tests/a.py": 3.0}, {"tests/a.py::T::t": 1.0}, "x"))
    history.record(Durations({"tests/a.py": 5.0}, {"tests/a.py::T::t": 2.0}, "y"))
    assert history.estimate("tests/a.py") == 4.0
    assert history.estimate("tests/a.py::T::t") == 1.5
    assert history.examples()["tests/a.py::T::t"].samples == (1.0, 2.0)
    assert history.estimate("tests/a.py::T::other") is None
    assert history.files()["tests/a.py"].updated_at is not None


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=30))
def test_estimate_stays_within_the_kept_samples(samples: list[float]) -> None:
    history = History(Path("unused.json"))
    for seconds in samples:
        history.record(Durations({"a.py": seconds}, {}, "h"), at=0.0)
    kept = samples[-SAMPLES_KEPT:]
    estimate = history.estimate("a.py")
    assert estimate is not None
    assert min(kept) <= estimate <= max(kept)


# ---------------------------------------------------------------- history: save and load


def test_save_round_trips_the_documented_schema_and_extra_sections(tmp_path: Path) -> None:
    path = tmp_path / ".shardrun" / "timings.json"
    write(
        path,
        json.dumps(
            {
                "version": 1,
                "files": {"spec/a_spec.rb": {"samples": [1, 3, 2], "estimate": 99}},
                "examples": {},
                "runs": [{"id": "r1", "makespan": 3.5}],
                "boot": {"rspec": 1.25},
            }
        ),
    )
    history = History.load(path)
    assert history.estimate("spec/a_spec.rb") == 2.0  # recomputed from the samples
    assert history.extra == {"runs": [{"id": "r1", "makespan": 3.5}], "boot": {"rspec": 1.25}}
    history.record(Durations({"spec/a_spec.rb": 4.0}, {"spec/a_spec.rb[1:1]": 4.0}, "x"), at=7.0)
    history.save()
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert data["files"]["spec/a_spec.rb"] == {
        "samples": [1.0, 3.0, 2.0, 4.0],
        "estimate": 2.5,
        "updated_at": 7.0,
    }
    assert data["examples"]["spec/a_spec.rb[1:1]"]["samples"] == [4.0]
    assert data["runs"] == [{"id": "r1", "makespan": 3.5}]
    assert data["boot"] == {"rspec": 1.25}
    assert History.load(path).files() == history.files()


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "timings.json"
    history = History(path)
    history.record(Durations({"spec/a_spec.rb": 1.0}, {}, "x"))
    history.save()
    path.chmod(0o640)
    history.record(Durations({"spec/a_spec.rb": 2.0}, {}, "x"))
    history.save()
    # the lock file beside it stays (history.save): removing it would race
    assert sorted(p.name for p in path.parent.iterdir()) == ["timings.json", "timings.json.lock"]
    assert path.stat().st_mode & 0o777 == 0o640  # the replacement keeps the file's mode
    assert History.load(path).files()["spec/a_spec.rb"].samples == (1.0, 2.0)


def test_save_with_root_drops_entries_of_deleted_files(tmp_path: Path) -> None:
    root = tmp_path / "project"
    write(root / "spec" / "kept_spec.rb", "")
    write(root / "tests" / "test_kept.py", "")
    history = History(root / ".shardrun" / "timings.json")
    history.record(
        Durations(
            {"spec/kept_spec.rb": 1.0, "spec/deleted_spec.rb": 2.0, "tests/test_kept.py": 3.0},
            {
                "spec/kept_spec.rb[1:1]": 1.0,
                "spec/deleted_spec.rb[1:1]": 2.0,
                "tests/test_kept.py::test_a": 3.0,
                "tests/test_gone.py::test_b": 4.0,
            },
            "x",
        )
    )
    history.save(root)
    data = json.loads(history.path.read_text())
    assert set(data["files"]) == {"spec/kept_spec.rb", "tests/test_kept.py"}
    assert set(data["examples"]) == {"spec/kept_spec.rb[1:1]", "tests/test_kept.py::test_a"}
    assert history.estimate("spec/deleted_spec.rb") is None


def test_save_to_an_unwritable_place_is_an_input_error(tmp_path: Path) -> None:
    blocker = write(tmp_path / "not_a_dir", "")
    history = History(blocker / "timings.json")
    with pytest.raises(InputError, match="cannot write the timing history"):
        history.save()


# ---------------------------------------------------------------- history: corrupt, newer


def corrupt_copies(directory: Path) -> list[Path]:
    return sorted(directory.glob("timings.json.corrupt-*"))


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "",
        '["a", "list"]',
        '{"files": {}}',
        '{"version": "1", "files": {}}',
        '{"version": 0, "files": {}}',
        '{"version": 1, "files": []}',
        '{"version": 1, "files": {"a.py": {"estimate": 1}}}',
        '{"version": 1, "files": {"a.py": {"samples": []}}}',
        '{"version": 1, "files": {"a.py": {"samples": ["slow"]}}}',
        '{"version": 1, "examples": {"a.py::t": 3}}',
    ],
)
def test_corrupt_history_is_moved_aside_exactly_once(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "timings.json", content)
    with pytest.raises(InputError) as raised:
        History.load(path)
    copies = corrupt_copies(tmp_path)
    assert len(copies) == 1
    assert copies[0].read_text() == content
    assert not path.exists()
    message = str(raised.value)
    assert str(path) in message
    assert copies[0].name in message
    assert "new history" in message
    assert History.load(path).files() == {}  # the next run starts afresh
    assert corrupt_copies(tmp_path) == copies


def test_corrupt_history_never_overwrites_an_earlier_copy(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    earlier = []
    for seconds in range(3):  # cover the current second and the next two
        stamp = (now + timedelta(seconds=seconds)).strftime("%Y%m%dT%H%M%SZ")
        earlier.append(write(tmp_path / f"timings.json.corrupt-{stamp}", f"old {seconds}"))
    write(tmp_path / "timings.json", "{broken")
    with pytest.raises(InputError):
        History.load(tmp_path / "timings.json")
    for index, old in enumerate(earlier):
        assert old.read_text() == f"old {index}"
    new = [p for p in corrupt_copies(tmp_path) if p not in earlier]
    assert len(new) == 1
    assert new[0].name.endswith("-2")
    assert new[0].read_text() == "{broken"


def test_history_from_a_newer_shardrun_is_left_untouched(tmp_path: Path) -> None:
    content = '{"version": 2, "files": {"a.py": {"whatever": true}}}'
    path = write(tmp_path / "timings.json", content)
    before = path.stat().st_mtime_ns
    with pytest.raises(InputError, match="newer shardrun; upgrade shardrun or pass --timings"):
        History.load(path)
    assert path.read_text() == content
    assert path.stat().st_mtime_ns == before
    assert corrupt_copies(tmp_path) == []


def test_unreadable_history_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "timings.json").mkdir()
    with pytest.raises(InputError, match="cannot read the timing history"):
        History.load(tmp_path / "timings.json")


# ---------------------------------------------------------------- unknown units


def project(tmp_path: Path, sizes: dict[str, int]) -> Path:
    for name, size in sizes.items():
        write(tmp_path / name, "x" * size)
    return tmp_path


def test_known_units_use_their_estimate_and_keys_come_back_as_given(tmp_path: Path) -> None:
    root = project(tmp_path, {"spec/a_spec.rb": 100})
    history = History(root / "t.json")
    history.record(Durations({"spec/a_spec.rb": 3.0}, {"spec/a_spec.rb[1:1]": 1.0}, "x"))
    assert history.estimates(["./spec/a_spec.rb", "spec/a_spec.rb[1:1]"], root) == {
        "./spec/a_spec.rb": 3.0,
        "spec/a_spec.rb[1:1]": 1.0,
    }


def test_unknown_file_is_priced_by_size_times_the_median_rate(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "spec/a_spec.rb": 1000,
            "spec/b_spec.rb": 2000,
            "spec/c_spec.rb": 500,
            "spec/new_spec.rb": 4000,
        },
    )
    history = History(root / "t.json")
    # rates: 0.001, 0.002 (median), 0.02 (a fixture-heavy outlier); gone.rb has no file
    history.record(
        Durations(
            {
                "spec/a_spec.rb": 1.0,
                "spec/b_spec.rb": 4.0,
                "spec/c_spec.rb": 10.0,
                "spec/gone_spec.rb": 1000.0,
            },
            {},
            "x",
        )
    )
    estimates = history.estimates(["spec/new_spec.rb", "spec/missing_spec.rb"], root)
    assert estimates["spec/new_spec.rb"] == pytest.approx(4000 * 0.002)
    # not on disk: the median of known file estimates
    assert estimates["spec/missing_spec.rb"] == pytest.approx(7.0)


def test_without_history_size_drives_the_plan(tmp_path: Path) -> None:
    root = project(tmp_path, {"tests/test_small.py": 1000, "tests/test_big.py": 30000})
    estimates = History(root / "t.json").estimates(
        ["tests/test_small.py", "tests/test_big.py", "tests/test_absent.py"], root
    )
    assert estimates == {
        "tests/test_small.py": pytest.approx(1000 * DEFAULT_SECONDS_PER_BYTE),
        "tests/test_big.py": pytest.approx(30000 * DEFAULT_SECONDS_PER_BYTE),
        "tests/test_absent.py": FALLBACK_SECONDS,
    }


def test_unknown_examples(tmp_path: Path) -> None:
    root = project(tmp_path, {"spec/a_spec.rb": 10, "spec/b_spec.rb": 10, "spec/new_spec.rb": 3000})
    history = History(root / "t.json")
    history.record(
        Durations(
            {"spec/a_spec.rb": 9.0, "spec/b_spec.rb": 8.0},
            {"spec/a_spec.rb[1:1]": 1.0, "spec/a_spec.rb[1:2]": 2.0, "spec/a_spec.rb[1:3]": 6.0},
            "x",
        )
    )
    units = [
        "spec/a_spec.rb[1:4]",  # known file with known examples: their median
        "spec/b_spec.rb[1:1]",  # known file, no known examples: file / requested examples
        "spec/b_spec.rb[1:2]",
        "spec/new_spec.rb[1:1]",  # unknown file: its size-based estimate / requested examples
        "spec/new_spec.rb[1:2]",
        "spec/new_spec.rb[1:3]",
    ]
    estimates = history.estimates(units, root)
    assert estimates["spec/a_spec.rb[1:4]"] == 2.0
    assert estimates["spec/b_spec.rb[1:1]"] == 4.0
    assert estimates["spec/b_spec.rb[1:2]"] == 4.0
    rate = statistics.median([9.0 / 10, 8.0 / 10])
    assert estimates["spec/new_spec.rb[1:1]"] == pytest.approx(3000 * rate / 3)


def test_estimates_of_nothing_is_empty(tmp_path: Path) -> None:
    assert History(tmp_path / "t.json").estimates([], tmp_path) == {}


def test_history_path_defaults_relative_to_the_working_directory() -> None:
    assert History().path == DEFAULT_HISTORY_PATH
    assert not os.path.isabs(DEFAULT_HISTORY_PATH)


# ---------------------------------------------------------------- a runner's set-up


def with_setup(carried: float) -> Durations:
    """Two files of ten 0.2 s tests, the first test of each carrying a runner's set-up."""
    examples = {f"tests/{name}.py::t{index}": 0.2 for name in "ab" for index in range(10)}
    examples["tests/a.py::t0"] += carried
    examples["tests/b.py::t0"] += carried
    files = {"tests/a.py": 2.0 + carried, "tests/b.py": 2.0 + carried}
    return Durations(files, examples, "pytest-split")


def test_set_up_carried_by_first_tests_is_kept_apart_from_their_files(tmp_path: Path) -> None:
    history = History(tmp_path / "timings.json")
    history.record(with_setup(60.0))
    assert history.setup_seconds() == pytest.approx(60.0)
    assert history.estimate("tests/a.py") == pytest.approx(2.0)
    assert history.estimate("tests/a.py::t0") == pytest.approx(0.2)


def test_the_set_up_is_saved_and_merged_with_a_concurrent_run(tmp_path: Path) -> None:
    path = tmp_path / "timings.json"
    first, second = History(path), History(path)
    first.record(with_setup(40.0))
    second.record(with_setup(60.0))
    first.save()
    second.save()  # merges onto what `first` wrote: both samples kept
    reloaded = History.load(path)
    assert json.loads(path.read_text())["setup"]["samples"] == [40.0, 60.0]
    assert reloaded.setup_seconds() == pytest.approx(50.0)


def test_a_history_without_set_up_or_with_a_foreign_section_has_none(tmp_path: Path) -> None:
    path = tmp_path / "timings.json"
    path.write_text(json.dumps({"version": 1, "files": {}, "examples": {},
                                "setup": {"samples": ["x", None]}}))
    assert History.load(path).setup_seconds() is None
    assert History(tmp_path / "none.json").setup_seconds() is None


def test_runs_that_loaded_the_same_file_all_reach_it(tmp_path: Path) -> None:
    """A save skips merging only when the file holds the bytes this history read: a
    concurrent run that saved in between is merged, not overwritten."""
    path = tmp_path / "timings.json"
    seed = History(path)
    seed.record(Durations({"spec/a_spec.rb": 1.0}, {}, "x"), at=1.0)
    seed.save()
    first, second = History.load(path), History.load(path)
    first.record(Durations({"spec/a_spec.rb": 2.0}, {}, "x"), at=2.0)
    second.record(Durations({"spec/a_spec.rb": 3.0}, {}, "x"), at=3.0)
    first.save()
    second.save()
    second.record(Durations({"spec/a_spec.rb": 4.0}, {}, "x"), at=4.0)
    second.save()  # unchanged since its own save: nothing to merge, nothing lost
    assert History.load(path).files()["spec/a_spec.rb"].samples == (1.0, 2.0, 3.0, 4.0)


def test_each_unit_and_run_record_is_one_line_of_the_file(tmp_path: Path) -> None:
    """Teams commit the history: a run that timed one unit changes one line of it."""
    path = tmp_path / "timings.json"
    history = History(path)
    history.record(Durations({"spec/a_spec.rb": 1.0, "spec/b_spec.rb": 2.0},
                             {"spec/a_spec.rb[1:1]": 1.0}, "x"), at=1.0)
    history.extra["runs"] = [{"id": "r1", "batches": [{"units": ["spec/a_spec.rb"]}]}]
    history.save()
    before = path.read_text().splitlines()
    history.record(Durations({"spec/b_spec.rb": 2.5}, {}, "x"), at=2.0)
    history.save()
    after = path.read_text().splitlines()
    changed = [line for line in after if line not in before]
    assert len(after) == len(before)
    assert len(changed) == 1 and changed[0].lstrip().startswith('"spec/b_spec.rb": {')
    assert sum('"r1"' in line for line in after) == 1
    assert json.loads(path.read_text())["runs"][0]["batches"][0]["units"] == ["spec/a_spec.rb"]

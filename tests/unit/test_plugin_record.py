"""What `pytest --shardrun-record` teaches the history (shardrun/pytest_plugin/record.py)."""

from __future__ import annotations

from shardrun.pytest_plugin.record import durations_of


def test_tests_are_examples_and_whole_files_are_files() -> None:
    durations = durations_of({
        "tests/test_a.py::test_one": 1.5,
        "tests/test_a.py::TestX::test_two[1-2]": 0.5,
        "tests/test_b.py::test_three": 2.0,
        "tests/test_c.py::test_four": 4.0,
    }, partial_files={"tests/test_c.py"})
    assert durations.files == {"tests/test_a.py": 2.0, "tests/test_b.py": 2.0}
    assert durations.examples["tests/test_c.py::test_four"] == 4.0
    assert len(durations.examples) == 4

"""`pytest --shardrun-record`: a plain pytest run teaches shardrun's timing history.

What pytest-split's `--store-durations` does, in shardrun's history, so the next
`pytest --shardrun` (or `shardrun run`) is planned from it. Each test counts its setup,
call and teardown, as in the merged report of a shardrun run; a test that did not get to
its teardown (the session was interrupted) teaches nothing. A file's sample is the sum of
its tests, and is left out when some of its tests were deselected (-k, -m, a group): a
part of a file is not what the whole takes. Under pytest-xdist only the controlling
process records: every worker's reports reach it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shardrun.errors import ShardrunError
from shardrun.plan.history import DEFAULT_HISTORY_PATH, History
from shardrun.plan.timings import Durations, file_of_unit


def timings_path(config: pytest.Config) -> Path:
    """--shardrun-timings as given, else the history `shardrun run` keeps in the rootdir."""
    given = config.option.shardrun_timings
    return Path(given) if given else config.rootpath / DEFAULT_HISTORY_PATH


@dataclass
class DurationRecorder:
    """The plugin object of one session: sums each test's phases, saves at the end."""

    root: Path
    timings: Path
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    finished: set[str] = field(default_factory=set)
    partial_files: set[str] = field(default_factory=set)
    line: str = ""

    @classmethod
    def from_config(cls, config: pytest.Config) -> DurationRecorder:
        return cls(config.rootpath, timings_path(config))

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.partial_files.update(file_of_unit(item.nodeid) for item in items)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid] += float(report.duration or 0.0)
        if report.when == "teardown":
            self.finished.add(report.nodeid)

    def pytest_sessionfinish(self) -> None:
        durations = durations_of({test: self.seconds[test] for test in self.finished},
                                 self.partial_files)
        if not durations.examples:
            self.line = "shardrun: no finished test to record"
            return
        try:
            history = History.load(self.timings)
            history.record(durations)
            history.save(self.root)
        except ShardrunError as error:
            self.line = f"shardrun: warning: durations not recorded: {error}"
            return
        self.line = (f"shardrun: recorded {len(durations.examples)} tests of "
                     f"{len(durations.files)} whole files into {self.timings}")

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.line:
            terminalreporter.write_line(self.line)


def durations_of(seconds: dict[str, float], partial_files: set[str]) -> Durations:
    """Per test and per whole file (a file some of whose tests did not run is left out)."""
    files: dict[str, float] = defaultdict(float)
    for test, value in seconds.items():
        files[file_of_unit(test)] += value
    whole = {file: value for file, value in files.items() if file not in partial_files}
    return Durations(whole, dict(seconds), "pytest --shardrun-record")

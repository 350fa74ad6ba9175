"""Data that crosses a module or process boundary: frozen dataclasses with to_dict/from_dict.

Only JSON-able primitives go over the wire (DESIGN.md rule 3), so every class here
round-trips through `to_dict` / `from_dict` and nothing else is sent to Redis.

A *unit* is the thing the planner places and a runner runs: a test file path relative to
the project root in POSIX form without a leading "./" (``spec/models/user_spec.rb``,
``tests/test_api.py``), or an example id inside such a file (``spec/a_spec.rb[1:2]``,
``tests/test_api.py::TestX::test_y``).

A *test* is what the run accounts for (DESIGN.md rule 11): one example or test function,
named by the id its framework selects it with (the rspec example id, the pytest node id
whose path is the module that collected it). A unit holds one or more tests.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from enum import Enum
from typing import Any, TypeAlias, TypeVar

PLAN_FORMAT_VERSION = 1
RUN_META_VERSION = 1

# A unit: what the planner places and a runner is sent (a file, or an id inside one).
UnitId: TypeAlias = str
# A test: what the run accounts for, by the id its framework selects it with.
TestId: TypeAlias = str


class Mode(str, Enum):
    """How a run hands out its work: one batch per static shard, or batches that workers
    take from a queue as they free up (docs/queue.md)."""

    QUEUE = "queue"
    STATIC = "static"

    def __str__(self) -> str:  # "queue" in messages, not "Mode.QUEUE"
        return self.value


_Data = TypeVar("_Data")


def _from_dict(cls: type[_Data], data: dict[str, Any]) -> _Data:
    """Build `cls` from a dict, ignoring unknown keys so newer peers can add fields."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Shard:
    """One worker's share of a static plan."""

    index: int
    units: tuple[str, ...]
    predicted_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "units": list(self.units),
            "predicted_seconds": round(self.predicted_seconds, 6),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shard:
        return cls(int(data["index"]), tuple(data["units"]), float(data["predicted_seconds"]))


@dataclass(frozen=True)
class Plan:
    """N shards plus what the user needs to judge them.

    `lower_bound` is max(longest unit, total / N): no plan of these units can finish
    sooner. `bounding_unit` names the unit when it alone is longer than total / N, i.e.
    when only splitting that unit (not re-planning) would help.
    """

    workers: int
    shards: tuple[Shard, ...]
    predicted_makespan: float
    lower_bound: float
    total_seconds: float
    bounding_unit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The documented `shardrun plan --json` object (docs/plan.md)."""
        return {
            "version": PLAN_FORMAT_VERSION,
            "workers": self.workers,
            "shards": [shard.to_dict() for shard in self.shards],
            "predicted_makespan": round(self.predicted_makespan, 6),
            "lower_bound": round(self.lower_bound, 6),
            "total_seconds": round(self.total_seconds, 6),
            "bounding_unit": self.bounding_unit,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(
            workers=int(data["workers"]),
            shards=tuple(Shard.from_dict(s) for s in data["shards"]),
            predicted_makespan=float(data["predicted_makespan"]),
            lower_bound=float(data["lower_bound"]),
            total_seconds=float(data.get("total_seconds", 0.0)),
            bounding_unit=data.get("bounding_unit"),
        )


def _live_level(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 2:
        raise ValueError("live is not 0, 1 or 2")
    return value


@dataclass(frozen=True)
class RunMeta:
    """What a run publishes about itself under its Redis key "meta": one JSON shape for
    `shardrun run` and `shardrun ci`. Workers read `spec` (signed, runspec.py); a CI node
    taking over the lead reads the rest, so it can finish a run another node planned."""

    run_id: str
    framework: str
    mode: Mode
    workers: int  # the workers the batches were sized for (a CI build's, not one node's)
    units: tuple[UnitId, ...]  # every unit planned, once: what the report accounts for
    started_at: float  # epoch seconds: the run's wall time counts from here
    predicted_makespan: float = 0.0
    lower_bound: float = 0.0
    bounding_unit: UnitId | None = None
    spec: dict[str, Any] | None = None  # runspec.published(...): the spec, maybe signed
    live: int = 0  # workers stream finished tests: 1 results (--verbose), 2 output (-vv)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(version=RUN_META_VERSION, mode=self.mode.value, units=list(self.units))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunMeta:
        """Raises ValueError (or KeyError, TypeError) on a malformed meta: it comes from
        Redis, which the caller treats as untrusted."""
        spec = data.get("spec")
        if spec is not None and not isinstance(spec, dict):
            raise ValueError("spec is not an object")
        units = data.get("units", ())
        if not isinstance(units, list | tuple) or not all(isinstance(u, str) for u in units):
            raise ValueError("units is not a list of strings")
        bounding = data.get("bounding_unit")
        return cls(
            run_id=str(data["run_id"]), framework=str(data["framework"]),
            mode=Mode(data.get("mode", Mode.QUEUE.value)), workers=int(data["workers"]),
            units=tuple(units), started_at=float(data["started_at"]),
            predicted_makespan=float(data.get("predicted_makespan", 0.0)),
            lower_bound=float(data.get("lower_bound", 0.0)),
            bounding_unit=str(bounding) if bounding is not None else None, spec=spec,
            live=_live_level(data.get("live", 0)),
        )

    def plan(self) -> Plan:
        """The plan's figures for the run record, when the plan itself was made by an
        earlier leader: its units as one part, the predictions as published."""
        return Plan(self.workers, (Shard(0, self.units, 0.0),), self.predicted_makespan,
                    self.lower_bound, 0.0, self.bounding_unit)


@dataclass(frozen=True)
class RunSpec:
    """How a run's batches are executed: what a worker runs, as opposed to which tests.

    Never taken from a batch's payload (DESIGN.md rule 12): whoever can write to Redis
    could then run commands on every worker. A worker gets it from its own side (its
    command line, or the environment of the `shardrun run`/`ci` that started it) or from
    the run's published spec when that is signed with the shared secret (runspec.py).
    """

    framework: str  # "rspec" | "pytest" | "command"
    command_template: str | None = None
    runner_args: tuple[str, ...] = ()
    # How the worker's runner runs batches (shardrun/work/warm.py): "fork" a child of a booted
    # runner per batch, "reuse" one runner batch after batch, "fresh" a new process each.
    runners: str = "fork"
    # After a batch, a reused runner above this many MB of RSS is stopped; the next batch
    # boots a fresh one (--runner-max-rss). None: never.
    runner_max_rss_mb: int | None = None
    # pytest: the interpreter given with --python. None: each worker runs the project's
    # interpreter as it finds it on its own machine (runners/interpreter.py).
    python: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["runner_args"] = list(self.runner_args)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        spec = _from_dict(cls, data)
        return replace(spec, runner_args=tuple(str(arg) for arg in spec.runner_args))


@dataclass(frozen=True)
class Batch:
    """A queue job: which units to run, for how long at most. Not a `Shard` (one worker's
    share of a static plan): a queue-mode run has many more batches than workers, and a
    retry is a batch of its own. Data only: how to run them is the RunSpec's, which no
    payload carries."""

    run_id: str
    batch_id: int
    units: tuple[str, ...]
    predicted_seconds: float
    timeout_seconds: float
    attempt: int = 1
    # A retry prefers another worker than the one it failed on (flaky vs broken machine).
    avoid_worker: str | None = None
    # The coordinator's `git rev-parse HEAD`; a worker on another commit refuses the batch.
    commit: str | None = None
    # The worker renews its lease this often x 3; a batch whose lease lapses is requeued.
    lease_seconds: float = 10.0
    # Tests of this batch never started in an earlier attempt (their runner stopped
    # first), or failed in a reused runner: they run in a runner started for them.
    fresh_runner: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["units"] = list(self.units)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Batch:
        job = _from_dict(cls, data)
        return replace(job, units=tuple(job.units))


@dataclass(frozen=True)
class ProcessOutcome:
    """How a test process ended and what it cost (the whole process tree)."""

    exit_code: int | None
    signal: int | None
    timed_out: bool
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    output_tail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessOutcome:
        return _from_dict(cls, data)


# Outcomes of a test, and which of them fail the run.
OUTCOMES = ("passed", "failed", "error", "skipped")
FAILED_OUTCOMES = ("failed", "error")


@dataclass(frozen=True)
class TestResult:
    """One test in one attempt: what its runner reported as it finished, or what the
    worker's reconciliation (accounting.py) decided when the runner could not report.

    `origin` says which: "" for the framework's own result; "interrupted" for a test that
    started and never finished (its runner was killed, exited or crashed); "never_ran" for
    a test that did not start even on its second try.
    """

    __test__ = False  # not a pytest test class, whatever its name

    id: str
    unit: str  # the batch unit it ran under; "" when none of the batch's units holds it
    file: str
    outcome: str  # one of OUTCOMES
    seconds: float = 0.0
    line: int | None = None
    name: str = ""
    classname: str = ""
    message: str = ""
    details: str = ""
    result_type: str = ""
    stdout: str = ""
    stderr: str = ""
    origin: str = ""
    # Of `seconds`, the set-up of module- and class-scoped fixtures this test was the
    # first to use (pytest): its file's tests share it, and each piece of a split file
    # pays it again.
    shared_seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.outcome in FAILED_OUTCOMES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestResult:
        result = _from_dict(cls, data)
        if result.shared_seconds and _finite_seconds(result.shared_seconds) is None:
            return replace(result, shared_seconds=0.0)  # it prices files: never trusted
        return result


@dataclass(frozen=True)
class BatchResult:
    """What a worker sends back for one batch: each test's result, what never started, and
    how the runner process ended.

    Built on the worker from the runner's per-test events (accounting.py), so the
    coordinator parses no report: it merges tests.
    """

    run_id: str
    batch_id: int
    attempt: int
    worker: str  # "hostname:pid"
    worker_index: int
    units: tuple[str, ...]
    outcome: ProcessOutcome
    started_at: float
    finished_at: float
    predicted_seconds: float = 0.0
    tests: tuple[TestResult, ...] = ()
    # Units (or test ids inside them) that never started; the coordinator sends them out
    # once more (Batch.fresh_runner), and reports them as errors if they never run.
    unrun: tuple[str, ...] = ()
    unrun_reason: str = ""
    empty_units: tuple[str, ...] = ()  # ran to a clean end with zero tests
    notes: tuple[str, ...] = ()  # what the runner said about the batch, e.g. overrides
    error: str | None = None  # set when the worker could not even start the runner
    refused: bool = False  # the worker declined the batch (other commit); not a test outcome
    warm: bool = False  # ran in a warm runner an earlier batch started: it paid no boot
    # Ran in the very process earlier batches ran in (`--runners reuse`), which may hold
    # state they left: a failure here that passes in a fresh process is pollution.
    reused_runner: bool = False
    # Per file, the wall time of its top-level groups in this batch, where the runner
    # measures one (RSpec): its tests' seconds plus the before(:context) hooks they share.
    file_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("units", "unrun", "empty_units", "notes"):
            data[name] = list(getattr(self, name))
        data["outcome"] = self.outcome.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchResult:
        result = _from_dict(cls, data)
        return replace(
            result,
            units=tuple(result.units),
            outcome=ProcessOutcome.from_dict(data["outcome"]),
            tests=tuple(TestResult.from_dict(test) for test in data.get("tests", ())),
            unrun=tuple(result.unrun),
            empty_units=tuple(result.empty_units),
            notes=tuple(result.notes),
            file_seconds=_file_seconds(data.get("file_seconds")),
        )


def _file_seconds(value: Any) -> dict[str, float]:
    """A worker's per-file seconds, keeping only well-formed entries: they price files in
    the history, and a bad one must not end the run or poison the plan."""
    if not isinstance(value, dict):
        return {}
    kept = {}
    for file, seconds in value.items():
        finite = _finite_seconds(seconds)
        if isinstance(file, str) and finite is not None:
            kept[file] = finite
    return kept


def _finite_seconds(value: Any) -> float | None:
    """`value` as seconds when it is a finite, non-negative number, else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and 0.0 <= value < math.inf:
        return float(value)
    return None

"""What a run is asked to do, and the batches it makes of the plan.

`RunOptions` holds the command's settings, `RunOutcome` what a run ended with. The rest
turns a planned suite into what the session enqueues: the batches (the static plan's
shards, or queue mode's smaller batches with slow files split into their examples), the
run spec workers execute them with, the ledger that tracks them, and the prewarm local
workers boot before their first batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from shardrun.checkout import git_head
from shardrun.config import DEFAULT_LEASE_SECONDS, REDIS_TIMEOUT_SECONDS, available_cpus
from shardrun.models import Batch, Mode, Plan, RunSpec
from shardrun.plan.batching import (
    DEFAULT_BOOT_SECONDS,
    DEFAULT_WARM_BATCH_SECONDS,
    DispatchInputs,
    after_first_round,
    first_round,
    queue_plan,
)
from shardrun.plan.discovery import Suite
from shardrun.plan.gather import PlannedSuite, PlanRequest
from shardrun.plan.history import History
from shardrun.plan.splitting import list_examples
from shardrun.report.merge import RunReport
from shardrun.report.records import RunRecord
from shardrun.report.runlog import batch_cost, boot_seconds, warm_batch_seconds
from shardrun.run.ledger import Ledger
from shardrun.run.project_python import project_interpreter
from shardrun.runners import Runner, get_runner
from shardrun.runners.interpreter import Interpreter
from shardrun.work.process import default_timeout
from shardrun.work.warm import Prewarm, Runners


@dataclass(frozen=True)
class RunOptions:
    """A run's settings. `request.workers` is how many workers the batches are sized for;
    `local_workers` how many worker processes this machine starts (None: as many). They
    differ on a CI node: the build's workers against this node's (ci_node.build_options)."""

    request: PlanRequest
    redis_url: str | None = None
    junit_out: Path | None = None
    runner_args: tuple[str, ...] = ()
    command_template: str | None = None
    timeout_seconds: float | None = None
    mode: Mode = Mode.QUEUE
    retries: int = 1
    retry_budget: int | None = None  # failed tests retried at most; None: ledger's default
    max_attempts: int = 3
    fail_fast: int | None = None
    redis_timeout: float = REDIS_TIMEOUT_SECONDS
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    runners: str = Runners.FORK.value  # how runners run batches (shardrun/work/warm.py)
    runner_max_rss_mb: int | None = None  # restart a warm runner above this RSS
    live: int = 0  # workers stream finished tests: 1 results (--verbose), 2 output (-vv)
    local_workers: int | None = None
    python: str | None = None  # pytest's interpreter (--python); None: the project's

    @property
    def worker_processes(self) -> int:
        """Worker processes to start on this machine (0: a CI node that only coordinates)."""
        return self.request.workers if self.local_workers is None else self.local_workers


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    planned: PlannedSuite
    dispatched: Plan  # the shards or batches actually enqueued (after example splitting)
    report: RunReport
    exit_code: int
    junit_path: Path | None
    infrastructure_error: str | None = None
    # From the command's planning (CI: the leader's start) to the merged report: what the
    # run cost in time, as against report.seconds, the tests' own seconds summed over every
    # worker.
    wall_seconds: float | None = None


def planned_line(
    planned: PlannedSuite, options: RunOptions, interpreter: Interpreter | None = None
) -> str:
    """What is about to run: the files, the framework, the workers, what it planned from,
    and for pytest which Python runs the tests."""
    files = len(planned.suite.files)
    timings = ("timings from earlier runs" if planned.timed
               else "no timings yet, so file sizes")
    setup = planned.history.setup_seconds()
    if setup is not None and planned.timed:
        timings += f" (a runner's set-up of {setup:.1f} s kept apart from its first tests)"
    workers = options.worker_processes
    python = f" under {interpreter.describe()}" if interpreter else ""
    return (f"{files} {planned.suite.framework} file{'s' if files != 1 else ''} on "
            f"{workers} local worker{'s' if workers != 1 else ''}"
            f" ({options.mode} mode, --runners {options.runners}){python}; planned from "
            f"{timings}" + oversubscribed(workers, available_cpus()))


def checked_interpreter(suite: Suite, options: RunOptions) -> Interpreter | None:
    """For a pytest run, the project's interpreter, checked before any worker uses it."""
    if suite.framework != "pytest" or options.command_template:
        return None
    return project_interpreter(options.python, options.request.root)


def oversubscribed(workers: int, cpus: int) -> str:
    """What the opening line adds when local workers outnumber the CPUs: on 2 cores, 8
    pytest workers of CPU-bound tests lost to 2 (bench/peers, N = 8), since each test
    then runs up to workers / cpus times slower and every runner's boot competes too."""
    if workers <= cpus:
        return ""
    return (f". Note: {workers} workers share {cpus} CPU{'s' if cpus != 1 else ''}: tests "
            f"that use the CPU run up to {workers / cpus:.0f}x slower each; "
            f"-w auto ({cpus}) suits CPU-bound suites, more only suits tests that wait")


def dispatch_plan(planned: PlannedSuite, options: RunOptions) -> Plan:
    """Static: the plan's shards. Queue: gather what batching needs, then batch."""
    if options.mode == Mode.STATIC:
        return planned.plan
    inputs, runner = batch_inputs(planned, options)
    return queue_plan(listed(inputs, runner, options.request.root))


class Dispatch:
    """A run's batches, the first ones as early as possible (`begin_dispatch`).

    `first` is what to enqueue now; `rest()` the batches that follow it, once the
    listing they wait for is done (empty when `first` is the whole plan); `plan()` all of
    them, for the report and the run record.
    """

    def __init__(self, first: Plan, rest: Callable[[], Plan] | None = None) -> None:
        self.first = first
        self._rest = rest
        self._whole = first if rest is None else None

    def rest(self) -> Plan:
        """The batches after `first` (waits for the listing)."""
        if self._whole is None:
            assert self._rest is not None
            self._whole = self._rest()
        return replace(self._whole, shards=self._whole.shards[len(self.first.shards):])

    def plan(self) -> Plan:
        self.rest()
        assert self._whole is not None
        return self._whole


def begin_dispatch(planned: PlannedSuite, options: RunOptions, *, staged: bool) -> Dispatch:
    """`dispatch_plan`, with queue mode's first round enqueued before the listing: the
    listing runs in a thread while the workers run that round (batching.first_round
    says why). `staged` False (a CI leader, whose successor could not finish a staged
    dispatch) makes the whole plan first, as `dispatch_plan` does."""
    if options.mode == Mode.STATIC or not staged:
        return Dispatch(dispatch_plan(planned, options))
    inputs, runner = batch_inputs(planned, options)
    first, rest = first_round(inputs) if not options.command_template else ((), inputs)
    if not first:
        return Dispatch(queue_plan(listed(inputs, runner, options.request.root)))
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shardrun-listing")
    listing = pool.submit(listed, rest, runner, options.request.root)
    pool.shutdown(wait=False)
    provisional = replace(planned.plan, shards=first)
    return Dispatch(provisional, lambda: after_first_round(first, listing.result(),
                                                           inputs.estimates))


def batch_inputs(planned: PlannedSuite, options: RunOptions) -> tuple[DispatchInputs, Runner]:
    """The I/O before queue mode's batches but the listing: what a batch costs (the
    history's runs) and the tests the history knows; and the runner to list with."""
    framework = "command" if options.command_template else planned.suite.framework
    runner = get_runner(framework, options.request.root, options.command_template,
                        options.python)
    runs, warm = planned.history.runs(), _warm(runner, options)
    # A batch's cost is split as the history's batches show it: a part per batch and a
    # part per unit (added to each unit's estimate below), or, until a run has batches
    # of different sizes to tell them apart, all of it per batch.
    fixed, per_unit = batch_cost(runs, warm=warm)
    boot = batch_overhead(runs, framework, warm=warm) if fixed is None else fixed
    boot += setup_per_batch(planned.history, options)
    listing = batch_overhead(runs, framework, warm=False)  # a listing boots the framework
    if not planned.timed:
        # No timings yet: estimates are file sizes, not seconds, so a boot cost in seconds
        # means nothing against them. Batch without it: small batches let the queue even
        # out what the sizes got wrong, and this run's timings fix the next one.
        boot = listing = per_unit = 0.0
    # Each unit also costs its batch what its testcases do not record (its file's load):
    # priced in, many tiny files no longer crowd one late batch.
    estimates = ({unit: seconds + per_unit for unit, seconds in planned.estimates.items()}
                 if per_unit else planned.estimates)
    inputs = DispatchInputs(estimates, options.request.workers, boot,
                            planned.history.examples(), command=bool(options.command_template),
                            listing_seconds=listing)
    return inputs, runner


def listed(inputs: DispatchInputs, runner: Runner, root: Path) -> DispatchInputs:
    """The inputs with the tests of the files worth splitting, as one listing finds them."""
    to_list = inputs.to_list()
    return replace(inputs, listed=list_examples(runner, to_list, root)) if to_list else inputs


def setup_per_batch(history: History, options: RunOptions) -> float:
    """The runner set-up the history learned (plan/setup_cost.py), as each batch pays it:
    a forked or fresh runner starts a new test session per batch, so its session set-up
    (a test database, compiled assets) comes with every batch; a reused runner pays it
    once, which the per-batch figure leaves out."""
    setup = history.setup_seconds()
    if setup is None or options.runners == Runners.REUSE.value:
        return 0.0
    return setup


def _warm(runner: Runner, options: RunOptions) -> bool:
    return options.runners != Runners.FRESH.value and runner.server_argv() is not None


def prewarm_for(planned: PlannedSuite, options: RunOptions) -> Prewarm | None:
    """What local workers can boot before their first batch: the run's warm runner."""
    return suite_prewarm(planned.suite, options)


def suite_prewarm(suite: Suite, options: RunOptions) -> Prewarm | None:
    """`prewarm_for`, known before the suite is planned."""
    if options.command_template:
        return None
    framework = suite.framework
    if not _warm(get_runner(framework, options.request.root), options):
        return None
    return Prewarm(framework, options.runner_args)


def batch_overhead(runs: Sequence[RunRecord], framework: str, *, warm: bool) -> float:
    """What one batch costs outside its tests, for the cost model (docs/queue.md).

    With warm runners a worker boots once and every later batch costs only its dispatch
    and one framework session; otherwise every batch boots a process.
    """
    if warm:
        return warm_batch_seconds(runs) or DEFAULT_WARM_BATCH_SECONDS
    return boot_seconds(runs) or DEFAULT_BOOT_SECONDS[framework]


def batch_jobs(run_id: str, dispatched: Plan, options: RunOptions) -> list[Batch]:
    """One job per non-empty shard or batch, longest first so the big ones start first."""
    shards = [shard for shard in dispatched.shards if shard.units]
    if options.mode == Mode.STATIC:
        shards.sort(key=lambda shard: (-shard.predicted_seconds, shard.index))
    commit = git_head(options.request.root)
    return [
        Batch(
            run_id=run_id,
            batch_id=shard.index,
            units=shard.units,
            predicted_seconds=shard.predicted_seconds,
            timeout_seconds=options.timeout_seconds or default_timeout(shard.predicted_seconds),
            commit=commit,
            lease_seconds=options.lease_seconds,
        )
        for shard in shards
    ]


def new_ledger(options: RunOptions, spec: RunSpec) -> Ledger:
    return Ledger(options.max_attempts, options.retries, options.fail_fast, options.retry_budget,
                  framework=spec.framework)


def run_spec(planned: PlannedSuite, options: RunOptions) -> RunSpec:
    """How this run's batches are executed: what workers receive from their own side or,
    signed, from the run's meta (runspec.py); never through a batch's payload."""
    return suite_spec(planned.suite, options)


def suite_spec(suite: Suite, options: RunOptions) -> RunSpec:
    """`run_spec`, known before the suite is planned."""
    return RunSpec(
        framework="command" if options.command_template else suite.framework,
        command_template=options.command_template, runner_args=options.runner_args,
        runners=options.runners, runner_max_rss_mb=options.runner_max_rss_mb,
        python=options.python,
    )

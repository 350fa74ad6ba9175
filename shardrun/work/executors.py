"""How a worker runs one batch: one Executor Protocol, two ways.

- `CommandExecutor`: a `--command` batch, one process per batch, settled from the JUnit
  XML it leaves (there are no per-test events to read).
- `ServerExecutor`: a framework with a runner server (rspec, pytest, minitest,
  cucumber), run in this worker's booted runner (`--runners fork` or `reuse`) or in a
  fresh one (`fresh`), settled from the runner's per-test events. It owns the runner
  kept between batches.

Both return a `Ran`; worker.py turns it into the batch's BatchResult.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shardrun.models import Batch, ProcessOutcome, RunSpec
from shardrun.report.junit_reader import read_testcases
from shardrun.runners import Runner, get_runner
from shardrun.work.accounting import Settled, reconcile, reconcile_junit
from shardrun.work.context import WorkerContext, run_log_dir, runner_env
from shardrun.work.process import run_process
from shardrun.work.warm import (
    EventCallback,
    Prewarm,
    RunnerPool,
    RunnerProcess,
    Runners,
)

log = logging.getLogger(__name__)

RunnerKey = tuple[str, str, tuple[str, ...], str]
Poll = Callable[[], None]


@dataclass(frozen=True)
class Ran:
    """A batch as its executor ran it: how the process ended and each test's result."""

    outcome: ProcessOutcome
    settled: Settled
    warm: bool = False  # ran in a runner an earlier batch booted: it paid no boot
    reused_runner: bool = False  # in the very process earlier batches ran in


class Executor(Protocol):
    def run(self, job: Batch, spec: RunSpec, runner: Runner, context: WorkerContext,
            log_path: Path, on_poll: Poll | None, on_event: EventCallback | None) -> Ran: ...


def batch_log(context: WorkerContext, job: Batch) -> Path:
    return run_log_dir(context, job.run_id) / f"shard-{job.batch_id}-attempt-{job.attempt}.log"


class CommandExecutor:
    """A `--command` batch: one process, settled from the JUnit XML it leaves behind."""

    def run(self, job: Batch, spec: RunSpec, runner: Runner, context: WorkerContext,
            log_path: Path, on_poll: Poll | None, on_event: EventCallback | None) -> Ran:
        out_dir = Path(tempfile.mkdtemp(prefix=f"shard{job.batch_id}-",
                                        dir=context.tmp_dir))
        try:
            invocation = runner.invocation(job.units, out_dir, spec.runner_args)
            outcome = run_process(
                invocation.argv, cwd=context.root, env=runner_env(context),
                log_path=log_path, timeout_seconds=job.timeout_seconds, on_poll=on_poll,
            )
            junit = invocation.junit_path
            xml = (junit.read_text(encoding="utf-8", errors="replace") if junit.is_file()
                   else None)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        tests, problem = read_testcases(xml)
        return Ran(outcome, reconcile_junit(job.units, tests, outcome,
                                            timeout_seconds=job.timeout_seconds,
                                            problem=problem))


class ServerExecutor:
    """Batches in a runner server; the runner this worker keeps between batches."""

    def __init__(self) -> None:
        self.pool = RunnerPool()  # one runner at a time

    def run(self, job: Batch, spec: RunSpec, runner: Runner, context: WorkerContext,
            log_path: Path, on_poll: Poll | None, on_event: EventCallback | None) -> Ran:
        server_argv = runner.server_argv()
        assert server_argv is not None  # executor_for sends no other runner here
        mode = Runners(spec.runners)
        args = runner.batch_arguments(job.units, spec.runner_args)
        key = runner_key(job.run_id, spec.framework, spec.runner_args, context.root)
        env = runner_env(context)
        if mode is Runners.FRESH:
            fresh = RunnerProcess(key, server_argv, context.root, env, log_path)
            try:
                batch = fresh.run(args, log_path, fork=False,
                                  timeout_seconds=job.timeout_seconds, on_poll=on_poll,
                                  on_event=on_event)
            finally:
                fresh.stop()
            warm = False
        else:
            if job.fresh_runner and mode is Runners.REUSE:
                self.pool.close()  # its tests never started in a runner earlier batches used
            process, warm = self._booted(key, server_argv, context, env, log_path)
            batch = process.run(args, log_path, fork=mode is Runners.FORK,
                                timeout_seconds=job.timeout_seconds, on_poll=on_poll,
                                on_event=on_event, units=job.units)
            self._recycle(spec, log_path)
        settled = reconcile(job.units, batch.events, batch.outcome,
                            timeout_seconds=job.timeout_seconds)
        return Ran(batch.outcome, settled, warm, warm and mode is Runners.REUSE)

    def _recycle(self, spec: RunSpec, log_path: Path) -> None:
        """Drop a dead runner, and one above --runner-max-rss: the next batch boots anew."""
        self.pool.discard_dead()
        limit = spec.runner_max_rss_mb
        recycled = self.pool.recycle_above(None if limit is None else limit * 2**20)
        if recycled is not None:
            with log_path.open("a", encoding="utf-8") as batch_log_file:
                batch_log_file.write(
                    f"shardrun: the runner held {recycled / 2**20:.0f} MB after this batch "
                    f"(--runner-max-rss {limit}); the next batch starts a fresh one\n")

    def _booted(
        self, key: RunnerKey, server_argv: tuple[str, ...], context: WorkerContext,
        env: dict[str, str], log_path: Path,
    ) -> tuple[RunnerProcess, bool]:
        """This worker's runner for `key` and whether it ran a batch before. A new one is
        started and asked to boot the suite (its output in `log_path`): every forked batch
        then starts from that boot."""

        def start() -> RunnerProcess:
            runner = RunnerProcess(key, server_argv, context.root, env, log_path)
            runner.prewarm(key[2], log_path)
            return runner

        return self.pool.get(key, start)

    def prewarm(self, context: WorkerContext, run_id: str, wanted: Prewarm) -> None:
        """Start this worker's runner and boot the suite before the first batch arrives.

        The boot (a Rails app's, seconds) then overlaps the worker's own start and the
        coordinator's planning instead of delaying the first batch. Best effort: a worker
        that cannot prewarm still runs its batches, starting the runner with the first.
        """
        try:
            # The interpreter the batches will use: a local worker's own spec says it.
            python = context.spec.python if context.spec else None
            server_argv = get_runner(wanted.framework, context.root, python=python).server_argv()
            if server_argv is None:
                return
            key = runner_key(run_id, wanted.framework, wanted.runner_args, context.root)
            log_path = (run_log_dir(context, run_id)
                        / f"prewarm-worker-{context.worker_index}.log")
            self._booted(key, server_argv, context, runner_env(context), log_path)
        except Exception as error:  # the batches will show the real failure
            log.warning("could not prewarm the %s runner: %s", wanted.framework, error)

    def close(self) -> None:
        self.pool.close()


def runner_key(
    run_id: str, framework: str, runner_args: tuple[str, ...], root: Path
) -> RunnerKey:
    """A runner is for one run, one framework and one set of runner arguments: another
    run may be at another commit, and other arguments may load other code."""
    return (run_id, framework, tuple(runner_args), str(root))

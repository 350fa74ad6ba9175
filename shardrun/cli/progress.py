"""Where the progress line and the live test lines go: a terminal or a log.

On a terminal the progress line is redrawn in place, and a live test line (`--verbose`)
is printed above it. Anywhere else (a CI log, a pipe) redrawing would leave a wall of
carriage returns, so a plain line is printed at most every PLAIN_EVERY_SECONDS, plus the
first and the last, with live test lines as they come.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from shardrun.report.progress import (
    ResultTally,
    Snapshot,
    bar,
    batch_note,
    fraction,
    live_lines,
    status,
)
from shardrun.run.watch import Progress

# A CI log gets a progress line at most this often: enough to see a run is alive, few
# enough that a 2000-batch run does not bury its summary.
PLAIN_EVERY_SECONDS = 10.0
# Erase the terminal's current line (the progress bar) before writing over it.
_CLEAR_LINE = "\r\x1b[2K"


class ProgressReporter:
    """The watch loop's progress callback, and (with --verbose) its live-line printer."""

    def __init__(self, tty: bool, verbosity: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tty = tty
        self.verbosity = verbosity
        self.clock = clock
        self.tally = ResultTally()
        self.drawn = ""  # the progress line now on the terminal
        self.printed_at: float | None = None
        self.pending = ""  # the latest plain line not printed yet

    def __call__(self, progress: Progress) -> None:
        result = progress.results[-1]
        self.tally.add(result)
        snapshot = Snapshot(progress.done_units, progress.total_units,
                            progress.planned_tests, progress.eta_seconds)
        text = status(self.tally, snapshot)
        if self.tty:
            self.drawn = f"{bar(fraction(self.tally, snapshot))} {text}"
            click.echo(f"{_CLEAR_LINE}{self.drawn}", nl=False)
            return
        self.pending = f"progress: {text} ({batch_note(result)})"
        now = self.clock()
        finished = progress.done_units >= progress.total_units
        if finished or self.printed_at is None or now - self.printed_at >= PLAIN_EVERY_SECONDS:
            self._print_pending(now)

    def live(self, entries: list[dict[str, Any]]) -> None:
        """Finished tests from the run's live stream, each above the progress line."""
        lines = [line for entry in entries for line in live_lines(entry, self.verbosity)]
        if not lines:
            return
        if self.tty:
            click.echo(_CLEAR_LINE + "\n".join(lines))
            if self.drawn:
                click.echo(self.drawn, nl=False)
        else:
            click.echo("\n".join(lines))

    def _print_pending(self, now: float) -> None:
        click.echo(self.pending)
        self.pending = ""
        self.printed_at = now

    def close(self) -> None:
        """End the progress line (terminal) or print the last one not yet printed (log)."""
        if self.tty and self.drawn:
            click.echo()
        elif self.pending:
            self._print_pending(self.clock())

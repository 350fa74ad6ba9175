"""The timing dashboard: a versioned JSON export and a self-contained HTML page showing it.

Why a module of its own: the history keeps samples and run records; this module turns
them into what a team asks ("which files are slow, which are getting slower, how balanced
was the last run, how many workers are worth paying for"). `shardrun timings show` reads
its file rows too, so the terminal and the dashboard never disagree.

Pure apart from `write_output` (DESIGN.md rule 1): history in, dicts and text out. The
export's schema is docs/dashboard.md and docs/dashboard.schema.json; keep them in step.
The page's HTML, CSS and JS live in dashboard_page.html (package data) and read the
export embedded in it, so the page needs no server and no network.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from shardrun.files import write_text
from shardrun.plan.history import History
from shardrun.plan.planner import plan_shards
from shardrun.plan.timings import file_of_unit
from shardrun.report.insights import failure_history, slowest_tests, split_estimates
from shardrun.report.records import RunRecord
from shardrun.report.runlog import boot_seconds, flaky_counts

# 2: run records of version 2 (one wall time, origin, failed tests), per-test views
# (`tests`, `slowest_tests`), capacity planned on the units queue mode runs.
DASHBOARD_VERSION = 2
# Run records in an export by default: a month of daily runs fits, and the trend chart
# still has room for a point per run.
DEFAULT_RUNS = 30
SLOWEST_SHOWN = 20
DRIFTING_SHOWN = 10
# Drift compares the older half of a file's samples with the newer half: two samples on
# each side at least, so a single odd run cannot make a file look like it drifted.
DRIFT_MIN_SAMPLES = 4
# Below ~0.1 s a file's time is mostly interpreter and scheduling jitter, so its relative
# changes are noise (0.02 s -> 0.04 s is "+100 %" and means nothing).
DRIFT_MIN_SECONDS = 0.1
# ...and a change under 10 % is within the run-to-run noise of a shared CI machine.
DRIFT_MIN_CHANGE = 0.1
# Worker counts the capacity advice prices: powers of two up to this (a CI bill rarely
# goes further), stopping at the first count with at least one worker per file.
CAPACITY_MAX_WORKERS = 64
_TEMPLATE = "dashboard_page.html"
_DATA_MARKER = "__DASHBOARD_DATA__"


@dataclass(frozen=True)
class FileRow:
    """One file of the history as the dashboard and `timings show` present it."""

    path: str
    samples: tuple[float, ...]
    estimate: float
    trend: float | None
    drift: float | None
    flaky: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "samples": [round(s, 6) for s in self.samples],
            "estimate": round(self.estimate, 6),
            "trend": _rounded(self.trend),
            "drift": _rounded(self.drift),
            "flaky": self.flaky,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def trend(samples: Sequence[float]) -> float | None:
    """The newest sample over the median of the ones before it (1.2: 20 % slower than usual).

    None with fewer than two samples or an earlier median of 0 (nothing to compare with).
    """
    if len(samples) < 2:
        return None
    usual = statistics.median(samples[:-1])
    return samples[-1] / usual if usual > 0 else None


def drift(samples: Sequence[float]) -> float | None:
    """Relative change from the older half of the samples to the newer half, by their medians.

    +0.5: the file got 50 % slower over the kept samples. Medians, like the estimate, so one
    outlier run does not count as drift. None with fewer than DRIFT_MIN_SAMPLES samples.
    """
    if len(samples) < DRIFT_MIN_SAMPLES:
        return None
    half = len(samples) // 2
    older, newer = statistics.median(samples[:half]), statistics.median(samples[half:])
    return (newer - older) / older if older > 0 else None


def file_rows(history: History, flaky: Mapping[str, int] | None = None) -> list[FileRow]:
    """Every file of the history, by path; `flaky` counts flaky runs per file."""
    flaky = flaky or {}
    return [
        FileRow(path, stats.samples, stats.estimate, trend(stats.samples), drift(stats.samples),
                flaky.get(path, 0))
        for path, stats in sorted(history.files().items())
    ]


def slowest_files(rows: Sequence[FileRow], top: int = SLOWEST_SHOWN) -> list[FileRow]:
    """The `top` files with the largest estimate; ties by path, so every view agrees."""
    return sorted(rows, key=lambda row: (-row.estimate, row.path))[:top]


def drifting_files(rows: Sequence[FileRow], top: int = DRIFTING_SHOWN) -> list[FileRow]:
    """The `top` files whose time changed most (|drift|), leaving out noise: files under
    DRIFT_MIN_SECONDS and changes under DRIFT_MIN_CHANGE."""
    candidates = [row for row in rows if row.drift is not None
                  and abs(row.drift) >= DRIFT_MIN_CHANGE and row.estimate >= DRIFT_MIN_SECONDS]
    return sorted(candidates, key=lambda row: (-abs(row.drift or 0.0), row.path))[:top]


def worker_counts(file_count: int, current: int | None = None) -> list[int]:
    """1, 2, 4, ... up to CAPACITY_MAX_WORKERS, ending at the first count >= the file count,
    plus `current` (the last run's worker count) so the advice can be read against it."""
    counts, workers = {current} if current and current > 0 else set(), 1
    while workers <= CAPACITY_MAX_WORKERS:
        counts.add(workers)
        if workers >= file_count:
            break
        workers *= 2
    return sorted(counts)


def capacity(
    estimates: Mapping[str, float], boot: float, current: int | None = None
) -> dict[str, Any]:
    """Predicted wall time per worker count from the cost model, plus a line for humans.

    wall(N) = the planner's makespan for N (never below the longest file) + one batch's
    boot overhead, since each of N static shards starts its test process once.
    """
    points = []
    for workers in worker_counts(len(estimates), current) if estimates else []:
        plan = plan_shards(estimates, workers)
        points.append({
            "workers": workers,
            "predicted_seconds": round(plan.predicted_makespan + boot, 3),
            "makespan": round(plan.predicted_makespan, 3),
            "lower_bound": round(plan.lower_bound, 3),
            "bounded_by": plan.bounding_unit,
        })
    return {"boot_seconds": round(boot, 3), "points": points, "advice": capacity_advice(points)}


def capacity_advice(points: Sequence[Mapping[str, Any]]) -> str:
    """"1 worker -> ~12m; 2 -> ~6m05s; 4 -> ~3m10s, then bounded by spec/x_spec.rb" (a
    file with no test the history knows) or "... by the test spec/x_spec.rb[1:3]" (a
    test: queue mode splits files, not tests)."""
    if not points:
        return "no timings yet: run `shardrun run` or `shardrun timings import` first"
    parts = []
    for position, point in enumerate(points):
        workers = point["workers"]
        label = f"{workers} worker{'' if workers == 1 else 's'}" if position == 0 else str(workers)
        parts.append(f"{label} -> ~{format_duration(point['predicted_seconds'])}")
        bound = point["bounded_by"]
        if bound:
            what = "the test " if file_of_unit(bound) != bound else ""
            return "; ".join(parts) + f", then bounded by {what}{bound}"
    return "; ".join(parts)


def format_duration(seconds: float) -> str:
    """Short and human: 0.4s, 42s, 6m10s, 1h05m."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def export(history: History, *, now: float, runs: int = DEFAULT_RUNS) -> dict[str, Any]:
    """The dashboard JSON (docs/dashboard.md): files, the last `runs` run records, the
    slowest and most drifting files, the capacity advice, and per test the failure
    history and the slowest."""
    records = history.runs()[-runs:] if runs > 0 else []
    rows = file_rows(history, flaky_counts(records))
    total = sum(row.estimate for row in rows)
    estimates = split_estimates({row.path: row.estimate for row in rows}, history.examples())
    return {
        "version": DASHBOARD_VERSION,
        "generated_at": _iso(now),
        "files": [row.to_dict() for row in rows],
        "runs": [record.to_dict() for record in records],
        "slowest": [
            {"path": row.path, "estimate": round(row.estimate, 6),
             "share": round(row.estimate / total, 4) if total else 0.0,
             "samples": len(row.samples)}
            for row in slowest_files(rows)
        ],
        "drifting": [
            {"path": row.path, "drift": _rounded(row.drift), "trend": _rounded(row.trend),
             "estimate": round(row.estimate, 6), "samples": [round(s, 6) for s in row.samples]}
            for row in drifting_files(rows)
        ],
        "capacity": capacity(estimates, boot_seconds(records), _last_workers(records)),
        "tests": failure_history(records),
        "slowest_tests": slowest_tests(history.examples()),
    }


def _last_workers(records: Sequence[RunRecord]) -> int | None:
    return records[-1].workers if records else None


def export_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2) + "\n"


def render_html(data: Mapping[str, Any]) -> str:
    """The page with the export embedded as JSON that no `</script>` inside can end early."""
    template = resources.files("shardrun.report").joinpath(_TEMPLATE).read_text(encoding="utf-8")
    payload = (json.dumps(data, separators=(",", ":"))
               .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
    return template.replace(_DATA_MARKER, payload, 1)


def write_output(path: Path, text: str) -> None:
    """Write an export or page (files.write_text: through symlinks, in place into
    `/dev/stdout` or a FIFO, atomically otherwise); an OSError is a one-line error."""
    write_text(path, text, "dashboard")

"""shardrun.report.dashboard: file rows (trend, drift), slowest and drifting files, the capacity
model, the JSON export against its documented schema, the HTML page, and the CLI commands.

The export is checked against docs/dashboard.schema.json by a small validator of the JSON
Schema keywords that file uses (`make test`'s virtualenv has no jsonschema), and also by
the jsonschema package when it happens to be installed.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shardrun.cli.main import cli
from shardrun.models import BatchResult, Plan, ProcessOutcome, Shard, TestResult
from shardrun.plan.history import History
from shardrun.plan.timings import Durations
from shardrun.report import dashboard
from shardrun.report.dashboard import (
    DASHBOARD_VERSION,
    FileRow,
    capacity,
    capacity_advice,
    drift,
    drifting_files,
    file_rows,
    format_duration,
    slowest_files,
    trend,
    worker_counts,
)
from shardrun.report.merge import merge
from shardrun.report.records import RunRecord
from shardrun.report.runlog import boot_seconds, build_run_record

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCHEMA = json.loads((DOCS / "dashboard.schema.json").read_text(encoding="utf-8"))
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
_TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
    "integer": int, "number": (int, float),
}


# ---------------------------------------------------------------- a small schema checker


def _is_type(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[name])


def schema_errors(value: Any, schema: Mapping[str, Any], where: str = "$") -> list[str]:
    """The JSON Schema keywords docs/dashboard.schema.json uses: $ref (local), type, const,
    enum, minimum, maximum, required, properties, additionalProperties: false, items."""
    if "$ref" in schema:
        return schema_errors(value, SCHEMA["$defs"][schema["$ref"].rsplit("/", 1)[1]], where)
    types = schema.get("type")
    names = [types] if isinstance(types, str) else types or []
    if names and not any(_is_type(value, name) for name in names):
        return [f"{where}: {value!r} is not {types}"]
    errors = _value_errors(value, schema, where)
    if isinstance(value, dict):
        errors += _object_errors(value, schema, where)
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{where}[{index}]")
    return errors


def _value_errors(value: Any, schema: Mapping[str, Any], where: str) -> list[str]:
    errors = []
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if _is_type(value, "number"):
        if value < schema.get("minimum", value):
            errors.append(f"{where}: {value} < minimum")
        if value > schema.get("maximum", value):
            errors.append(f"{where}: {value} > maximum")
    return errors


def _object_errors(value: dict, schema: Mapping[str, Any], where: str) -> list[str]:
    properties = schema.get("properties", {})
    errors = [f"{where}: missing {key}" for key in schema.get("required", []) if key not in value]
    if schema.get("additionalProperties") is False:
        errors += [f"{where}: undocumented {key}" for key in value if key not in properties]
    for key, item in value.items():
        if key in properties:
            errors += schema_errors(item, properties[key], f"{where}.{key}")
    return errors


def assert_valid(data: Any) -> None:
    assert schema_errors(data, SCHEMA) == []
    if importlib.util.find_spec("jsonschema") is not None:
        jsonschema = importlib.import_module("jsonschema")
        jsonschema.Draft202012Validator.check_schema(SCHEMA)
        jsonschema.Draft202012Validator(SCHEMA).validate(data)


def test_checker_catches_what_the_schema_forbids() -> None:
    good = {"version": 2, "generated_at": "x", "files": [], "runs": [], "slowest": [],
            "drifting": [], "capacity": {"boot_seconds": 0, "points": [], "advice": ""},
            "tests": [], "slowest_tests": []}
    assert schema_errors(good, SCHEMA) == []
    assert schema_errors({**good, "version": 1}, SCHEMA) == ["$.version: 1 != 2"]
    assert schema_errors({**good, "extra": 1}, SCHEMA) == ["$: undocumented extra"]
    bad_file = {"path": "a", "samples": [1.0], "estimate": -1, "trend": None, "drift": "x",
                "flaky": True}
    assert len(schema_errors({**good, "files": [bad_file]}, SCHEMA)) == 3


# ---------------------------------------------------------------- histories to export


def history_with(samples: Mapping[str, list[float]]) -> History:
    """A history whose files got these samples, one run per position."""
    history = History(Path("unused.json"))
    for position in range(max(len(s) for s in samples.values())):
        history.record(Durations({path: values[position] for path, values in samples.items()
                                  if position < len(values)}, {}, "test"), at=NOW)
    return history


def run_record(run_id: str = "run-1") -> RunRecord:
    """A real record: two shards on two workers, each 0.5 s slower than its testcases."""
    files = ["tests/test_a.py", "tests/test_b.py"]
    results = [
        BatchResult("r", index, 1, f"host:{index}", index + 1, (file,),
                    ProcessOutcome(0, None, False, 2.5, 2.0, 1), NOW, NOW + 2.5, 2.0,
                    tests=(TestResult(f"{file}::t", file, file, "passed", 2.0),))
        for index, file in enumerate(files)
    ]
    plan = Plan(2, (Shard(0, (files[0],), 2.0), Shard(1, (files[1],), 2.0)), 2.0, 2.0, 4.0)
    return build_run_record(run_id, plan, results, merge(files, results), NOW + 3)


# ---------------------------------------------------------------- trend, drift, rows


def test_trend_is_the_newest_sample_over_the_usual() -> None:
    assert trend([]) is None and trend([2.0]) is None
    assert trend([2.0, 2.0, 3.0]) == 1.5
    assert trend([1.0, 100.0, 1.0, 2.0]) == 2.0  # the usual is a median: the outlier is ignored
    assert trend([0.0, 1.0]) is None


def test_drift_compares_the_older_and_newer_halves() -> None:
    assert drift([1.0, 1.0, 1.0]) is None  # fewer than DRIFT_MIN_SAMPLES
    assert drift([1.0, 1.0, 1.5, 1.5]) == 0.5
    assert drift([2.0, 2.0, 2.0, 1.0, 1.0]) == -0.5  # odd: the middle sample counts as newer
    assert drift([0.0, 0.0, 1.0, 1.0]) is None


def test_file_rows_slowest_and_drifting() -> None:
    history = history_with({
        "tests/steady.py": [3.0, 3.0, 3.0, 3.0],
        "tests/growing.py": [1.0, 1.0, 2.0, 2.0],
        "tests/tiny.py": [0.01, 0.01, 0.05, 0.05],  # +400 %, but below DRIFT_MIN_SECONDS
        "tests/noisy.py": [1.0, 1.0, 1.05, 1.05],  # +5 %: within the noise
        "tests/tie.py": [3.0],
    })
    rows = file_rows(history, {"tests/growing.py": 2})
    assert [row.path for row in rows] == sorted(row.path for row in rows)
    growing = next(row for row in rows if row.path == "tests/growing.py")
    assert growing == FileRow("tests/growing.py", (1.0, 1.0, 2.0, 2.0), 1.5, 2.0, 1.0, 2)
    assert [row.path for row in slowest_files(rows, 3)] == [
        "tests/steady.py", "tests/tie.py", "tests/growing.py"]
    assert [row.path for row in drifting_files(rows)] == ["tests/growing.py"]


# ---------------------------------------------------------------- capacity


def test_worker_counts_are_powers_of_two_up_to_the_file_count() -> None:
    assert worker_counts(1) == [1]
    assert worker_counts(5) == [1, 2, 4, 8]
    assert worker_counts(5, current=3) == [1, 2, 3, 4, 8]
    assert worker_counts(10_000)[-1] == dashboard.CAPACITY_MAX_WORKERS


def test_capacity_adds_boot_and_stops_the_advice_at_the_bounding_file() -> None:
    estimates = {"spec/x_spec.rb": 200.0, **{f"spec/s{i}_spec.rb": 100.0 for i in range(8)}}
    result = capacity(estimates, boot=10.0)
    points = {point["workers"]: point for point in result["points"]}
    assert points[1]["predicted_seconds"] == 1010.0 and points[1]["makespan"] == 1000.0
    assert points[2]["predicted_seconds"] == 510.0
    assert points[8]["bounded_by"] == "spec/x_spec.rb" and points[4]["bounded_by"] is None
    assert result["advice"] == ("1 worker -> ~16m50s; 2 -> ~8m30s; 4 -> ~5m10s; "
                                "8 -> ~3m30s, then bounded by spec/x_spec.rb")
    assert result["boot_seconds"] == 10.0


def test_capacity_without_timings() -> None:
    result = capacity({}, boot=0.0)
    assert result["points"] == [] and "no timings yet" in result["advice"]
    assert capacity_advice([{"workers": 2, "predicted_seconds": 5.0, "bounded_by": None}]) == (
        "2 workers -> ~5.0s")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.44, "0.4s"), (9.96, "10.0s"), (42.4, "42s"), (59.6, "1m00s"), (370, "6m10s"),
     (3900, "1h05m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_boot_seconds_is_the_median_of_measured_runs() -> None:
    runs = [replace(run_record(), boot_seconds_per_batch=seconds)
            for seconds in (1.0, None, 3.0, 2.0, None)]
    assert boot_seconds(runs) == 2.0
    assert boot_seconds([]) == 0.0


# ---------------------------------------------------------------- the export


def test_export_matches_the_documented_schema() -> None:
    history = history_with({"tests/test_a.py": [1.0, 1.0, 2.0, 2.0], "tests/test_b.py": [2.0]})
    history.add_run(run_record())
    data = dashboard.export(history, now=NOW)
    assert_valid(data)
    assert list(data) == ["version", "generated_at", "files", "runs", "slowest", "drifting",
                          "capacity", "tests", "slowest_tests"]
    assert data["version"] == DASHBOARD_VERSION and data["generated_at"] == "2026-01-01T00:00:00Z"
    assert [entry["path"] for entry in data["slowest"]] == ["tests/test_b.py", "tests/test_a.py"]
    assert data["slowest"][1]["share"] == round(1.5 / 3.5, 4)
    assert data["drifting"][0]["path"] == "tests/test_a.py"
    assert data["capacity"]["boot_seconds"] == 0.5  # measured by the run record
    assert [p["workers"] for p in data["capacity"]["points"]] == [1, 2]


def test_export_of_an_empty_history_is_valid() -> None:
    data = dashboard.export(History(Path("unused.json")), now=NOW)
    assert_valid(data)
    assert data["files"] == data["runs"] == data["slowest"] == data["capacity"]["points"] == []


def test_export_keeps_the_latest_runs_and_counts_their_flaky_files() -> None:
    history = history_with({"tests/test_a.py": [1.0]})
    for number in range(3):
        history.add_run(replace(run_record(f"run-{number}"), flaky=("tests/test_a.py::test_x",)))
    data = dashboard.export(history, now=NOW, runs=2)
    assert [run["run_id"] for run in data["runs"]] == ["run-1", "run-2"]
    assert data["files"][0]["flaky"] == 2
    assert dashboard.export(history, now=NOW, runs=0)["runs"] == []


def test_every_schema_key_is_documented() -> None:
    """docs/dashboard.md names each key of docs/dashboard.schema.json (keep them in step)."""
    text = (DOCS / "dashboard.md").read_text(encoding="utf-8")
    keys = set()
    for definition in [SCHEMA, *SCHEMA["$defs"].values()]:
        keys.update(definition.get("properties", {}))
    assert sorted(key for key in keys if f"`{key}`" not in text) == []


# ---------------------------------------------------------------- the page


def test_page_embeds_the_export_and_loads_nothing() -> None:
    history = history_with({"tests/</script><script>alert(1)</script>.py": [1.0]})
    history.add_run(run_record())
    page = dashboard.render_html(dashboard.export(history, now=NOW))
    assert "__DASHBOARD_DATA__" not in page
    assert "<script>alert(1)" not in page
    embedded = re.search(r'<script id="dashboard-data" type="application/json">(.*?)</script>',
                         page, re.S)
    assert embedded is not None
    assert json.loads(embedded.group(1))["files"][0]["path"].startswith("tests/</script>")
    assert not re.search(r"<link|<script[^>]+src=|<img[^>]+src=\"?http|@import|url\(", page)
    assert "default-src 'none'" in page


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def timings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    history = history_with({"tests/slow.py": [4.0, 4.0, 5.0], "tests/fast.py": [1.0, 1.0, 1.0],
                            "tests/mid.py": [2.0, 2.0, 1.0]})
    history.path = tmp_path / "timings.json"
    history.add_run(run_record())
    history.save()
    return history.path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_export_to_stdout_and_to_a_file(timings_file: Path) -> None:
    code, out, _ = invoke("dashboard", "export", "--timings", str(timings_file))
    assert code == 0
    assert_valid(json.loads(out))
    target = timings_file.parent / "out" / "dashboard.json"
    code, out, _ = invoke("dashboard", "export", "--timings", str(timings_file), "--out",
                          str(target), "--runs", "0")
    assert code == 0 and str(target) in out
    assert json.loads(target.read_text())["runs"] == []


def test_cli_export_skips_a_malformed_run_record_with_a_warning(
    timings_file: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The history is a file teams edit: a record with a string for a number must not
    stop the dashboard; the export has the other runs, and the warning names the entry."""
    data = json.loads(timings_file.read_text())
    good = data["runs"][0]
    old = {key: value for key, value in good.items() if key not in ("origin", "failed")}
    data["runs"] = [{**good, "run_id": "edited", "wall_seconds": "3 s"}, {**old, "version": 1},
                    good]
    timings_file.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        code, out, _ = invoke("dashboard", "export", "--timings", str(timings_file))
        html_code, _, _ = invoke("dashboard", "html", "--timings", str(timings_file))
    assert (code, html_code) == (0, 0)
    exported = json.loads(out)
    assert_valid(exported)
    assert [(run["run_id"], run["version"]) for run in exported["runs"]] == [
        ("run-1", 1), ("run-1", 2)]
    assert f'{timings_file}: runs[0]: "wall_seconds" is not a number' in caplog.text


def test_cli_html_writes_one_page(timings_file: Path) -> None:
    code, out, _ = invoke("dashboard", "html", "--timings", str(timings_file))
    page = timings_file.parent / ".shardrun" / "dashboard.html"
    assert code == 0 and out == "dashboard: .shardrun/dashboard.html\n"
    assert page.read_text().startswith("<!doctype html>")


def test_timings_show_has_the_exports_numbers(timings_file: Path) -> None:
    code, out, _ = invoke("timings", "show", "--timings", str(timings_file), "--top", "2")
    assert code == 0
    exported = json.loads(invoke("dashboard", "export", "--timings", str(timings_file))[1])
    shown = [line.split() for line in out.splitlines()[1:3]]
    expected = [(entry["path"], entry["estimate"], entry["samples"])
                for entry in exported["slowest"][:2]]
    assert [(path, float(estimate[:-1]), int(samples))
            for estimate, samples, _, path in shown] == expected
    trends = {row["path"]: row["trend"] for row in exported["files"]}
    assert shown[0][2] == f"x{trends['tests/slow.py']:.2f}"
    assert out.splitlines()[-1] == "3 files, 7.00s estimated in total"

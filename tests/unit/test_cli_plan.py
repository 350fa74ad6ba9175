"""`shardrun plan` and `shardrun timings` through click's CliRunner (no Redis)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from shardrun.cli.main import cli

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<testsuite name="x"><testcase classname="a" name="&lol3;" time="1"/></testsuite>
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An RSpec tree whose timings make the balanced plan obvious."""
    sizes = {"a": 8.0, "b": 7.0, "c": 6.0, "d": 5.0, "e": 4.0, "f": 2.0}
    for name in sizes:
        path = tmp_path / "spec" / f"{name}_spec.rb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("describe 'x' do\nend\n")
    (tmp_path / "reports").mkdir()
    cases = "".join(
        f'<testcase classname="spec.{n}_spec" name="t" file="./spec/{n}_spec.rb" time="{s}"/>'
        for n, s in sizes.items()
    )
    (tmp_path / "reports" / "rspec.xml").write_text(
        f'<?xml version="1.0"?><testsuite name="rspec" tests="6">{cases}</testsuite>'
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_plan_json_is_balanced_and_documented(project: Path) -> None:
    code, out, _ = invoke("plan", "spec", "--workers", "2", "--from-junit", "reports/*.xml",
                          "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) >= {"version", "workers", "shards", "predicted_makespan", "lower_bound"}
    assert data["version"] == 1 and data["workers"] == 2
    loads = sorted(shard["predicted_seconds"] for shard in data["shards"])
    assert loads == [16.0, 16.0]
    assert data["lower_bound"] == 16.0
    units = sorted(u for shard in data["shards"] for u in shard["units"])
    assert units == [f"spec/{n}_spec.rb" for n in "abcdef"]


def test_plan_text_shows_shards_makespan_and_ratio(project: Path) -> None:
    code, out, _ = invoke("plan", "spec", "-w", "2", "--from-junit", "reports/rspec.xml")
    assert code == 0
    assert out.count("shard ") == 2
    assert "predicted makespan 16.00s" in out and "lower bound 16.00s (ratio 1.000)" in out


def test_plan_names_the_file_that_bounds_the_plan(project: Path) -> None:
    code, out, _ = invoke("plan", "spec", "-w", "8", "--from-junit", "reports/rspec.xml")
    assert code == 0
    assert "note: spec/a_spec.rb alone takes longer than total/8" in out


def test_index_total_prints_one_shard_and_shards_cover_the_suite(project: Path) -> None:
    seen = []
    for index in range(3):
        code, out, _ = invoke("plan", "spec", "--index", str(index), "--total", "3",
                              "--from-junit", "reports/rspec.xml")
        assert code == 0
        seen.extend(out.split())
    assert sorted(seen) == [f"spec/{n}_spec.rb" for n in "abcdef"]


def test_timings_import_then_show_then_plan_uses_history(project: Path) -> None:
    code, out, _ = invoke("timings", "import", "reports/rspec.xml")
    assert code == 0, out
    code, out, _ = invoke("timings", "show", "--top", "2")
    assert code == 0
    lines = out.splitlines()
    assert "spec/a_spec.rb" in lines[1] and "8.00s" in lines[1]
    assert "spec/b_spec.rb" in lines[2]
    code, out, _ = invoke("plan", "spec", "-w", "2", "--json")
    assert json.loads(out)["predicted_makespan"] == 16.0


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path.name)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('<?xml version="1.0"?><testsuite><testcase name="a" time="1"', "bad.xml"),
        ("", "bad.xml"),
        ("this is not xml at all", "bad.xml"),
        (BILLION_LAUGHS, "bad.xml"),
    ],
    ids=["truncated", "empty", "not-xml", "entity-bomb"],
)
def test_bad_junit_is_one_line_exit_2(project: Path, content: str, expected: str) -> None:
    write(project / "bad.xml", content)
    code, out, err = invoke("plan", "spec", "--from-junit", "bad.xml")
    assert code == 2
    assert expected in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_unknown_timings_format(project: Path) -> None:
    write(project / "weird.json", '["not", "a", "timings", "file"]')
    code, _, err = invoke("timings", "import", "weird.json")
    assert code == 2 and "weird.json" in err and len(err.strip().splitlines()) == 1


def test_corrupt_history_is_moved_aside_not_lost(project: Path) -> None:
    history = project / ".shardrun" / "timings.json"
    history.parent.mkdir()
    history.write_text("{ this is not json")
    code, _, err = invoke("plan", "spec")
    assert code == 2 and "timings.json" in err and len(err.strip().splitlines()) == 1
    aside = list(history.parent.glob("timings.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{ this is not json"


def test_history_of_unknown_version_is_left_alone(project: Path) -> None:
    history = project / ".shardrun" / "timings.json"
    history.parent.mkdir()
    history.write_text('{"version": 99, "files": {}}')
    code, _, err = invoke("timings", "import", "reports/rspec.xml")
    assert code == 2 and "timings.json" in err
    assert history.read_text() == '{"version": 99, "files": {}}'


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("plan", "no/such/dir"), "no/such/dir"),
        (("plan", "spec", "--workers", "0"), "--workers"),
        (("plan", "spec", "--index", "3", "--total", "3"), "--index"),
        (("plan", "spec", "--from-junit", "missing/*.xml"), "--from-junit"),
        (("plan", "spec", "--framework", "pytest"), "no pytest test files"),
    ],
)
def test_usage_errors_are_one_line_exit_2(project: Path, args: tuple[str, ...],
                                          expected: str) -> None:
    code, out, err = invoke(*args)
    assert code == 2
    assert expected in err and "Traceback" not in err + out


def test_empty_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "spec").mkdir()
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("plan")
    assert code == 2 and "no rspec test files under spec" in err


def test_a_project_with_several_frameworks_exits_2_naming_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("spec/a_spec.rb", "test/b_test.rb"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("plan")
    assert code == 2 and "rspec (1 files), minitest (1 files)" in err and "--framework" in err
    code, out, _ = invoke("plan", "--framework", "minitest")
    assert code == 0 and "1 minitest files" in out


def test_plan_without_timings_shows_no_made_up_seconds(project: Path) -> None:
    """It printed "0.85s in total" for a 16 s suite: file sizes read as seconds."""
    code, out, _ = invoke("plan", "spec", "-w", "2", "--timings", str(project / "none.json"))
    assert code == 0
    assert not re.search(r"\d\.\d\ds", out), out
    assert "6 rspec files: no timings yet, so no predicted seconds" in out
    assert "note: untimed plan" in out


def test_top_level_help_shows_whole_descriptions_and_examples() -> None:
    """click cut each description at 45 characters ("together they run PATHS...")."""
    result = CliRunner().invoke(cli, ["--help"], terminal_width=100)
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "together they run PATHS once, as one run." in text
    assert "what a container or CI node runs" in text
    assert "..." not in result.stdout.split("Commands:")[1].split("Examples:")[0]
    assert "shardrun run tests -w 4 -v" in result.stdout.split("Examples:")[1]

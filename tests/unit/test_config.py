"""Settings precedence: options > SHARDRUN_* environment > [tool.shardrun] > defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from shardrun.cli.main import cli
from shardrun.config import load_project_settings
from shardrun.errors import InputError


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in "abcdef":
        spec = tmp_path / "spec" / f"{name}_spec.rb"
        spec.parent.mkdir(parents=True, exist_ok=True)
        spec.write_text("describe 'x' do\nend\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHARDRUN_WORKERS", raising=False)
    return tmp_path


def planned_workers(*args: str, env: dict[str, str] | None = None) -> int:
    result = CliRunner().invoke(cli, ["plan", "spec", "--json", *args], env=env)
    assert result.exit_code == 0, result.output
    return int(json.loads(result.stdout)["workers"])


def test_pyproject_then_environment_then_option(project: Path) -> None:
    assert planned_workers() == 2  # the default
    (project / "pyproject.toml").write_text("[tool.shardrun]\nworkers = 3\n")
    assert planned_workers() == 3
    assert planned_workers(env={"SHARDRUN_WORKERS": "5"}) == 5
    assert planned_workers("--workers", "4", env={"SHARDRUN_WORKERS": "5"}) == 4


def test_unknown_setting_is_one_line_naming_the_file(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.shardrun]\nwokers = 3\n")
    result = CliRunner().invoke(cli, ["plan", "spec"])
    assert result.exit_code == 2
    assert "pyproject.toml: unknown [tool.shardrun] setting(s) wokers" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.shardrun\n")
    with pytest.raises(InputError, match=r"pyproject\.toml: not valid TOML"):
        load_project_settings(tmp_path)


def test_no_pyproject_means_no_settings(tmp_path: Path) -> None:
    assert load_project_settings(tmp_path) == {}

"""Settings: command line > SHARDRUN_* > .shardrun.toml or [tool.shardrun] > defaults.

The layering and the file checks are pure (config.py, given a schema); the rest runs the
real click commands in process (CliRunner) against a project in tmp_path.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from shardrun.cli import configuration
from shardrun.cli.configuration import schema_of
from shardrun.cli.main import cli
from shardrun.config import (
    CONFIGURED_COMMANDS,
    ConfigFile,
    Setting,
    available_cpus,
    find_config,
    layer,
    parse_config,
)
from shardrun.errors import InputError

SCHEMA = {
    ("run",): {"workers": Setting("workers", "workers", "value", "an integer >= 1 or auto"),
               "command": Setting("command", "command_template", "value", "a string"),
               "from-junit": Setting("from-junit", "from_junit", "list", "a list of strings"),
               "process-per-batch": Setting("process-per-batch", "process_per_batch", "flag",
                                            "true or false")},
    ("plan",): {"workers": Setting("workers", "workers", "value", "an integer >= 1 or auto")},
    ("timings", "show"): {"workers": Setting("workers", "workers", "value", "an integer")},
}


def parsed(data: dict[str, object]) -> ConfigFile:
    return parse_config(data, Path(".shardrun.toml"), "", SCHEMA)


# ------------------------------------------------------------------ pure: layering


def test_environment_beats_the_section_which_beats_the_top_level() -> None:
    config = parsed({"workers": 3, "run": {"workers": 5}})
    layered = layer(SCHEMA, config, {})
    assert layered.default_map["run"]["workers"] == 5
    assert layered.default_map["plan"]["workers"] == 3
    assert layered.origins[("run",)]["workers"].label == ".shardrun.toml [run]"
    assert layered.origins[("plan",)]["workers"].label == ".shardrun.toml"
    layered = layer(SCHEMA, config, {"SHARDRUN_WORKERS": "7"})
    assert layered.default_map["run"]["workers"] == layered.default_map["plan"]["workers"] == "7"
    assert layered.origins[("run",)]["workers"].label == "env SHARDRUN_WORKERS"


def test_top_level_keys_reach_nested_commands_sections_do_not() -> None:
    layered = layer(SCHEMA, parsed({"workers": 3, "plan": {"workers": 4}}), {})
    assert layered.default_map["timings"]["show"] == {"workers": 3}


def test_keys_are_option_names_mapped_to_click_parameters() -> None:
    layered = layer(SCHEMA, parsed({"command": "bin/test {files}", "process_per_batch": True}),
                    {})
    assert layered.default_map["run"] == {"command_template": "bin/test {files}",
                                          "process_per_batch": True}


def test_list_options_take_a_list_a_lone_string_or_words_of_a_variable() -> None:
    assert layer(SCHEMA, parsed({"from-junit": "a.xml"}), {}).default_map["run"] == {
        "from_junit": ["a.xml"]}
    from_env = layer(SCHEMA, None, {"SHARDRUN_FROM_JUNIT": "a.xml  b/*.xml"})
    assert from_env.default_map["run"] == {"from_junit": ["a.xml", "b/*.xml"]}


def test_an_empty_variable_is_unset_and_nothing_set_is_nothing() -> None:
    layered = layer(SCHEMA, None, {"SHARDRUN_WORKERS": ""})
    assert layered.default_map == {} and layered.origins == {}


# ------------------------------------------------------------------ pure: file errors


def test_unknown_key_names_the_file_and_the_closest_key() -> None:
    with pytest.raises(InputError) as caught:
        parsed({"wokers": 3})
    assert str(caught.value) == (
        ".shardrun.toml: unknown key 'wokers' (did you mean 'workers'?); the keys are listed "
        "by `shardrun config` and in docs/configuration.md")


def test_unknown_key_in_pyproject_names_its_table() -> None:
    with pytest.raises(InputError, match=r"^pyproject\.toml: unknown key 'comand' in "
                                         r"\[tool\.shardrun\.run\] \(did you mean 'command'\?\)"):
        parse_config({"run": {"comand": "x"}}, Path("pyproject.toml"), "[tool.shardrun]", SCHEMA)


def test_a_key_in_the_section_of_a_command_without_that_option() -> None:
    with pytest.raises(InputError, match=r"\[plan\] command: `shardrun plan` has no --command "
                                         r"\(it is an option of run\)"):
        parsed({"plan": {"command": "x"}})


@pytest.mark.parametrize(("value", "problem"), [
    (True, "workers = true: true/false is not a value of this option; expected an integer"),
    ([1, 2], "workers = [1, 2]: a list where one value is expected; expected an integer"),
    ({"a": 1}, "workers = {'a': 1}: a table is not a value"),
])
def test_a_value_of_the_wrong_shape_names_file_key_and_what_is_expected(
    value: object, problem: str
) -> None:
    with pytest.raises(InputError) as caught:
        parsed({"workers": value})
    assert str(caught.value).startswith(".shardrun.toml: " + problem)


def test_a_flag_takes_true_or_false_only() -> None:
    with pytest.raises(InputError, match="process-per-batch = 1: not true or false"):
        parsed({"process-per-batch": 1})


def test_both_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / ".shardrun.toml").write_text("workers = 2\n")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    config = find_config(tmp_path, SCHEMA)
    assert config is not None and config.path.name == ".shardrun.toml"
    (tmp_path / "pyproject.toml").write_text("[tool.shardrun]\nworkers = 3\n")
    with pytest.raises(InputError, match=r"^\.shardrun\.toml and \[tool\.shardrun\] in "
                                         r"pyproject\.toml both hold shardrun settings"):
        find_config(tmp_path, SCHEMA)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.shardrun\n")
    with pytest.raises(InputError, match=r"pyproject\.toml: not valid TOML"):
        find_config(tmp_path, SCHEMA)


def test_no_file_means_no_settings(tmp_path: Path) -> None:
    assert find_config(tmp_path, SCHEMA) is None


# ------------------------------------------------------------------ derived from click


def test_every_long_option_of_the_four_commands_is_a_setting() -> None:
    schema = schema_of(cli)
    for name in CONFIGURED_COMMANDS:
        command = cli.get_command(click.Context(cli), name)
        assert command is not None
        options = {param.name for param in command.params if isinstance(param, click.Option)}
        assert {setting.param for setting in schema[(name,)].values()} == options, name
    assert schema[("run",)]["command"].param == "command_template"
    assert schema[("worker",)]["prewarm"].param == "prewarm_framework"
    assert schema[("run",)]["workers"].envvar == "SHARDRUN_WORKERS"
    assert schema[("ci",)]["node-junit-out"].envvar == "SHARDRUN_NODE_JUNIT_OUT"


def test_an_option_added_later_is_configurable_with_no_other_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    @click.group()
    @click.pass_context
    def group(ctx: click.Context) -> None:
        configuration.apply(ctx, group)

    @group.command("run")
    @click.option("--python", "interpreter", default="python3")
    def run(interpreter: str) -> None:
        click.echo(interpreter)

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".shardrun.toml").write_text('python = ".venv/bin/python"\n')
    runner = CliRunner()
    assert runner.invoke(group, ["run"], env={}).output == ".venv/bin/python\n"
    assert runner.invoke(group, ["run"], env={"SHARDRUN_PYTHON": "/usr/bin/python3"}
                         ).output == "/usr/bin/python3\n"
    assert runner.invoke(group, ["run", "--python", "py"], env={"SHARDRUN_PYTHON": "x"}
                         ).output == "py\n"


# ------------------------------------------------------------------ the CLI, in process


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in "abcdef":
        spec = tmp_path / "spec" / f"{name}_spec.rb"
        spec.parent.mkdir(parents=True, exist_ok=True)
        spec.write_text("describe 'x' do\nend\n")
    monkeypatch.chdir(tmp_path)
    for variable in ("SHARDRUN_WORKERS", "SHARDRUN_TIMINGS", "SHARDRUN_WORKER_INDEX"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def planned_workers(*args: str, env: dict[str, str] | None = None) -> int:
    code, out, err = invoke("plan", "spec", "--json", *args, env=env)
    assert code == 0, err
    return int(json.loads(out)["workers"])


def test_pyproject_then_environment_then_option(project: Path) -> None:
    assert planned_workers() == available_cpus()  # the default: -w auto
    (project / "pyproject.toml").write_text("[tool.shardrun]\nworkers = 3\n")
    assert planned_workers() == 3
    assert planned_workers(env={"SHARDRUN_WORKERS": "5"}) == 5
    assert planned_workers("--workers", "4", env={"SHARDRUN_WORKERS": "5"}) == 4
    assert planned_workers("-n", "6") == 6


def test_dot_shardrun_toml_and_its_command_section(project: Path) -> None:
    (project / ".shardrun.toml").write_text("workers = 3\n[plan]\nworkers = 4\n")
    assert planned_workers() == 4
    assert planned_workers("-w", "auto") == available_cpus()


def test_unknown_setting_is_one_line_exit_2(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.shardrun]\nwokers = 3\n")
    code, _, err = invoke("plan", "spec")
    assert code == 2
    assert err.startswith("shardrun: error: pyproject.toml: unknown key 'wokers' in "
                          "[tool.shardrun] (did you mean 'workers'?)")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("file", "env", "expected"), [
    ('retries = "many"\n', {}, ".shardrun.toml: retries = \"many\": 'many' is not a valid "
                               "integer range; expected an integer >= 0"),
    ("", {"SHARDRUN_MODE": "fast"}, "env SHARDRUN_MODE=fast: 'fast' is not one of 'queue', "
                                    "'static'; expected one of queue, static"),
    ("", {"SHARDRUN_WORKERS": "0"}, "env SHARDRUN_WORKERS=0: '0' is not an integer >= 1 or "
                                    "auto"),
])
def test_a_bad_value_names_where_it_was_set_and_what_is_expected(
    project: Path, file: str, env: dict[str, str], expected: str
) -> None:
    (project / ".shardrun.toml").write_text(file)
    code, _, err = invoke("run", "spec", env=env)
    assert (code, err) == (2, f"shardrun: error: {expected}\n")


def test_config_says_where_each_setting_came_from(project: Path) -> None:
    (project / ".shardrun.toml").write_text(
        'retries = 0\ncommand = "bin/test {files}"\n[run]\nmode = "static"\n')
    code, out, err = invoke("config", "run", "--timeout", "30",
                            env={"SHARDRUN_REDIS_URL": "redis://:hunter2@redis:6379/0"})
    assert code == 0, err
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert out.splitlines()[0] == "shardrun run: settings file .shardrun.toml"
    assert rows["retries"] == ["0", ".shardrun.toml"]
    assert rows["command"] == ["bin/test", "{files}", ".shardrun.toml"]
    assert rows["mode"] == ["static", ".shardrun.toml", "[run]"]
    assert rows["timeout"] == ["30.0", "command", "line"]
    assert rows["redis-url"] == ["redis://***@redis:6379/0", "env", "SHARDRUN_REDIS_URL"]
    assert rows["workers"] == [str(available_cpus()), "(auto)", "default"]


def test_config_of_ci_shows_an_unset_required_option(project: Path) -> None:
    code, out, _ = invoke("config", "ci", env={})
    assert code == 0
    assert "redis-url" in out and "node-index" in out


def test_ci_node_variables_keep_their_own_messages(project: Path) -> None:
    code, _, err = invoke("ci", "spec", "--redis-url", "redis://127.0.0.1:1/0",
                          env={"SHARDRUN_BUILD_ID": "b1", "SHARDRUN_NODE_INDEX": "1"})
    assert code == 2
    assert "SHARDRUN_NODE_INDEX=1 given without a node total" in err


def test_docs_list_every_key_with_its_variable() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    schema = schema_of(cli)
    for name in CONFIGURED_COMMANDS:
        for setting in schema[(name,)].values():
            assert f"| `{setting.key}` | `{setting.envvar}` |" in docs, setting.key

"""Runner argv shapes, template substitution and worker environments, without running anything.

The real runs are in tests/integration/test_runners_contract.py; these pin down the argv
details that a real run would not notice (bundle exec, literal units, argument order).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from shardrun.errors import InputError
from shardrun.runners import (
    RUNNER_NAMES,
    CommandRunner,
    CucumberRunner,
    MinitestRunner,
    PytestRunner,
    RspecRunner,
    get_runner,
    worker_env,
)
from shardrun.runners.pytest import SERVER_SCRIPT as PYTEST_SERVER
from shardrun.runners.rspec import SERVER_SCRIPT

OUT = Path("/scratch/shard-3")
HOSTILE_UNIT = "$(touch pwned)"


def _bundle_on_path(monkeypatch: pytest.MonkeyPatch, present: bool) -> None:
    """Pretend `bundle` is (or is not) installed, whatever this machine has."""
    real_which = shutil.which

    def which(name: str, *args: object, **kwargs: object) -> str | None:
        if name == "bundle":
            return "/usr/bin/bundle" if present else None
        return real_which(name)

    monkeypatch.setattr(shutil, "which", which)


# --- get_runner -------------------------------------------------------------------------


def test_get_runner_returns_each_framework(tmp_path: Path) -> None:
    template = "run {files} --junit {junit}"
    runners = [get_runner(name, tmp_path, template) for name in RUNNER_NAMES]
    assert [runner.name for runner in runners] == list(RUNNER_NAMES)
    assert isinstance(runners[0], RspecRunner)
    assert isinstance(runners[1], PytestRunner)
    assert isinstance(runners[2], MinitestRunner)
    assert isinstance(runners[3], CucumberRunner)
    assert isinstance(runners[4], CommandRunner)


def test_get_runner_rejects_unknown_framework(tmp_path: Path) -> None:
    with pytest.raises(
        InputError, match=r"unknown framework 'jest'.*rspec, pytest, minitest, cucumber, command"
    ):
        get_runner("jest", tmp_path)


def test_get_runner_command_needs_a_template(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="needs a command template"):
        get_runner("command", tmp_path)


# --- rspec ------------------------------------------------------------------------------


def test_rspec_batch_reports_through_the_events_formatter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events formatter comes last, after the project's runner arguments: formatters
    on the command line replace .rspec's, so nothing can take the events away."""
    _bundle_on_path(monkeypatch, present=True)  # no Gemfile: bundler must not be used
    runner = RspecRunner(tmp_path)
    assert runner.batch_arguments(["spec/a_spec.rb", "spec/b_spec.rb[1:2]"],
                                  ["--tag", "~slow"]) == (
        "spec/a_spec.rb", "spec/b_spec.rb[1:2]", "--tag", "~slow",
        "--format", "progress", "--format", "ShardrunEventsFormatter",
    )
    assert runner.server_argv() == ("ruby", str(SERVER_SCRIPT))


def test_rspec_uses_bundle_exec_with_gemfile_and_bundler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Gemfile").write_text("source 'https://rubygems.org'\ngem 'rspec'\n")
    _bundle_on_path(monkeypatch, present=True)
    runner = RspecRunner(tmp_path)
    listing = runner.list_examples_argv(["spec/a_spec.rb"], OUT)
    assert listing is not None
    assert listing[:3] == ("bundle", "exec", "rspec")
    server = runner.server_argv()
    assert server is not None and server[:3] == ("bundle", "exec", "ruby")


def test_rspec_without_bundler_falls_back_to_rspec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Gemfile").write_text("gem 'rspec'\n")
    _bundle_on_path(monkeypatch, present=False)
    runner = RspecRunner(tmp_path)
    assert runner.command() == ("rspec",)
    assert runner.server_argv() == ("ruby", str(SERVER_SCRIPT))


def test_rspec_listing_is_a_json_dry_run(tmp_path: Path) -> None:
    argv = RspecRunner(tmp_path).list_examples_argv(["spec/a_spec.rb"], OUT)
    assert argv == (
        "rspec", "--dry-run", "--format", "json", "--out", str(OUT / "rspec-examples.json"),
        "spec/a_spec.rb",
    )


def _rspec_json(path: Path, examples: list[dict[str, object]], errors: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "examples": examples,
        "messages": ["An error occurred while loading ./spec/broken_spec.rb"] if errors else [],
        "summary": {"errors_outside_of_examples_count": errors},
    }
    path.write_text(json.dumps(report))


def test_rspec_parse_examples_strips_dot_slash(tmp_path: Path) -> None:
    _rspec_json(
        tmp_path / "rspec-examples.json",
        [{"id": "./spec/a_spec.rb[1:1]"}, {"id": "./spec/a_spec.rb[1:2:1]"}],
    )
    assert RspecRunner(tmp_path).parse_examples("", tmp_path) == [
        "spec/a_spec.rb[1:1]",
        "spec/a_spec.rb[1:2:1]",
    ]


def test_rspec_parse_examples_refuses_a_file_that_did_not_load(tmp_path: Path) -> None:
    _rspec_json(tmp_path / "rspec-examples.json", [], errors=1)
    with pytest.raises(InputError, match=r"could not load.*broken_spec\.rb"):
        RspecRunner(tmp_path).parse_examples("", tmp_path)


def test_rspec_parse_examples_without_output_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="LoadError: boom"):
        RspecRunner(tmp_path).parse_examples("LoadError: boom", tmp_path)


# --- pytest -----------------------------------------------------------------------------


def test_pytest_batch_arguments_and_server(tmp_path: Path) -> None:
    runner = PytestRunner(tmp_path)
    assert runner.batch_arguments(
        ["tests/test_a.py", "tests/test_b.py::TestX::test_y[1-2]"], ["-k", "fast"]
    ) == ("tests/test_a.py", "tests/test_b.py::TestX::test_y[1-2]", "-p", "no:cacheprovider",
          "-k", "fast")
    # By path, not `-m shardrun...`: the server needs only pytest, not shardrun installed.
    assert runner.server_argv() == (sys.executable, str(PYTEST_SERVER))


def test_pytest_listing(tmp_path: Path) -> None:
    runner = PytestRunner(tmp_path)
    assert runner.list_examples_argv(["tests/test_a.py"], OUT) == (
        sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
        "tests/test_a.py",
    )


def test_pytest_parse_examples_stops_at_the_summary(tmp_path: Path) -> None:
    output = (
        "tests/test_a.py::test_one\n"
        "tests/test_a.py::TestX::test_y[a b-1]\n"
        "\n"
        "2 tests collected in 0.01s\n"
        "tests/test_z.py::not_a_node_id_but_a_warning_location\n"
    )
    assert PytestRunner(tmp_path).parse_examples(output, tmp_path) == [
        "tests/test_a.py::test_one",
        "tests/test_a.py::TestX::test_y[a b-1]",
    ]


def test_pytest_parse_examples_refuses_per_file_counts(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="remove -q from addopts"):
        PytestRunner(tmp_path).parse_examples("tests/test_a.py: 3\n\n", tmp_path)


# --- command ----------------------------------------------------------------------------


def test_command_template_expands_files_as_separate_literal_items(tmp_path: Path) -> None:
    runner = CommandRunner(
        tmp_path, "bundle exec rspec {files} --format RspecJunitFormatter --out {junit}"
    )
    invocation = runner.invocation([HOSTILE_UNIT, "spec/it's_spec.rb"], OUT, ["--seed", "1"])
    assert invocation.argv == (
        "bundle", "exec", "rspec", HOSTILE_UNIT, "spec/it's_spec.rb",
        "--format", "RspecJunitFormatter", "--out", str(OUT / "junit.xml"),
        "--seed", "1",
    )
    assert invocation.junit_path == OUT / "junit.xml"


def test_command_template_fills_placeholders_inside_tokens(tmp_path: Path) -> None:
    runner = CommandRunner(tmp_path, "'my runner' {files} --junitxml={junit} --log '{out_dir}/x y'")
    assert runner.invocation(["a.py"], OUT).argv == (
        "my runner", "a.py", f"--junitxml={OUT / 'junit.xml'}", "--log", f"{OUT}/x y",
    )


def test_command_template_never_formats_other_braces(tmp_path: Path) -> None:
    runner = CommandRunner(tmp_path, "run {files} --junit {junit} --fmt {} --x {0}")
    assert runner.invocation(["a"], OUT).argv[-4:] == ("--fmt", "{}", "--x", "{0}")


def test_command_runner_cannot_list_examples(tmp_path: Path) -> None:
    runner = CommandRunner(tmp_path, "run {files} --junit {junit}")
    assert runner.list_examples_argv(["a"], OUT) is None
    assert runner.parse_examples("a::b\n", OUT) == []
    assert runner.server_argv() is None


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("rspec --out {junit}", "no {files} placeholder"),
        ("rspec --files={files} --out {junit}", "must be a word of its own"),
        ("rspec {files}", "no {junit} placeholder"),
        ("rspec '{files} --out {junit}", "cannot be split"),
    ],
)
def test_command_template_errors(tmp_path: Path, template: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("{", r"\{").replace("}", r"\}")):
        get_runner("command", tmp_path, template)


# --- units ------------------------------------------------------------------------------


@pytest.mark.parametrize("framework", RUNNER_NAMES)
@pytest.mark.parametrize(
    ("units", "message"), [([], "shard is empty"), (["-x_spec.rb"], "not a relative path")]
)
def test_units_that_would_be_misread_are_refused(
    tmp_path: Path, framework: str, units: list[str], message: str
) -> None:
    runner = get_runner(framework, tmp_path, "run {files} --junit {junit}")
    with pytest.raises(InputError, match=message):
        if runner.server_argv() is None:
            runner.invocation(units, OUT)
        else:
            runner.batch_arguments(units)


# --- worker_env -------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "number"), [(1, ""), (2, "2"), (3, "3")])
def test_worker_env_follows_parallel_tests(tmp_path: Path, index: int, number: str) -> None:
    base = {"PATH": "/usr/bin", "TEST_ENV_NUMBER": "stale", "TMPDIR": "/tmp"}
    env = worker_env(base, index, tmp_path)
    assert env == {
        "PATH": "/usr/bin",
        "TEST_ENV_NUMBER": number,
        "SHARDRUN_WORKER_INDEX": str(index),
        "TMPDIR": str(tmp_path),
        "TMP": str(tmp_path),
        "TEMP": str(tmp_path),
    }
    assert base["TEST_ENV_NUMBER"] == "stale"  # the caller's mapping is not modified


def test_worker_env_is_one_based(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="1-based"):
        worker_env({}, 0, tmp_path)


# --- minitest and cucumber ----------------------------------------------------------------


def test_minitest_batch_puts_units_before_the_options_separator(tmp_path: Path) -> None:
    runner = MinitestRunner(tmp_path)
    args = runner.batch_arguments(["test/a_test.rb", "test/b_test.rb::B#test_c"], ["--seed", "1"])
    assert args == ("test/a_test.rb", "test/b_test.rb::B#test_c", "--", "--seed", "1")
    assert runner.server_argv() is not None and runner.server_argv()[-1].endswith(
        "minitest_server.rb")


def test_cucumber_batch_is_cucumbers_own_command_line(tmp_path: Path) -> None:
    runner = CucumberRunner(tmp_path)
    assert runner.batch_arguments(["features/a.feature:12"], ["--tags", "@fast"]) == (
        "features/a.feature:12", "--tags", "@fast")


@pytest.mark.parametrize("runner_class", [MinitestRunner, CucumberRunner])
def test_a_listing_with_load_errors_is_an_input_error(
    runner_class: type, tmp_path: Path
) -> None:
    """A file that fails to load is never split into zero tests."""
    runner = runner_class(tmp_path)
    listed = tmp_path / "out"
    listed.mkdir()
    argv = runner.list_examples_argv(["x"], listed)
    (listed / argv[argv.index("--list") + 1].rsplit("/", 1)[-1]).write_text(
        '{"tests": [], "errors": ["x: SyntaxError"]}')
    with pytest.raises(InputError, match="SyntaxError"):
        runner.parse_examples("", listed)
    (listed / argv[argv.index("--list") + 1].rsplit("/", 1)[-1]).write_text(
        '{"tests": ["a", "b"], "errors": []}')
    assert runner.parse_examples("", listed) == ["a", "b"]

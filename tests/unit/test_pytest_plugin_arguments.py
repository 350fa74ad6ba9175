"""`pytest --shardrun ARGS` -> `shardrun run PATHS -- ARGS` (shardrun/pytest_plugin/arguments.py).

The parser given to `runner_arguments` here is a small argparse stand-in for pytest's:
what matters is that a path is told from an option's value by the parser, not by guess.
pytest's real parser is used in tests/integration/test_pytest_plugin.py.
"""

from __future__ import annotations

import argparse

import pytest

from shardrun.errors import InputError
from shardrun.pytest_plugin.arguments import (
    positional_indices,
    runner_arguments,
    without_control_options,
)
from shardrun.pytest_plugin.session import worker_count


def pytest_like_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("file_or_dir", nargs="*")
    parser.add_argument("-k")
    parser.add_argument("--maxfail", type=int)
    parser.add_argument("-x", action="store_true")
    parser.add_argument("-n")
    return parser


def parse(tokens: list[str]) -> list[str]:
    """As session.py asks pytest's parser: positionals, then what argparse left over."""
    namespace, unknown = pytest_like_parser().parse_known_args(tokens)
    return [*namespace.file_or_dir, *unknown]


def test_paths_go_and_options_stay_in_their_order() -> None:
    args = ["tests", "-x", "-k", "fast and not slow", "other/test_b.py", "-p", "no:randomly"]
    assert runner_arguments(args, ["tests", "other/test_b.py"], parse) == [
        "-x", "-k", "fast and not slow", "-p", "no:randomly"]


def test_an_option_value_that_spells_a_path_stays_the_options() -> None:
    """`-k tests tests`: the first `tests` is -k's expression, the second the path."""
    assert positional_indices(["-k", "tests", "tests"], ["tests"], parse) == {2}
    assert runner_arguments(["-k", "tests", "tests"], ["tests"], parse) == ["-k", "tests"]


def test_without_a_usable_parser_the_first_equal_tokens_are_the_paths() -> None:
    def broken(tokens: list[str]) -> list[str]:
        raise SystemExit(2)

    assert positional_indices(["tests", "-x", "tests"], ["tests"], broken) == {0}
    assert positional_indices(["a", "-x", "b"], ["b", "a"], None) == {0, 2}
    assert positional_indices(["-x"], [], parse) == set()


@pytest.mark.parametrize("args", [
    ["--shardrun", "-n", "4"], ["-n4", "--shardrun"], ["--numprocesses=auto"],
    ["--numprocesses", "2"], ["--junitxml", "out.xml"], ["--junitxml=out.xml"],
    ["--junit-xml=out.xml"], ["--shardrun-workers", "3"], ["--shardrun-record"],
    ["--shardrun-timings=t.json"], ["--shardrun-group", "1", "--shardrun-groups", "2"],
    ["--basetemp", "/tmp/x"], ["-nauto"],
])
def test_shardruns_own_options_never_reach_a_batch(args: list[str]) -> None:
    assert without_control_options([*args, "-q"]) == ["-q"]


def test_options_that_only_look_like_n_are_kept() -> None:
    assert without_control_options(["-nx", "--no-header", "-rA"]) == ["-nx", "--no-header", "-rA"]


@pytest.mark.parametrize(("value", "workers"), [(None, None), ("4", 4), (3, 3)])
def test_worker_count(value: object, workers: int | None) -> None:
    assert worker_count(value) == workers


def test_worker_count_auto_is_this_machines_cpus() -> None:
    count = worker_count("auto")
    assert count is not None and count >= 1
    assert worker_count("logical") == count


@pytest.mark.parametrize("value", ["0", "many", "-2"])
def test_a_worker_count_shardrun_cannot_use_says_so(value: str) -> None:
    with pytest.raises(InputError, match=rf"^-n {value}: --shardrun needs at least one worker"):
        worker_count(value)

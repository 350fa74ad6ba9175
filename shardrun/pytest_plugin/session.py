"""`pytest --shardrun`: the session handed to `shardrun run`, as its command line.

Nothing of the run is done here: the pytest options become a `shardrun run --framework
pytest` command line (this pytest's paths, `-n` as `--workers`, `--junitxml` as
`--junit-out`, `-x`/`--maxfail` as `--fail-fast`, `-v` as `--verbose`, the rest after
`--` for every batch's pytest) and the same click command runs it, so planning, the
queue, accounting, the merged JUnit, the history, the project's shardrun settings and the
summary are those of `shardrun run`, and so is the exit code (0 passed, 1 failed, 2
usage, 3 infrastructure). The batches run under this pytest's own interpreter
(`--python sys.executable`): the pytest a user ran is the pytest that runs the tests.

Like cli/, a front end: it prints for humans and picks the exit code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import pytest

from shardrun.config import available_cpus
from shardrun.errors import EXIT_USAGE, InputError
from shardrun.pytest_plugin.arguments import XDIST, runner_arguments

# xdist's spellings of "as many workers as CPUs".
AUTO_WORKERS = ("auto", "logical")
PROG_NAME = "pytest --shardrun"


def run_through_shardrun(config: pytest.Config, parser: pytest.Parser | None) -> int:
    """Run the session as `shardrun run` would; shardrun's exit code."""
    try:
        argv = shardrun_argv(config, parser)
    except InputError as error:
        click.echo(f"shardrun: error: {error}", err=True)
        return EXIT_USAGE
    from shardrun.cli.main import cli  # the whole CLI, only once --shardrun is given

    try:
        cli.main(argv, prog_name=PROG_NAME)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_USAGE)
    return 0


def shardrun_argv(config: pytest.Config, parser: pytest.Parser | None) -> list[str]:
    """The `shardrun run` command line for this session; InputError for what cannot be."""
    option = config.option
    if option.shardrun_group is not None or option.shardrun_groups is not None:
        raise InputError("--shardrun runs the whole suite through shardrun's queue and "
                         "--shardrun-group picks one CI job's share of a static split: "
                         "use one of them")
    argv = ["run", *session_paths(config), "--framework", "pytest",
            "--python", sys.executable]
    workers = worker_count(option.shardrun_workers or getattr(option, "numprocesses", None))
    if workers is not None:
        argv += ["--workers", str(workers)]
    if getattr(option, "xmlpath", None):
        argv += ["--junit-out", str(option.xmlpath)]
    if getattr(option, "maxfail", 0):
        argv += ["--fail-fast", str(option.maxfail)]
    if option.shardrun_timings:
        argv += ["--timings", str(option.shardrun_timings)]
    # pytest's -v / -vv: shardrun's live results per test (-vv: with their output).
    argv += ["--verbose"] * min(max(int(getattr(option, "verbose", 0) or 0), 0), 2)
    return [*argv, "--", *batch_arguments(config, parser)]


def worker_count(value: object) -> int | None:
    """-n N, -n auto (this machine's CPUs) or nothing (shardrun's own default)."""
    if value is None:
        return None
    text = str(value)
    if text in AUTO_WORKERS:
        return available_cpus()
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"-n {text}: --shardrun needs at least one worker; give -n N "
                         "(N >= 1) or -n auto")
    return int(text)


def session_paths(config: pytest.Config) -> list[str]:
    """The paths as given, else pytest's `testpaths`; shardrun plans whole files."""
    given = [str(path) for path in (config.option.file_or_dir or [])]
    if not given and config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        given = [_from_cwd(arg) for arg in config.args]
    for path in given:
        if "::" in path:
            raise InputError(f"{path}: --shardrun runs whole files and directories; run "
                             "single tests with plain pytest (without --shardrun)")
    return given


def _from_cwd(path: str) -> str:
    return os.path.relpath(path) if Path(path).is_absolute() else path


def batch_arguments(config: pytest.Config, parser: pytest.Parser | None) -> list[str]:
    """What every batch's pytest receives: the user's options, minus paths and shardrun's.

    With xdist active here it is active in every batch too (same interpreter, same
    addopts): `-n 0` keeps a project's `addopts = -n auto` from fanning each batch out
    again, since shardrun's workers already are the parallelism.
    """
    def parse(tokens: list[str]) -> list[str]:
        """pytest's positionals: `file_or_dir`, plus what argparse left unknown after
        the first run of them, which pytest adds to `file_or_dir` too."""
        assert parser is not None
        namespace, unknown = parser.parse_known_and_unknown_args(tokens)
        return [*namespace.file_or_dir, *unknown]

    args = runner_arguments(list(config.invocation_params.args),
                            list(config.option.file_or_dir or []),
                            parse if parser is not None else None)
    if config.pluginmanager.has_plugin(XDIST):
        args += ["--numprocesses=0"]
    return args

"""How `pytest --shardrun ARGS` becomes `shardrun run PATHS -- ARGS`: pure functions.

The controlling pytest's command line holds three kinds of arguments: shardrun's own
(`--shardrun`, `-n 4`, `--junitxml`, which the merged report honours), the paths to run
(shardrun plans and deals them out), and everything else (`-k`, `-p`, `--tb`, `-o ...`),
which every worker's pytest must see as the user typed it. A path left among the latter
would make every batch run the whole directory again, so positional arguments are found
the way pytest's own parser found them, not guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

# pytest-xdist's plugin name: it owns `-n/--numprocesses` when installed.
XDIST = "xdist"
# Options of the controlling session: taken by shardrun, never passed to a batch.
CONTROL_FLAGS = frozenset({"--shardrun", "--shardrun-record"})
CONTROL_VALUED = frozenset({
    "--shardrun-workers", "--shardrun-group", "--shardrun-groups", "--shardrun-timings",
    "-n", "--numprocesses",  # shardrun's workers, not xdist's in each batch
    "--junitxml", "--junit-xml",  # one merged report, not every batch into the same file
    # pytest empties --basetemp as a session starts: batches sharing one would delete each
    # other's tmp_path. Each worker's pytest keeps its own under the worker's TMPDIR.
    "--basetemp",
})
# Stands in for a token that may be a positional argument while pytest's parser reads the
# command line again: the tokens it returns as positionals are then known by index.
_MARK = "\0shardrun-token-"

# Parses a command line and returns its positional arguments (pytest's `file_or_dir`).
PositionalParser = Callable[[list[str]], Sequence[str]]


def runner_arguments(
    args: Sequence[str], positionals: Collection[str], parse: PositionalParser | None
) -> list[str]:
    """`args` without the paths and without the controlling session's own options."""
    kept = [arg for index, arg in enumerate(args)
            if index not in positional_indices(args, positionals, parse)]
    return without_control_options(kept)


def positional_indices(
    args: Sequence[str], positionals: Collection[str], parse: PositionalParser | None
) -> set[int]:
    """Which tokens of `args` the parser took as positional arguments.

    Every token equal to a positional is replaced by a numbered mark and the command line
    parsed again: an option's value (`-k tests`) stays the option's, a path comes back
    as a positional, whatever their spelling. Without a parser, or if the marks upset it
    (an option that takes only numbers was given one), the first tokens equal to each
    positional are taken, which is right unless an option's value spells a path too.
    """
    wanted = set(positionals)
    if not wanted:
        return set()
    if parse is not None:
        marked = [f"{_MARK}{index}" if arg in wanted else arg for index, arg in enumerate(args)]
        try:
            found = parse(marked)
        except (Exception, SystemExit):
            found = None
        if found is not None:
            return {int(token[len(_MARK):]) for token in found if token.startswith(_MARK)}
    return _first_occurrences(args, positionals)


def _first_occurrences(args: Sequence[str], positionals: Collection[str]) -> set[int]:
    indices: set[int] = set()
    for positional in positionals:
        for index, arg in enumerate(args):
            if arg == positional and index not in indices:
                indices.add(index)
                break
    return indices


def without_control_options(args: Sequence[str]) -> list[str]:
    """Drop shardrun's options and their values, in each spelling: `-n 4`, `-n4`,
    `--numprocesses=4`, `--junitxml=out.xml`."""
    kept: list[str] = []
    tokens = iter(args)
    for arg in tokens:
        if arg in CONTROL_FLAGS:
            continue
        if arg in CONTROL_VALUED:
            next(tokens, None)
            continue
        name, equals, _ = arg.partition("=")
        if (equals and name in CONTROL_VALUED) or _attached_n(arg):
            continue
        kept.append(arg)
    return kept


def _attached_n(arg: str) -> bool:
    """`-n4` or `-nauto`: xdist's (and shardrun's) -n with its value attached."""
    value = arg[2:]
    return arg.startswith("-n") and not arg.startswith("--") and (
        value.isdigit() or value in ("auto", "logical"))

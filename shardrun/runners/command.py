"""Any other framework: a user-supplied command template.

The template is split with shlex *first*, then placeholders are filled per token, so units
never pass through a shell or a string that is parsed again: a file named "$(rm -rf ~)"
is one literal argv item. Placeholders:

- ``{files}``: a token that is exactly this expands to the units, one argv item each;
- ``{junit}``: replaced inside any token by the JUnit XML path the command must write;
- ``{out_dir}``: replaced inside any token by the shard's output directory.

Example: ``bundle exec rspec {files} --format RspecJunitFormatter --out {junit}``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shardrun.errors import InputError
from shardrun.runners.base import JUNIT_FILENAME, Invocation, Runner, checked_units

FILES_PLACEHOLDER = "{files}"
JUNIT_PLACEHOLDER = "{junit}"
OUT_DIR_PLACEHOLDER = "{out_dir}"


def parse_template(template: str) -> tuple[str, ...]:
    """Split and validate a command template; InputError says what to fix.

    `{junit}` is required too: without it the command cannot know where shardrun looks
    for results, and every shard would come back as "no JUnit output".
    """
    try:
        tokens = tuple(shlex.split(template))
    except ValueError as error:
        raise InputError(f"command template {template!r} cannot be split: {error}") from error
    if FILES_PLACEHOLDER not in tokens:
        hint = " (it must be a word of its own)" if FILES_PLACEHOLDER in template else ""
        raise InputError(
            f"command template {template!r} has no {FILES_PLACEHOLDER} placeholder{hint}: "
            f"add it where the test files go, e.g. 'rspec {FILES_PLACEHOLDER} ...'"
        )
    if not any(JUNIT_PLACEHOLDER in token for token in tokens):
        raise InputError(
            f"command template {template!r} has no {JUNIT_PLACEHOLDER} placeholder: "
            "add it where the command writes its JUnit XML report"
        )
    return tokens


@dataclass(frozen=True)
class CommandRunner(Runner):
    """Runs units with `template`; cannot list examples or report per-example times."""

    root: Path
    template: str
    name = "command"

    def __post_init__(self) -> None:
        parse_template(self.template)  # fail at configuration time, not on a worker

    def invocation(
        self, units: Sequence[str], out_dir: Path, extra_args: Sequence[str] = ()
    ) -> Invocation:
        junit_path = out_dir / JUNIT_FILENAME
        argv: list[str] = []
        for token in parse_template(self.template):
            if token == FILES_PLACEHOLDER:
                argv.extend(checked_units(units))
            else:
                argv.append(
                    token.replace(JUNIT_PLACEHOLDER, str(junit_path)).replace(
                        OUT_DIR_PLACEHOLDER, str(out_dir)
                    )
                )
        return Invocation(argv=(*argv, *extra_args), junit_path=junit_path)

"""Text from files and test runs made safe to print on a terminal.

Why: file names come from the checkout, from timing files anyone can commit and from
JUnit reports; a name holding "\x1b]2;...\x07" or "\x1b[2J" would retitle or clear the
user's terminal (or hide lines of the summary) if echoed raw. Pure: text in, text out.
"""

from __future__ import annotations

import re

# C0 controls (tab included: a name with a tab would misalign the columns), DEL, and C1
# controls (U+0080-U+009F: "\x9b" is a one-byte CSI on many terminals). Newlines are
# controls too: a name must not be able to start a fake line of its own.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with every control character shown as a visible escape (\\x1b, \\n, ...)."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")

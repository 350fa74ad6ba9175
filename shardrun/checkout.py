"""What the checkout is: its commit, and whether a file is committed unchanged.

The coordinator puts its commit in every batch and a worker on another commit refuses
it; the CI fallback plans from a timing file only when every node's checkout holds the
same one. Both ask git, and nothing else here does.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def git_head(root: Path) -> str | None:
    """`git rev-parse HEAD` of the checkout at `root`, or None when it is not one.

    The coordinator puts its commit in every payload and a worker refuses batches of
    another commit: running yesterday's tests against today's plan loses tests silently.
    """
    if shutil.which("git") is None:
        return None
    try:
        completed = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--verify", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    head = completed.stdout.strip()
    return head if completed.returncode == 0 and head else None


def committed_unchanged(path: Path, root: Path) -> bool:
    """Whether `path` is tracked by the git checkout at `root` and has no local changes:
    then every checkout of the same commit holds the same file."""
    if shutil.which("git") is None or not path.is_file():
        return False
    for argv in (["ls-files", "--error-unmatch", "--", str(path)],
                 ["diff", "--quiet", "HEAD", "--", str(path)]):
        try:
            completed = subprocess.run(["git", "-C", str(root), *argv], capture_output=True,
                                       timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if completed.returncode != 0:
            return False
    return True

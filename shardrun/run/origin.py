"""Where a run came from: its commit, branch and CI build, for its record on the dashboard.

Why: runs were labelled only by time, so nobody could tell which commit or branch a slow
or failing run belonged to (knapsack_pro and CircleCI's insights show both). The CI's own
variables win (a CI checkout is often a detached HEAD, whose branch git cannot tell);
outside CI, git answers. Every value may be None: a run outside a git checkout still
records.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from shardrun.checkout import git_head
from shardrun.run.ci_env import build_label

# The variables each CI names the commit and the branch by, in ci_env.py's provider order.
# GitHub's GITHUB_HEAD_REF is a pull request's branch (GITHUB_REF_NAME is then "12/merge").
COMMIT_VARIABLES = ("GITHUB_SHA", "CI_COMMIT_SHA", "CIRCLE_SHA1", "BUILDKITE_COMMIT",
                    "GIT_COMMIT")
BRANCH_VARIABLES = ("GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME",
                    "CIRCLE_BRANCH", "BUILDKITE_BRANCH", "GIT_BRANCH")
GIT_TIMEOUT_SECONDS = 10


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((env[name].strip() for name in names if env.get(name, "").strip()), None)


def git_branch(root: Path) -> str | None:
    """The checked-out branch, or None on a detached HEAD or outside a git checkout."""
    if shutil.which("git") is None:
        return None
    try:
        completed = subprocess.run(
            ["git", "-C", str(root), "symbolic-ref", "--short", "-q", "HEAD"],
            capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout.strip() or None


def run_origin(root: Path, env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """{"commit", "branch", "build"} of a run in `root` (docs/dashboard.md, "origin")."""
    env = os.environ if env is None else env
    return {
        "commit": _first(env, COMMIT_VARIABLES) or git_head(root),
        "branch": _first(env, BRANCH_VARIABLES) or git_branch(root),
        "build": build_label(env),
    }

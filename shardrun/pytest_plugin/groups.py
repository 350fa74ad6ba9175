"""`pytest --shardrun-group I --shardrun-groups N`: pytest-split's `--group I --splits N`.

Every CI job of a build runs the same pytest command with its own I; each keeps only the
test files of group I of a static split, balanced from the timing history, and deselects
the rest the way `-k` does ("N deselected"). The jobs never talk to each other, so each
computes the split from what all of them have alike (run/shared_split.py): the files
pytest collected and the timing history as committed in the checkout, else file sizes.
The header line prints the plan's digest: equal in every job, the groups cover the suite
exactly once.

Groups are numbered 1 to N, as pytest-split's are (and as a CI matrix usually counts);
group I is shard I-1 of `shardrun plan --total N`, which numbers from 0. A group number
outside 1..N is a usage error (pytest's exit 4, as for any bad pytest option).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shardrun.plan.planner import plan_shards
from shardrun.plan.timings import file_of_unit
from shardrun.pytest_plugin.record import timings_path
from shardrun.run.shared_split import SIZES_SOURCE, plan_digest, shared_estimates


@dataclass
class GroupSelection:
    """The plugin object of one session: selects group `group` (1-based) of `groups`."""

    group: int
    groups: int
    root: Path
    timings: Path
    lines: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: pytest.Config) -> GroupSelection:
        group, groups = config.option.shardrun_group, config.option.shardrun_groups
        if group is None or groups is None:
            raise pytest.UsageError("--shardrun-group I and --shardrun-groups N go together: "
                                    "give both (group I of N, 1-based)")
        if groups < 1:
            raise pytest.UsageError(f"--shardrun-groups {groups}: give at least 1")
        if not 1 <= group <= groups:
            raise pytest.UsageError(f"--shardrun-group {group}: groups are numbered 1 to "
                                    f"{groups} (--shardrun-groups)")
        return cls(group, groups, config.rootpath, timings_path(config))

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """After -k/-m and the other plugins: keep this group's files' tests."""
        files = {item: file_of(item) for item in items}
        # Relative to the rootdir when inside it: the header shows what is committed.
        timings = (self.timings.relative_to(self.root) if self.timings.is_relative_to(self.root)
                   else self.timings)
        estimates, source = shared_estimates(set(files.values()), timings, self.root)
        share = plan_shards(estimates, self.groups).shards[self.group - 1]
        kept = set(share.units)
        selected = [item for item in items if files[item] in kept]
        deselected = [item for item in items if files[item] not in kept]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = selected
        seconds = ("" if source == SIZES_SOURCE else
                   f", {share.predicted_seconds:.1f} s of {sum(estimates.values()):.1f} s")
        self.lines = [
            f"shardrun: group {self.group} of {self.groups}: {len(kept)} of {len(estimates)} "
            f"files{seconds}; split from {source}, plan digest {plan_digest(estimates)} "
            "(the same in every group)"
        ]

    def pytest_report_collectionfinish(self) -> list[str]:
        return self.lines


def file_of(item: pytest.Item) -> str:
    """The test file of an item, as its node id names it (relative to the rootdir)."""
    return file_of_unit(item.nodeid)

"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest
from support.junit_samples import RSPEC_FAILURE, outcome, result, rspec_case, suite

from shardrun.report import RunReport, merge


@pytest.fixture
def mixed() -> RunReport:
    """Two rspec shards: a pass, a failure, a skip, a pass in another file."""
    shard0 = result(0, ("spec/a_spec.rb",), suite(
        rspec_case("A passes", "spec/a_spec.rb", 0.25),
        rspec_case("A fails", "spec/a_spec.rb", 1.5, RSPEC_FAILURE),
        rspec_case("A waits", "spec/a_spec.rb", 0.0, "<skipped/>"),
    ), process=outcome(1))
    shard1 = result(1, ("spec/b_spec.rb",), suite(rspec_case("B passes", "spec/b_spec.rb", 2.0)))
    return merge(["spec/a_spec.rb", "spec/b_spec.rb"], [shard0, shard1])

"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest
from support.events import batch, collected, done, process, ran

from shardrun.report.merge import RunReport, merge

RSPEC_DETAILS = ("Failure/Error: expect(1).to eq(2)\n  expected: 2\n       got: 1\n"
                 "./spec/a_spec.rb:12:in `block (2 levels)'")


@pytest.fixture
def mixed() -> RunReport:
    """Two rspec batches: a pass, a failure, a skip, a pass in another file."""
    batch0 = batch(0, ["spec/a_spec.rb"], [
        collected("spec/a_spec.rb[1:1]", "spec/a_spec.rb[1:2]", "spec/a_spec.rb[1:3]"),
        ran("spec/a_spec.rb[1:1]", seconds=0.25, name="A passes"),
        ran("spec/a_spec.rb[1:2]", "failed", 1.5, name="A fails", message="expected: 2",
            details=RSPEC_DETAILS, type="RSpec::Expectations::ExpectationNotMetError"),
        ran("spec/a_spec.rb[1:3]", "skipped", 0.0, name="A waits"), done(1)],
        ending=process(1))
    batch1 = batch(1, ["spec/b_spec.rb"], [
        collected("spec/b_spec.rb[1:1]"),
        ran("spec/b_spec.rb[1:1]", seconds=2.0, name="B passes"), done(0)])
    return merge(["spec/a_spec.rb", "spec/b_spec.rb"], [batch0, batch1])

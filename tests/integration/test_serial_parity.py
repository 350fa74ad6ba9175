"""Cases found by running real suites side by side with a serial run (issue 24,
bench/real_suites.py): the merged JUnit has the serial run's testcases, in every runner
mode.

- A test class that inherits its tests from a base class in another module
  (`class TestDiGraph(BaseDiGraphTester)` in networkx): pytest's JUnit gives such a test
  the `file` of the base class's module; it belongs to the module that collected it.
- A module skipped as it is collected (`pytest.importorskip("numpy")` at its top, 40
  modules of networkx without numpy): pytest's JUnit has one skipped testcase for the
  module (classname "", name the module's dotted path); it used to vanish from the merged
  report as "ran with zero examples".
- RSpec (rspec-expectations 3.12.1, addressable 2.8.1): an example from a shared example
  group written in another file has the classname of the spec file that includes it
  (rspec_junit_formatter names the top-level group's file); a one-liner
  (`it { is_expected.to eq 2 }`, `its(:x)`) is named by the description RSpec generates
  as it runs, so its name is only known when it finishes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.files import write_files, write_pytest_suite
from support.runs import junit_cases, run_options, serial_cases, shardrun

# Serial pytest in xunit1, as bench/real_suites.py runs it: the `file` attribute is there.
PYTEST_INI = "[pytest]\njunit_family = xunit1\n"
FILES = {
    "pytest.ini": PYTEST_INI,
    "tests/base.py": """
        class Base:
            def test_x(self):
                assert True
        """,
    "tests/test_child.py": """
        from tests.base import Base


        class TestChild(Base):
            pass
        """,
    "tests/test_optional.py": """
        import pytest

        pytest.importorskip("a_module_nobody_installed")


        def test_needs_it():
            pass
        """,
    "tests/test_plain.py": """
        def test_plain():
            pass
        """,
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, frozenset[tuple[str, ...]]]:
    root = write_pytest_suite(tmp_path_factory.mktemp("parity"), FILES)
    code, cases = serial_cases("pytest", root, root.parent / "serial.xml", ["tests"])
    assert code == 0
    return root, frozenset(cases)


@pytest.mark.parametrize("runners", ["fork", "reuse", "fresh"])
def test_the_merged_report_is_the_serial_runs_in_every_runner_mode(
    suite: tuple[Path, frozenset[tuple[str, ...]]], runners: str, tmp_path: Path
) -> None:
    root, serial = suite
    # What the comparison is about: the inherited test and the skipped module.
    assert ("tests.test_child.TestChild", "test_x", "passed") in serial
    assert ("", "tests.test_optional", "skipped") in serial
    completed = shardrun(root, "tests", "--workers", "2", "--retries", "0",
                         "--runners", runners, *run_options(tmp_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    cases = junit_cases(tmp_path / "run.xml")
    assert [case for case, count in cases.items() if count != 1] == []
    assert set(cases) == serial


RSPEC_FILES = {
    ".rspec": "--require spec_helper\n",
    "spec/spec_helper.rb": """
        require_relative "support/shared"
        """,
    "spec/support/shared.rb": """
        RSpec.shared_examples "a number" do
          it "is a number" do
            expect(subject).to be_a(Integer)
          end
        end
        """,
    "spec/two_spec.rb": """
        RSpec.describe "two" do
          subject { 2 }

          it_behaves_like "a number"
          it { is_expected.to eq(2) }
          it { is_expected.to be_even }
        end
        """,
    "spec/three_spec.rb": """
        RSpec.describe "three" do
          subject { 3 }

          it_behaves_like "a number"
          it { is_expected.to eq(4) }
        end
        """,
}


@pytest.fixture(scope="module")
def rspec_suite(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, frozenset[tuple[str, ...]]]:
    root = write_files(tmp_path_factory.mktemp("rspec-parity"), RSPEC_FILES)
    code, cases = serial_cases("rspec", root, root.parent / "serial.xml", ["spec"])
    assert code == 1
    return root, frozenset(cases)


@pytest.mark.ruby
@pytest.mark.parametrize("runners", ["fork", "reuse", "fresh"])
def test_the_merged_rspec_report_is_the_serial_runs_in_every_runner_mode(
    require_ruby: None, rspec_suite: tuple[Path, frozenset[tuple[str, ...]]], runners: str,
    tmp_path: Path,
) -> None:
    root, serial = rspec_suite
    assert ("spec.two_spec", "two behaves like a number is a number", "passed") in serial
    assert ("spec.three_spec", "three is expected to eq 4", "failed") in serial
    completed = shardrun(root, "spec", "--workers", "2", "--retries", "0",
                         "--runners", runners, *run_options(tmp_path))
    assert completed.returncode == 1, completed.stdout + completed.stderr
    cases = junit_cases(tmp_path / "run.xml")
    assert [case for case, count in cases.items() if count != 1] == []
    assert set(cases) == serial

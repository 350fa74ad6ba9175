from __future__ import annotations

from pathlib import Path

import pytest

from shardrun.errors import InputError
from shardrun.plan.discovery import detect_framework, discover


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# test\n")


def test_rspec_detected_by_dot_rspec_or_spec_dir(tmp_path: Path) -> None:
    assert detect_framework(tmp_path) == "pytest"
    (tmp_path / "spec").mkdir()
    assert detect_framework(tmp_path) == "rspec"
    other = tmp_path / "other"
    other.mkdir()
    (other / ".rspec").write_text("--require spec_helper\n")
    assert detect_framework(other) == "rspec"


def test_rspec_default_pattern_and_sorted_relative_paths(tmp_path: Path) -> None:
    touch(tmp_path, "spec/z_spec.rb", "spec/models/a_spec.rb", "spec/spec_helper.rb",
          "spec/support/helper.rb")
    suite = discover((), None, tmp_path)
    assert suite.framework == "rspec"
    assert suite.files == ("spec/models/a_spec.rb", "spec/z_spec.rb")


def test_pytest_default_patterns_skip_virtualenvs(tmp_path: Path) -> None:
    touch(tmp_path, "tests/test_a.py", "tests/b_test.py", "tests/helpers.py",
          ".venv/lib/test_vendored.py", "build/test_built.py")
    suite = discover(("tests", "."), None, tmp_path)
    assert suite.framework == "pytest"
    assert suite.files == ("tests/b_test.py", "tests/test_a.py")


def test_named_file_kept_even_off_pattern_and_globs_expand(tmp_path: Path) -> None:
    touch(tmp_path, "spec/a_spec.rb", "spec/b_spec.rb", "spec/odd_check.rb")
    assert discover(("spec/odd_check.rb",), "rspec", tmp_path).files == ("spec/odd_check.rb",)
    assert discover(("spec/a_*.rb",), "rspec", tmp_path).files == ("spec/a_spec.rb",)
    assert discover(("spec/**/*_spec.rb",), "rspec", tmp_path).files == (
        "spec/a_spec.rb", "spec/b_spec.rb")


def test_framework_override(tmp_path: Path) -> None:
    touch(tmp_path, "spec/a_spec.rb", "spec/test_x.py")
    assert discover(("spec",), "pytest", tmp_path).files == ("spec/test_x.py",)


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (("nope",), "nope: no such file or directory"),
        (("spec/*.txt",), "matches no file"),
        (("empty",), "no rspec test files under empty"),
    ],
)
def test_bad_paths_name_the_path(tmp_path: Path, paths: tuple[str, ...], message: str) -> None:
    touch(tmp_path, "spec/a_spec.rb")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=message):
        discover(paths, "rspec", tmp_path)


def test_unknown_framework(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--framework"):
        discover((), "jest", tmp_path)


def test_minitest_and_cucumber_are_found_in_their_default_directories(tmp_path: Path) -> None:
    touch(tmp_path, "test/models/user_test.rb", "test/test_helper.rb", "test/a_test.py")
    suite = discover((), None, tmp_path)
    assert (suite.framework, suite.files) == ("minitest", ("test/models/user_test.rb",))
    other = tmp_path / "other"
    touch(other, "features/sign_in.feature", "features/step_definitions/steps.rb")
    suite = discover((), None, other)
    assert (suite.framework, suite.files) == ("cucumber", ("features/sign_in.feature",))


def test_the_paths_decide_the_framework(tmp_path: Path) -> None:
    touch(tmp_path, "spec/a_spec.rb", "features/a.feature", "test/b_test.rb")
    assert discover(("features",), None, tmp_path).framework == "cucumber"
    assert discover(("test/b_test.rb",), None, tmp_path).framework == "minitest"
    assert discover(("spec",), None, tmp_path).framework == "rspec"


def test_a_project_with_several_frameworks_is_refused_naming_them(tmp_path: Path) -> None:
    """activeadmin: spec files and feature files; a plan of the specs alone was a silent
    subset of the suite."""
    touch(tmp_path, "spec/a_spec.rb", "spec/b_spec.rb", "features/a.feature")
    with pytest.raises(InputError) as raised:
        discover((), None, tmp_path)
    message = str(raised.value)
    assert "rspec (2 files)" in message and "cucumber (1 files)" in message
    assert "--framework rspec|cucumber" in message
    assert discover((), "cucumber", tmp_path).files == ("features/a.feature",)


def test_pytest_counts_beside_others_only_when_the_project_configures_it(
    tmp_path: Path,
) -> None:
    touch(tmp_path, "spec/a_spec.rb", "scripts/test_tool.py")
    assert discover((), None, tmp_path).framework == "rspec"
    touch(tmp_path, "conftest.py")
    with pytest.raises(InputError, match=r"rspec \(1 files\), pytest \(1 files\)"):
        discover((), None, tmp_path)


@pytest.mark.parametrize(
    ("framework", "message"),
    [("minitest", r"no minitest test files under test \(looked for \*\*/\*_test.rb\)"),
     ("cucumber", r"no cucumber test files under features \(looked for \*\*/\*.feature\)")],
)
def test_an_empty_suite_names_the_framework_it_looked_for(
    framework: str, message: str, tmp_path: Path
) -> None:
    (tmp_path / "test").mkdir()
    (tmp_path / "features").mkdir()
    with pytest.raises(InputError, match=message):
        discover((), framework, tmp_path)

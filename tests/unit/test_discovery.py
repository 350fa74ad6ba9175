from __future__ import annotations

from pathlib import Path

import pytest

from shardrun.discovery import detect_framework, discover
from shardrun.errors import InputError


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

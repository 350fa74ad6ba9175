"""The dashboard page in a real browser: headless Chromium renders what real runs recorded.

The history comes the real way: `python -m shardrun run` on a small generated pytest suite
with 3 workers, a few times (one file gets slower each run, one test fails), then
`python -m shardrun dashboard html`. Chromium then loads the page from disk twice: once
with --dump-dom to count what the page's JS drew, once for a screenshot. The page writes
every JS error and every request its CSP blocks (it may load nothing at all) into
`<pre id="errors">`; Chromium's own log (stderr) must show no console message either.

Chromium skips on a developer machine without it, but fails in CI (CI=true), where
`.ci/run` installs it. Inner pytest runs get PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 and the suite
its own pytest.ini, as in test_run.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from support.files import write_files
from support.requirements import missing
from support.runs import clean_env

CHROMIUM = "chromium"
# Generous: a cold interpreter, three workers and a browser on a loaded two-core CI box.
COMMAND_TIMEOUT_SECONDS = 180
WORKERS = 3
RUNS = 4  # enough samples (4) for the growing file to show up as drifting
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)
# The page writes nothing to the console, so with --enable-logging=stderr any console line
# ("...:CONSOLE:...") is a problem: an uncaught error, a request the page's CSP blocked.
CONSOLE_PROBLEMS = ("Uncaught", ":CONSOLE")

# A name longer than its table column: shortened in the middle, whole on hover.
LONG_FILE = "tests/integration/payments/providers/stripe/test_webhook_signature_verification.py"
ALWAYS_FAILS = "tests/test_models.py::test_validates"
BRANCH = "feature/faster-checkout"

SUITE = {
    "pytest.ini": "[pytest]\n",
    "tests/test_api.py": """
        import time

        def test_lists():
            time.sleep(0.5)

        def test_creates():
            time.sleep(0.3)
    """,
    "tests/test_models.py": """
        import time

        def test_saves():
            time.sleep(0.4)

        def test_validates():
            time.sleep(0.2)
            assert "valid" == "invalid", "the failing example"
    """,
    "tests/test_growing.py": """
        import os
        import time

        def test_gets_slower_every_run():
            time.sleep(0.15 + 0.15 * int(os.environ.get("DASHBOARD_RUN", "1")))
    """,
    "tests/test_views.py": """
        import time

        def test_renders():
            time.sleep(0.35)
    """,
    "tests/test_utils.py": """
        import time

        def test_formats():
            time.sleep(0.1)

        def test_parses():
            time.sleep(0.15)
    """,
    "tests/unit/test_money.py": """
        import time

        def test_adds():
            time.sleep(0.25)
    """,
    "tests/unit/test_dates.py": """
        def test_is_fast():
            pass
    """,
    LONG_FILE: """
        import time

        def test_rejects_a_webhook_whose_signature_was_made_with_another_secret():
            time.sleep(0.2)
    """,
}


@dataclass(frozen=True)
class Recorded:
    """The rendered page, the run records, and what the terminal said of the last run."""

    page: Path
    last_run: dict[str, Any]
    runs: list[dict[str, Any]]
    last_stdout: str
    commit: str


@pytest.fixture
def require_chromium() -> str:
    path = shutil.which(CHROMIUM)
    if path is None:
        missing("chromium not installed (apt-get install chromium)")
    return str(path)


def shardrun(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shardrun", *args], cwd=cwd, env=clean_env(**env),
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False,
    )


def record_runs(root: Path, count: int) -> Recorded:
    """`count` real runs of the suite on WORKERS workers, then the page rendered from them."""
    if not shutil.which("redis-server"):
        missing("redis-server not on PATH (apt-get install redis-server)")
    write_files(root, SUITE)
    commit = git_commit(root)
    timings = root / "timings.json"
    for run in range(1, count + 1):
        # Static shards: every worker gets a batch, so every Gantt row has a bar.
        completed = shardrun(root, "run", "tests", "--workers", str(WORKERS), "--mode",
                             "static", "--timings", str(timings), DASHBOARD_RUN=str(run))
        assert completed.returncode == 1, completed.stdout + completed.stderr  # one failure
        last_stdout = completed.stdout
    page = root / "dashboard.html"
    completed = shardrun(root, "dashboard", "html", "--timings", str(timings), "--out", str(page))
    assert completed.returncode == 0, completed.stderr
    runs = json.loads(timings.read_text(encoding="utf-8"))["runs"]
    assert len(runs) == count
    return Recorded(page, runs[-1], runs, last_stdout, commit)


def git_commit(root: Path) -> str:
    """The suite as one commit on BRANCH: what the run records' origin reads."""
    if not shutil.which("git"):
        missing("git not on PATH (apt-get install git)")
    for argv in (["init", "-q", "-b", BRANCH], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(root), *argv], check=True, capture_output=True)
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True)
    return head.stdout.strip()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return record_runs(tmp_path_factory.mktemp("dashboard-suite"), RUNS)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """One run with no timings before it: its plan balanced file sizes."""
    return record_runs(tmp_path_factory.mktemp("dashboard-first-run"), 1)


def chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium call with its own profile and no background traffic."""
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False,
    )


class DomCounter(HTMLParser):
    """Gantt rows and bars, the error box's text, and whether the page's JS finished."""

    def __init__(self) -> None:
        super().__init__()
        self.row_workers: list[str] = []
        self.bars: list[dict[str, str | None]] = []
        self.gantt_run = ""
        self.test_rows: dict[str, dict[str, str | None]] = {}
        self.path_titles: list[str] = []
        self.predicted_outlines = 0
        self.errors = ""
        self.rendered = False
        self._in_errors = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if "gantt-row" in classes:
            self.row_workers.append(attributes.get("data-worker") or "")
        if "gantt-bar" in classes:
            self.bars.append(attributes)
        if "gantt" in classes:
            self.gantt_run = attributes.get("data-run-id") or ""
        if "test-row" in classes:
            self.test_rows[attributes.get("data-test") or ""] = attributes
        if "path" in classes and attributes.get("title"):
            self.path_titles.append(attributes.get("title") or "")
        if "gantt-predicted" in classes:
            self.predicted_outlines += 1
        if tag == "body":
            self.rendered = attributes.get("data-rendered") == "true"
        self._in_errors = tag == "pre" and attributes.get("id") == "errors"

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._in_errors = False

    def handle_data(self, data: str) -> None:
        if self._in_errors:
            self.errors += data


@pytest.fixture
def dumped(require_chromium: str, recorded: Recorded, tmp_path: Path) -> tuple[DomCounter, str]:
    """The page's DOM after its scripts ran, and Chromium's log while they did."""
    completed = chromium(require_chromium, tmp_path / "profile", "--enable-logging=stderr",
                         "--v=0", "--dump-dom", recorded.page.as_uri())
    assert completed.returncode == 0, completed.stderr[-2000:]
    counter = DomCounter()
    counter.feed(completed.stdout)
    return counter, completed.stderr


def test_page_draws_a_row_per_worker_and_a_bar_per_batch(
    dumped: tuple[DomCounter, str], recorded: Recorded
) -> None:
    dom, _ = dumped
    assert dom.rendered, "the page's script did not finish"
    batches = recorded.last_run["batches"]
    workers = {batch["worker"] for batch in batches}
    assert len(batches) >= WORKERS
    assert sorted(dom.row_workers) == sorted(workers)
    assert len(dom.bars) == len(batches)
    drawn = sorted((int(bar["data-batch"] or -1), bar["data-outcome"]) for bar in dom.bars)
    assert drawn == sorted((batch["index"], batch["outcome"]) for batch in batches)
    assert "failed" in {outcome for _, outcome in drawn}
    assert dom.predicted_outlines == len(batches)  # the last run was planned from timings


def test_page_has_no_errors(dumped: tuple[DomCounter, str]) -> None:
    dom, log = dumped
    assert dom.errors.strip() == ""
    problems = [line for line in log.splitlines() if any(p in line for p in CONSOLE_PROBLEMS)]
    assert problems == []


def test_a_first_run_shows_nothing_as_predicted(
    require_chromium: str, first_run: Recorded, tmp_path: Path
) -> None:
    assert first_run.last_run["timed"] is False
    completed = chromium(require_chromium, tmp_path / "profile", "--dump-dom",
                         first_run.page.as_uri())
    assert completed.returncode == 0, completed.stderr[-2000:]
    dom = DomCounter()
    dom.feed(completed.stdout)
    assert dom.rendered and dom.errors.strip() == "", dom.errors
    assert dom.bars, "the Gantt chart still shows what ran"
    assert "nothing predicted: no timings before this run" in completed.stdout
    assert dom.predicted_outlines == 0  # no outline of a size-based guess


def test_screenshot(require_chromium: str, recorded: Recorded, tmp_path: Path) -> None:
    """A picture for a person to look at (docs/dashboard.png is one of these)."""
    shot = tmp_path / "dashboard.png"
    completed = chromium(require_chromium, tmp_path / "profile", f"--screenshot={shot}",
                         "--window-size=1400,1800", recorded.page.as_uri())
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # a blank page is a few KB


def test_a_broken_page_would_be_caught(
    require_chromium: str, recorded: Recorded, tmp_path: Path
) -> None:
    """The two error checks above can fail: a script error and a blocked request show."""
    broken = tmp_path / "broken.html"
    sabotage = ('<script>setTimeout(function () { notDefined(); }, 0);'
                'var image = document.createElement("img"); image.src = "http://example.com/x.png";'
                "document.body.appendChild(image);</script></body>")
    broken.write_text(recorded.page.read_text(encoding="utf-8").replace("</body>", sabotage),
                      encoding="utf-8")
    completed = chromium(require_chromium, tmp_path / "profile", "--enable-logging=stderr",
                         "--v=0", "--dump-dom", broken.as_uri())
    dom = DomCounter()
    dom.feed(completed.stdout)
    assert "notDefined is not defined" in dom.errors
    assert "Blocked by the page's CSP" in dom.errors
    assert "Uncaught ReferenceError" in completed.stderr


def dump(binary: str, profile: Path, url: str) -> tuple[DomCounter, str]:
    completed = chromium(binary, profile, "--dump-dom", url)
    assert completed.returncode == 0, completed.stderr[-2000:]
    dom = DomCounter()
    dom.feed(completed.stdout)
    assert dom.rendered and dom.errors.strip() == "", dom.errors
    return dom, completed.stdout


def test_any_run_can_be_chosen_and_shows_its_own_gantt(
    require_chromium: str, recorded: Recorded, dumped: tuple[DomCounter, str], tmp_path: Path
) -> None:
    """Only the last run had a Gantt chart; the picker sets #run=<id>, a link can too."""
    last, _ = dumped
    assert last.gantt_run == recorded.last_run["run_id"]
    first = recorded.runs[0]
    dom, html = dump(require_chromium, tmp_path / "profile",
                     f"{recorded.page.as_uri()}#run={first['run_id']}")
    assert dom.gantt_run == first["run_id"] != recorded.last_run["run_id"]
    assert sorted(int(bar["data-batch"] or -1) for bar in dom.bars) == sorted(
        batch["index"] for batch in first["batches"])
    assert html.count('<option value="') == RUNS


def test_runs_are_labelled_by_branch_commit_and_one_wall_time(
    require_chromium: str, recorded: Recorded, tmp_path: Path
) -> None:
    """Runs were labelled by time only, and the card's wall time (first batch to last)
    disagreed with the terminal's "in N s"."""
    _, html = dump(require_chromium, tmp_path / "profile", recorded.page.as_uri())
    assert recorded.last_run["origin"]["branch"] == BRANCH
    assert recorded.last_run["origin"]["commit"] == recorded.commit
    assert f"{BRANCH} · {recorded.commit[:7]}" in html
    [said] = re.findall(r"^Finished in ([\d.]+) s ", recorded.last_stdout, re.MULTILINE)
    assert f"{recorded.last_run['wall_seconds']:.1f}" == said
    assert re.search(rf'Wall time</div><div class="value ">{re.escape(said)} s<', html), said


def test_failure_history_flaky_rate_and_slowest_tests(
    require_chromium: str, recorded: Recorded, tmp_path: Path
) -> None:
    """A test that failed in every run appeared nowhere; now it heads the list."""
    dom, html = dump(require_chromium, tmp_path / "profile", recorded.page.as_uri())
    row = dom.test_rows[ALWAYS_FAILS]
    assert (row["data-failed-runs"], row["data-flaky-runs"]) == (str(RUNS), "0")
    assert f"{RUNS} (100%)" in html
    assert html.count('<i class="failed"') >= RUNS
    assert 'class="slow-test"' in html


def test_long_names_are_shortened_in_the_middle_and_whole_on_hover(
    require_chromium: str, recorded: Recorded, tmp_path: Path
) -> None:
    dom, html = dump(require_chromium, tmp_path / "profile", recorded.page.as_uri())
    assert LONG_FILE in dom.path_titles
    # Shortened in the middle until it fits its column: the file's start and its name.
    shown = re.findall(rf'title="{re.escape(LONG_FILE)}"><bdi>([^<]*)</bdi>', html)
    assert shown, "the long file is listed"
    for text in shown:
        head, tail = text.split("…")
        assert LONG_FILE.startswith(head) and LONG_FILE.endswith(tail), text
        assert head.startswith("tests/") and tail.endswith(".py") and len(text) < len(LONG_FILE)
    assert f"<bdi>{LONG_FILE}</bdi>" not in html

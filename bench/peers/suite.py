"""Synthetic RSpec and pytest suites with real-world durations, for the peer benchmarks.

Both `rspec_peers.py` and `pytest_peers.py` build their suites here, so the two suites have
the same files, the same examples and the same seconds. The API, in the order you use it:

    durations = durations_from_dataset(DEFAULT_DATASET, total_seconds=40.0, seed=SEED,
                                       files=40, max_share=0.1)   # stem -> file seconds
    durations = with_dominant(durations, share=0.5)               # S3: one file is half
    step = typical_history_step(HISTORY_PROJECT, max_share=0.1)
    planned, actual = history_step(HISTORY_PROJECT, step, total_seconds, max_share=0.1)  # S2
    examples = split_examples(durations, seed=SEED)               # stem -> example seconds
    # S2: the suite runs split_examples(actual); the timing files get the same examples
    # with the old seconds, reshape(split_examples(actual), planned).

    write_rspec_suite(root, examples, cpu_fraction=0.2, boot_seconds=0.5, load_seconds=0.02)
    write_rspec_histories(root, examples)      # tmp/parallel_runtime_rspec.log,
                                               # knapsack_rspec_report.json, shardrun history
    write_pytest_suite(root, examples, cpu_fraction=0.2, boot_seconds=0.5, load_seconds=0.02)
    write_pytest_histories(root, examples)     # .test_durations, shardrun history

A *stem* is a neutral file name ("f07_models_user"): `rspec_path(stem)` is
"spec/f07_models_user_spec.rb", `pytest_path(stem)` is "tests/test_f07_models_user.py";
example i of a file is `it "example <i>"` in RSpec and `def test_<i>()` in pytest
(`pytest_node_id(stem, i)`). To plan from stale timings, write the suite with one set of
examples and the histories with another of the same shape (`reshape`).

What a generated test does (all seconds scaled by the slowdown below):
- *boot*: the support file (spec/spec_helper.rb; tests/bench_app.py, which conftest.py
  imports) does `boot_seconds` of work when it is loaded, once per test process, like a
  Rails app's boot or a Python app's import;
- *load*: each test file does `load_seconds` of work when it is loaded (per process that
  loads it: a batch that runs part of a file still loads it);
- *example*: each example does its seconds of work.
"Work" of s seconds burns `cpu_fraction * s` seconds of process CPU time in a busy loop, then
sleeps the rest. Keep cpu_fraction small (default 0.2): the benchmark machine has 2 cores, so
with N processes the CPU parts compete once N > 2, and a CPU-bound suite would measure the
machine, not the scheduler (at cpu_fraction 1 nothing can gain from N > 2).

Slow worker (scenario S4): when BENCH_SLOW_WORKER is set, the process whose environment
variable named by BENCH_WORKER_VAR (default TEST_ENV_NUMBER) equals BENCH_SLOW_WORKER
multiplies all its seconds (CPU and sleep, boot and load included) by BENCH_SLOWDOWN
((default 2): that worker runs at half speed. TEST_ENV_NUMBER is "" for the first process
of parallel_tests, "2", "3", ... for the others; for `shardrun run` use
BENCH_WORKER_VAR=SHARDRUN_WORKER_INDEX, BENCH_SLOW_WORKER=1 (its example listing runs
without TEST_ENV_NUMBER, which would read as ""); for knapsack or pytest-split nodes you
start yourself, BENCH_WORKER_VAR=CI_NODE_INDEX (or set a variable per node); for
pytest-xdist BENCH_WORKER_VAR=PYTEST_XDIST_WORKER, BENCH_SLOW_WORKER=gw0.

Durations come from `../shared/data/timings` (see its README.md): `durations_from_dataset`
samples `files` files of one timing file and scales them to `total_seconds`;
`history_step` takes two consecutive versions of a project in history/.
"""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

TIMINGS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "timings"
HISTORY_DIR = TIMINGS_DIR / "history"

# 758 files, the longest only 5 % of the total: a many-file Rails suite (knapsack format).
DEFAULT_DATASET = "DFE-Digital__early-careers-framework__knapsack_rspec_report.json"
# The one project with committed versions of its durations (pytest-split, per test).
HISTORY_PROJECT = "HyphaApp__hypha__.test_durations"
SEED = 20261130
FILES = 40
# Examples are about this long (a file gets ceil(seconds / EXAMPLE_SECONDS) of them, within
# the bounds below): a dominant file then has enough examples to be split finely.
EXAMPLE_SECONDS = 0.25
MIN_EXAMPLES = 1
MAX_EXAMPLES = 80
# Example weights within a file: uniform in [1 - spread, 1 + spread].
EXAMPLE_WEIGHT_SPREAD = 0.5
DECIMALS = 3

PARALLEL_TESTS_LOG = "tmp/parallel_runtime_rspec.log"
KNAPSACK_REPORT = "knapsack_rspec_report.json"
PYTEST_SPLIT_DURATIONS = ".test_durations"
SHARDRUN_HISTORY = ".shardrun/timings.json"

Examples = dict[str, list[float]]  # stem -> seconds of each example, in file order


# --- durations -------------------------------------------------------------------------


def durations_from_dataset(name: str = DEFAULT_DATASET, total_seconds: float = 40.0,
                           seed: int = SEED, *, files: int = FILES,
                           max_share: float | None = None) -> dict[str, float]:
    """`files` files sampled (seeded) from the timing file `name`, scaled to `total_seconds`.

    With `max_share`, no file keeps more than that share of the total (the excess is spread
    over the others), so "no file above total / N" holds for N <= 1 / max_share.
    """
    measured = {path: seconds for path, seconds in _load_by_file(TIMINGS_DIR / name).items()
                if seconds > 0}
    picked = random.Random(seed).sample(sorted(measured), min(files, len(measured)))
    durations = {_stem(index, path): measured[path] for index, path in enumerate(picked)}
    if max_share is not None:
        durations = cap_share(durations, max_share)
    return scaled(durations, total_seconds)


def history_step(project: str = HISTORY_PROJECT, step: int = 0,
                 total_seconds: float = 40.0, *, files: int = FILES, seed: int = SEED,
                 max_share: float | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """(planned, actual): versions `step` and `step + 1` of history/<project>, per file.

    Only files in both versions (and above 0 s in both), at most `files` of them (sampled
    with `seed`), under the same stems in both; both are multiplied by the one factor that
    makes `actual` total `total_seconds`, so the relative change of every file and of the
    total is the real one. With `max_share`, `actual` is capped as in `cap_share` and each
    planned file scaled by its own file's factor, keeping every file's relative change.
    """
    versions = sorted((HISTORY_DIR / project).glob("*.data"))
    before, after = (_by_file(json.loads(path.read_text(encoding="utf-8")))
                     for path in versions[step:step + 2])
    common = sorted(path for path in before if before[path] > 0 and after.get(path, 0) > 0)
    picked = random.Random(seed).sample(common, min(files, len(common)))
    stems = {path: _stem(index, path) for index, path in enumerate(picked)}
    raw = {stems[path]: after[path] for path in picked}
    actual = scaled(cap_share(raw, max_share) if max_share else raw, total_seconds)
    planned = {stems[path]: round(before[path] * actual[stems[path]] / after[path], DECIMALS)
               for path in picked}
    return planned, actual


def history_steps(project: str = HISTORY_PROJECT) -> int:
    """How many steps (pairs of consecutive versions) history/<project> has."""
    return max(len(list((HISTORY_DIR / project).glob("*.data"))) - 1, 0)


def typical_history_step(project: str = HISTORY_PROJECT, *, files: int = FILES,
                         seed: int = SEED, max_share: float | None = None) -> int:
    """The median step by how much its files changed (`step_change`): not the worst step,
    not the calmest."""
    ranked = sorted(range(history_steps(project)), key=lambda step: step_change(
        history_step(project, step, files=files, seed=seed, max_share=max_share)))
    return ranked[(len(ranked) - 1) // 2]


def step_change(pair: tuple[Mapping[str, float], Mapping[str, float]]) -> float:
    """Mean |log(actual / planned)| over the files, planned first rescaled to actual's total
    (a uniform slow-down of the whole suite misleads no planner); files under 1 ms count
    as 1 ms."""
    planned, actual = pair
    ratio = sum(actual.values()) / sum(planned.values())
    floor = 10**-DECIMALS
    return sum(abs(math.log(max(actual[stem], floor) / max(planned[stem] * ratio, floor)))
               for stem in actual) / len(actual)


def with_dominant(durations: Mapping[str, float], share: float = 0.5) -> dict[str, float]:
    """The same total, but the longest file holds `share` of it (the others shrink alike)."""
    total = sum(durations.values())
    dominant = max(durations, key=lambda stem: durations[stem])
    rest = total - durations[dominant]
    factor = total * (1 - share) / rest
    result = {stem: round(seconds * factor, DECIMALS) for stem, seconds in durations.items()}
    result[dominant] = round(total * share, DECIMALS)
    return result


def cap_share(durations: Mapping[str, float], max_share: float) -> dict[str, float]:
    """No file above `max_share` of the (unchanged) total; the cut is spread proportionally."""
    if max_share * len(durations) < 1:
        raise ValueError(f"{len(durations)} files cannot each stay below {max_share:.0%}")
    result = dict(durations)
    total = sum(result.values())
    limit = max_share * total
    while any(seconds > limit * (1 + 1e-9) for seconds in result.values()):
        capped = {stem for stem, seconds in result.items() if seconds >= limit}
        free = sum(seconds for stem, seconds in result.items() if stem not in capped)
        factor = (total - limit * len(capped)) / free
        result = {stem: limit if stem in capped else seconds * factor
                  for stem, seconds in result.items()}
    return result


def scaled(durations: Mapping[str, float], total_seconds: float) -> dict[str, float]:
    factor = total_seconds / sum(durations.values())
    return {stem: round(seconds * factor, DECIMALS) for stem, seconds in durations.items()}


def lower_bound(durations: Mapping[str, float], workers: int) -> float:
    """max(longest file, total / N): no split into whole files can finish sooner."""
    return max(max(durations.values()), sum(durations.values()) / workers)


# --- examples --------------------------------------------------------------------------


def split_examples(durations: Mapping[str, float], seed: int = SEED) -> Examples:
    """Each file's seconds over ceil(seconds / EXAMPLE_SECONDS) examples (seeded weights)."""
    examples: Examples = {}
    for stem, seconds in durations.items():
        count = min(max(math.ceil(seconds / EXAMPLE_SECONDS), MIN_EXAMPLES), MAX_EXAMPLES)
        rng = random.Random(f"{seed}:{stem}")
        weights = [rng.uniform(1 - EXAMPLE_WEIGHT_SPREAD, 1 + EXAMPLE_WEIGHT_SPREAD)
                   for _ in range(count)]
        examples[stem] = _spread(seconds, weights)
    return examples


def reshape(examples: Examples, durations: Mapping[str, float]) -> Examples:
    """The same files and examples, each file's examples rescaled to its new seconds."""
    return {stem: _spread(durations[stem], parts) for stem, parts in examples.items()}


def file_seconds(examples: Examples) -> dict[str, float]:
    return {stem: round(sum(parts), DECIMALS) for stem, parts in examples.items()}


# --- paths -----------------------------------------------------------------------------


def rspec_path(stem: str) -> str:
    return f"spec/{stem}_spec.rb"


def pytest_path(stem: str) -> str:
    return f"tests/test_{stem}.py"


def pytest_node_id(stem: str, index: int) -> str:
    return f"{pytest_path(stem)}::test_{index}"


# --- RSpec -----------------------------------------------------------------------------

RSPEC_HELPER = """\
# Generated by bench/peers/suite.py: a stand-in for a Rails app's spec_helper.
module Bench
  CPU_FRACTION = {cpu_fraction!r}
  BOOT_SECONDS = {boot_seconds!r}
  LOAD_SECONDS = {load_seconds!r}
  WORKER = ENV.fetch(ENV.fetch("BENCH_WORKER_VAR", "TEST_ENV_NUMBER"), "")
  SLOW = ENV.key?("BENCH_SLOW_WORKER") && WORKER == ENV["BENCH_SLOW_WORKER"]
  SLOWDOWN = SLOW ? ENV.fetch("BENCH_SLOWDOWN", "2").to_f : 1.0

  def self.cpu_time
    Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
  end

  def self.burn(seconds)
    stop = cpu_time + seconds
    count = 0
    count += 1 while cpu_time < stop
    count
  end

  # `seconds` of work: a CPU_FRACTION share burns CPU, the rest sleeps.
  def self.work(seconds)
    seconds *= SLOWDOWN
    burn(seconds * CPU_FRACTION)
    sleep(seconds * (1 - CPU_FRACTION))
  end
end

Bench.work(Bench::BOOT_SECONDS)  # the app's boot: once per process
"""

RSPEC_FILE_HEAD = """\
# Generated by bench/peers/suite.py.
require "spec_helper"

Bench.work(Bench::LOAD_SECONDS)  # loading this file

RSpec.describe {name!r} do
"""


def write_rspec_suite(root: Path, examples: Examples, *, cpu_fraction: float = 0.2,
                      boot_seconds: float = 0.5, load_seconds: float = 0.02) -> list[str]:
    """spec/spec_helper.rb, .rspec and one spec file per stem; returns the spec paths."""
    (root / "spec").mkdir(parents=True, exist_ok=True)
    (root / ".rspec").write_text("--require spec_helper\n")
    (root / "spec" / "spec_helper.rb").write_text(RSPEC_HELPER.format(
        cpu_fraction=cpu_fraction, boot_seconds=boot_seconds, load_seconds=load_seconds))
    paths = []
    for stem, parts in examples.items():
        body = [RSPEC_FILE_HEAD.format(name=stem)]
        body += [f'  it "example {index}" do\n    Bench.work({seconds!r})\n  end\n'
                 for index, seconds in enumerate(parts)]
        (root / rspec_path(stem)).write_text("\n".join(body) + "end\n")
        paths.append(rspec_path(stem))
    return paths


def write_rspec_histories(root: Path, examples: Examples) -> None:
    """Each tool's timing file from these seconds, as a previous run would have left it:
    parallel_tests' tmp/parallel_runtime_rspec.log, knapsack_rspec_report.json, and
    shardrun's history (`shardrun timings import` of the knapsack report)."""
    per_file = {rspec_path(stem): seconds for stem, seconds in file_seconds(examples).items()}
    log = root / PARALLEL_TESTS_LOG
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"{path}:{seconds}\n" for path, seconds in per_file.items()))
    (root / KNAPSACK_REPORT).write_text(json.dumps(per_file, indent=2) + "\n")
    import_shardrun_history(root, [KNAPSACK_REPORT])


# --- pytest ----------------------------------------------------------------------------

PYTEST_APP = """\
# Generated by bench/peers/suite.py: a stand-in for an app that is expensive to import.
import os
import time

CPU_FRACTION = {cpu_fraction!r}
BOOT_SECONDS = {boot_seconds!r}
LOAD_SECONDS = {load_seconds!r}
WORKER = os.environ.get(os.environ.get("BENCH_WORKER_VAR", "TEST_ENV_NUMBER"), "")
SLOW = "BENCH_SLOW_WORKER" in os.environ and WORKER == os.environ["BENCH_SLOW_WORKER"]
SLOWDOWN = float(os.environ.get("BENCH_SLOWDOWN", "2")) if SLOW else 1.0


def burn(seconds):
    stop = time.process_time() + seconds
    count = 0
    while time.process_time() < stop:
        count += 1
    return count


def work(seconds):
    \"\"\"`seconds` of work: a CPU_FRACTION share burns CPU, the rest sleeps.\"\"\"
    seconds *= SLOWDOWN
    burn(seconds * CPU_FRACTION)
    time.sleep(seconds * (1 - CPU_FRACTION))


work(BOOT_SECONDS)  # the app's boot: once per process, when it is first imported
"""

# The boot is an import, as a Python app's is (conftest.py imports the app): pytest runs
# a top-level conftest.py again in every session, but a module it imports stays imported.
PYTEST_CONFTEST = """\
# Generated by bench/peers/suite.py: the suite's setup imports the app.
import bench_app  # noqa: F401
"""

PYTEST_FILE_HEAD = """\
# Generated by bench/peers/suite.py.
from bench_app import LOAD_SECONDS, work

work(LOAD_SECONDS)  # loading this file
"""


def write_pytest_suite(root: Path, examples: Examples, *, cpu_fraction: float = 0.2,
                       boot_seconds: float = 0.5, load_seconds: float = 0.02) -> list[str]:
    """pytest.ini, tests/conftest.py, tests/bench_app.py and one test file per stem;
    returns the test paths.

    pytest.ini sets `pythonpath = tests` so test files can import bench_app's `work`.
    """
    (root / "tests").mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\ntestpaths = tests\npythonpath = tests\n")
    (root / "tests" / "bench_app.py").write_text(PYTEST_APP.format(
        cpu_fraction=cpu_fraction, boot_seconds=boot_seconds, load_seconds=load_seconds))
    (root / "tests" / "conftest.py").write_text(PYTEST_CONFTEST)
    paths = []
    for stem, parts in examples.items():
        body = [PYTEST_FILE_HEAD]
        body += [f"\ndef test_{index}():\n    work({seconds!r})\n"
                 for index, seconds in enumerate(parts)]
        (root / pytest_path(stem)).write_text("\n".join(body))
        paths.append(pytest_path(stem))
    return paths


def write_pytest_histories(root: Path, examples: Examples) -> None:
    """pytest-split's .test_durations (per node id) and shardrun's history imported from it."""
    durations = {pytest_node_id(stem, index): seconds
                 for stem, parts in examples.items() for index, seconds in enumerate(parts)}
    (root / PYTEST_SPLIT_DURATIONS).write_text(json.dumps(durations, indent=2) + "\n")
    import_shardrun_history(root, [PYTEST_SPLIT_DURATIONS])


# --- shared ----------------------------------------------------------------------------


def import_shardrun_history(root: Path, files: Sequence[str]) -> Path:
    """A fresh shardrun history at root/.shardrun/timings.json from these timing files."""
    history = root / SHARDRUN_HISTORY
    history.unlink(missing_ok=True)
    subprocess.run([sys.executable, "-m", "shardrun", "timings", "import", *files],
                   cwd=root, check=True, capture_output=True, text=True)
    return history


def with_measured_boot(root: Path, argv: Sequence[str], env: Mapping[str, str]) -> bytes:
    """Run shardrun once (untimed) in `root`, then give back the history as it was with
    that run's record added: what a team's history holds once shardrun has run there.

    The run record is where shardrun measures one batch's boot (runlog.boot_seconds), and
    queue mode sizes its batches by it; the peers' timing files likewise come "from a
    previous run". The files' and examples' seconds stay the scenario's planned ones (the
    run's own measurements would leak S2's new version into the plan).
    """
    history = root / SHARDRUN_HISTORY
    pristine = history.read_bytes()
    subprocess.run(list(argv), cwd=root, env=dict(env), stdin=subprocess.DEVNULL,
                   capture_output=True, check=True)
    runs = json.loads(history.read_text()).get("runs", [])
    data = json.loads(pristine)
    data["runs"] = runs
    history.write_text(json.dumps(data, indent=1) + "\n")
    return history.read_bytes()


def _spread(seconds: float, weights: Sequence[float]) -> list[float]:
    """`seconds` over len(weights) parts proportional to them (equal parts when the weights
    are all 0), rounded, summing exactly."""
    weight_sum = sum(weights)
    shares = [weight / weight_sum if weight_sum else 1 / len(weights) for weight in weights]
    parts = [round(seconds * share, DECIMALS) for share in shares]
    parts[-1] = round(seconds - sum(parts[:-1]), DECIMALS)
    return parts


def _stem(index: int, path: str) -> str:
    """"spec/models/user_spec.rb" -> "f07_models_user": unique, and a valid Ruby/Python name."""
    name = re.sub(r"(^(spec|tests?)/)|(_spec\.rb$)|(\.py$)|(\.rb$)", "", path)
    name = re.sub(r"(^|/)test_", r"\1", name)
    name = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()[:40].rstrip("_")
    return f"f{index:02d}_{name}"


def _by_file(durations: Mapping[str, float]) -> dict[str, float]:
    """Per-file seconds: a node id's file is the part before "::"."""
    totals: dict[str, float] = {}
    for unit, seconds in durations.items():
        path = unit.split("::", 1)[0]
        totals[path] = totals.get(path, 0.0) + float(seconds)
    return totals


def _load_by_file(path: Path) -> dict[str, float]:
    """A knapsack / pytest-split JSON or a parallel_tests log, summed per file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".log":
        pairs = (line.strip().rpartition(":") for line in text.splitlines())
        return _by_file({name: float(value) for name, _, value in pairs
                         if name and re.fullmatch(r"[\d.]+", value)})
    return _by_file(json.loads(text))

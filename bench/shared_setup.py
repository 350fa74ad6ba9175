"""Files whose time is in before(:all) hooks: shardrun's plan against parallel_tests'.

Rails suites create records once per file (`before(:all)`, test-prof's `let_it_be`); an
example's run time leaves that out. A history of example times prices such a file at what
its examples take, and queue mode sends it out last. parallel_tests' runtime log and
knapsack time each file's top-level groups, hooks included.

The suite: the RSpec peers' 40 files (bench/peers/suite.py, the same real knapsack report
and seed), `--total` seconds in all; a quarter of the files (seeded) spend 80 % of their
seconds in one `before(:all)`, the rest in their examples. Each tool plans from what its
own previous run of this suite recorded: parallel_tests from its runtime log (written with
each file's seconds, hooks included, as its RuntimeLogger records them), each shardrun
from the history one untimed run of it left (this checkout; with `--baseline PYTHON`,
another install's shardrun, an older commit, in the same rounds). Histories are restored
before every run. Rounds interleave the tools, rotating their order.

    flock /tmp/shardrun-bench.lock nice .venv/bin/python bench/shared_setup.py \
        --baseline /work/wt-bench/.venv/bin/python --results bench/results/shared-setup.json \
        --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH / "peers"), str(BENCH)]

import rspec_peers as peers  # noqa: E402
import suite as generator  # noqa: E402
from _datasets import byte_compile_shardrun, machine_description, write_section  # noqa: E402

HEADING = "## Files whose time is in before(:all) hooks"
TOTAL_SECONDS = 30.0
HOOK_FILES_SHARE = 0.25  # of the files
HOOK_SHARE = 0.8  # of such a file's seconds, in its before(:all)
CPU_FRACTION, BOOT_SECONDS, LOAD_SECONDS = 0.2, 0.5, 0.02
PARALLEL_TESTS, SHARDRUN, BASELINE = "parallel_tests", "shardrun", "shardrun baseline"


def build(root: Path, total: float) -> tuple[dict[str, float], dict[str, float], int]:
    """Write the suite; return each spec file's seconds (hook included), its hook's, and
    how many examples the suite has."""
    durations = generator.durations_from_dataset(total_seconds=total, max_share=0.1)
    examples = generator.split_examples(durations)
    stems = sorted(examples)
    hooked = set(random.Random(generator.SEED).sample(stems, round(len(stems) * HOOK_FILES_SHARE)))
    generator.write_rspec_suite(root, examples, cpu_fraction=CPU_FRACTION,
                                boot_seconds=BOOT_SECONDS, load_seconds=LOAD_SECONDS)
    seconds, hooks = {}, {}
    for stem in stems:
        path = generator.rspec_path(stem)
        seconds[path] = round(sum(examples[stem]), 3)
        if stem not in hooked:
            continue
        hooks[path] = round(seconds[path] * HOOK_SHARE, 3)
        body = [generator.RSPEC_FILE_HEAD.format(name=stem),
                f"  before(:all) {{ Bench.work({hooks[path]!r}) }}\n"]
        body += [f'  it "example {index}" do\n    Bench.work({part * (1 - HOOK_SHARE)!r})\n'
                 "  end\n" for index, part in enumerate(examples[stem])]
        (root / path).write_text("\n".join(body) + "end\n")
    return seconds, hooks, sum(len(parts) for parts in examples.values())


def write_runtime_log(root: Path, seconds: Mapping[str, float]) -> Path:
    """parallel_tests' runtime log as its RuntimeLogger would have left it: each file's
    top-level groups, hooks included. Written after shardrun learned its histories, or
    shardrun would import it as its first history (plan/existing.py)."""
    log = root / generator.PARALLEL_TESTS_LOG
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"{path}:{value}\n" for path, value in sorted(seconds.items())))
    return log


def reported(root: Path) -> int:
    """Distinct examples in shardrun's merged JUnit: one run twice would not hide another."""
    cases = ElementTree.parse(root / ".shardrun" / "junit.xml").getroot().iter("testcase")
    return len({(case.get("classname"), case.get("name")) for case in cases})


def shardrun_argv(python: str, workers: int, timings: Path) -> list[str]:
    return [python, "-m", "shardrun", "run", "spec", "--workers", str(workers),
            "--timings", str(timings)]


def environment() -> dict[str, str]:
    """This process's environment without the variables the tools read (as the peers
    benchmarks run them)."""
    return {name: value for name, value in os.environ.items() if name not in peers.CLEARED_ENV}


def learned(root: Path, python: str, workers: int, name: str) -> tuple[Path, bytes]:
    """The history one untimed run of this shardrun leaves: what the timed runs plan from."""
    timings = root / ".shardrun" / f"{name}.json"
    peers.timed(shardrun_argv(python, workers, timings), root, environment())
    return timings, timings.read_bytes()


def measure(root: Path, workers: Sequence[int], rounds: int, baseline: str | None,
            total: float) -> dict[str, object]:
    seconds, hooks, count_examples = build(root, total)
    pythons = {SHARDRUN: sys.executable, **({BASELINE: baseline} if baseline else {})}
    histories = {tool: learned(root, python, workers[0], tool.replace(" ", "-"))
                 for tool, python in pythons.items()}
    log = write_runtime_log(root, seconds)
    pristine = {log: log.read_bytes(), **{path: data for path, data in histories.values()}}
    peers.warm_up(root)
    env = environment()
    walls: dict[str, dict[str, list[float]]] = {str(count): {} for count in workers}
    batches: dict[str, dict[str, list[int]]] = {str(count): {} for count in workers}
    tools = [PARALLEL_TESTS, *pythons]
    for round_index in range(rounds):
        for count in workers:
            for tool in peers.rotated(tools, round_index):
                for path, data in pristine.items():
                    path.write_bytes(data)
                argv = (peers.parallel_tests_argv(count) if tool == PARALLEL_TESTS
                        else shardrun_argv(pythons[tool], count, histories[tool][0]))
                wall = peers.timed(argv, root, env)
                if tool != PARALLEL_TESTS and reported(root) != count_examples:
                    raise RuntimeError(f"{tool} at N = {count} reported {reported(root)} "
                                       f"examples, not {count_examples}")
                if tool != PARALLEL_TESTS:
                    record = peers.read_last_run(histories[tool][0])
                    batches[str(count)].setdefault(tool, []).append(len(record["batches"]))
                walls[str(count)].setdefault(tool, []).append(round(wall, 3))
                print(f"round {round_index + 1} N={count} {tool}: {wall:.2f} s",
                      file=sys.stderr, flush=True)
    priced = {tool: hook_pricing(json.loads(data), hooks) for tool, (_, data) in histories.items()}
    return {"total": total, "rounds": rounds, "hook_files": len(hooks),
            "hook_seconds": round(sum(hooks.values()), 3),
            "suite_seconds": round(sum(seconds.values()), 3), "priced": priced, "walls": walls,
            "batches": batches}


def hook_pricing(history: Mapping[str, object], hooks: Mapping[str, float]) -> float:
    """What a history's estimates of the hooked files add up to."""
    files = history.get("files", {})
    assert isinstance(files, dict)
    return round(sum(float(files[path]["estimate"]) for path in hooks if path in files), 3)


def section(results: Mapping[str, object], argv: Sequence[str]) -> str:
    walls = results["walls"]
    assert isinstance(walls, dict)
    tools = [tool for tool in (PARALLEL_TESTS, SHARDRUN, BASELINE)
             if tool in next(iter(walls.values()))]
    lines = [
        f"Measured by `python bench/shared_setup.py {' '.join(argv)}` (run from the "
        f"repository root), {machine_description()}.",
        "",
        f"The suite: the RSpec peers' 40 files ({results['suite_seconds']} s in all); "
        f"{results['hook_files']} of them (seeded) spend {HOOK_SHARE:.0%} of their seconds "
        f"({results['hook_seconds']} s in all) in one `before(:all)`, the rest in their "
        "examples, which burn 20 % CPU and sleep the rest; spec_helper does 0.5 s of such "
        "work per process. Each tool plans from its own previous run: parallel_tests from "
        "its runtime log (each file's seconds, hooks included, as its RuntimeLogger records "
        "them), each shardrun from the history one untimed run of it left, before that "
        "log existed (restored before every run). What those histories price the hooked "
        "files at, against "
        f"{results['hook_seconds'] / HOOK_SHARE:.2f} s: "
        + ", ".join(f"{tool} {seconds} s" for tool, seconds in results["priced"].items())  # type: ignore[attr-defined]
        + f". Rounds: {results['rounds']}, the tools' order rotating; cells: median wall "
        "time (every run).",
        "",
        "| N | " + " | ".join(f"{tool} s" for tool in tools) + " | "
        + " | ".join(f"{tool} / parallel_tests" for tool in tools[1:]) + " | "
        + " | ".join(f"{tool} batches" for tool in tools[1:]) + " |",
        "|---:|" + "---:|" * (3 * len(tools) - 2),
    ]
    counted = results.get("batches", {})
    assert isinstance(counted, dict)
    for count, cells in walls.items():
        medians = {tool: statistics.median(cells[tool]) for tool in tools}
        shown = [f"{medians[tool]:.2f} ({', '.join(f'{wall:.2f}' for wall in cells[tool])})"
                 for tool in tools]
        ratios = [f"{medians[tool] / medians[PARALLEL_TESTS]:.3f}" for tool in tools[1:]]
        sizes = [", ".join(str(n) for n in counted.get(count, {}).get(tool, [])) or "-"
                 for tool in tools[1:]]
        lines.append(f"| {count} | " + " | ".join(shown + ratios + sizes) + " |")
    lines += ["", *READING]
    return "\n".join(lines) + "\n"


READING = (
    "How to read it. *shardrun baseline* is an install of the commit before shardrun timed "
    "a file's top-level groups (72ef750): its history holds each file's examples alone, so "
    "it priced the hooked files at a fifth of their time (above) and left them for the "
    "later batches of a longest-first plan; *shardrun* prices them whole and sends them "
    "out early. Both count the hooks a batch ran as part of what a batch costs outside "
    "its testcases (docs/queue.md, the cost model), so their batches are alike in number. "
    "How late the misplaced files end the baseline's runs depends on which batches they "
    "land in: in an earlier sitting of this script (2026-12-08, the same baseline, "
    "shardrun at 8fb2fae, whose batch-cost fit left the hooks out and then made 19 and 27 "
    "batches) the baseline took 16.63 s and 11.01 s at N = 2 and 4 (1.023 and 1.244 x "
    "parallel_tests), shardrun 16.78 s and 9.53 s. Neither reaches parallel_tests here: "
    "shardrun's own start (a coordinator, a redis-server and N workers before the first "
    "batch) is not paid by parallel_tests' N rspec processes (\"Peers: RSpec\", \"Where "
    "shardrun misses\").",
)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--total", type=float, default=TOTAL_SECONDS)
    parser.add_argument("--baseline", help="another install's python, to run its shardrun")
    parser.add_argument("--results", type=Path, help="write the measurements here (JSON)")
    parser.add_argument("--from-results", type=Path, help="render saved measurements")
    parser.add_argument("--write", type=Path, help="rewrite this section of a markdown file")
    args = parser.parse_args(arguments)
    if args.from_results:
        saved = json.loads(args.from_results.read_text())
        results, shown = saved["results"], saved["argv"]
    else:
        shown = peers.shown(arguments)
        peers.wait_for_other_benchmarks()
        byte_compile_shardrun()
        if args.baseline:
            byte_compile_shardrun(args.baseline)
        with tempfile.TemporaryDirectory(prefix="shardrun-shared-setup-") as scratch:
            results = measure(Path(scratch), args.workers, args.rounds, args.baseline,
                              args.total)
        if args.results:
            args.results.write_text(json.dumps({"argv": shown, "results": results},
                                               indent=1) + "\n")
    body = section(results, shown)
    print(body)
    if args.write:
        write_section(args.write, HEADING, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

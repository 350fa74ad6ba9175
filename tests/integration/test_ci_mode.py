"""`shardrun ci` end to end: several nodes of one build, real Redis, real processes, no mocks.

Every "node" is `python -m shardrun ci ...` started as a subprocess in a suite generated
into tmp_path (the shared checkout every node sees), with its own output files, and the
checks are what a CI job sees: the role line ("this node was the leader|follower|..."),
the exit code, the merged JUnit (each testcase of a serial run exactly once), each node's
own JUnit. Nodes are killed with SIGKILL, whole process trees, to play a CI job that dies.

The generated suite has a conftest.py that, when SRT_EVIDENCE is set, records for every
test that starts which node ran it (SRT_NODE, inherited by the node's workers and their
test processes) and in which network namespace: that is how a node's own JUnit is checked
to hold its own results and nothing else, and the multi-host test that its tests ran
behind its own veth.

Helpers are test_run.py's, shared through tests/support/: inner pytest runs get
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1, none of the outer run's PYTEST_*/SHARDRUN_* variables nor
any CI provider's (`clean_ci_env`), and a pytest.ini of their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil
import pytest
import redis
from rq import Queue
from support.files import PYTEST_INI, write_files
from support.requirements import missing
from support.runs import (
    RUN_TIMEOUT_SECONDS,
    Testcase,
    assert_each_once,
    clean_ci_env,
    free_port,
    junit_cases,
    run_command,
    serial_testcases,
)
from support.waiting import wait_for

from shardrun.queue import KEY_PREFIX, queue_name

# Bounds for waiting on something a run does; a passing run needs a fraction of them.
# The leader lease (and batch lease) for the tests that kill a node: a dead leader is
# replaced within about this plus a follower's check interval (1 s).
SHORT_LEASE = ("--lease-seconds", "2")
RACE_PROCESSES = 20
# A retried node of a completed build starts no worker and runs nothing: an interpreter
# start and a discovery. The budget only catches a node that runs the suite again.
ALREADY_COMPLETE_BUDGET_SECONDS = 10.0
ROLE_LINE = re.compile(r"^shardrun ci: this node was the (.+)$", re.MULTILINE)

# --- the suite: two directories, so one build can pass (tests/ok) and one fail (tests)

EVIDENCE_CONFTEST = """
    import json
    import os
    import uuid
    from pathlib import Path

    import pytest


    @pytest.fixture(autouse=True)
    def record_where_it_ran(request):
        evidence = os.environ.get("SRT_EVIDENCE")
        if evidence:
            record = {"test": request.node.name, "node": os.environ.get("SRT_NODE"),
                      "netns": os.readlink("/proc/self/ns/net")}
            name = uuid.uuid4().hex
            partial = Path(evidence, name + ".partial")
            partial.write_text(json.dumps(record))
            partial.rename(Path(evidence, name + ".json"))
"""
OK_FILES = 6
FAILING_FILE = "tests/bad/test_failing.py"
FAILING_TEST = "test_fails"
FAILING_LINE = 2  # of the assertion in FAILING_FILE, where GitHub should annotate
CI_SUITE = {
    "pytest.ini": PYTEST_INI,
    "conftest.py": EVIDENCE_CONFTEST,
    FAILING_FILE: f"""
        def {FAILING_TEST}():
            assert 1 + 1 == 3, "the failing example"


        def test_failing_files_neighbour():
            pass
    """,
    **{
        f"tests/ok/test_ok_{index}.py": f"""
            import time


            def test_ok_{index}_slow():
                time.sleep(0.4)


            def test_ok_{index}_quick():
                time.sleep(0.1)
        """
        for index in range(OK_FILES)
    },
}
EVERYTHING = ("tests",)  # fails: exit 1 on every node
PASSING = ("tests/ok",)  # passes: exit 0 on every node


@dataclass(frozen=True)
class Suite:
    root: Path
    serial: frozenset[Testcase]  # of the whole suite, run plainly once

    def expected(self, paths: Sequence[str]) -> frozenset[Testcase]:
        """The serial run's testcases under `paths` (classnames are dotted paths)."""
        prefixes = tuple(path.replace("/", ".") + "." for path in paths)
        return frozenset(case for case in self.serial if case[0].startswith(prefixes))


# --- helpers: processes, reports (the rest: tests/support/)


def junit_units(path: Path) -> Counter[str]:
    """The unit (test file) of every testcase: shardrun's testsuites carry it as `file`."""
    root = ET.parse(path).getroot()
    return Counter(
        suite.get("file", "") for suite in root.iter("testsuite") for _ in suite.iter("testcase")
    )


def summary_tail(cases: frozenset[Testcase]) -> str:
    """The summary's last line for these testcases ("N passed, M failed")."""
    outcomes = Counter(outcome for _, _, outcome in cases)
    return f"{outcomes['passed']} passed, {outcomes['failed']} failed"


def sigkill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant, as a CI runner losing the job would.

    Descendants are collected first: once their parent dies they are re-parented and can
    no longer be found from it. `pid` itself is not reaped here (psutil would take its exit
    status away from the Popen that started it); its descendants are waited for.
    """
    try:
        root = psutil.Process(pid)
        tree = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for process in [root, *tree]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=10)


def wait_until(
    condition: Callable[[], bool], what: str, nodes: Sequence[Node] = ()
) -> None:
    """wait_for, failing with what a node printed if one of `nodes` ends first."""
    by_process = {id(node.process): node for node in nodes}
    wait_for(condition, what, processes=[node.process for node in nodes],
             explain=lambda ended: explain(finish_all([by_process[id(p)] for p in ended])))


def evidence_of(evidence: Path) -> list[dict[str, str]]:
    """What the inner conftest recorded: one entry per test started, on which node."""
    return [json.loads(path.read_text()) for path in sorted(evidence.glob("*.json"))]


def ran_by_node(evidence: Path) -> dict[str, set[str]]:
    """Node label -> names of the tests its workers started."""
    by_node: dict[str, set[str]] = {}
    for record in evidence_of(evidence):
        by_node.setdefault(record["node"], set()).add(record["test"])
    return by_node


# --- nodes


@dataclass(frozen=True)
class Finished:
    label: str
    returncode: int
    stdout: str
    stderr: str
    junit: Path  # --junit-out: the merged report (on the merging node) or the fallback share
    node_junit: Path  # --node-junit-out: this node's own results

    @property
    def role(self) -> str:
        roles = ROLE_LINE.findall(self.stdout)
        assert len(roles) == 1, self.explain()
        return str(roles[0])

    def explain(self) -> str:
        return (f"node {self.label} (exit {self.returncode})\n--- stdout\n{self.stdout}"
                f"\n--- stderr\n{self.stderr}")


@dataclass
class Node:
    label: str
    process: subprocess.Popen[bytes]
    out: Path
    err: Path
    junit: Path
    node_junit: Path

    def finish(self) -> Finished:
        self.process.wait(timeout=RUN_TIMEOUT_SECONDS)
        return Finished(self.label, self.process.returncode, self.out.read_text(),
                        self.err.read_text(), self.junit, self.node_junit)


@dataclass
class Fleet:
    """Starts `shardrun ci` nodes of one build; whatever still runs at teardown is killed."""

    suite: Suite
    directory: Path
    evidence: Path
    nodes: list[Node] = field(default_factory=list)
    _files: list[IO[bytes]] = field(default_factory=list)

    def start(
        self,
        label: str,
        url: str,
        paths: Sequence[str],
        *options: str,
        env: Mapping[str, str],
        prefix: Sequence[str] = (),
    ) -> Node:
        """A node running `prefix python -m shardrun ci PATHS ...` with cwd = the suite."""
        junit = self.directory / f"merged-{label}.xml"
        node_junit = self.directory / f"node-{label}.xml"
        out, err = self.directory / f"{label}.out", self.directory / f"{label}.err"
        argv = [*prefix, sys.executable, "-m", "shardrun", "ci", *paths, "--redis-url", url,
                "--workers", "1", "--junit-out", str(junit), "--node-junit-out",
                str(node_junit), "--timings", str(self.directory / "timings.json"), *options]
        stdout, stderr = out.open("wb"), err.open("wb")
        self._files += [stdout, stderr]
        environment = clean_ci_env(SRT_EVIDENCE=str(self.evidence), SRT_NODE=label, **env)
        process = subprocess.Popen(argv, cwd=self.suite.root, env=environment, stdout=stdout,
                                   stderr=stderr, stdin=subprocess.DEVNULL)
        node = Node(label, process, out, err, junit, node_junit)
        self.nodes.append(node)
        return node

    def start_build(
        self,
        url: str,
        paths: Sequence[str],
        total: int,
        *options: str,
        build_id: str | None = None,
        prefixes: Sequence[Sequence[str]] = (),
    ) -> list[Node]:
        """`total` nodes of one build, told who they are as any CI would: SHARDRUN_*."""
        build = build_id or uuid.uuid4().hex
        return [
            self.start(str(index), url, paths, *options,
                       env=node_env(build, index, total),
                       prefix=prefixes[index] if prefixes else ())
            for index in range(total)
        ]

    def close(self) -> None:
        for node in self.nodes:
            if node.process.poll() is None:
                sigkill_tree(node.process.pid)
            node.process.wait()
        for file in self._files:
            file.close()


def node_env(build_id: str, index: int, total: int) -> dict[str, str]:
    return {"SHARDRUN_BUILD_ID": build_id, "SHARDRUN_NODE_INDEX": str(index),
            "SHARDRUN_NODE_TOTAL": str(total)}


def finish_all(nodes: Sequence[Node]) -> list[Finished]:
    return [node.finish() for node in nodes]


def explain(finished: Sequence[Finished]) -> str:
    return "\n".join(node.explain() for node in finished)


def assert_one_leader(finished: Sequence[Finished]) -> Finished:
    """Exactly one leader, every other node a follower; the leader is returned."""
    roles = sorted(node.role for node in finished)
    assert roles == ["follower"] * (len(finished) - 1) + ["leader"], explain(finished)
    return next(node for node in finished if node.role == "leader")


def assert_merged_by(leader: Finished, finished: Sequence[Finished],
                     expected: frozenset[Testcase]) -> None:
    """The leader's --junit-out holds every expected testcase once; no other node merged."""
    assert_each_once(junit_cases(leader.junit), expected)
    assert [node.label for node in finished if node.junit.exists()] == [leader.label]


def assert_own_results(node: Finished, evidence: Path) -> Counter[Testcase]:
    """The node's --node-junit-out names only tests its own workers ran: those whose final
    attempt ran there (a test retried on another node is in that node's file)."""
    ran = ran_by_node(evidence).get(node.label, set())
    cases: Counter[Testcase] = Counter()
    if node.node_junit.exists():
        cases = junit_cases(node.node_junit)
    assert {name for _, name, _ in cases} <= ran, node.explain()
    return cases


class Keys:
    """Read a run's keys in a Redis that only this test uses (a private server)."""

    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url, decode_responses=True)

    def run_ids(self, suffix: str) -> list[str]:
        """Runs that have `shardrun:ci-...:<suffix>`: ci runs are named ci-<hash> (ci.py)."""
        pattern = f"{KEY_PREFIX}:ci-*:{suffix}"
        return [key.split(":")[1] for key in self.client.scan_iter(match=pattern)]

    def one_run_id(self, suffix: str, nodes: Sequence[Node] = ()) -> str:
        wait_until(lambda: bool(self.run_ids(suffix)), f"a run with a {suffix} key", nodes)
        [run_id] = self.run_ids(suffix)
        return run_id

    def leader_pid(self, run_id: str) -> int:
        """The leader key names the node as host:pid."""
        holder = self.client.get(f"{KEY_PREFIX}:{run_id}:leader")
        assert holder is not None, "the leader key lapsed while the leader was alive"
        return int(holder.rsplit(":", 1)[1])

    def started_by(self, run_id: str) -> set[int]:
        """Pids of the workers that have started a batch of the run."""
        started = self.client.hgetall(f"{KEY_PREFIX}:{run_id}:started")
        return {int(json.loads(value)[1].rsplit(":", 1)[1]) for value in started.values()}

    def rq_queue(self, run_id: str) -> str:
        """The list RQ keeps the run's waiting job ids in."""
        return Queue.redis_queue_namespace_prefix + queue_name(run_id)

    def queued(self, run_id: str) -> int:
        return int(self.client.llen(self.rq_queue(run_id)))

    def close(self) -> None:
        self.client.close()


def descendants(pid: int) -> set[int]:
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


# --- fixtures


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    root = write_files(tmp_path_factory.mktemp("ci-suite"), CI_SUITE)
    serial = serial_testcases("pytest", root, root.parent / "ci-serial.xml", EVERYTHING,
                              clean_ci_env())
    outcomes = Counter(outcome for _, _, outcome in serial)
    assert outcomes == {"passed": 2 * OK_FILES + 1, "failed": 1}
    return Suite(root, serial)


@pytest.fixture
def fleet(suite: Suite, tmp_path: Path, evidence: Path) -> Iterator[Fleet]:
    nodes = Fleet(suite, tmp_path, evidence)
    try:
        yield nodes
    finally:
        nodes.close()


@pytest.fixture
def keys(private_redis: str) -> Iterator[Keys]:
    reader = Keys(private_redis)
    try:
        yield reader
    finally:
        reader.close()


# --- 1: three nodes, one build


def test_three_nodes_make_one_run_with_one_leader(
    fleet: Fleet, suite: Suite, private_redis: str, evidence: Path
) -> None:
    finished = finish_all(fleet.start_build(private_redis, EVERYTHING, 3))
    leader = assert_one_leader(finished)
    # A failing test anywhere fails every node, so a green pipeline means all passed.
    assert [node.returncode for node in finished] == [1, 1, 1], explain(finished)
    assert_merged_by(leader, finished, suite.serial)
    union: Counter[Testcase] = Counter()
    for node in finished:
        union += assert_own_results(node, evidence)
    assert_each_once(union, suite.serial)  # the nodes' files together: the suite, once
    for node in finished:  # every node prints the run's summary, not only its share
        assert summary_tail(suite.serial) in node.stdout, node.explain()


# --- 2: the leader race


RACE_SCRIPT = """
import sys

from shardrun.queue import RunQueue, connect

url, run_id, barrier, node = sys.argv[1:5]
connection = connect(url, 10)
run_queue = RunQueue(connection, run_id)
connection.incr(barrier + ":ready")
if connection.blpop([barrier + ":go"], timeout=60) is None:
    sys.exit("the barrier never opened")
print(run_queue.claim_leadership(node, 30.0))
"""


def test_twenty_processes_racing_for_the_lead_elect_exactly_one(
    redis_url: str, unique_id: str, tmp_path: Path
) -> None:
    barrier = f"{KEY_PREFIX}:_:{unique_id}:barrier"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RACE_SCRIPT, redis_url, unique_id, barrier, f"node-{index}"],
            cwd=tmp_path, env=clean_ci_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(RACE_PROCESSES)
    ]
    try:
        # Everyone connected and is blocked on the barrier; one push of 20 lets all go.
        wait_until(lambda: client.get(f"{barrier}:ready") == str(RACE_PROCESSES),
                   "all racers at the barrier")
        client.rpush(f"{barrier}:go", *["go"] * RACE_PROCESSES)
        answers = [process.communicate(timeout=RUN_TIMEOUT_SECONDS) for process in processes]
        assert [process.returncode for process in processes] == [0] * RACE_PROCESSES, answers
        claims = [stdout.strip() for stdout, _ in answers]
        assert sorted(claims) == ["False"] * (RACE_PROCESSES - 1) + ["True"], answers
        winner = f"node-{claims.index('True')}"
        assert client.get(f"{KEY_PREFIX}:{unique_id}:leader") == winner
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        client.delete(f"{barrier}:ready", f"{barrier}:go", f"{KEY_PREFIX}:{unique_id}:leader")
        client.close()


# --- 3: the leader dies right after publishing the plan


def test_leader_killed_after_publishing_is_replaced_and_the_run_completes(
    fleet: Fleet, suite: Suite, private_redis: str, keys: Keys
) -> None:
    nodes = fleet.start_build(private_redis, EVERYTHING, 3, *SHORT_LEASE)
    run_id = keys.one_run_id("meta", nodes)  # the plan is published
    leader_pid = keys.leader_pid(run_id)
    [first_leader] = [node for node in nodes if node.process.pid == leader_pid]
    sigkill_tree(leader_pid)
    killed = first_leader.finish()
    assert killed.returncode == -signal.SIGKILL
    survivors = finish_all([node for node in nodes if node is not first_leader])
    new_leader = assert_one_leader(survivors)
    assert [node.returncode for node in survivors] == [1, 1], explain(survivors)
    assert_merged_by(new_leader, [killed, *survivors], suite.serial)
    assert summary_tail(suite.serial) in new_leader.stdout, new_leader.explain()


def cancel(node: Node, signum: int) -> None:
    """Cancel a node as a CI runner cancels a job: the signal to the node's process group
    (the node and its workers; runners sit in sessions of their own)."""
    root = psutil.Process(node.process.pid)
    group = os.getpgid(root.pid)
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            if os.getpgid(process.pid) == group:
                process.send_signal(signum)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("who", ["follower", "leader"])
def test_a_cancelled_node_hands_its_batch_back_and_the_build_stays_honest(
    fleet: Fleet, suite: Suite, private_redis: str, keys: Keys, evidence: Path,
    signum: int, who: str,
) -> None:
    """A node cancelled mid-batch once left a partial report that the other node took as
    complete: "14 tests, 0 failures", exit 0, for a suite with a failing test. Now the
    cancelled node exits non-zero without reporting its batch, and the others run it."""
    build = uuid.uuid4().hex
    nodes = fleet.start_build(private_redis, EVERYTHING, 2, *SHORT_LEASE, build_id=build)
    run_id = keys.one_run_id("meta", nodes)
    leader_pid = keys.leader_pid(run_id)
    [target] = [node for node in nodes if (node.process.pid == leader_pid) == (who == "leader")]
    wait_until(lambda: target.label in ran_by_node(evidence), "a test on the node", nodes)
    cancel(target, signum)
    cancelled = target.finish()
    assert cancelled.returncode not in (0, 1), cancelled.explain()  # cancelled, not a verdict
    [survivor] = finish_all([node for node in nodes if node is not target])
    assert survivor.returncode == 1, survivor.explain()
    assert survivor.role == "leader", survivor.explain()
    assert_each_once(junit_cases(survivor.junit), suite.serial)
    assert summary_tail(suite.serial) in survivor.stdout, survivor.explain()
    rerun = fleet.start("again", private_redis, EVERYTHING,
                        env=node_env(build, 1, 2)).finish()
    assert rerun.returncode == 1 and rerun.role == "retry of a completed run", rerun.explain()


def test_a_leader_that_lost_its_lease_does_not_merge_but_follows(
    fleet: Fleet, suite: Suite, private_redis: str, keys: Keys
) -> None:
    """A stalled leader whose lease another node took must not also merge the run: it
    follows, and leads again only once that lease lapses. Exactly one merge happens."""
    [node] = fleet.start_build(private_redis, EVERYTHING, 1, *SHORT_LEASE)
    run_id = keys.one_run_id("meta", [node])
    keys.client.set(f"{KEY_PREFIX}:{run_id}:leader", "impostor:1", px=3000)
    finished = node.finish()
    assert finished.role == "leader", finished.explain()  # again, after the lease lapsed
    assert finished.returncode == 1, finished.explain()
    assert_merged_by(finished, [finished], suite.serial)
    assert keys.client.llen(f"{KEY_PREFIX}:{run_id}:completed") == 1


def test_leader_dead_between_publishing_and_enqueueing_is_replaced(
    fleet: Fleet, suite: Suite, private_redis: str, keys: Keys
) -> None:
    """The narrowest window: the plan and its batches are in Redis, no job is on the queue.

    A SIGKILL cannot be aimed at it, so the state is made: a lone node that runs no worker
    (--workers 0) leads, publishes and enqueues; it is killed and its jobs taken off the
    queue, which leaves exactly what a leader dying before its enqueue leaves behind.
    """
    build = uuid.uuid4().hex
    first = fleet.start("0", private_redis, EVERYTHING, *SHORT_LEASE, "--workers", "0",
                        env=node_env(build, 0, 3))
    run_id = keys.one_run_id("meta", [first])
    wait_until(lambda: keys.queued(run_id) > 0, "the first leader's enqueue", [first])
    sigkill_tree(first.process.pid)
    killed = first.finish()
    assert killed.returncode == -signal.SIGKILL
    keys.client.delete(keys.rq_queue(run_id))
    others = [fleet.start(str(index), private_redis, EVERYTHING, *SHORT_LEASE,
                          env=node_env(build, index, 3)) for index in (1, 2)]
    finished = finish_all(others)
    new_leader = assert_one_leader(finished)
    assert [node.returncode for node in finished] == [1, 1], explain(finished)
    assert_merged_by(new_leader, [killed, *finished], suite.serial)


# --- 4: Redis down


def static_share(suite: Suite, index: int, total: int, timings: Path) -> set[str]:
    completed = run_command(
        [sys.executable, "-m", "shardrun", "plan", *EVERYTHING, "--index", str(index),
         "--total", str(total), "--timings", str(timings)], suite.root, clean_ci_env(),
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return set(completed.stdout.split())


def test_redis_down_each_node_runs_its_static_share(
    fleet: Fleet, suite: Suite, tmp_path: Path
) -> None:
    total = 3
    url = f"redis://127.0.0.1:{free_port()}/0"
    shares = [static_share(suite, index, total, tmp_path / "timings.json")
              for index in range(total)]
    finished = finish_all(fleet.start_build(url, EVERYTHING, total, "--redis-timeout", "1"))
    union: Counter[Testcase] = Counter()
    for index, node in enumerate(finished):
        assert node.role == "fallback", node.explain()
        assert "WARNING" in node.stderr, node.explain()
        assert "Redis unreachable" in node.stderr, node.explain()
        assert f"shard {index} of {total} (0-based" in node.stderr, node.explain()
        assert node.stderr.count("Redis unreachable") == 1, node.explain()
        # In fallback the --junit-out of each node is its own share.
        assert set(junit_units(node.junit)) == shares[index], node.explain()
        cases = junit_cases(node.junit)
        failed = any(outcome == "failed" for _, _, outcome in cases)
        assert node.returncode == (1 if failed else 0), node.explain()
        union += cases
    assert_each_once(union, suite.serial)


def test_without_redis_nodes_with_different_histories_still_split_alike(
    fleet: Fleet, suite: Suite, tmp_path: Path
) -> None:
    """Two nodes whose timing histories differ (a CI cache per node) planned different
    splits: a file with a failing test ran nowhere and both nodes exited 0. The fallback
    split now uses only what every node has alike, and says so with a digest."""
    total = 2
    url = f"redis://127.0.0.1:{free_port()}/0"
    skewed = tmp_path / "node-0-timings.json"
    skewed.write_text(json.dumps({"version": 1, "files": {
        FAILING_FILE: {"samples": [999.0], "updated_at": 0}}}))
    nodes = [fleet.start(str(index), url, EVERYTHING, "--redis-timeout", "1", "--timings",
                         str(skewed if index == 0 else tmp_path / "none.json"),
                         env=node_env("alike", index, total)) for index in range(total)]
    finished = finish_all(nodes)
    union: Counter[Testcase] = Counter()
    digests = set()
    for node in finished:
        assert node.role == "fallback", node.explain()
        digests.update(re.findall(r"plan digest ([0-9a-f]{12})", node.stderr))
        union += junit_cases(node.junit)
    assert len(digests) == 1, explain(finished)
    assert_each_once(union, suite.serial)
    assert sorted(node.returncode for node in finished) == [0, 1] or all(
        node.returncode == 1 for node in finished)


# --- 5: a retried node


def worker_logs(suite: Suite, run_id: str) -> dict[str, int]:
    """Each worker log of the run and its size: a node that starts workers changes them."""
    directory = suite.root / ".shardrun" / "logs" / run_id
    return {path.name: path.stat().st_size for path in directory.iterdir()}


def test_retried_node_of_a_completed_build_reports_the_stored_outcome(
    fleet: Fleet, suite: Suite, private_redis: str, keys: Keys, evidence: Path
) -> None:
    build = uuid.uuid4().hex
    first = finish_all(fleet.start_build(private_redis, EVERYTHING, 2, build_id=build))
    assert_one_leader(first)
    assert [node.returncode for node in first] == [1, 1], explain(first)
    run_id = keys.one_run_id("complete")
    logs, tests_run = worker_logs(suite, run_id), len(evidence_of(evidence))
    started = time.monotonic()
    retried = fleet.start("1-retried", private_redis, EVERYTHING,
                          env=node_env(build, 1, 2)).finish()
    elapsed = time.monotonic() - started
    assert retried.returncode == 1, retried.explain()
    assert retried.role == "retry of a completed run", retried.explain()
    assert summary_tail(suite.serial) in retried.stdout, retried.explain()
    assert elapsed < ALREADY_COMPLETE_BUDGET_SECONDS, retried.explain()
    assert worker_logs(suite, run_id) == logs  # no worker started
    assert len(evidence_of(evidence)) == tests_run  # no test ran
    assert keys.run_ids("complete") == [run_id]  # no second run
    assert not retried.node_junit.exists()
    assert not retried.junit.exists()


def test_replacement_node_joins_a_run_under_way(
    fleet: Fleet, suite: Suite, private_redis: str, keys: Keys, evidence: Path
) -> None:
    build = uuid.uuid4().hex
    nodes = fleet.start_build(private_redis, PASSING, 2, *SHORT_LEASE, build_id=build)
    run_id = keys.one_run_id("meta", nodes)
    leader_pid = keys.leader_pid(run_id)
    [leader] = [node for node in nodes if node.process.pid == leader_pid]
    [doomed] = [node for node in nodes if node is not leader]
    # Mid-run: the follower's worker is in the middle of a batch.
    wait_until(lambda: bool(keys.started_by(run_id) & descendants(doomed.process.pid)),
               "a batch started on the follower's worker", nodes)
    sigkill_tree(doomed.process.pid)
    killed = doomed.finish()
    assert killed.returncode == -signal.SIGKILL
    index = int(doomed.label)
    replacement = fleet.start(f"{index}-replacement", private_redis, PASSING, *SHORT_LEASE,
                              env=node_env(build, index, 2))
    finished = finish_all([leader, replacement])
    assert assert_one_leader(finished).label == leader.label
    assert [node.returncode for node in finished] == [0, 0], explain(finished)
    expected = suite.expected(PASSING)
    assert_merged_by(finished[0], [killed, *finished], expected)
    for node in finished:
        assert_own_results(node, evidence)
    assert keys.run_ids("complete") == [run_id]


# --- 6: GitHub Actions output


def test_github_actions_leader_writes_step_summary_and_annotations(
    fleet: Fleet, suite: Suite, private_redis: str, tmp_path: Path
) -> None:
    run_id = str(uuid.uuid4().int % 10**10)
    nodes = []
    for index in range(2):
        github = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": run_id, "GITHUB_RUN_ATTEMPT": "1",
                  "GITHUB_JOB": "test",
                  "GITHUB_STEP_SUMMARY": str(tmp_path / f"step-summary-{index}.md")}
        nodes.append(fleet.start(str(index), private_redis, EVERYTHING, "--node-index",
                                 str(index), "--node-total", "2", env=github))
    finished = finish_all(nodes)
    leader = assert_one_leader(finished)
    assert [node.returncode for node in finished] == [1, 1], explain(finished)
    for node in finished:
        assert f"GitHub Actions build {run_id}/1/test, node {node.label} of 2 (0-based)" \
            in node.stdout, node.explain()
    # One annotation for the one failure, from the leader (two would show twice on GitHub).
    annotations = [line for node in finished for line in node.stdout.splitlines()
                   if line.startswith("::error ")]
    assert len(annotations) == 1, explain(finished)
    assert annotations[0].startswith(f"::error file={FAILING_FILE},line={FAILING_LINE},")
    assert annotations[0] in leader.stdout.splitlines()
    assert "the failing example" in annotations[0]
    summary = (tmp_path / f"step-summary-{leader.label}.md").read_text()
    assert summary.startswith("### shardrun: failed"), summary
    assert "| 14 | 1 | 0 | 0 | 0 |" in summary, summary
    assert f"`{FAILING_TEST}` | `{FAILING_FILE}:{FAILING_LINE}`" in summary, summary
    # The rerun command is the suite's own framework's, not another's.
    assert f"python -m pytest {FAILING_FILE}::{FAILING_TEST}" in summary, summary
    # The follower writes its own: the verdict, its share, where the merged report is.
    [follower] = [node for node in finished if node is not leader]
    own = (tmp_path / f"step-summary-{follower.label}.md").read_text()
    assert own.startswith(f"### shardrun: GitHub Actions build {run_id}/1/test, node "
                          f"{follower.label} of 2 (0-based), follower: the run failed"), own
    assert "merged JUnit" in own, own

# --- 7: multi-host: nodes in network namespaces that reach Redis only over a veth


@dataclass(frozen=True)
class Network:
    namespaces: tuple[str, ...]
    redis_host: str  # the address of the bridge in the root namespace

    def inode(self, namespace: str) -> str:
        """What readlink /proc/self/ns/net shows inside `namespace`."""
        return f"net:[{os.stat(f'/run/netns/{namespace}').st_ino}]"


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


def free_subnet() -> int:
    """A third octet x with no address in 10.213.x.0/24 on this host."""
    taken = ip("-o", "-4", "addr", "show").stdout
    start = os.getpid() % 200
    for offset in range(250):
        octet = (start + offset) % 250 + 1
        if f" 10.213.{octet}." not in taken:
            return octet
    pytest.skip("no free 10.213.x.0/24 subnet for the test's veth addresses")


NAMESPACES_UNAVAILABLE = (
    "network namespaces not permitted here ({why}); the same scenario (3 nodes, one build, "
    "one leader, a complete report) runs as 3 plain processes in "
    "test_three_nodes_make_one_run_with_one_leader"
)


def must(completed: subprocess.CompletedProcess[str]) -> None:
    """A step of building the network; where it is not permitted, the test is skipped."""
    if completed.returncode != 0:
        why = f"`{' '.join(completed.args)}`: {completed.stderr.strip()}"
        pytest.skip(NAMESPACES_UNAVAILABLE.format(why=why))


@pytest.fixture
def network() -> Iterator[Network]:
    """3 namespaces, each with a veth whose peer is on a bridge in the root namespace."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip(NAMESPACES_UNAVAILABLE.format(why="needs root and iproute2's `ip`"))
    tag = os.getpid() % 100000
    namespaces = tuple(f"shardrun-{tag}-{index}" for index in range(3))
    bridge, octet = f"srbr{tag}", free_subnet()
    probe = ip("netns", "add", namespaces[0])
    if probe.returncode != 0:
        pytest.skip(NAMESPACES_UNAVAILABLE.format(why=f"`ip netns add`: {probe.stderr.strip()}"))
    try:
        must(ip("link", "add", "name", bridge, "type", "bridge"))
        must(ip("addr", "add", f"10.213.{octet}.1/24", "dev", bridge))
        must(ip("link", "set", bridge, "up"))
        for index, namespace in enumerate(namespaces):
            if index:
                must(ip("netns", "add", namespace))
            host_end, inner_end = f"srh{tag}x{index}", f"srn{tag}x{index}"
            must(ip("link", "add", host_end, "type", "veth", "peer", "name", inner_end))
            must(ip("link", "set", host_end, "master", bridge, "up"))
            must(ip("link", "set", inner_end, "netns", namespace))
            must(ip("-n", namespace, "addr", "add", f"10.213.{octet}.{11 + index}/24",
                    "dev", inner_end))
            must(ip("-n", namespace, "link", "set", inner_end, "up"))
            must(ip("-n", namespace, "link", "set", "lo", "up"))
        yield Network(namespaces, f"10.213.{octet}.1")
    finally:
        for namespace in namespaces:  # takes its veth, and so the peer, with it
            ip("netns", "del", namespace)
        ip("link", "del", bridge)


@pytest.fixture
def bridge_redis(network: Network, tmp_path: Path) -> Iterator[str]:
    """A redis-server of the test's own that listens only on the bridge's address.

    Protected mode is off because every client comes from another namespace; the address
    exists only on this test's bridge, so nothing else can reach it.
    """
    if not shutil.which("redis-server"):
        missing("redis-server not on PATH (apt-get install redis-server)")
    port = free_port()
    directory = tmp_path / "bridge-redis"
    directory.mkdir()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", network.redis_host, "--save", "",
         "--appendonly", "no", "--protected-mode", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        def listening() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex((network.redis_host, port)) == 0
        wait_until(listening, f"redis-server on {network.redis_host}:{port}")
        yield f"redis://{network.redis_host}:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_three_nodes_in_network_namespaces_make_one_run(
    fleet: Fleet, suite: Suite, network: Network, bridge_redis: str, evidence: Path
) -> None:
    prefixes = [("ip", "netns", "exec", namespace) for namespace in network.namespaces]
    finished = finish_all(fleet.start_build(bridge_redis, PASSING, 3, prefixes=prefixes))
    leader = assert_one_leader(finished)
    assert [node.returncode for node in finished] == [0, 0, 0], explain(finished)
    expected = suite.expected(PASSING)
    assert_merged_by(leader, finished, expected)
    union: Counter[Testcase] = Counter()
    for node in finished:
        union += assert_own_results(node, evidence)
    assert_each_once(union, expected)
    # Every test ran in the namespace of the node whose worker ran it, not in ours.
    places = {(record["node"], record["netns"]) for record in evidence_of(evidence)}
    assert places <= {(str(index), network.inode(namespace))
                      for index, namespace in enumerate(network.namespaces)}

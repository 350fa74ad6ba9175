"""CI provider detection: which build this is, and which of its parallel nodes we are.

Every node of a parallel CI step runs the same `shardrun ci` command; they find each other
through a run id derived from the build id, so the build id must be shared by all parallel
nodes of one step and by nothing else. Two different steps of one build that share it would
merge into one run and each see a "finished" suite that the other ran (bktec's issue #55).

Precedence: explicit CLI values (the keyword arguments of `detect`) > SHARDRUN_* overrides >
the provider's own variables. Each of build id, node index and node total is resolved on
its own, so a provider variable that an override makes unnecessary may be missing.

Pure: `detect` reads only the mapping it is given (os.environ by default).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shardrun.errors import InputError

OVERRIDE_BUILD_ID = "SHARDRUN_BUILD_ID"
OVERRIDE_NODE_INDEX = "SHARDRUN_NODE_INDEX"
OVERRIDE_NODE_TOTAL = "SHARDRUN_NODE_TOTAL"

# 16 hex digits = 64 bits: collisions among the runs one Redis server sees in a day (the
# key TTL) are negligible, and the key stays short enough to read in `redis-cli keys`.
RUN_ID_HEX_DIGITS = 16
RUN_ID_PREFIX = "ci-"

NOT_IN_CI = (
    "not in a known CI (GitHub Actions, GitLab, CircleCI, Buildkite, Jenkins): pass "
    f"--build-id or set {OVERRIDE_BUILD_ID} (and {OVERRIDE_NODE_INDEX}/{OVERRIDE_NODE_TOTAL})"
)
GITHUB_NEEDS_NODES = (
    "GitHub Actions does not tell a job its place in the matrix: pass "
    "`--node-index ${{ strategy.job-index }} --node-total ${{ strategy.job-total }}` "
    f"(or set {OVERRIDE_NODE_INDEX}/{OVERRIDE_NODE_TOTAL})"
)

# GitLab names the jobs of `parallel: N` "rspec 1/4" ... "rspec 4/4"; the suffix is all that
# differs between the nodes of one step.
GITLAB_PARALLEL_SUFFIX = re.compile(r" [0-9]+/[0-9]+$")
DIGITS = re.compile(r"[0-9]+")


# What an explicit build id is namespaced by in run ids, instead of the provider.
EXPLICIT_BUILD = "explicit"


@dataclass(frozen=True)
class CiContext:
    """Where this node stands: one step of one build, and its 0-based place among the nodes."""

    provider: str
    build_id: str
    node_index: int
    node_total: int
    # Given as --build-id or SHARDRUN_BUILD_ID: then the id alone names the build, whatever
    # provider variables a node happens to see.
    build_id_explicit: bool = False

    def run_id(self, suite_key: str) -> str:
        """A Redis-key-safe run id shared by exactly the nodes of this step running this suite.

        suite_key (built by the caller from the framework and paths) keeps two steps that
        run different suites under one job name apart even when the build id cannot. An
        explicit build id is the same build everywhere: one node that saw GITHUB_ACTIONS
        and one that did not once started two builds for one SHARDRUN_BUILD_ID.
        """
        provider = EXPLICIT_BUILD if self.build_id_explicit else self.provider
        material = "\0".join((provider, self.build_id, suite_key))
        digest = hashlib.sha256(material.encode("utf-8")).hexdigest()
        return RUN_ID_PREFIX + digest[:RUN_ID_HEX_DIGITS]

    def describe(self) -> str:
        """One line for logs, numbering nodes as --node-index and SHARDRUN_NODE_INDEX do."""
        label = PROVIDER_LABELS.get(self.provider, self.provider)
        return (f"{label} build {self.build_id}, node {self.node_index} of {self.node_total} "
                "(0-based)")


@dataclass(frozen=True)
class _Number:
    """A node index or total and where it came from, so an error can name the source."""

    value: int
    origin: str


_NodePair = tuple[_Number | None, _Number | None]


@dataclass(frozen=True)
class _Provider:
    """How one CI announces itself and spells the build id, node index and node total."""

    name: str
    label: str
    is_active: Callable[[Mapping[str, str]], bool]
    build_id: Callable[[Mapping[str, str]], str]
    nodes: Callable[[Mapping[str, str]], _NodePair]
    missing_nodes_hint: str | None = None


def _text(env: Mapping[str, str], name: str) -> str | None:
    """The stripped value, or None when unset or blank.

    A blank value usually comes from a CI expression that expanded to nothing; treating it
    as a real build id would make unrelated builds share a run.
    """
    value = env.get(name, "").strip()
    return value or None


def _require(env: Mapping[str, str], name: str, flag: str) -> str:
    """A provider variable the build id needs; its absence means a broken or faked CI env."""
    value = _text(env, name)
    if value is None:
        raise InputError(
            f"{flag} but {name} is not set: cannot tell which build this is; "
            f"set {OVERRIDE_BUILD_ID} or pass --build-id"
        )
    return value


def _count(env: Mapping[str, str], name: str) -> _Number | None:
    """A whole number >= 0 from the environment, None when unset or blank."""
    value = _text(env, name)
    if value is None:
        return None
    # int() would also take "+3", "1_0" and non-ASCII digits: not what any CI writes.
    if not DIGITS.fullmatch(value):
        raise InputError(f"{name}={value!r} is not a whole number >= 0")
    return _Number(int(value), f"{name}={value}")


def _is_true(name: str) -> Callable[[Mapping[str, str]], bool]:
    """The CI's own flag variable is exactly "true" on every provider that sets one."""
    return lambda env: env.get(name) == "true"


# ------------------------------------------------------------------------------ providers


def _github_build_id(env: Mapping[str, str]) -> str:
    """GITHUB_JOB is the job's key, shared by its matrix legs; an attempt is a fresh run."""
    flag = "GITHUB_ACTIONS=true"
    run = _require(env, "GITHUB_RUN_ID", flag)
    attempt = _require(env, "GITHUB_RUN_ATTEMPT", flag)
    job = _require(env, "GITHUB_JOB", flag)
    return f"{run}/{attempt}/{job}"


def _no_nodes(env: Mapping[str, str]) -> _NodePair:
    """For CIs that do not tell a node its place: overrides or 0 of 1."""
    return None, None


def _gitlab_is_sharded(env: Mapping[str, str]) -> bool:
    """True for `parallel: N` ("rspec 2/4"), false for `parallel: matrix:`.

    GitLab sets CI_NODE_INDEX for matrix jobs too, but their names ("rspec: [3.2, pg]")
    differ, so each is a run of its own; taking its index would make that lone node run
    only its 1/N share of the suite in the static fallback.
    """
    job = env.get("CI_JOB_NAME", "")
    return GITLAB_PARALLEL_SUFFIX.search(job) is not None


def _gitlab_build_id(env: Mapping[str, str]) -> str:
    """Pipeline id plus the job name without GitLab's " i/n" node suffix."""
    flag = "GITLAB_CI=true"
    pipeline = _require(env, "CI_PIPELINE_ID", flag)
    job = GITLAB_PARALLEL_SUFFIX.sub("", _require(env, "CI_JOB_NAME", flag))
    return f"{pipeline}/{job}"


def _gitlab_nodes(env: Mapping[str, str]) -> _NodePair:
    """CI_NODE_INDEX is 1-based; converted here so everything past detection is 0-based."""
    if not _gitlab_is_sharded(env):
        return None, None
    index = _count(env, "CI_NODE_INDEX")
    if index is not None:
        if index.value == 0:
            raise InputError(f"{index.origin} is not a valid GitLab node index (it is 1-based)")
        index = _Number(index.value - 1, index.origin)
    return index, _count(env, "CI_NODE_TOTAL")


def _circleci_build_id(env: Mapping[str, str]) -> str:
    """A workflow runs each job once (with `parallelism` nodes); a rerun is a new workflow."""
    flag = "CIRCLECI=true"
    return f"{_require(env, 'CIRCLE_WORKFLOW_ID', flag)}/{_require(env, 'CIRCLE_JOB', flag)}"


def _circleci_nodes(env: Mapping[str, str]) -> _NodePair:
    return _count(env, "CIRCLE_NODE_INDEX"), _count(env, "CIRCLE_NODE_TOTAL")


def _buildkite_build_id(env: Mapping[str, str]) -> str:
    """BUILDKITE_STEP_ID is shared by a step's parallel jobs and differs between steps."""
    flag = "BUILDKITE=true"
    build = _require(env, "BUILDKITE_BUILD_ID", flag)
    return f"{build}/{_require(env, 'BUILDKITE_STEP_ID', flag)}"


def _buildkite_nodes(env: Mapping[str, str]) -> _NodePair:
    return _count(env, "BUILDKITE_PARALLEL_JOB"), _count(env, "BUILDKITE_PARALLEL_JOB_COUNT")


def _jenkins_is_active(env: Mapping[str, str]) -> bool:
    return _text(env, "BUILD_TAG") is not None or _text(env, "JENKINS_URL") is not None


def _jenkins_build_id(env: Mapping[str, str]) -> str:
    """BUILD_TAG is "jenkins-<job name>-<build number>"; parallel branches share it."""
    return _require(env, "BUILD_TAG", "JENKINS_URL is set")


# Checked in this order; Jenkins last because BUILD_TAG is a name other tools use too.
PROVIDERS: tuple[_Provider, ...] = (
    _Provider(
        "github",
        "GitHub Actions",
        _is_true("GITHUB_ACTIONS"),
        _github_build_id,
        _no_nodes,
        GITHUB_NEEDS_NODES,
    ),
    _Provider("gitlab", "GitLab CI", _is_true("GITLAB_CI"), _gitlab_build_id, _gitlab_nodes),
    _Provider("circleci", "CircleCI", _is_true("CIRCLECI"), _circleci_build_id, _circleci_nodes),
    _Provider(
        "buildkite", "Buildkite", _is_true("BUILDKITE"), _buildkite_build_id, _buildkite_nodes
    ),
    _Provider("jenkins", "Jenkins", _jenkins_is_active, _jenkins_build_id, _no_nodes),
)
OVERRIDE_PROVIDER = "override"
PROVIDER_LABELS = {provider.name: provider.label for provider in PROVIDERS}
PROVIDER_LABELS[OVERRIDE_PROVIDER] = "Custom CI"


# ------------------------------------------------------------------------------ detection


def _find_provider(env: Mapping[str, str]) -> _Provider | None:
    return next((provider for provider in PROVIDERS if provider.is_active(env)), None)


def _resolve_build_id(
    env: Mapping[str, str], provider: _Provider | None, explicit: str | None
) -> str:
    """--build-id > SHARDRUN_BUILD_ID > the provider's variables."""
    if explicit is not None:
        if not explicit.strip():
            raise InputError("--build-id is empty: give the id all nodes of this step share")
        return explicit.strip()
    override = _text(env, OVERRIDE_BUILD_ID)
    if override is not None:
        return override
    if provider is None:
        raise InputError(NOT_IN_CI)
    return provider.build_id(env)


def _pick(
    explicit: int | None,
    option: str,
    env: Mapping[str, str],
    variable: str,
    from_provider: _Number | None,
) -> _Number | None:
    """CLI option > SHARDRUN_* variable > provider variable, keeping where it came from."""
    if explicit is not None:
        return _Number(explicit, f"{option} {explicit}")
    override = _count(env, variable)
    return override if override is not None else from_provider


def _resolve_nodes(
    env: Mapping[str, str],
    provider: _Provider | None,
    node_index: int | None,
    node_total: int | None,
) -> tuple[_Number, _Number]:
    """Both known, or neither (one node alone); never one without the other.

    A lone index or total would leave nodes disagreeing on the split, so it is an error.
    """
    from_provider = provider.nodes(env) if provider else (None, None)
    index = _pick(node_index, "--node-index", env, OVERRIDE_NODE_INDEX, from_provider[0])
    total = _pick(node_total, "--node-total", env, OVERRIDE_NODE_TOTAL, from_provider[1])
    if index is not None and total is not None:
        return index, total
    if provider is not None and provider.missing_nodes_hint is not None:
        raise InputError(provider.missing_nodes_hint)
    if index is not None:
        raise InputError(
            f"{index.origin} given without a node total: "
            f"pass --node-total or set {OVERRIDE_NODE_TOTAL}"
        )
    if total is not None:
        raise InputError(
            f"{total.origin} given without a node index: "
            f"pass --node-index or set {OVERRIDE_NODE_INDEX}"
        )
    return _Number(0, "default"), _Number(1, "default")


def _validate(index: _Number, total: _Number) -> None:
    """Every node must agree on a total and hold a distinct index below it."""
    if total.value < 1:
        raise InputError(f"node total from {total.origin} must be at least 1")
    if index.value < 0:
        raise InputError(f"node index from {index.origin} must be >= 0")
    if index.value >= total.value:
        raise InputError(
            f"node index from {index.origin} must be below the node total "
            f"{total.value} (from {total.origin}); indexes are 0-based"
        )


def detect(
    env: Mapping[str, str] | None = None,
    *,
    build_id: str | None = None,
    node_index: int | None = None,
    node_total: int | None = None,
) -> CiContext:
    """The CI context of this node; raises InputError saying what to pass when it cannot.

    The keyword arguments are the CLI's --build-id/--node-index/--node-total and win over
    everything. Where the build id comes from an override, the provider is still the one
    detected (or "override" when none is), which keeps describe() honest.
    """
    environment = os.environ if env is None else env
    provider = _find_provider(environment)
    resolved_build_id = _resolve_build_id(environment, provider, build_id)
    index, total = _resolve_nodes(environment, provider, node_index, node_total)
    _validate(index, total)
    return CiContext(
        provider=provider.name if provider else OVERRIDE_PROVIDER,
        build_id=resolved_build_id,
        node_index=index.value,
        node_total=total.value,
        build_id_explicit=build_id is not None or _text(environment, OVERRIDE_BUILD_ID) is not None,
    )


def build_label(env: Mapping[str, str] | None = None) -> str | None:
    """"GitHub Actions build 9876/1/rspec" for a run record, or None outside CI.

    Unlike `detect` it never raises: a dashboard label must not fail a local run whose
    shell happens to hold half a CI's variables.
    """
    env = os.environ if env is None else env
    provider = _find_provider(env)
    explicit = _text(env, OVERRIDE_BUILD_ID)
    try:
        build = explicit or (provider.build_id(env) if provider else None)
    except InputError:
        return None
    if build is None:
        return None
    label = provider.label if provider and not explicit else PROVIDER_LABELS[OVERRIDE_PROVIDER]
    return f"{label} build {build}"

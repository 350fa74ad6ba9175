"""shardrun.run.ci_env: provider detection, precedence of CLI values and SHARDRUN_* overrides,
validation, and run ids.

The env dicts mirror what each CI really sets for a parallel test step (only the variables
detection reads, plus a few neighbours to show they are ignored).
"""

from __future__ import annotations

import re

import pytest

from shardrun.errors import InputError
from shardrun.run.ci_env import CiContext, detect

GITHUB = {
    "CI": "true",
    "GITHUB_ACTIONS": "true",
    "GITHUB_RUN_ID": "9876543210",
    "GITHUB_RUN_ATTEMPT": "1",
    "GITHUB_JOB": "rspec",
    "GITHUB_WORKFLOW": "CI",
}


def gitlab(job_name: str = "rspec", node: int | None = None, total: int = 1) -> dict[str, str]:
    """GitLab's env for one job; with node set, a `parallel: total` job's 1-based node."""
    env = {
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_PIPELINE_ID": "123",
        "CI_JOB_ID": "4567",
        "CI_JOB_NAME": job_name,
        "CI_NODE_TOTAL": str(total),
    }
    if node is not None:
        env["CI_JOB_NAME"] = f"{job_name} {node}/{total}"
        env["CI_NODE_INDEX"] = str(node)
    return env


def circleci(node: int = 0, total: int = 1, job: str = "test") -> dict[str, str]:
    return {
        "CI": "true",
        "CIRCLECI": "true",
        "CIRCLE_WORKFLOW_ID": "6a3b2c1d-0000-4e5f-8a9b-abcdefabcdef",
        "CIRCLE_JOB": job,
        "CIRCLE_BUILD_NUM": "42",
        "CIRCLE_NODE_INDEX": str(node),
        "CIRCLE_NODE_TOTAL": str(total),
    }


def buildkite(step: str = "0190-step-a", node: int | None = None, total: int = 1) -> dict[str, str]:
    env = {
        "CI": "true",
        "BUILDKITE": "true",
        "BUILDKITE_BUILD_ID": "0190c1a2-b3c4-4d5e-8f90-123456789abc",
        "BUILDKITE_STEP_ID": step,
        "BUILDKITE_JOB_ID": f"job-{step}-{node}",
    }
    if node is not None:
        env["BUILDKITE_PARALLEL_JOB"] = str(node)
        env["BUILDKITE_PARALLEL_JOB_COUNT"] = str(total)
    return env


JENKINS = {
    "JENKINS_URL": "https://jenkins.example.com/",
    "BUILD_TAG": "jenkins-shop-main-77",
    "BUILD_NUMBER": "77",
    "JOB_NAME": "shop/main",
}


# ------------------------------------------------------------------------------ providers


def test_github_reads_run_attempt_and_job_and_needs_explicit_nodes() -> None:
    context = detect(GITHUB, node_index=2, node_total=3)
    assert context == CiContext("github", "9876543210/1/rspec", 2, 3)
    assert context.describe() == "GitHub Actions build 9876543210/1/rspec, node 2 of 3 (0-based)"


def test_github_takes_nodes_from_overrides() -> None:
    env = {**GITHUB, "SHARDRUN_NODE_INDEX": "0", "SHARDRUN_NODE_TOTAL": "2"}
    assert detect(env) == CiContext("github", "9876543210/1/rspec", 0, 2)


def test_github_matrix_legs_share_a_build_but_attempts_and_jobs_do_not() -> None:
    leg = detect(GITHUB, node_index=0, node_total=2)
    other_leg = detect(GITHUB, node_index=1, node_total=2)
    second_attempt = detect({**GITHUB, "GITHUB_RUN_ATTEMPT": "2"}, node_index=0, node_total=2)
    other_job = detect({**GITHUB, "GITHUB_JOB": "pytest"}, node_index=0, node_total=2)
    assert leg.build_id == other_leg.build_id
    assert len({leg.build_id, second_attempt.build_id, other_job.build_id}) == 3


@pytest.mark.parametrize(
    "extra",
    [{}, {"SHARDRUN_NODE_TOTAL": "3"}, {"SHARDRUN_NODE_INDEX": "1"}],
    ids=["neither", "total only", "index only"],
)
def test_github_without_index_or_total_says_to_pass_node_index(extra: dict[str, str]) -> None:
    with pytest.raises(InputError, match="--node-index") as caught:
        detect({**GITHUB, **extra})
    message = str(caught.value)
    assert "strategy.job-index" in message
    assert "strategy.job-total" in message
    assert "\n" not in message


def test_gitlab_parallel_node_is_converted_to_zero_based() -> None:
    context = detect(gitlab("rspec", node=2, total=4))
    assert context == CiContext("gitlab", "123/rspec", 1, 4)
    assert context.describe() == "GitLab CI build 123/rspec, node 1 of 4 (0-based)"


def test_gitlab_parallel_nodes_of_one_job_share_the_build_id() -> None:
    nodes = [detect(gitlab("rspec", node=n, total=4)) for n in range(1, 5)]
    assert {node.build_id for node in nodes} == {"123/rspec"}
    assert [node.node_index for node in nodes] == [0, 1, 2, 3]


def test_gitlab_different_jobs_of_one_pipeline_differ() -> None:
    rspec = detect(gitlab("rspec", node=1, total=2))
    system = detect(gitlab("rspec system", node=1, total=2))
    assert rspec.build_id != system.build_id


def test_gitlab_keeps_digits_that_are_not_the_node_suffix() -> None:
    assert detect(gitlab("test 3.2")).build_id == "123/test 3.2"
    assert detect(gitlab("shard 1/2 nightly")).build_id == "123/shard 1/2 nightly"


def test_gitlab_without_parallel_is_one_node() -> None:
    assert detect(gitlab("rspec")) == CiContext("gitlab", "123/rspec", 0, 1)


def test_gitlab_matrix_jobs_are_separate_single_node_runs() -> None:
    # parallel:matrix sets CI_NODE_INDEX too, but its jobs are different configurations,
    # each of which must run the whole suite.
    env = {**gitlab("rspec: [3.2, pg]"), "CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "4"}
    other = {**env, "CI_JOB_NAME": "rspec: [3.3, pg]", "CI_NODE_INDEX": "3"}
    assert detect(env) == CiContext("gitlab", "123/rspec: [3.2, pg]", 0, 1)
    assert detect(other).build_id != detect(env).build_id


def test_gitlab_node_index_zero_is_rejected_as_one_based() -> None:
    env = {**gitlab("rspec", node=1, total=2), "CI_NODE_INDEX": "0"}
    with pytest.raises(InputError, match=r"CI_NODE_INDEX=0 .*1-based"):
        detect(env)


def test_circleci_reads_zero_based_nodes() -> None:
    context = detect(circleci(node=3, total=4))
    assert context == CiContext("circleci", "6a3b2c1d-0000-4e5f-8a9b-abcdefabcdef/test", 3, 4)
    assert context.describe().endswith("node 3 of 4 (0-based)")


def test_circleci_jobs_of_one_workflow_differ() -> None:
    assert detect(circleci(job="unit")).build_id != detect(circleci(job="system")).build_id


def test_buildkite_parallel_jobs_share_the_step() -> None:
    first = detect(buildkite(node=0, total=3))
    last = detect(buildkite(node=2, total=3))
    assert first.provider == "buildkite"
    assert first.build_id == last.build_id
    assert (first.node_index, last.node_index, last.node_total) == (0, 2, 3)


def test_buildkite_two_steps_of_one_build_differ() -> None:
    # bktec's issue #55: two steps sharing one id merge into one run.
    step_a = detect(buildkite(step="0190-step-a", node=0, total=2))
    step_b = detect(buildkite(step="0190-step-b", node=0, total=2))
    assert step_a.build_id != step_b.build_id
    assert step_a.run_id("rspec:spec") != step_b.run_id("rspec:spec")


def test_buildkite_without_parallelism_is_one_node() -> None:
    assert (detect(buildkite()).node_index, detect(buildkite()).node_total) == (0, 1)


def test_jenkins_uses_build_tag_and_is_one_node_without_overrides() -> None:
    assert detect(JENKINS) == CiContext("jenkins", "jenkins-shop-main-77", 0, 1)


def test_jenkins_is_detected_from_build_tag_alone() -> None:
    assert detect({"BUILD_TAG": "jenkins-shop-main-77"}).provider == "jenkins"


def test_jenkins_takes_nodes_from_overrides() -> None:
    env = {**JENKINS, "SHARDRUN_NODE_INDEX": "1", "SHARDRUN_NODE_TOTAL": "2"}
    assert detect(env) == CiContext("jenkins", "jenkins-shop-main-77", 1, 2)


def test_no_ci_without_build_id_says_what_to_set() -> None:
    with pytest.raises(InputError) as caught:
        detect({"HOME": "/home/dev", "CI": "true"})
    assert str(caught.value) == (
        "not in a known CI (GitHub Actions, GitLab, CircleCI, Buildkite, Jenkins): pass "
        "--build-id or set SHARDRUN_BUILD_ID (and SHARDRUN_NODE_INDEX/SHARDRUN_NODE_TOTAL)"
    )


def test_any_other_ci_works_through_overrides() -> None:
    env = {"SHARDRUN_BUILD_ID": "drone-512", "SHARDRUN_NODE_INDEX": "2", "SHARDRUN_NODE_TOTAL": "5"}
    context = detect(env)
    assert context == CiContext("override", "drone-512", 2, 5, True)
    assert context.describe() == "Custom CI build drone-512, node 2 of 5 (0-based)"


def test_build_id_alone_is_one_node() -> None:
    assert detect({}, build_id="local-1") == CiContext("override", "local-1", 0, 1, True)


def test_detect_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "GITHUB_ACTIONS",
        "GITLAB_CI",
        "CIRCLECI",
        "BUILDKITE",
        "BUILD_TAG",
        "JENKINS_URL",
        "SHARDRUN_NODE_INDEX",
        "SHARDRUN_NODE_TOTAL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SHARDRUN_BUILD_ID", "from-os-environ")
    assert detect().build_id == "from-os-environ"


# ------------------------------------------------------------------------------ precedence


def test_overrides_beat_provider_variables() -> None:
    env = {
        **gitlab("rspec", node=2, total=4),
        "SHARDRUN_BUILD_ID": "custom",
        "SHARDRUN_NODE_INDEX": "0",
        "SHARDRUN_NODE_TOTAL": "2",
    }
    assert detect(env) == CiContext("gitlab", "custom", 0, 2, True)


def test_each_override_stands_alone() -> None:
    env = {**circleci(node=1, total=4), "SHARDRUN_NODE_TOTAL": "2"}
    assert detect(env) == CiContext("circleci", "6a3b2c1d-0000-4e5f-8a9b-abcdefabcdef/test", 1, 2)


def test_cli_values_beat_overrides() -> None:
    env = {
        **circleci(node=1, total=4),
        "SHARDRUN_BUILD_ID": "from-env",
        "SHARDRUN_NODE_INDEX": "0",
        "SHARDRUN_NODE_TOTAL": "2",
    }
    assert detect(env, build_id="from-cli", node_index=4, node_total=5) == CiContext(
        "circleci", "from-cli", 4, 5, True
    )


def test_override_build_id_spares_missing_provider_variables() -> None:
    env = {"GITLAB_CI": "true", "SHARDRUN_BUILD_ID": "custom"}
    assert detect(env) == CiContext("gitlab", "custom", 0, 1, True)


def test_blank_override_is_ignored_rather_than_shared_by_every_build() -> None:
    env = {**gitlab("rspec"), "SHARDRUN_BUILD_ID": "  ", "SHARDRUN_NODE_INDEX": ""}
    assert detect(env) == CiContext("gitlab", "123/rspec", 0, 1)


# ------------------------------------------------------------------------------ bad values


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"GITLAB_CI": "true", "CI_JOB_NAME": "rspec"}, "CI_PIPELINE_ID"),
        ({"GITLAB_CI": "true", "CI_PIPELINE_ID": "123"}, "CI_JOB_NAME"),
        ({k: v for k, v in GITHUB.items() if k != "GITHUB_RUN_ATTEMPT"}, "GITHUB_RUN_ATTEMPT"),
        ({"CIRCLECI": "true", "CIRCLE_JOB": "test"}, "CIRCLE_WORKFLOW_ID"),
        ({"BUILDKITE": "true", "BUILDKITE_BUILD_ID": "b"}, "BUILDKITE_STEP_ID"),
        ({"JENKINS_URL": "https://jenkins.example.com/"}, "BUILD_TAG"),
    ],
    ids=["gitlab pipeline", "gitlab job", "github attempt", "circleci", "buildkite", "jenkins"],
)
def test_missing_provider_variable_is_named(env: dict[str, str], missing: str) -> None:
    with pytest.raises(InputError, match=f"{missing} is not set"):
        detect(env, node_index=0, node_total=1)


@pytest.mark.parametrize(
    ("env", "kwargs", "named"),
    [
        (
            {"SHARDRUN_NODE_INDEX": "one", "SHARDRUN_NODE_TOTAL": "2"},
            {},
            "SHARDRUN_NODE_INDEX='one'",
        ),
        ({"SHARDRUN_NODE_INDEX": "-1", "SHARDRUN_NODE_TOTAL": "2"}, {}, "SHARDRUN_NODE_INDEX='-1'"),
        (
            {"SHARDRUN_NODE_INDEX": "0", "SHARDRUN_NODE_TOTAL": "1_0"},
            {},
            "SHARDRUN_NODE_TOTAL='1_0'",
        ),
        ({"SHARDRUN_NODE_INDEX": "0", "SHARDRUN_NODE_TOTAL": "0"}, {}, "SHARDRUN_NODE_TOTAL=0"),
        ({"SHARDRUN_NODE_INDEX": "2", "SHARDRUN_NODE_TOTAL": "2"}, {}, "SHARDRUN_NODE_INDEX=2"),
        ({}, {"node_index": 3, "node_total": 3}, "--node-index 3"),
        ({}, {"node_index": -1, "node_total": 3}, "--node-index -1"),
        ({}, {"node_index": 0, "node_total": 0}, "--node-total 0"),
        ({"SHARDRUN_NODE_INDEX": "1"}, {}, "SHARDRUN_NODE_INDEX=1 given without a node total"),
        ({"SHARDRUN_NODE_TOTAL": "3"}, {}, "SHARDRUN_NODE_TOTAL=3 given without a node index"),
    ],
)
def test_bad_node_values_name_their_source(
    env: dict[str, str], kwargs: dict[str, int], named: str
) -> None:
    with pytest.raises(InputError, match=re.escape(named)):
        detect({"SHARDRUN_BUILD_ID": "b", **env}, **kwargs)


def test_bad_provider_node_value_is_named() -> None:
    with pytest.raises(InputError, match=re.escape("CIRCLE_NODE_INDEX=5")):
        detect(circleci(node=5, total=4))
    with pytest.raises(InputError, match=re.escape("BUILDKITE_PARALLEL_JOB_COUNT='x'")):
        detect({**buildkite(node=0, total=2), "BUILDKITE_PARALLEL_JOB_COUNT": "x"})


def test_empty_cli_build_id_is_rejected() -> None:
    with pytest.raises(InputError, match="--build-id is empty"):
        detect(GITHUB, build_id=" ", node_index=0, node_total=1)


# ------------------------------------------------------------------------------ run ids


def test_run_id_is_stable_and_redis_key_safe() -> None:
    context = CiContext("jenkins", "jenkins-shop main/77 ✓", 0, 1)
    run_id = context.run_id("rspec:spec/models spec/system")
    assert run_id == context.run_id("rspec:spec/models spec/system")
    assert run_id == CiContext("jenkins", "jenkins-shop main/77 ✓", 1, 2).run_id(
        "rspec:spec/models spec/system"
    )
    assert re.fullmatch(r"ci-[A-Za-z0-9-]+", run_id)


def test_run_id_differs_by_suite_key_build_and_provider() -> None:
    base = CiContext("gitlab", "123/rspec", 0, 2)
    run_ids = {
        base.run_id("rspec:spec"),
        base.run_id("pytest:tests"),
        CiContext("gitlab", "124/rspec", 0, 2).run_id("rspec:spec"),
        CiContext("circleci", "123/rspec", 0, 2).run_id("rspec:spec"),
    }
    assert len(run_ids) == 4


def test_run_id_parts_cannot_run_together() -> None:
    # Without a separator, build "a" + suite "bc" would hash like build "ab" + suite "c".
    assert CiContext("override", "a", 0, 1).run_id("bc") != CiContext(
        "override", "ab", 0, 1
    ).run_id("c")


def test_an_explicit_build_id_is_the_same_build_whatever_provider_a_node_sees() -> None:
    """The same SHARDRUN_BUILD_ID with and without GITHUB_ACTIONS set used to start two
    builds, the second running the whole suite alone."""
    plain = detect({"SHARDRUN_BUILD_ID": "b1", "SHARDRUN_NODE_INDEX": "0",
                       "SHARDRUN_NODE_TOTAL": "2"})
    github = detect({"SHARDRUN_BUILD_ID": "b1", "SHARDRUN_NODE_INDEX": "1",
                        "SHARDRUN_NODE_TOTAL": "2", "GITHUB_ACTIONS": "true",
                        "GITHUB_RUN_ID": "7", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_JOB": "t"})
    assert plain.run_id("suite") == github.run_id("suite")
    assert detect({"SHARDRUN_NODE_INDEX": "0", "SHARDRUN_NODE_TOTAL": "2"},
                     build_id="b1").run_id("suite") == plain.run_id("suite")

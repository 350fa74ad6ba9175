"""The container files and the CI recipes agree with the CLI, checked without a Docker engine.

There is no Docker engine where shardrun is developed, so docker-compose.yml, the
Dockerfiles in workers/ and the recipes in docs/ci/ are parsed, not run: every `shardrun`
command line in them must parse with the real click CLI (options, types, ranges), the
services must mount the project and reach Redis the way those commands expect, and the
images must install what their entrypoint runs. workers/entrypoint.sh is the one piece
that does run: under `sh`, with a stand-in `shardrun` on PATH that records its argv.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import click
import pytest
import yaml

from shardrun.cli.main import cli

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
WORKERS_DIR = REPO_ROOT / "workers"
ENTRYPOINT_SCRIPT = WORKERS_DIR / "entrypoint.sh"
DOCKERFILES = {name: WORKERS_DIR / f"Dockerfile.{name}" for name in ("rspec", "pytest")}
DOCS_CI = REPO_ROOT / "docs" / "ci"
RECIPES = ("github-actions.md", "gitlab-ci.md", "circleci.md", "buildkite.md")
DOCS = ("README.md", *RECIPES)

CONTAINER_PROJECT = "/project"  # where the images expect the project checkout
IMAGE_ENTRYPOINT = "/usr/local/bin/shardrun-entrypoint"
WORKER_SERVICES = ("coordinator", "worker")
CI_COMMAND_MISSING = (
    "`shardrun ci` is not in shardrun/cli/main.py yet (issue 5 adds it); only its lines are skipped"
)

# Keys whose values are shell commands in the CI YAML dialects of the recipes.
COMMAND_KEYS = frozenset({"run", "script", "before_script", "after_script", "command", "commands"})
# What the CI would put in place of its variables, for parsing the lines.
SAMPLE_VALUES = {
    "strategy.job-index": "1",
    "strategy.job-total": "4",
    "CI_NODE_INDEX": "2",
    "CI_NODE_TOTAL": "4",
    "CIRCLE_NODE_INDEX": "1",
    "CIRCLE_NODE_TOTAL": "4",
    "BUILDKITE_PARALLEL_JOB": "1",
    "BUILDKITE_PARALLEL_JOB_COUNT": "4",
}
# The recipes take SHARDRUN_REDIS_URL from a CI secret; this stands in for it.
RECIPE_REDIS_URL = "rediss://ci:secret@redis.example.com:6380/0"
SHELL_OPERATOR = re.compile(r"^[();<>|&]+$")
GLOB_CHARACTERS = frozenset("*?[")
GITHUB_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
SHELL_VARIABLE = re.compile(r"\$\{(\w+)(?::?-[^}]*)?\}|\$(\w+)")
COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?-)([^}]*))?\}|\$(\w+)")


# --------------------------------------------------------------------------- click


def ci_command_exists() -> bool:
    return cli.get_command(click.Context(cli), "ci") is not None


def parse_shardrun(
    argv: Sequence[str], where: str, env: Mapping[str, str] | None = None
) -> click.Context:
    """Resolve `shardrun SUB [SUB ...] ARGS` and parse ARGS the way click would, without
    running the command; a usage error fails the test, naming where the line came from.

    `env` is the environment the line runs in (a service's `environment:`, a CI secret);
    SHARDRUN_* variables of whoever runs the tests are hidden so they cannot stand in.
    """
    clean = {key: value for key, value in os.environ.items() if not key.startswith("SHARDRUN_")}
    with mock.patch.dict(os.environ, {**clean, **(env or {})}, clear=True):
        return _parse_shardrun(argv, where)


def _parse_shardrun(argv: Sequence[str], where: str) -> click.Context:
    shown = shlex.join(argv)
    assert argv and argv[0] == "shardrun", f"{where}: not a shardrun command: {shown}"
    args = list(argv[1:])
    parent = click.Context(cli, info_name="shardrun")
    command: click.Command = cli
    name = "shardrun"
    while isinstance(command, click.Group):
        if not args:
            pytest.fail(f"{where}: `{shown}` names no subcommand")
        name = args.pop(0)
        subcommand = command.get_command(parent, name)
        if subcommand is None:
            pytest.fail(f"{where}: `{shown}`: shardrun has no command `{name}`")
        command = subcommand
        if isinstance(command, click.Group):
            parent = click.Context(command, info_name=name, parent=parent)
    try:
        return command.make_context(name, args, parent=parent)
    except click.ClickException as error:
        pytest.fail(f"{where}: `{shown}` does not parse: {error.format_message()}")


def skip_if_ci_missing(argv: Sequence[str]) -> None:
    if len(argv) > 1 and argv[1] == "ci" and not ci_command_exists():
        pytest.skip(CI_COMMAND_MISSING)


def host_paths(argv: Sequence[str], project: Path) -> list[str]:
    """The argv with the container's /project replaced by the directory mounted there, so
    options that must name an existing directory (`worker --root`) can be checked."""
    mapped = []
    for item in argv:
        if item == CONTAINER_PROJECT or item.startswith(CONTAINER_PROJECT + "/"):
            item = str(project) + item[len(CONTAINER_PROJECT):]
        mapped.append(item)
    return mapped


# --------------------------------------------------------------------------- compose


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR, $$."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, default = match.group(2), match.group(3)
        current = env.get(name)
        if operator == ":-" and not current:
            return default
        if operator == "-" and current is None:
            return default
        return current or ""

    return COMPOSE_VARIABLE.sub(replace, value)


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return interpolate(data, env or {})


def service(name: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    services = load_compose(env)["services"]
    assert name in services, f"docker-compose.yml: no service `{name}`"
    return services[name]


def service_environment(spec: dict[str, Any]) -> dict[str, str]:
    environment = spec.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def project_mount(spec: dict[str, Any]) -> Path:
    """The host directory mounted at /project (short `src:dst[:mode]` or long syntax)."""
    for volume in spec.get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
        else:
            source, target = volume.get("source", ""), volume.get("target", "")
        if target == CONTAINER_PROJECT:
            return (REPO_ROOT / source).resolve()
    pytest.fail(f"docker-compose.yml: the service mounts nothing at {CONTAINER_PROJECT}")


def service_dockerfile(spec: dict[str, Any]) -> Path:
    build = spec.get("build")
    assert isinstance(build, dict), "the service has no `build:` with a context and dockerfile"
    context = (REPO_ROOT / build.get("context", ".")).resolve()
    return context / build.get("dockerfile", "Dockerfile")


def as_argv(value: Any) -> list[str]:
    """Compose takes a list as is and splits a string like a shell (without running one)."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(item) for item in value]


# --------------------------------------------------------------------------- Dockerfiles


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with their continuation lines joined and comment lines dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue  # inside a continuation too, as Docker does
        if not pending:
            start = number
        pending.append(text.removesuffix("\\").strip())
        if text.endswith("\\"):
            continue
        keyword, _, arguments = " ".join(pending).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = []
    assert not pending, f"{path}: the last instruction ends in a line continuation"
    return instructions


def instructions_of(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    return [instruction for instruction in instructions if instruction.keyword == keyword]


def exec_form(instructions: list[Instruction], keyword: str) -> list[str] | None:
    """The last ENTRYPOINT/CMD, which must be in exec (JSON) form: the shell form would put
    /bin/sh in front as PID 1 and swallow the signals tini is there to pass on."""
    found = instructions_of(instructions, keyword)
    if not found:
        return None
    arguments = found[-1].arguments
    assert arguments.startswith("["), f"{keyword} on line {found[-1].line} is not in exec form"
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value)
    return value


def image_env(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in instructions_of(instructions, "ENV"):
        words = shlex.split(instruction.arguments)
        if words and "=" not in words[0]:  # the legacy `ENV KEY value`
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            env[key] = value
    return env


def run_segments(instructions: list[Instruction]) -> Iterator[list[str]]:
    """Each simple command of every RUN, as words, with the image's ENV filled in."""
    env = image_env(instructions)
    for instruction in instructions_of(instructions, "RUN"):
        text = SHELL_VARIABLE.sub(
            lambda match: env.get(match.group(1) or match.group(2), match.group(0)),
            instruction.arguments,
        )
        for segment in re.split(r"&&|;|\|\|", text):
            words = shlex.split(segment)
            if words:
                yield words


def installed(instructions: list[Instruction], installer: Sequence[str]) -> set[str]:
    """The operands of `<installer> ...` commands in RUN, without their options."""
    names: set[str] = set()
    size = len(installer)
    for words in run_segments(instructions):
        for index in range(len(words) - size + 1):
            if words[index:index + size] == list(installer):
                names |= {word for word in words[index + size:] if not word.startswith("-")}
    return names


def copies(instructions: list[Instruction]) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY, without its --flags."""
    result = []
    for instruction in instructions_of(instructions, "COPY"):
        words = [word for word in shlex.split(instruction.arguments) if not word.startswith("--")]
        result.append((words[:-1], words[-1]))
    return result


def copied_to(instructions: list[Instruction], destination: str) -> list[str]:
    """The build-context sources copied to exactly `destination` or into it as a directory."""
    wanted = PurePosixPath(destination)
    found = []
    for sources, target in copies(instructions):
        if target.rstrip("/") == destination.rstrip("/"):
            found.extend(sources)
        elif target.endswith("/") and wanted.parent == PurePosixPath(target):
            found.extend(source for source in sources if PurePosixPath(source).name == wanted.name)
    return found


# --------------------------------------------------------------------------- the entrypoint


@dataclass(frozen=True)
class EntrypointRun:
    returncode: int
    stderr: str
    argv: list[str] | None  # what the stand-in shardrun received; None if it never ran
    exec_replaced_shell: bool


def run_entrypoint(tmp_path: Path, args: Sequence[str], env: Mapping[str, str]) -> EntrypointRun:
    """Run workers/entrypoint.sh under sh with a stand-in `shardrun` first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "shardrun-argv.json"
    record.unlink(missing_ok=True)
    stand_in = bin_dir / "shardrun"
    stand_in.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(record)!r}, 'w') as out:\n"
        "    json.dump({'argv': sys.argv[1:], 'pid': os.getpid()}, out)\n",
        encoding="utf-8",
    )
    stand_in.chmod(0o755)
    full_env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **env}
    process = subprocess.Popen(
        ["sh", str(ENTRYPOINT_SCRIPT), *args], env=full_env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    _, stderr = process.communicate(timeout=60)
    if not record.exists():
        return EntrypointRun(process.returncode, stderr, None, False)
    recorded = json.loads(record.read_text(encoding="utf-8"))
    return EntrypointRun(process.returncode, stderr, recorded["argv"],
                         recorded["pid"] == process.pid)


def container_argv(name: str, tmp_path: Path) -> list[str]:
    """What a compose service runs, tini and the entrypoint script resolved: the image's
    ENTRYPOINT unless the service overrides it, then the service's command."""
    spec = service(name)
    instructions = parse_dockerfile(service_dockerfile(spec))
    entrypoint = as_argv(spec["entrypoint"]) if "entrypoint" in spec else (
        exec_form(instructions, "ENTRYPOINT") or []
    )
    default_command = [] if "entrypoint" in spec else (exec_form(instructions, "CMD") or [])
    argv = [*entrypoint, *(as_argv(spec["command"]) if "command" in spec else default_command)]
    if argv and PurePosixPath(argv[0]).name == "tini":
        assert "--" in argv, f"{name}: tini without `--` would read the command's options"
        argv = argv[argv.index("--") + 1:]
    if argv and argv[0] == IMAGE_ENTRYPOINT:
        assert copied_to(instructions, IMAGE_ENTRYPOINT) == ["workers/entrypoint.sh"]
        ran = run_entrypoint(tmp_path, argv[1:], service_environment(spec))
        assert ran.argv is not None, f"{name}: the entrypoint did not start shardrun: {ran.stderr}"
        argv = ["shardrun", *ran.argv]
    return argv


# --------------------------------------------------------------------------- the recipes


@dataclass(frozen=True)
class CommandLine:
    where: str  # docs/ci/<file>.md:<line>
    text: str   # continuation lines joined, CI variables still in place


def markdown_blocks(path: Path) -> Iterator[tuple[str, int, str]]:
    """(language, line number of the block's first line, text) of each fenced block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = re.match(r"^\s*```(\w*)\s*$", lines[index])
        index += 1
        if not opening:
            continue
        start = index
        while index < len(lines) and not re.match(r"^\s*```\s*$", lines[index]):
            index += 1
        yield opening.group(1).lower(), start + 1, "\n".join(lines[start:index])
        index += 1


def logical_lines(text: str) -> Iterator[tuple[str, str]]:
    """(first physical line, whole line) with backslash continuations joined."""
    pending: list[str] = []
    for line in text.splitlines():
        pending.append(line.rstrip().removesuffix("\\").strip())
        if line.rstrip().endswith("\\"):
            continue
        yield pending[0], " ".join(part for part in pending if part)
        pending = []
    if pending:
        yield pending[0], " ".join(pending)


def yaml_commands(node: Any) -> Iterator[str]:
    """Every string under a command key (run, script, command, ...), at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in COMMAND_KEYS and isinstance(value, str):
                yield value
            elif key in COMMAND_KEYS and isinstance(value, list):
                yield from (item for item in value if isinstance(item, str))
            yield from yaml_commands(value)
    elif isinstance(node, list):
        for item in node:
            yield from yaml_commands(item)


def recipe_command_lines(name: str) -> list[CommandLine]:
    """The `shardrun ...` lines of one docs/ci page: shell blocks line by line, YAML blocks
    through their run/script/command values (so folded and literal scalars both count)."""
    path = DOCS_CI / name
    found = []
    for language, start, block in markdown_blocks(path):
        chunks = [block]
        if language in ("yaml", "yml"):
            try:
                chunks = list(yaml_commands(yaml.safe_load(block)))
            except yaml.YAMLError:
                continue  # test_recipe_yaml_blocks_are_valid_yaml names the block
        block_lines = block.splitlines()
        for chunk in chunks:
            for first, line in logical_lines(chunk):
                if not line.startswith("shardrun "):
                    continue
                offset = next((i for i, text in enumerate(block_lines) if first in text), 0)
                found.append(CommandLine(f"docs/ci/{name}:{start + offset}", line))
    return found


def substitute_ci_variables(text: str) -> str:
    """Put sample values where the CI would put its own (GitHub's ${{ }}, $VAR, ${VAR});
    `$$` is Buildkite's (and Compose's) escape for a `$` the job's shell expands."""
    text = GITHUB_EXPRESSION.sub(lambda match: SAMPLE_VALUES.get(match.group(1), "sample"), text)
    text = text.replace("$$", "$")
    return SHELL_VARIABLE.sub(
        lambda match: SAMPLE_VALUES.get(match.group(1) or match.group(2), "sample"), text
    )


def shell_words(text: str) -> list[str]:
    """The words of the first simple command in `text`: up to `||`, `;`, `|`, `>` ..."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = []
    for word in lexer:
        if SHELL_OPERATOR.match(word):
            break
        words.append(word)
    return words


def expand_globs(words: list[str], sandbox: Path) -> list[str]:
    """The shell expands a glob to the files earlier steps made; the sandbox gets one."""
    expanded = []
    for word in words:
        if GLOB_CHARACTERS & set(word) and not word.startswith("-"):
            stand_in = re.sub(r"[*?]+|\[[^\]]*\]", "sample", word)
            (sandbox / stand_in).parent.mkdir(parents=True, exist_ok=True)
            (sandbox / stand_in).touch()
            word = stand_in
        expanded.append(word)
    return expanded


RECIPE_LINES = [line for name in DOCS for line in recipe_command_lines(name)]


# =========================================================================== the tests


def test_compose_defines_redis_coordinator_and_worker() -> None:
    services = load_compose()["services"]
    assert {"redis", "coordinator", "worker"} <= set(services)


def test_redis_is_a_throwaway_queue() -> None:
    redis = service("redis")
    assert str(redis["image"]).split(":")[0] == "redis"
    command = as_argv(redis["command"])
    assert command[0] == "redis-server"
    assert command[command.index("--save") + 1] == "", "RDB snapshots must be off"
    assert command[command.index("--appendonly") + 1] == "no", "the AOF must be off"
    assert "redis-cli" in " ".join(as_argv(redis["healthcheck"]["test"]))


@pytest.mark.parametrize("name", WORKER_SERVICES)
def test_service_mounts_the_project_and_reaches_redis(name: str) -> None:
    spec = service(name)
    assert project_mount(spec).is_dir(), f"{name}: the default project mount does not exist"
    url = urlsplit(service_environment(spec).get("SHARDRUN_REDIS_URL", ""))
    assert url.scheme == "redis", f"{name}: SHARDRUN_REDIS_URL must be a redis:// URL"
    assert url.hostname in load_compose()["services"], f"{name}: {url.hostname} is no service"
    assert service(url.hostname)["image"].startswith("redis:")
    assert (url.port or 6379) == 6379
    depends = spec.get("depends_on") or {}
    assert url.hostname in depends, f"{name} must start after {url.hostname}"
    if isinstance(depends, dict):
        assert depends[url.hostname].get("condition") == "service_healthy"


@pytest.mark.parametrize("framework", sorted(DOCKERFILES))
@pytest.mark.parametrize("name", WORKER_SERVICES)
def test_service_builds_the_framework_image(name: str, framework: str) -> None:
    """FRAMEWORK=rspec|pytest picks workers/Dockerfile.<framework>, built from the repo."""
    spec = service(name, {"FRAMEWORK": framework})
    assert service_dockerfile(spec) == DOCKERFILES[framework]
    assert (REPO_ROOT / spec["build"]["context"]).resolve() == REPO_ROOT


def test_worker_service_can_be_scaled() -> None:
    """`--scale worker=N` fails on a fixed container name or a published host port."""
    worker = service("worker")
    assert "container_name" not in worker
    assert not worker.get("ports")


def test_coordinator_command_parses_and_only_coordinates(tmp_path: Path) -> None:
    argv = container_argv("coordinator", tmp_path)
    assert argv[:2] == ["shardrun", "ci"], argv
    skip_if_ci_missing(argv)
    project = project_mount(service("coordinator"))
    context = parse_shardrun(host_paths(argv, project), "docker-compose.yml coordinator",
                             service_environment(service("coordinator")))
    assert context.params["workers"] == 0, "the worker containers run the batches"
    assert (context.params["node_index"], context.params["node_total"]) == (0, 1)
    assert context.params["build_id"], "compose sets no CI variables: the build id is a flag"
    junit_out = context.params["junit_out"]
    assert junit_out is not None and Path(junit_out).is_relative_to(project), (
        "the merged JUnit must land in the mounted project"
    )


def test_worker_command_parses_and_serves_every_run(tmp_path: Path) -> None:
    argv = container_argv("worker", tmp_path)
    assert argv[:2] == ["shardrun", "worker"], argv
    project = project_mount(service("worker"))
    context = parse_shardrun(host_paths(argv, project), "docker-compose.yml worker",
                             service_environment(service("worker")))
    assert context.params["run_id"] is None, "a pool worker serves every announced run"
    assert Path(context.params["root"]) == project
    assert urlsplit(context.params["redis_url"]).hostname == "redis"
    # Each scaled container numbers itself from the group's counter: no fixed index, so
    # no two share a TEST_ENV_NUMBER (tests/integration/test_worker.py runs the counter).
    assert context.params["worker_index"] is None
    assert context.params["worker_group"]


def test_the_coordinator_counts_the_workers_of_their_group(tmp_path: Path) -> None:
    """No WORKERS kept equal to --scale by hand: the coordinator sizes its batches for the
    workers of the group it shares with them, and starts after they did."""
    coordinator = service("coordinator")
    argv = container_argv("coordinator", tmp_path)
    skip_if_ci_missing(argv)
    context = parse_shardrun(host_paths(argv, project_mount(coordinator)),
                             "docker-compose.yml coordinator",
                             service_environment(coordinator))
    worker_env = service_environment(service("worker"))
    assert context.params["total_workers"] is None
    assert "${WORKERS" not in COMPOSE_FILE.read_text(encoding="utf-8")
    assert context.params["worker_group"] == worker_env["SHARDRUN_WORKER_GROUP"]
    assert coordinator["depends_on"]["worker"]["condition"] == "service_started"


@pytest.mark.parametrize("framework", sorted(DOCKERFILES))
def test_image_runs_the_entrypoint_under_tini(framework: str) -> None:
    instructions = parse_dockerfile(DOCKERFILES[framework])
    entrypoint = exec_form(instructions, "ENTRYPOINT")
    assert entrypoint is not None and PurePosixPath(entrypoint[0]).name == "tini"
    assert entrypoint[1:] == ["--", IMAGE_ENTRYPOINT]
    assert "tini" in installed(instructions, ["apt-get", "install"])
    assert copied_to(instructions, IMAGE_ENTRYPOINT) == ["workers/entrypoint.sh"]
    assert any(
        words[0] == "chmod" and IMAGE_ENTRYPOINT in words
        for words in run_segments(instructions)
    ), "the entrypoint must be executable in the image"
    assert instructions_of(instructions, "WORKDIR")[-1].arguments == CONTAINER_PROJECT


@pytest.mark.parametrize("framework", sorted(DOCKERFILES))
def test_image_installs_shardrun_from_the_build_context(framework: str) -> None:
    """The COPYed files are enough to build the package: pyproject, its readme, shardrun/."""
    instructions = parse_dockerfile(DOCKERFILES[framework])
    pip_targets = installed(instructions, ["pip", "install"])
    source_dirs = {target.rstrip("/") for target in pip_targets if target.startswith("/")}
    assert len(source_dirs) == 1, f"pip must install shardrun from one copied dir: {pip_targets}"
    source = source_dirs.pop()
    copied = {PurePosixPath(src).name: dst for srcs, dst in copies(instructions) for src in srcs}
    for needed in ("pyproject.toml", "README.md", "shardrun"):
        assert needed in copied, f"{needed} is not copied into the image"
        assert (REPO_ROOT / needed).exists()
        assert copied[needed].rstrip("/").startswith(source)
    readme = re.search(r'^readme = "(.+)"', (REPO_ROOT / "pyproject.toml").read_text(), re.M)
    assert readme is None or readme.group(1) in copied, "pyproject's readme must be copied too"


def shardrun_venv(instructions: list[Instruction]) -> str:
    venvs = [words[words.index("venv") + 1] for words in run_segments(instructions)
             if words[:3] in (["python3", "-m", "venv"], ["python", "-m", "venv"])]
    assert len(venvs) == 1, "one `python -m venv DIR` expected"
    return venvs[0]


@pytest.mark.parametrize("framework", sorted(DOCKERFILES))
def test_image_finds_shardrun_in_its_virtualenv(framework: str) -> None:
    """The entrypoint's `exec shardrun` resolves through PATH to the venv pip installed into:
    its bin first on PATH, or its `shardrun` linked into a directory on PATH (pipx's way)."""
    instructions = parse_dockerfile(DOCKERFILES[framework])
    venv = shardrun_venv(instructions)
    path = image_env(instructions)["PATH"].split(":")
    links = [PurePosixPath(words[3]).parent.as_posix() for words in run_segments(instructions)
             if words[:3] == ["ln", "-s", f"{venv}/bin/shardrun"]]
    assert path[0] == f"{venv}/bin" or any(link in path for link in links), (
        "the virtualenv's bin must come first on PATH, or its shardrun be linked onto PATH")


def test_pytest_image_runs_the_tests_in_the_images_python_not_shardrun_s() -> None:
    """shardrun picks the active virtualenv, else python3 on PATH (runners/interpreter.py):
    neither may be shardrun's own, and pytest goes into the image's Python."""
    instructions = parse_dockerfile(DOCKERFILES["pytest"])
    venv = shardrun_venv(instructions)
    env = image_env(instructions)
    assert env.get("VIRTUAL_ENV") in (None, ""), "an active virtualenv would be picked first"
    assert f"{venv}/bin" not in env["PATH"].split(":")
    image_pip = [words for words in run_segments(instructions)
                 if words[:4] in (["python", "-m", "pip", "install"],
                                  ["python3", "-m", "pip", "install"])]
    assert any(word.startswith("pytest") for words in image_pip for word in words)


def test_rspec_image_has_ruby_rspec_and_the_junit_formatter() -> None:
    instructions = parse_dockerfile(DOCKERFILES["rspec"])
    assert instructions_of(instructions, "FROM")[0].arguments.startswith(("debian:", "python:"))
    packages = installed(instructions, ["apt-get", "install"])
    wanted = {"ruby", "ruby-rspec", "ruby-rspec-junit-formatter", "python3", "python3-venv", "git"}
    assert wanted <= packages, f"missing: {sorted(wanted - packages)}"


def test_pytest_image_has_python_and_pytest() -> None:
    instructions = parse_dockerfile(DOCKERFILES["pytest"])
    assert instructions_of(instructions, "FROM")[0].arguments.startswith("python:3.")
    assert any(name.startswith("pytest") for name in installed(instructions, ["pip", "install"]))


def test_entrypoint_is_strict_posix_sh() -> None:
    text = ENTRYPOINT_SCRIPT.read_text(encoding="utf-8")
    assert text.startswith("#!/bin/sh\n")
    assert re.search(r"^set -eu$", text, re.M)
    assert os.access(ENTRYPOINT_SCRIPT, os.X_OK), "chmod +x workers/entrypoint.sh"
    subprocess.run(["sh", "-n", str(ENTRYPOINT_SCRIPT)], check=True)


@pytest.mark.parametrize("value", [None, ""])
def test_entrypoint_refuses_to_start_without_a_redis_url(tmp_path: Path, value: str | None) -> None:
    env = {} if value is None else {"SHARDRUN_REDIS_URL": value}
    ran = run_entrypoint(tmp_path, [], env)
    assert ran.returncode == 2
    assert ran.argv is None, "shardrun must not start"
    assert "SHARDRUN_REDIS_URL" in ran.stderr and "error" in ran.stderr


def test_entrypoint_execs_shardrun_worker_with_the_container_args(tmp_path: Path) -> None:
    url = "redis://redis:6379/0"
    ran = run_entrypoint(tmp_path, ["--burst", "--worker-index", "2"],
                         {"SHARDRUN_REDIS_URL": url})
    assert ran.returncode == 0, ran.stderr
    assert ran.argv == ["worker", "--redis-url", url, "--root", CONTAINER_PROJECT, "--burst",
                        "--worker-index", "2"]
    assert ran.exec_replaced_shell, "exec: shardrun must be tini's child, not the shell's"
    context = parse_shardrun(host_paths(["shardrun", *ran.argv], tmp_path), "entrypoint.sh")
    assert context.params["burst"] and context.params["worker_index"] == 2


def test_entrypoint_root_can_be_overridden_by_an_argument(tmp_path: Path) -> None:
    """click keeps the last value, so `docker run IMAGE --root /src` works as documented."""
    other = tmp_path / "src"
    other.mkdir()
    ran = run_entrypoint(tmp_path, ["--root", str(other)], {"SHARDRUN_REDIS_URL": "redis://r/0"})
    assert ran.argv is not None
    context = parse_shardrun(["shardrun", *host_paths(ran.argv, tmp_path)], "entrypoint.sh")
    assert Path(context.params["root"]) == other


@pytest.mark.parametrize("name", DOCS)
def test_every_ci_page_shows_the_shardrun_ci_command(name: str) -> None:
    lines = recipe_command_lines(name)
    assert any(line.text.startswith("shardrun ci ") for line in lines), (
        f"docs/ci/{name}: no `shardrun ci` line found in its code blocks"
    )


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_yaml_blocks_are_valid_yaml(name: str) -> None:
    blocks = [block for language, _, block in markdown_blocks(DOCS_CI / name)
              if language in ("yaml", "yml")]
    assert blocks, f"docs/ci/{name} has no yaml block"
    for block in blocks:
        assert isinstance(yaml.safe_load(block), dict)


@pytest.mark.parametrize("line", RECIPE_LINES, ids=[line.where for line in RECIPE_LINES])
def test_recipe_command_line_parses(
    line: CommandLine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    words = expand_globs(shell_words(substitute_ci_variables(line.text)), tmp_path)
    skip_if_ci_missing(words)
    parse_shardrun(words, line.where, {"SHARDRUN_REDIS_URL": RECIPE_REDIS_URL})


@pytest.mark.parametrize("name", DOCS)
def test_ci_page_says_where_the_redis_url_comes_from(name: str) -> None:
    """The recipes' command lines pass no --redis-url: the job's environment must."""
    assert "SHARDRUN_REDIS_URL" in (DOCS_CI / name).read_text(encoding="utf-8")


def test_github_recipe_passes_the_matrix_place() -> None:
    """GitHub tells a matrix job nothing about its place: the only flags a recipe needs."""
    ci_lines = [line.text for line in recipe_command_lines("github-actions.md")
                if line.text.startswith("shardrun ci ")]
    for text in ci_lines:
        assert "--node-index ${{ strategy.job-index }}" in text
        assert "--node-total ${{ strategy.job-total }}" in text
    other = [line.text for name in RECIPES[1:] for line in recipe_command_lines(name)]
    assert not [text for text in other if "--node-index" in text or "--build-id" in text], (
        "GitLab, CircleCI and Buildkite are detected: their recipes should pass no node flags"
    )


@pytest.mark.parametrize(
    ("name", "markers"),
    [
        ("github-actions.md", ("fail-fast: false", "actions/cache/restore", "actions/cache/save",
                               "restore-keys", "actions/upload-artifact")),
        ("gitlab-ci.md", ("parallel: 4", "reports:", "junit:", "cache:", "when: always")),
        ("circleci.md", ("parallelism: 4", "restore_cache", "save_cache",
                         "store_test_results")),
        ("buildkite.md", ("parallelism: 4", "artifact_paths", "cache#", "continue_on_failure")),
    ],
)
def test_recipe_covers_parallelism_reports_and_the_history_cache(
    name: str, markers: tuple[str, ...]
) -> None:
    text = (DOCS_CI / name).read_text(encoding="utf-8")
    assert ".shardrun/timings.json" in text
    missing = [marker for marker in markers if marker not in text]
    assert not missing, f"docs/ci/{name} lacks {missing}"

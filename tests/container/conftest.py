"""The container suite: the image that `make image` builds from the real Dockerfile, run the way
the chart's pod runs it (tests/container/pod.py), against the suite's Kafka.

Where it runs. Under CI (CI=true; .ci/run sets it) it is not optional: scripts/get-container-tools
installs podman, runc and debootstrap with apt-get when they are missing (CI runs as root), and any
failure to get an engine or build the image fails the suite. Elsewhere, a machine without a
container engine (or one that cannot build the stand-in base image without root) skips it, with
one line naming what is missing and how to get it.

`make test` starts the image build in the background at its beginning (scripts/run-tests), so the
build here usually finds every layer cached.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from devsupport.container import NO_ENGINE, ContainerError, build_image, engine_name, in_ci
from tests.chart import REPO, helm_home
from tests.container.pod import Booted, boot

GET_TOOLS = REPO / "scripts" / "get-container-tools"
HOW = "install podman, runc and debootstrap (apt-get install podman runc debootstrap), or Docker"


HERE = Path(__file__).resolve().parent


def _skip_reason(reason: str) -> str:
    return f"CONTAINER SUITE SKIPPED: {reason}; {HOW}, then run make test again"


def _unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"container suite: {reason} (CI=true: this suite is mandatory)")
    pytest.skip(_skip_reason(reason))


@pytest.hookimpl(tryfirst=True)  # before tests/conftest.py sorts the needs_tool tests last
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The suite's marks, and outside CI, on a machine with no engine at all, one skip for the
    whole suite: pytest then folds it into one line of its summary."""
    mine = [item for item in items if HERE in Path(str(item.path)).parents]
    if not mine:
        return
    skip = None
    if not in_ci() and engine_name() is None:
        skip = pytest.mark.skip(reason=_skip_reason("no container engine"))
    for item in mine:
        item.add_marker(pytest.mark.needs_tool("helm"))  # the chart is rendered with helm
        item.add_marker(pytest.mark.timeout(600))
        if skip is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The relay's image, built by scripts/build-image (`make image`)."""
    tools = subprocess.run(
        [str(GET_TOOLS)], capture_output=True, text=True, check=False, timeout=900
    )
    if tools.returncode == NO_ENGINE:
        _unavailable(tools.stderr.strip().splitlines()[-1])
    elif tools.returncode != 0:
        pytest.fail(f"scripts/get-container-tools failed:\n{tools.stderr}")
    if engine_name() is None:
        _unavailable("no container engine")
    log = tmp_path_factory.mktemp("image") / "build-image.log"
    try:
        return build_image(log)
    except ContainerError as exc:
        if "needs root" in str(exc):
            _unavailable("the stand-in base image needs root to build")
        raise


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return helm_home(tmp_path_factory.mktemp("helm-home"))


BootPod = Callable[..., AbstractContextManager[Booted]]


@pytest.fixture(scope="session")
def boot_pod(
    image: str,
    helm_env: dict[str, str],
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> BootPod:
    """`with boot_pod(scenario, secret_files=..., values=...) as pod:` the scenario's pod,
    booted from the image just built against the suite's Kafka (tests/container/pod.py)."""

    def start(scenario: str, **kwargs: Any) -> AbstractContextManager[Booted]:
        root = tmp_path_factory.mktemp(scenario.removesuffix("-values.yaml"))
        return boot(
            scenario,
            image=image,
            helm_env=helm_env,
            bootstrap=kafka_bootstrap,
            root=root,
            **kwargs,
        )

    return start

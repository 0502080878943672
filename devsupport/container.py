"""The relay's image, built and run with the machine's container engine (docker or podman,
through ``scripts/container-engine``), for the container suite (tests/container) and anyone who
wants to measure the image rather than a local process.

Standard library only, like the rest of devsupport.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
ENGINE = SCRIPTS / "container-engine"
NO_ENGINE = 3  # scripts/container-engine's exit status when the machine has none


class ContainerError(RuntimeError):
    """An engine command failed; the message carries its output."""


def in_ci(env: Mapping[str, str] | None = None) -> bool:
    """CI sets CI=true (.ci/run does, as most CI services do)."""
    value = (os.environ if env is None else env).get("CI", "").strip().lower()
    return value not in ("", "0", "false", "no")


def engine_name() -> str | None:
    """``docker`` or ``podman``, whichever ``scripts/container-engine`` would run; None when
    the machine has neither."""
    result = subprocess.run(
        [str(ENGINE), "--which"], capture_output=True, text=True, check=False, timeout=30
    )
    return result.stdout.strip() if result.returncode == 0 else None


def engine(
    *args: str, timeout: float = 120.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``scripts/container-engine ARGS``; raises ``ContainerError`` on failure when ``check``."""
    result = subprocess.run(
        [str(ENGINE), *args], capture_output=True, text=True, check=False, timeout=timeout
    )
    if check and result.returncode != 0:
        raise ContainerError(
            f"{ENGINE.name} {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}"
        )
    return result


def build_image(log_path: Path, *, timeout: float = 1200.0) -> str:
    """``scripts/build-image`` (``make image``): the image reference it built. Its output goes
    to ``log_path``; a failure raises with the end of it."""
    with log_path.open("ab") as log:
        result = subprocess.run(
            [str(SCRIPTS / "build-image")],
            stdout=subprocess.PIPE,
            stderr=log,
            check=False,
            timeout=timeout,
        )
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise ContainerError(f"scripts/build-image exited {result.returncode}:\n{tail}")
    return result.stdout.decode().strip().splitlines()[-1]


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = True


@dataclass
class RunSpec:
    """What ``docker run`` / ``podman run`` is told: the parts of a pod's container spec that a
    single host can honour."""

    image: str
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None  # "uid:gid"
    group_add: Sequence[int] = ()  # the pod's fsGroup, as the kubelet adds it
    read_only: bool = False
    tmpfs: Mapping[str, str] = field(default_factory=dict)  # path -> mount options
    mounts: Sequence[Mount] = ()
    cap_drop_all: bool = False
    no_new_privileges: bool = False
    memory_bytes: int | None = None  # resources.limits.memory
    cpus: float | None = None  # resources.limits.cpu
    network: str = "host"

    def run_args(self, name: str) -> list[str]:
        args = ["run", "--detach", "--name", name, "--network", self.network]
        if self.user:
            args += ["--user", self.user]
        for group in self.group_add:
            args += ["--group-add", str(group)]
        if self.read_only:
            args.append("--read-only")
        for path, options in self.tmpfs.items():
            args += ["--tmpfs", f"{path}:{options}" if options else path]
        for mount in self.mounts:
            suffix = ":ro" if mount.read_only else ""
            args += ["--volume", f"{mount.source}:{mount.target}{suffix}"]
        if self.cap_drop_all:
            args += ["--cap-drop", "ALL"]
        if self.no_new_privileges:
            args += ["--security-opt", "no-new-privileges"]
        if self.memory_bytes is not None:
            args += ["--memory", str(self.memory_bytes)]
        if self.cpus is not None:
            args += ["--cpus", str(self.cpus)]
        for key, value in self.env.items():
            args += ["--env", f"{key}={value}"]
        return [*args, self.image, *self.args]


class Container:
    """One detached container; ``remove()`` (or the context manager) deletes it."""

    def __init__(self, spec: RunSpec, name: str) -> None:
        self.spec = spec
        self.name = name
        self.started = 0.0

    def __enter__(self) -> Container:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.remove()

    def start(self) -> None:
        engine(*self.spec.run_args(self.name))
        self.started = time.monotonic()

    def inspect(self) -> dict[str, object]:
        (data,) = json.loads(engine("inspect", "--type", "container", self.name).stdout)
        result: dict[str, object] = data
        return result

    def state(self) -> dict[str, object]:
        state = self.inspect()["State"]
        assert isinstance(state, dict)
        return state

    def running(self) -> bool:
        return bool(self.state().get("Running"))

    def pid(self) -> int:
        """The container's process 1, as the host sees it."""
        pid = int(str(self.state()["Pid"]))
        if pid <= 0:
            raise ContainerError(f"{self.name} is not running")
        return pid

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.pid()}/status").read_text()
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        return kib / 1024

    def exec(self, *command: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """A command in the running container, as its user (``kubectl exec``)."""
        return engine("exec", self.name, *command, timeout=timeout, check=False)

    def signal(self, signum: signal.Signals) -> None:
        engine("kill", "--signal", signum.name, self.name)

    def wait(self, timeout: float) -> int:
        """The exit code, once the container has stopped."""
        result = engine("wait", self.name, timeout=timeout)
        return int(result.stdout.strip().splitlines()[-1])

    def logs(self) -> str:
        result = engine("logs", self.name, check=False)
        return result.stdout + result.stderr

    def diff(self) -> list[str]:
        """What changed in the container's own filesystem, one `<A|C|D> <path>` a line
        (mounts are not part of it)."""
        return engine("diff", self.name).stdout.splitlines()

    def remove(self) -> None:
        engine("rm", "--force", self.name, check=False)

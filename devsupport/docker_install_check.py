"""Replay the Dockerfile without Docker: its build stage's steps, then its runtime command.

    scripts/docker-install-check [--context DIR] [--workdir DIR]

(that script runs ``python3 -m devsupport.docker_install_check`` from the repository root).

CI cannot build images, so this reads the Dockerfile itself and does what a build would:

1. the `build` stage: ARG defaults, ENV, WORKDIR, COPY from the context (honouring
   .dockerignore) and every RUN (the calls to scripts/docker-install), in a scratch root where
   container paths such as /opt/venv and /src live; the interpreter is python<PYTHON_VERSION>
   when this machine has it;
2. the `runtime` stage: its ENV and WORKDIR, then ENTRYPOINT + CMD with a configuration holding
   a bearer-token file and an unreachable Kafka, on loopback ports: /healthz must answer 200
   (liveness never depends on Kafka), /readyz 503, and SIGTERM must end it with exit code 0.

Because the steps are parsed from the Dockerfile, they cannot drift from what CI checks.
tests/deploy/test_dockerfile.py imports this module; stdlib only (with devsupport's ports and
relay_process, also stdlib only), so any python3 runs it.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from devsupport.ports import LOOPBACK, free_port
from devsupport.relay_process import RelayProcess

REPO = Path(__file__).resolve().parents[1]
BUILD_STAGE = "build"
RUNTIME_STAGE = "runtime"
# Container paths the replay places under its scratch root; anything else (/usr/bin, ...) is the
# host's. The Dockerfile must keep its own files under these.
MAPPED_ROOTS = ("/opt", "/src", "/app", "/etc/whatsapp-relay")
# The PATH of the python base images, which ENV PATH=...:$PATH extends.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Host variables that would change what pip or Python do in the replay.
SCRUBBED_ENV = re.compile(r"^(VIRTUAL_ENV|PYTHON\w*|PIP_\w+|CONDA_\w+|RELAY_\w+)$")
KEPT_PIP_ENV = {"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_CERT"}
RUN_FLAGS = re.compile(r"^--(mount|network|security)=\S+\s+")
STEP_TIMEOUT = 900.0


@dataclass
class Instruction:
    op: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form's argument list, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) else None


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, op: str) -> list[Instruction]:
        return [i for i in self.instructions if i.op == op]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise LookupError(f"Dockerfile has no stage named {name!r}")


def parse_dockerfile(text: str) -> Dockerfile:
    """Instructions with continuation lines joined; comments and parser directives dropped."""
    instructions: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        op, _, args = pending.partition(" ")
        instructions.append(Instruction(op.upper(), args.strip(), start))
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.op == "FROM":
            words = instruction.args.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=words[0]))
        elif not stages:
            if instruction.op == "ARG":
                key, _, value = instruction.args.partition("=")
                global_args[key.strip()] = value.strip().strip('"')
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(global_args, stages)


def parse_env(args: str) -> dict[str, str]:
    """ENV key=value pairs (the `ENV key value` legacy form too)."""
    words = shlex.split(args)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def set_env(env: dict[str, str], instruction: Instruction, args: dict[str, str]) -> None:
    """An ENV instruction: each value expanded with the ARGs and the variables set so far."""
    for key, value in parse_env(instruction.args).items():
        env[key] = expand(value, {**args, **env})


def expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)


class Root:
    """A scratch directory standing for the image's filesystem, for the mapped paths."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def map(self, container_path: str) -> str:
        posix = PurePosixPath(container_path)
        if posix.is_absolute() and any(
            posix == PurePosixPath(r) or PurePosixPath(r) in posix.parents for r in MAPPED_ROOTS
        ):
            return str(self.path / str(posix).lstrip("/"))
        return container_path

    def map_env(self, name: str, value: str) -> str:
        if name == "PATH":
            return ":".join(self.map(part) for part in value.split(":"))
        return self.map(value) if value.startswith("/") else value

    def host_env(self, image_env: dict[str, str]) -> dict[str, str]:
        """The environment a step runs in: this host's (scrubbed), the image's on top with its
        paths mapped, and the host's PATH after the image's (the base image's tools are the
        host's here)."""
        env = base_env()
        for key, value in image_env.items():
            env[key] = self.map_env(key, value)
        env["PATH"] += ":" + os.environ.get("PATH", "")
        return env

    def workdir(self, container_path: str) -> Path:
        """A WORKDIR, created as Docker creates it."""
        path = Path(self.map(container_path.strip()))
        path.mkdir(parents=True, exist_ok=True)
        return path


def dockerignore_patterns(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rules, near enough: last matching pattern wins, `!` re-includes, `**` spans
    directories, and a pattern matching a parent directory covers everything below it."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").lstrip("/").removeprefix("./").rstrip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            result = not negate
    return result


def copy_from_context(context: Path, sources: list[str], dest: Path, patterns: list[str]) -> None:
    directory_dest = len(sources) > 1 or str(dest).endswith("/")
    for source in sources:
        magic = glob.has_magic(source)
        matches = sorted(glob.glob(source, root_dir=context)) if magic else [source]
        for match in matches:
            origin = context / match
            relative = os.path.relpath(origin, context)
            if not origin.exists() or ignored(relative, patterns):
                raise FileNotFoundError(f"COPY {source}: not in the build context ({origin})")
            if origin.is_dir():
                for item in sorted(origin.rglob("*")):
                    item_relative = os.path.relpath(item, context)
                    if item.is_dir() or ignored(item_relative, patterns):
                        continue
                    target = dest / item.relative_to(origin)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(item, target)
            else:
                target = dest / origin.name if directory_dest or dest.is_dir() else dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)


def find_python(version: str) -> str:
    """An interpreter of the image's Python version if this machine has one."""
    override = os.environ.get("DOCKER_CHECK_PYTHON")
    candidates = [override] if override else []
    candidates.append(shutil.which(f"python{version}") or "")
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    note(f"python{version} not found; replaying with {sys.executable} instead")
    return sys.executable


def note(message: str) -> None:
    print(f"docker-install-check: {message}", file=sys.stderr, flush=True)


def base_env() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if not SCRUBBED_ENV.match(key) or key in KEPT_PIP_ENV
    }


@dataclass
class Replay:
    root: Root
    env: dict[str, str]  # the runtime stage's environment, paths mapped
    workdir: Path
    command: list[str]  # ENTRYPOINT + CMD, the executable resolved


def replay(context: Path, workdir: Path, dockerfile: Path | None = None) -> Replay:
    """Run the build stage's steps, then prepare the runtime stage's command."""
    dockerfile = dockerfile or context / "Dockerfile"
    parsed = parse_dockerfile(dockerfile.read_text(encoding="utf-8"))
    root = Root(workdir / "rootfs")
    root.path.mkdir(parents=True, exist_ok=True)
    patterns = dockerignore_patterns(context)
    args = dict(parsed.global_args)
    python = find_python(args.get("PYTHON_VERSION", "{}.{}".format(*sys.version_info[:2])))

    build = parsed.stage(BUILD_STAGE)
    image_env = {"PATH": IMAGE_PATH}
    cwd = root.path
    for instruction in build.instructions:
        if instruction.op == "ARG":
            key, _, value = instruction.args.partition("=")
            args.setdefault(key.strip(), value.strip())
        elif instruction.op == "ENV":
            set_env(image_env, instruction, args)
        elif instruction.op == "WORKDIR":
            cwd = root.workdir(instruction.args)
        elif instruction.op == "COPY":
            words = [w for w in shlex.split(instruction.args) if not w.startswith("--")]
            dest = words[-1]
            target = Path(root.map(dest) if dest.startswith("/") else cwd / dest)
            if dest.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
            copy_from_context(context, words[:-1], target, patterns)
        elif instruction.op == "RUN":
            command = instruction.args
            while RUN_FLAGS.match(command):
                command = RUN_FLAGS.sub("", command, count=1)
            env = root.host_env(image_env)
            env["PYTHON"] = python
            note(f"RUN (Dockerfile line {instruction.line}): {command}")
            subprocess.run(
                ["sh", "-c", command], cwd=cwd, env=env, check=True, timeout=STEP_TIMEOUT
            )
        elif instruction.op not in {"LABEL", "EXPOSE", "USER", "SHELL"}:
            raise ValueError(f"line {instruction.line}: {instruction.op} has no replay")

    runtime = parsed.stage(RUNTIME_STAGE)
    runtime_env = {"PATH": IMAGE_PATH}
    runtime_cwd = root.path
    entrypoint: list[str] = []
    cmd: list[str] = []
    for instruction in runtime.instructions:
        if instruction.op == "ENV":
            set_env(runtime_env, instruction, args)
        elif instruction.op == "WORKDIR":
            runtime_cwd = root.workdir(instruction.args)
        elif instruction.op == "COPY":
            words = shlex.split(instruction.args)
            sources = [w for w in words[:-1] if not w.startswith("--")]
            if f"--from={BUILD_STAGE}" not in words or sources != [words[-1]]:
                raise ValueError(
                    f"line {instruction.line}: the runtime stage may only COPY --from="
                    f"{BUILD_STAGE} a path to the same path (the replay shares one root)"
                )
        elif instruction.op == "ENTRYPOINT":
            entrypoint = instruction.exec_form() or []
        elif instruction.op == "CMD":
            cmd = instruction.exec_form() or []
    if not entrypoint:
        raise ValueError("the runtime stage needs an exec-form ENTRYPOINT")
    env = root.host_env(runtime_env)
    executable = shutil.which(entrypoint[0], path=env["PATH"])
    if executable is None:
        raise FileNotFoundError(f"ENTRYPOINT {entrypoint[0]} is not on the image's PATH")
    return Replay(root, env, runtime_cwd, [executable, *entrypoint[1:], *cmd])


@dataclass
class SmokeResult:
    healthz: int
    readyz: int
    exit_code: int
    seconds_to_exit: float
    log: str


# The exit code SmokeResult reports for a relay that outlived the bound after SIGTERM.
NO_EXIT = -999


def smoke_run(
    built: Replay, workdir: Path, *, start_within: float = 60.0, stop_within: float = 30.0
) -> SmokeResult:
    """Start the image's command as Kubernetes would (config file, secret file), check
    liveness without Kafka, and stop it with SIGTERM."""
    secrets = workdir / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "bearer_tokens").write_text("docker-check-token\n", encoding="utf-8")
    config_file = workdir / "relay.yaml"
    config_file.write_text(
        "auth:\n"
        f"  bearer_tokens_file: {secrets / 'bearer_tokens'}\n"
        "kafka:\n"
        # Nothing listens there: liveness must not care, readiness must.
        f"  bootstrap_servers: {LOOPBACK}:{free_port()}\n"
        "  request_timeout_ms: 2000\n"
        "shutdown:\n"
        "  timeout_seconds: 5\n",
        encoding="utf-8",
    )
    relay = RelayProcess(
        {},
        workdir / "relay.log",
        config=config_file,
        command=built.command,
        base_env=built.env,
        cwd=built.workdir,
    )
    note(f"starting {shlex.join(relay.args)}")
    relay.launch()
    try:
        # Not relay.start(): a relay that fails here is a finding to report, not an error.
        healthz, _ = relay.await_admin("/healthz", within=start_within, period=0.2)
        readyz = relay.admin_get("/readyz", timeout=2)[0] if healthz == 200 else 0
        stopped = relay.stop(within=stop_within)
        assert stopped is not None
        return SmokeResult(
            healthz=healthz,
            readyz=readyz,
            exit_code=NO_EXIT if stopped.killed else stopped.exit_code,
            seconds_to_exit=stopped.seconds or 0.0,
            log=relay.log(),
        )
    finally:
        relay.kill()


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/docker-install-check", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--context", type=Path, default=REPO, help="build context (the repo)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch dir (default: temp)")
    # The wrapper script runs this from the repository root (so that `python3 -m` finds it) and
    # passes the directory it was called from, so that relative paths mean what they meant there.
    parser.add_argument("--cwd", type=Path, default=Path.cwd(), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.workdir is not None:
        options.workdir = options.cwd / options.workdir
    options.context = options.cwd / options.context
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="docker-install-check-"))
    try:
        built = replay(options.context.resolve(), workdir.resolve())
        result = smoke_run(built, workdir.resolve())
    finally:
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    problems = []
    if result.healthz != 200:
        problems.append(f"/healthz answered {result.healthz}, expected 200")
    if result.readyz != 503:
        problems.append(f"/readyz answered {result.readyz} without Kafka, expected 503")
    if result.exit_code != 0:
        problems.append(f"exit code {result.exit_code} after SIGTERM, expected 0")
    if problems:
        print(result.log, file=sys.stderr)
        for problem in problems:
            note(problem)
        return 1
    note(f"ok: /healthz 200, /readyz 503, exit 0 {result.seconds_to_exit:.1f}s after SIGTERM")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

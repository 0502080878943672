"""scripts/run-tests, which `make test` runs: the tools and the image in the background, check,
then pytest.

The script runs in a scratch copy of the repository layout where scripts/get-tools,
scripts/get-container-tools, scripts/build-image, make and .venv/bin/pytest are small stand-ins
that record their calls and exit as told, so the exit status, the order and the clean-up on
failure and on Ctrl-C are checked without building anything. About two seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

STAND_IN = """#!/bin/sh
echo {name} >> "$STUB_DIR/calls"
echo $$ > "$STUB_DIR/{name}.pid"
{body}
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)


@pytest.fixture
def scratch(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "run-tests", root / "scripts" / "run-tests")
    write(
        root / "scripts" / "get-tools",
        STAND_IN.format(
            name="get-tools",
            body='echo "get-tools: helm ready" >&2\n'
            '[ -z "$STUB_TOOLS_HANG" ] || exec sleep 60\n'
            'exit "${STUB_TOOLS_EXIT:-0}"',
        ),
    )
    write(
        root / "scripts" / "get-container-tools",
        STAND_IN.format(name="get-container-tools", body="exit 0"),
    )
    write(
        root / "scripts" / "build-image",
        STAND_IN.format(name="build-image", body='[ -z "$STUB_IMAGE_HANG" ] || exec sleep 60'),
    )
    write(
        root / ".venv" / "bin" / "pytest",
        STAND_IN.format(
            name="pytest",
            body='[ -z "$STUB_PYTEST_HANG" ] || exec sleep 60\nexit "${STUB_PYTEST_EXIT:-0}"',
        ),
    )
    bin_dir = tmp_path / "bin"
    # check runs while get-tools and the image build do: it finishes only once both started.
    make = (
        "for job in get-tools build-image; do\n"
        '  until [ -e "$STUB_DIR/$job.pid" ]; do sleep 0.05; done\n'
        "done\n"
        'exit "${STUB_CHECK_EXIT:-0}"'
    )
    write(bin_dir / "make", STAND_IN.format(name="make", body=make))
    stub_dir = tmp_path / "stub"
    stub_dir.mkdir()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STUB_DIR": str(stub_dir),
        "GET_TOOLS_LOGS": str(tmp_path / "logs"),
    }
    return root, env


def run(root: Path, env: dict[str, str], **stub: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(root / "scripts" / "run-tests")],
        env={**env, **stub},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def calls(env: dict[str, str]) -> list[str]:
    return (Path(env["STUB_DIR"]) / "calls").read_text().split()


def gone(env: dict[str, str], name: str, within: float = 5.0) -> bool:
    """True once the stand-in has exited (a signal takes effect when it is next scheduled)."""
    pid = int((Path(env["STUB_DIR"]) / f"{name}.pid").read_text())
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            # The state letter follows the parenthesised command name; Z: exited, not reaped.
            if stat.read_text().rpartition(")")[2].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_tools_check_and_the_suite_all_run_and_pass(scratch: tuple[Path, dict[str, str]]) -> None:
    root, env = scratch
    result = run(root, env)
    assert result.returncode == 0, result.stderr
    assert calls(env)[-1] == "pytest"
    assert calls(env).index("make") < calls(env).index("pytest")
    assert "get-tools" in calls(env)
    assert "get-tools: helm ready" in result.stderr  # its log is shown
    # The image for tests/container, once an engine is there.
    assert calls(env).index("get-container-tools") < calls(env).index("build-image")


@pytest.mark.parametrize(
    ("stub", "status"),
    [({"STUB_PYTEST_EXIT": "1"}, 1), ({"STUB_TOOLS_EXIT": "1"}, 1), ({"STUB_CHECK_EXIT": "2"}, 2)],
)
def test_any_failure_fails_the_run(
    scratch: tuple[Path, dict[str, str]], stub: dict[str, str], status: int
) -> None:
    root, env = scratch
    result = run(root, env, **stub)
    assert result.returncode == status, result.stderr
    if "STUB_TOOLS_EXIT" in stub:
        assert "scripts/get-tools failed" in result.stderr
    if "STUB_CHECK_EXIT" in stub:
        assert "pytest" not in calls(env)  # a failed check stops the run


def test_a_failed_check_stops_the_tools(scratch: tuple[Path, dict[str, str]]) -> None:
    root, env = scratch
    result = run(root, env, STUB_CHECK_EXIT="2", STUB_TOOLS_HANG="1", STUB_IMAGE_HANG="1")
    assert result.returncode == 2
    assert gone(env, "get-tools")
    assert gone(env, "build-image")


def test_ctrl_c_stops_the_suite_and_the_tools(scratch: tuple[Path, dict[str, str]]) -> None:
    root, env = scratch
    process = subprocess.Popen(
        [str(root / "scripts" / "run-tests")],
        env={**env, "STUB_PYTEST_HANG": "1", "STUB_TOOLS_HANG": "1", "STUB_IMAGE_HANG": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        # As from a terminal: SIGINT not ignored, even when this suite runs with it ignored
        # (started in the background by a script), which a shell could not undo.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        pid_file = Path(env["STUB_DIR"]) / "pytest.pid"
        deadline = time.monotonic() + 20
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pid_file.exists(), "the suite never started"
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends: the whole group
        assert process.wait(timeout=20) != 0
        assert gone(env, "pytest")
        assert gone(env, "get-tools")
        assert gone(env, "build-image")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

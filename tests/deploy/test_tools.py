"""The scripts that provide the deployment checks' tools: which binary they pick, and get-tools.

scripts/get-helm, get-promtool and get-hadolint take the binary named by their environment
variable as is, else one on PATH whose version fits the pin (same major version, not older), else
their cached copy, else they fetch or build one. Here the binaries are small stand-in scripts that
only answer the version question, and `go` is one that always fails, so a test that expects no
build fails loudly if the script tries one. The real tools are exercised by test_chart.py,
test_monitoring.py and test_dockerfile.py. Nothing here uses the network; about a second in all.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"

# tool -> (environment variable, pinned version as the script compares it, how the tool prints
# a version given as {v}). The argument a stand-in receives is ignored: each asks one question.
TOOLS = {
    "helm": ("HELM", "4.3.1", "v{v}"),
    "promtool": (
        "PROMTOOL",
        "3.16.0",
        "promtool, version {v} (branch: HEAD, revision: 0000000)\n  build user: x",
    ),
    "hadolint": ("HADOLINT", "2.15.1", "Haskell Dockerfile Linter {v}"),
}


def stand_in(directory: Path, name: str, version_text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\ncat <<'EOF'\n{version_text}\nEOF\n", encoding="utf-8")
    path.chmod(0o755)
    return path


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, str]:
    """An environment with an empty tool cache and a `go` that fails: nothing real is built."""
    fake_go = stand_in(tmp_path / "go-bin", "go", "no go here")
    fake_go.write_text("#!/bin/sh\necho 'stand-in go: no builds in this test' >&2\nexit 97\n")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"HELM", "PROMTOOL", "HADOLINT", "KUBECONFORM"}
    }
    env.update(
        WHATSAPP_RELAY_BIN=str(tmp_path / "cache-bin"),
        GO=str(fake_go),
        PATH=f"{tmp_path / 'path-bin'}:/usr/bin:/bin",
        # hadolint's fetch would need pip: a Python without it makes a fetch attempt fail fast.
        PYTHON="/bin/false",
    )
    return env


def run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPTS / script)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def version_text(tool: str, version: str) -> str:
    return TOOLS[tool][2].format(v=version)


def bump(version: str, part: int) -> str:
    numbers = [int(n) for n in version.split(".")]
    numbers[part] += 1
    numbers[part + 1 :] = [0] * (len(numbers) - part - 1)
    return ".".join(map(str, numbers))


@pytest.mark.parametrize("tool", sorted(TOOLS))
@pytest.mark.parametrize("newer", [None, 2, 1], ids=["pinned", "newer-patch", "newer-minor"])
def test_a_fitting_tool_on_path_is_used_and_nothing_built(
    tool: str, newer: int | None, sandbox: dict[str, str], tmp_path: Path
) -> None:
    pinned = TOOLS[tool][1]
    version = pinned if newer is None else bump(pinned, newer)
    binary = stand_in(tmp_path / "path-bin", tool, version_text(tool, version))
    result = run(f"get-{tool}", sandbox)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == str(binary)
    assert "fits" in result.stderr
    assert not (tmp_path / "cache-bin" / f"{tool}").exists()


@pytest.mark.parametrize("tool", sorted(TOOLS))
@pytest.mark.parametrize("other", ["older", "next-major", "previous-major", "garbage"])
def test_a_tool_on_path_that_does_not_fit_is_not_used(
    tool: str, other: str, sandbox: dict[str, str], tmp_path: Path
) -> None:
    pinned = TOOLS[tool][1]
    major, minor, _ = (int(n) for n in pinned.split("."))
    version = {
        "older": f"{major}.{minor - 1}.99",
        "next-major": f"{major + 1}.0.0",
        "previous-major": f"{major - 1}.99.0",
        "garbage": "not-a-version",
    }[other]
    stand_in(tmp_path / "path-bin", tool, version_text(tool, version))
    result = run(f"get-{tool}", sandbox)
    # It went on to fetch or build its own copy, which the sandbox makes fail.
    assert result.returncode != 0, result.stdout
    assert "does not fit" in result.stderr
    assert str(tmp_path / "path-bin") not in result.stdout


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_the_binary_the_environment_names_is_used_whatever_its_version(
    tool: str, sandbox: dict[str, str], tmp_path: Path
) -> None:
    variable = TOOLS[tool][0]
    chosen = stand_in(tmp_path / "elsewhere", tool, version_text(tool, "0.0.1"))
    result = run(f"get-{tool}", {**sandbox, variable: str(chosen)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == str(chosen)

    missing = run(f"get-{tool}", {**sandbox, variable: str(tmp_path / "missing")})
    assert missing.returncode != 0
    assert "not an executable file" in missing.stderr


@pytest.mark.parametrize("tool", ["helm", "promtool"])
def test_a_cached_build_is_used_without_building_again(
    tool: str, sandbox: dict[str, str], tmp_path: Path
) -> None:
    pinned_name = {"helm": "helm-v4.3.1", "promtool": "promtool-v0.316.0"}[tool]
    cached = stand_in(tmp_path / "cache-bin", pinned_name, version_text(tool, TOOLS[tool][1]))
    result = run(f"get-{tool}", sandbox)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == str(cached)


@pytest.mark.parametrize(
    ("have", "pinned", "fits"),
    [
        ("v4.3.1", "v4.3.1", True),
        ("v4.3.2+g1a2b3c4", "v4.3.1", True),
        ("v4.10.0", "v4.3.1", True),
        ("v4.2.9", "v4.3.1", False),
        ("v5.0.0", "v4.3.1", False),
        ("v0.8.3", "v0.8.0", True),
        ("v0.9.0", "v0.8.0", False),  # below 1.0 a minor release may break
        ("3.16.0-rc.0", "3.16.0", False),
        ("", "3.16.0", False),
    ],
)
def test_version_fits(have: str, pinned: str, fits: bool) -> None:
    script = 'tool=test; source scripts/lib/tools.sh; version_fits "$1" "$2"'
    result = subprocess.run(
        ["bash", "-c", script, "-", have, pinned],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert (result.returncode == 0) == fits, result.stderr


def test_get_tools_reports_each_tool_and_fails_when_one_fails(
    sandbox: dict[str, str], tmp_path: Path
) -> None:
    helm = stand_in(tmp_path / "path-bin", "helm", version_text("helm", "4.3.1"))
    env = {**sandbox, "HADOLINT": str(tmp_path / "missing"), "GET_TOOLS_LOGS": str(tmp_path)}
    result = subprocess.run(
        [str(SCRIPTS / "get-tools"), "helm", "hadolint"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.split()[1:3] == ["helm", "ready"] and str(helm) in line for line in lines)
    assert any(line.split()[1:3] == ["hadolint", "FAILED"] for line in lines), lines
    assert "not an executable file" in result.stderr  # the end of the failed tool's log
    assert lines[-1] == "get-tools: 1 of 2 failed: hadolint"

    unknown = subprocess.run(
        [str(SCRIPTS / "get-tools"), "kubectl"], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert unknown.returncode == 1
    assert "unknown tool 'kubectl'" in unknown.stderr

"""The Makefile and the commands the repository tells people to run.

`make help` must list exactly the real targets, every target must do something, and every
`make <target>` or `scripts/<name>` that the docs, the code or a message mentions must exist.
`make -n` only prints what a target would run. About a second.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAKEFILE = REPO / "Makefile"
# Where commands are written for people to run: the docs, the code, the scripts and their messages.
SOURCES = [
    REPO / "README.md",
    MAKEFILE,
    REPO / "Dockerfile",
    *sorted((REPO / "docs").glob("*.md")),
    *sorted(p for d in ("relay", "bench", "tests") for p in (REPO / d).rglob("*.py")),
    *sorted(p for p in (REPO / "scripts").rglob("*") if p.is_file()),
]
MENTIONED_TARGET = re.compile(r"(?:`|^\s*(?:[A-Z_]+=\S+\s+)*)make ([a-z][\w.-]*)", re.MULTILINE)
# scripts/get-helm, scripts/lib/tools.sh; not a wheel's .data/scripts/, not a glob (scripts/get-*)
MENTIONED_SCRIPT = re.compile(r"(?<![\w./])scripts/([\w.-]*\w(?:/[\w.-]*\w)?)(?![\w*-])")


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def phony_targets() -> set[str]:
    text = MAKEFILE.read_text(encoding="utf-8")
    return {t for line in re.findall(r"^\.PHONY:(.*)$", text, re.MULTILINE) for t in line.split()}


def rule_targets() -> set[str]:
    text = MAKEFILE.read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][\w-]*):(?!=)", text, re.MULTILINE))


def help_targets() -> list[str]:
    result = make("help")
    assert result.returncode == 0, result.stderr
    return re.findall(r"^  make (\S+)", result.stdout, re.MULTILINE)


def test_plain_make_prints_the_help() -> None:
    result = make()
    assert result.returncode == 0, result.stderr
    assert result.stdout == make("help").stdout


def test_help_lists_every_target_once_and_nothing_else() -> None:
    listed = help_targets()
    assert len(listed) == len(set(listed)), listed
    assert set(listed) == rule_targets() == phony_targets()


@pytest.mark.parametrize("target", sorted(phony_targets()))
def test_every_target_does_something(target: str) -> None:
    result = make("--dry-run", target)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), f"`make {target}` runs nothing"
    assert "Nothing to be done" not in result.stdout + result.stderr


def test_every_make_target_mentioned_exists() -> None:
    targets = rule_targets()
    missing = {
        f"{source.relative_to(REPO)}: make {name}"
        for source in SOURCES
        for name in MENTIONED_TARGET.findall(source.read_text(encoding="utf-8", errors="replace"))
        if name not in targets
    }
    assert not missing, sorted(missing)


def test_every_script_mentioned_exists() -> None:
    missing = {
        f"{source.relative_to(REPO)}: scripts/{name}"
        for source in SOURCES
        for name in MENTIONED_SCRIPT.findall(source.read_text(encoding="utf-8", errors="replace"))
        if not (REPO / "scripts" / name).exists()
    }
    assert not missing, sorted(missing)

"""docs/design.md states the HTTP contract; this keeps its outcome table and the code together."""

from __future__ import annotations

import re
from pathlib import Path

from relay.outcomes import STATUS, Outcome

DESIGN = Path(__file__).resolve().parents[2] / "docs" / "design.md"
# A row of the outcome table: | `outcome` | status ... | when |
_ROW = re.compile(r"^\| `(?P<outcome>[a-z_]+)` \| (?P<status>[^|]+) \|", re.MULTILINE)


def test_the_design_names_every_outcome_with_its_status() -> None:
    rows = {m["outcome"]: m["status"] for m in _ROW.finditer(DESIGN.read_text())}
    assert set(rows) == {o.value for o in Outcome}
    for outcome in Outcome:
        if outcome is Outcome.CLIENT_DISCONNECTED:
            continue  # no answer reaches that client
        assert rows[outcome.value].startswith(str(STATUS[outcome])), outcome


def test_nothing_points_at_a_design_document_outside_the_repository() -> None:
    root = DESIGN.parents[1]
    for pattern in (
        "relay/*.py",
        "tests/**/*.py",
        "bench/*.py",
        "devsupport/*.py",
        "scripts/**/*",
        "docs/*.md",
        "README.md",
    ):
        for path in filter(Path.is_file, root.glob(pattern)):
            if path == Path(__file__).resolve():
                continue
            assert "DESIGN.md" not in path.read_text(), path
            assert "DESIGN section" not in path.read_text(), path

"""The benchmark's command line: what `python -m bench --help` tells a user."""

from __future__ import annotations

import contextlib
import io

import pytest

from bench.cli import parse_args


def test_help_shows_real_defaults_and_never_none() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        parse_args(["--help"])
    text = " ".join(out.getvalue().split())
    assert "(default: 20.0)" in text  # --duration
    assert "None" not in text

"""How the harness talks while it runs: progress lines on stderr (stdout is the summary table),
and BenchError when the run cannot go on."""

from __future__ import annotations

import sys
import time


class BenchError(Exception):
    """The harness could not run (as opposed to: it ran and found lost data)."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

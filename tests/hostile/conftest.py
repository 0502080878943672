"""The hostile-input suite: a real relay process, attacked over raw sockets.

Each module starts the relays it needs as processes (`whatsapp-relay serve`, as users run it;
tests/relays.py) with short bounds so that timeouts show within a second or two, and reads what
they answered, what they counted, what they logged and how much memory they hold. Requests are
built and sent with tests/raw_http.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from devsupport import samples
from tests.relays import APP_SECRET, Relays, RelayUnderTest

BODY = samples.body(samples.envelope(samples.status_change()))


def short_bounds(**server: Any) -> dict[str, dict[str, Any]]:
    """Short bounds, so that every timeout in the suite shows within a couple of seconds (and
    `server` settings besides); and every refusal logged, so that a test finds its request's
    line (test_floods keeps the default rate limit, and checks it)."""
    return {
        "server": {
            "header_timeout_seconds": 1,
            "keepalive_timeout_seconds": 2,
            "body_read_timeout_seconds": 3,
            **server,
        },
        "log": {"rate_limit_seconds": 0},
    }


@pytest.fixture(scope="module")
def bearer(process_relays: Relays) -> RelayUnderTest:
    return process_relays.start_process(**short_bounds())


@pytest.fixture(scope="module")
def signature_only(process_relays: Relays) -> RelayUnderTest:
    return process_relays.start_process(
        auth={"bearer_tokens": [], "app_secrets": [APP_SECRET]}, **short_bounds()
    )

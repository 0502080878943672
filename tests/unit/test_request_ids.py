"""Request ids: the request's own when sane, else generated; never a header value that could
break a log line."""

import re

import pytest

from relay import request_ids

SANE = ["req-abc.123", "a", "x" * 128, "trace:01.ab_CD-9"]
UNSAFE = ["", "x" * 129, "a b", "line\nbreak", 'quote"', "tab\t", "\x00", "ünïcode"]


@pytest.mark.parametrize("given", SANE)
def test_a_sane_id_is_kept(given: str) -> None:
    assert request_ids.of({"X-Request-Id": given}) == given


@pytest.mark.parametrize("given", UNSAFE)
def test_anything_else_is_replaced_by_a_generated_id(given: str) -> None:
    generated = request_ids.of({"X-Request-Id": given})
    assert re.fullmatch(r"[0-9a-f]{32}", generated)


def test_generated_ids_share_a_process_prefix_and_never_repeat() -> None:
    ids = [request_ids.of({}) for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert len({i[:16] for i in ids}) == 1

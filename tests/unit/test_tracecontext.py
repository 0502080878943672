"""W3C Trace Context: what is carried onto records, what is dropped (relay.tracecontext)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from relay.tracecontext import (
    MAX_TRACESTATE_CHARS,
    MAX_TRACESTATE_MEMBERS,
    parse_traceparent,
    parse_tracestate,
    trace_headers,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


@pytest.mark.parametrize("flags", ["00", "01", "03", "ff"])
def test_version_00_is_carried_as_it_came(flags: str) -> None:
    value = f"00-{TRACE_ID}-{PARENT_ID}-{flags}"
    assert parse_traceparent([value]) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "00",
        VALID.upper(),  # hex must be lowercase
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",
        f"00-{'0' * 32}-{PARENT_ID}-01",  # all-zero trace-id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent-id
        f"00-{TRACE_ID}-{PARENT_ID}-0",
        f"00-{TRACE_ID}-{PARENT_ID}-01-",  # version 00 has exactly four fields
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",
        f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",
        f"00-{TRACE_ID}g-{PARENT_ID}-01",
        f"00_{TRACE_ID}_{PARENT_ID}_01",
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is forbidden
        f"0g-{TRACE_ID}-{PARENT_ID}-01",
        f"01-{TRACE_ID}-{PARENT_ID}-01x",  # a later version's flags end or meet a dash
        f"01-{TRACE_ID}-{PARENT_ID}-1",  # shorter than 55 characters
        f"01-{'0' * 32}-{PARENT_ID}-01",
        f"00-{TRACE_ID}-{PARENT_ID}-01\n",
        f"00-{TRACE_ID}-{PARENT_ID}-\u00e901",
    ],
)
def test_a_malformed_traceparent_is_dropped(value: str) -> None:
    assert parse_traceparent([value]) is None


def test_a_later_version_is_carried_as_version_00() -> None:
    assert parse_traceparent([f"cc-{TRACE_ID}-{PARENT_ID}-01"]) == VALID
    later = f"01-{TRACE_ID}-{PARENT_ID}-09-whatever the future holds, never copied"
    assert parse_traceparent([later]) == f"00-{TRACE_ID}-{PARENT_ID}-09"


def test_optional_whitespace_around_the_value_is_not_part_of_it() -> None:
    assert parse_traceparent([f" \t{VALID} "]) == VALID


def test_two_traceparents_are_no_traceparent() -> None:
    assert parse_traceparent([VALID, VALID]) is None
    assert parse_traceparent([]) is None


@pytest.mark.parametrize(
    ("values", "carried"),
    [
        (["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"], "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        (["rojo=1", "congo=2"], "rojo=1,congo=2"),  # several headers are one list
        ([" rojo=1 ,\t, ,congo=2 "], "rojo=1,congo=2"),  # empty members and whitespace go
        (["fw529a3039@dt=ZGF0YQ==x"], None),  # "=" inside a value
        (["fw529a3039@dt= leading space kept"], "fw529a3039@dt= leading space kept"),
        (["0digit-first=ok"], "0digit-first=ok"),
        (["tenant@system=v,a_b-c*d/e=1"], "tenant@system=v,a_b-c*d/e=1"),
        (["Upper=1"], None),
        (["key=value\x01"], None),
        (["key="], None),
        (["=value"], None),
        (["rojo=1,rojo=2"], None),  # one entry per key
        (["k" * 256 + "=v"], "k" * 256 + "=v"),
        (["k" * 257 + "=v"], None),
        (["k=" + "v" * 256], "k=" + "v" * 256),
        (["k=" + "v" * 257], None),
        ([""], None),
        ([" , "], None),
        ([], None),
    ],
)
def test_tracestate_members_follow_the_grammar(values: list[str], carried: str | None) -> None:
    assert parse_tracestate(values) == carried


def test_tracestate_with_printable_punctuation_in_values() -> None:
    value = "vendor=~!#$%&'()*+-./:;<>?[]^_`{|}~"
    assert parse_tracestate([value]) == value


def test_more_than_32_members_drop_the_tracestate() -> None:
    members = [f"k{i}=v" for i in range(MAX_TRACESTATE_MEMBERS)]
    assert parse_tracestate([",".join(members)]) == ",".join(members)
    assert parse_tracestate([",".join([*members, "one=more"])]) is None


def test_a_long_tracestate_loses_long_members_first_then_from_the_end() -> None:
    short = [f"s{i}=" + "v" * 40 for i in range(10)]  # 43 characters each
    long = "long=" + "x" * 200
    state = parse_tracestate([",".join([short[0], long, *short[1:]])])
    assert state is not None
    assert len(state) <= MAX_TRACESTATE_CHARS
    assert "long=" not in state
    assert state == ",".join(short)  # 10 * 43 + 9 = 439: fits without the long one
    many = [f"m{i:02d}=" + "v" * 60 for i in range(12)]  # 64 characters each
    state = parse_tracestate([",".join(many)])
    assert state == ",".join(many[:7])  # 7 * 64 + 6 = 454; 8 would be 519


def test_headers_carry_both_names_and_tracestate_only_with_a_valid_traceparent() -> None:
    carried = trace_headers(headers(("TraceParent", VALID), ("tracestate", "rojo=1")))
    assert carried == [
        ("ce_traceparent", VALID.encode()),
        ("traceparent", VALID.encode()),
        ("ce_tracestate", b"rojo=1"),
        ("tracestate", b"rojo=1"),
    ]
    assert trace_headers(headers(("traceparent", VALID), ("tracestate", "Bad=1"))) == [
        ("ce_traceparent", VALID.encode()),
        ("traceparent", VALID.encode()),
    ]
    assert trace_headers(headers(("traceparent", "00-bad"), ("tracestate", "rojo=1"))) == []
    assert trace_headers(headers(("tracestate", "rojo=1"))) == []
    assert trace_headers(headers()) == []

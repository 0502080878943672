"""Request-level abuse: compressed bodies, slow and stalled uploads, ambiguous credentials,
expectations, broken framing and smuggling attempts. Nothing reaches Kafka, nothing is a 500."""

from __future__ import annotations

import asyncio
import gzip
import uuid
import zlib

import orjson
import pytest

from tests.hostile.conftest import BODY
from tests.raw_http import AUTO, exchange, expect_continue, held_open, raw_request, signed
from tests.relays import TOKEN, RelayUnderTest

pytestmark = pytest.mark.asyncio


# -- compressed bodies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "payload"),
    [
        (b"gzip", b"this is not gzip at all"),  # used to be a 500 with a traceback
        (b"gzip", gzip.compress(BODY)),
        (b"deflate", zlib.compress(BODY)),
        (b"br", b"\x0b\x02\x80"),
        (b"gzip, identity", gzip.compress(BODY)),
        # Content-Encoding is a list, and a list may span lines: every line counts.
        (b"identity\r\nContent-Encoding: gzip", gzip.compress(BODY)),
        (b"identity\r\nContent-Encoding: identity, br", b"\x0b\x02\x80"),
    ],
)
async def test_compressed_bodies_are_415_and_never_inflated(
    bearer: RelayUnderTest, encoding: bytes, payload: bytes
) -> None:
    before = await bearer.published()
    result = await exchange(
        bearer.port, raw_request(b"Content-Encoding: " + encoding, body=payload)
    )
    assert result.status == 415
    assert result.body == b'{"status":"unsupported_media_type"}'
    assert await bearer.published() == before


@pytest.mark.parametrize(
    "lines",
    [
        (b"Content-Encoding: identity",),
        (b"Content-Encoding: Identity, identity",),
        (b"Content-Encoding: identity", b"Content-Encoding: IDENTITY"),
        (b"Content-Encoding: ",),  # an empty list: no coding
    ],
)
async def test_identity_encoding_is_the_body_as_sent(
    bearer: RelayUnderTest, lines: tuple[bytes, ...]
) -> None:
    result = await exchange(bearer.port, raw_request(*lines, body=BODY))
    assert result.status == 200


async def test_a_gzip_bomb_is_refused_before_authentication_and_before_inflating(
    signature_only: RelayUnderTest,
) -> None:
    bomb = gzip.compress(b" " * (128 * 1024 * 1024))  # 127 KiB that would inflate to 128 MiB
    before = signature_only.rss_mib()
    results = await asyncio.gather(
        *(
            exchange(
                signature_only.port,
                raw_request(b"Content-Encoding: gzip", signed(bomb), token=None, body=bomb),
            )
            for _ in range(8)
        )
    )
    assert {r.status for r in results} == {415}
    assert signature_only.rss_mib() < before + 30


# -- slow and stalled uploads ---------------------------------------------------------------


async def test_a_trickled_small_body_is_cut_by_the_minimum_rate(bearer: RelayUnderTest) -> None:
    # 500 bytes announced, one byte every 0.2 s: at 16 KiB/s after a 2 s grace the body is due
    # after about 2.03 s, long before the 3 s body timeout.
    pieces = [raw_request(length=500), *(b" " for _ in range(40))]
    result = await exchange(bearer.port, *pieces, pause=0.2, read_for=6)
    assert result.status == 408
    assert result.closed
    assert 1.9 <= result.seconds <= 2.9


@pytest.mark.parametrize("mode", ["bearer", "signature_only"])
async def test_a_hundred_stalled_unauthenticated_uploads_keep_no_one_out(
    request: pytest.FixtureRequest, mode: str
) -> None:
    target: RelayUnderTest = request.getfixturevalue(mode)
    # Each announces the largest body allowed, sends a little of it and stalls.
    stall = raw_request(b"X-Hub-Signature-256: sha256=" + b"0" * 64, token="wrong-token-0123456789",
                        length=4 * 1024 * 1024, body=b"{" * 1000)  # fmt: skip
    async with held_open(target.port, 100, stall):
        await asyncio.sleep(0.3)
        if mode == "bearer":
            good = raw_request(body=BODY)
        else:
            good = raw_request(signed(BODY), token=None, body=BODY)
        result = await exchange(target.port, good, read_for=3)
        assert result.status == 200


# -- ambiguous credentials ------------------------------------------------------------------


async def test_two_authorization_headers_are_401_even_if_one_is_right(
    bearer: RelayUnderTest,
) -> None:
    before = await bearer.published()
    for second in (b"Bearer wrong-token-0123456789", b"Bearer " + TOKEN.encode()):
        result = await exchange(bearer.port, raw_request(b"Authorization: " + second, body=BODY))
        assert result.status == 401
    assert await bearer.published() == before


async def test_two_signature_headers_are_401_even_if_one_is_right(
    signature_only: RelayUnderTest,
) -> None:
    before = await signature_only.published()
    wrong = b"X-Hub-Signature-256: sha256=" + b"0" * 64
    for pair in ((signed(BODY), wrong), (wrong, signed(BODY)), (signed(BODY), signed(BODY))):
        result = await exchange(signature_only.port, raw_request(*pair, token=None, body=BODY))
        assert result.status == 401
    assert await signature_only.published() == before


# -- Expect: 100-continue ---------------------------------------------------------------------


async def test_expect_continue_is_answered_before_the_body(bearer: RelayUnderTest) -> None:
    head = raw_request(b"Expect: 100-continue", length=len(BODY))
    result = await exchange(bearer.port, head, read_for=0.5)
    assert result.answer == b"HTTP/1.1 100 Continue\r\n\r\n"

    # The whole exchange: the final answer follows the body.
    interim, final = await expect_continue(bearer.port, body=BODY)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.status == 200


@pytest.mark.parametrize(
    ("pieces", "status"),
    [
        # Refused before the body: the final status at once, never a 100.
        ((b"Expect: 100-continue", b"Content-Length: 100"), 401),
        ((b"Expect: 100-continue", b"Content-Length: 999999999"), 413),
        ((b"Expect: 100-continue", b"Content-Type: text/plain", b"Content-Length: 100"), 415),
        ((b"Expect: something-else", b"Content-Length: 100"), 417),
    ],
)
async def test_refusals_with_an_expectation_get_their_final_status_at_once(
    bearer: RelayUnderTest, pieces: tuple[bytes, ...], status: int
) -> None:
    raw = raw_request(*pieces, token=None if status == 401 else TOKEN)
    result = await exchange(bearer.port, raw, read_for=2)
    assert result.status == status
    assert b"100 Continue" not in result.answer
    assert result.closed
    assert result.seconds < 1.0


# -- framing and smuggling --------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        # a bad chunk size
        raw_request(b"Transfer-Encoding: chunked", body=b"zz\r\nabc\r\n0\r\n\r\n"),
        raw_request(b"Transfer-Encoding: chunked", length=5, body=b"0\r\n\r\n"),  # CL and TE
        raw_request(b"Content-Length: 7", length=5, body=b"12345"),  # two lengths
        raw_request(b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"),
        raw_request(b"Transfer-Encoding: chunked, identity", body=b"0\r\n\r\n"),
        # Transfer-Encoding is a list too: exactly one `chunked`, over every line.
        raw_request(
            b"Transfer-Encoding: identity", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"
        ),
        raw_request(
            b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"
        ),
        raw_request(b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"),
        b"POST /webhook HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\x0b\r\nContent-Length: 2\r\n\r\n{}",  # a control byte after the token
        b"POST /webhook HTTP/1.1\r\n Host: folded\r\n\r\n",  # obsolete line folding
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # TLS on the plain port
        b"GET /webhook HTTP/9.9\r\n\r\n",
        b"POST /webhook?" + b"q" * 9000 + b" HTTP/1.1\r\n\r\n",  # request line too long
    ],
)
async def test_malformed_http_is_400_bad_http_with_nothing_published(
    bearer: RelayUnderTest, raw: bytes
) -> None:
    before = await bearer.published()
    result = await exchange(bearer.port, raw)
    assert result.status == 400
    assert result.body == b'{"status":"bad_http"}'
    assert result.header("X-Request-Id")
    assert result.answer.startswith(b"HTTP/1.1 ")
    assert await bearer.published() == before


# A chunked body whose second chunk is malformed, in a read of its own (the request is being
# handled by then): a size that is not hex, a size smaller than the data that follows it, a size
# that overflows. aiohttp's parser raises on each without telling the body.
BAD_CHUNKS = {
    "size not hex": b"zz\r\nabc\r\n0\r\n\r\n",
    "size smaller than its data": b"3\r\nabcdefgh\r\n0\r\n\r\n",
    "size overflowing": b"f" * 24 + b"\r\nabc\r\n0\r\n\r\n",
}


def body_head(mode: str, request_id: str, length: int | None = None) -> bytes:
    """An authenticated POST in bearer mode; in signature-only mode any POST, whose body is read
    before its signature is checked. Chunked unless `length` is given."""
    lines = [b"X-Request-Id: " + request_id.encode()]
    if length is None:
        lines.append(b"Transfer-Encoding: chunked")
    if mode == "bearer":
        return raw_request(*lines, length=AUTO if length is None else length)
    return raw_request(*lines, signed(BODY), token=None, length=AUTO if length is None else length)


def lines_about(target: RelayUnderTest, since: int, request_id: str) -> list[dict[str, object]]:
    """The log lines about `request_id` written since line `since`; none of them, and no
    other line since, may be an ERROR."""
    lines = [orjson.loads(line) for line in target.log().splitlines()[since:] if line[:1] == "{"]
    assert [line for line in lines if line["level"] == "ERROR"] == []
    return [line for line in lines if line.get("request_id") == request_id]


@pytest.mark.parametrize("mode", ["bearer", "signature_only"])
@pytest.mark.parametrize("chunk", BAD_CHUNKS.values(), ids=BAD_CHUNKS)
async def test_a_malformed_chunk_after_the_head_is_400_bad_http_and_closed(
    request: pytest.FixtureRequest, mode: str, chunk: bytes
) -> None:
    target: RelayUnderTest = request.getfixturevalue(mode)
    since = len(target.log().splitlines())
    before = await target.published()
    request_id = f"bad-chunk-{uuid.uuid4().hex}"
    first = b'5\r\n{"a":\r\n'
    result = await exchange(target.port, body_head(mode, request_id) + first, chunk, pause=0.2)
    assert result.status == 400
    assert result.body == b'{"status":"bad_http"}'
    assert result.header("X-Request-Id") == request_id
    assert result.closed
    [line] = lines_about(target, since, request_id)
    assert (line["level"], line["outcome"]) == ("INFO", "bad_http")
    assert target.outcome("internal_error") == 0
    assert await target.published() == before


@pytest.mark.parametrize("mode", ["bearer", "signature_only"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_a_client_leaving_mid_body_is_counted_not_an_error(
    request: pytest.FixtureRequest, mode: str, framing: str
) -> None:
    target: RelayUnderTest = request.getfixturevalue(mode)
    since = len(target.log().splitlines())
    before = target.outcome("client_disconnected")
    request_id = f"leaving-{uuid.uuid4().hex}"
    if framing == "length":
        raw = body_head(mode, request_id, length=5000) + b"{" * 100
    else:
        raw = body_head(mode, request_id) + b"64\r\n" + b"{" * 50
    await exchange(target.port, raw, read_for=0.3)
    async with asyncio.timeout(5):
        while target.outcome("client_disconnected") == before:
            await asyncio.sleep(0.05)
    [line] = lines_about(target, since, request_id)
    assert (line["level"], line["outcome"]) == ("INFO", "client_disconnected")
    assert target.outcome("internal_error") == 0


async def test_a_body_answered_without_reading_it_may_break_off_quietly(
    bearer: RelayUnderTest,
) -> None:
    # A 404 does not read its body; aiohttp reads the rest of it ("lingering") so that the
    # client gets its answer instead of a reset. The rest is malformed, or never comes.
    since = len(bearer.log().splitlines())
    request_id = f"elsewhere-{uuid.uuid4().hex}"
    elsewhere = (
        b"POST /elsewhere HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n"
        b"X-Request-Id: " + request_id.encode() + b"\r\n\r\n5\r\nabcde\r\n"
    )
    malformed = await exchange(bearer.port, elsewhere, b"zz\r\n", pause=0.1, read_for=2)
    assert malformed.status == 404
    assert malformed.closed
    assert malformed.answer.count(b"HTTP/1.1 ") == 1  # the request's answer, nothing after it
    for _ in range(20):  # more of the body, then gone, while the rest is being read
        await exchange(bearer.port, elsewhere, b"5\r\nabcde\r\n", pause=0.02, read_for=0)
    await asyncio.sleep(0.5)
    assert [line["outcome"] for line in lines_about(bearer, since, request_id)] == []
    assert bearer.outcome("internal_error") == 0

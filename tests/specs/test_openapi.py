"""docs/openapi.yaml against the relay: a valid OpenAPI 3.1 document that names every outcome
with the status relay/outcomes.py gives it, and that a real relay process, publishing to a real
broker, conforms to under schemathesis' generated requests. None of them may get a 500.

schemathesis runs as its CLI, bounded: a fixed seed (the same cases every run), a fixed number
of examples per operation, no example database, and a timeout on the whole run. The answers it
cannot provoke through an HTTP client (malformed HTTP, timeouts, oversized heads, refused
encodings) are sent over raw sockets and checked against the same document.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from devsupport.ports import LOOPBACK
from relay import __version__
from relay.outcomes import BODIES, STATUS, Outcome
from tests.raw_http import exchange, raw_request
from tests.relays import TOKEN, Relays, RelayUnderTest

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# The handshake's example in the document: the examples phase completes a handshake with it.
VERIFY_TOKEN = "dev-verify-token"
SEED = "20261126"
# Outcomes the webhook POST can end in; the rest are the handshake's, other methods and paths
# (405, 404 not_found), a client that left (no answer reaches it), and a bug (500).
NOT_POST = {
    Outcome.VERIFIED,
    Outcome.VERIFY_REJECTED,
    Outcome.METHOD_NOT_ALLOWED,
    Outcome.NOT_FOUND,
    Outcome.CLIENT_DISCONNECTED,
    Outcome.INTERNAL_ERROR,
}
_REGISTRY = Registry().with_resource(
    "urn:openapi", Resource.from_contents(SPEC, default_specification=DRAFT202012)
)


def node_path(ref: str) -> list[str]:
    assert ref.startswith("#/"), ref
    return ref[2:].split("/")


def lookup(ref: str) -> dict[str, Any]:
    node: Any = SPEC
    for part in node_path(ref):
        node = node[part]
    assert isinstance(node, dict)
    return node


def response(path: str, method: str, status: int) -> dict[str, Any]:
    responses = SPEC["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path}: no {status} answer"
    found: dict[str, Any] = responses[str(status)]
    return found


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for a schema of the document, its `#/components/...` references resolved."""
    return Draft202012Validator(_rebased(schema), registry=_REGISTRY)


def _rebased(node: Any) -> Any:
    # `#/components/...` points into the document, registered as urn:openapi.
    if isinstance(node, dict):
        return {
            key: (f"urn:openapi{value}" if key == "$ref" else _rebased(value))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rebased(item) for item in node]
    return node


def body_schema(answer: dict[str, Any], media_type: str = "application/json") -> dict[str, Any]:
    schema: dict[str, Any] = answer["content"][media_type]["schema"]
    return schema


# --------------------------------------------------------------------------- the document


def test_the_document_is_valid_openapi_3_1() -> None:
    assert SPEC["openapi"].startswith("3.1.")
    assert SPEC["info"]["version"] == __version__
    validate_openapi(SPEC)


def test_every_outcome_of_the_webhook_post_is_documented_with_its_status() -> None:
    for outcome in Outcome:
        if outcome in NOT_POST:
            continue
        answer = response("/webhook", "post", STATUS[outcome])
        body = orjson.loads(BODIES[outcome])
        errors = list(validator(body_schema(answer)).iter_errors(body))
        assert not errors, f"{outcome} ({STATUS[outcome]}): {errors[0].message}"
    # ... and nothing else: every status the document gives the POST is one the relay answers.
    documented = {int(status) for status in SPEC["paths"]["/webhook"]["post"]["responses"]}
    answered = {STATUS[o] for o in Outcome if o not in NOT_POST} | {431}  # 431: bad_http
    assert documented == answered


def test_the_handshake_answers_are_documented() -> None:
    assert "text/plain" in response("/webhook", "get", STATUS[Outcome.VERIFIED])["content"]
    rejected = response("/webhook", "get", STATUS[Outcome.VERIFY_REJECTED])
    body = orjson.loads(BODIES[Outcome.VERIFY_REJECTED])
    assert validator(body_schema(rejected)).is_valid(body)


def test_every_public_answer_carries_a_request_id_and_every_503_a_retry_after() -> None:
    for method, operation in SPEC["paths"]["/webhook"].items():
        for status, answer in operation["responses"].items():
            headers = answer.get("headers", {})
            where = f"{method.upper()} /webhook {status}"
            assert lookup(headers["X-Request-Id"]["$ref"])["required"], where
            if status == "503":
                assert lookup(headers["Retry-After"]["$ref"])["required"], where


def test_a_wrong_answer_does_not_conform() -> None:
    """The schemas are strict enough to catch a wrong body (the schemathesis runs rely on it)."""
    unauthorized = body_schema(response("/webhook", "post", 401))
    assert not validator(unauthorized).is_valid({"status": "accepted"})
    assert not validator(unauthorized).is_valid({"status": "unauthorized", "detail": "x"})


# --------------------------------------------------------------------------- a running relay


@pytest.fixture(scope="module")
def openapi_relay(process_relays: Relays) -> RelayUnderTest:
    """One relay process for the module, with short timeouts so that 408 shows quickly."""
    return process_relays.start_process(
        auth={"verify_token": VERIFY_TOKEN},
        # One request at a time: schemathesis sends one at a time (--workers 1), and a held
        # upload makes the next request a 503 below.
        server={"header_timeout_seconds": 1, "max_body_bytes": 65536, "max_inflight_requests": 1},
    )


def schemathesis(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            str(SPEC_PATH),
            "--checks",
            "all",
            # Schema-valid bodies can still be refused on purpose (more than 64 field names in
            # a record, ids beyond 256 characters where a record takes its key from): the
            # document describes them, it cannot encode them.
            "--exclude-checks",
            "positive_data_acceptance",
            "--seed",
            SEED,
            "--generation-database",
            "none",
            "--request-timeout",
            "10",
            "--no-color",
            "--workers",
            "1",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=180,
        check=False,
    )


@pytest.mark.timeout(300)
def test_the_relay_conforms_to_the_document(openapi_relay: RelayUnderTest, tmp_path: Path) -> None:
    relay = openapi_relay
    public = f"http://{LOOPBACK}:{relay.port}"
    runs = {
        "webhook, authenticated": schemathesis(
            "--url", public, "--include-tag", "webhook", "--max-examples", "15",
            "--header", f"Authorization: Bearer {TOKEN}", cwd=tmp_path,
        ),
        # Without credentials every POST is a 401: its answer is checked as well.
        "webhook, no credentials": schemathesis(
            "--url", public, "--include-tag", "webhook", "--include-method", "POST",
            "--max-examples", "5", "--phases", "examples,coverage",
            "--warnings", "off",  # "authentication failed": the point of this run
            cwd=tmp_path,
        ),
        "admin": schemathesis(
            "--url", relay.admin_url, "--include-tag", "admin",
            "--max-examples", "5", cwd=tmp_path,
        ),
    }  # fmt: skip
    for name, run in runs.items():
        assert run.returncode == 0, f"schemathesis ({name}):\n{run.stdout[-6000:]}{run.stderr}"
        assert "No issues found" in run.stdout, run.stdout[-3000:]

    assert relay.outcome("internal_error") == 0
    for outcome in ("accepted", "unauthorized", "bad_request", "not_whatsapp", "verified"):
        assert relay.outcome(outcome) > 0, f"schemathesis never got an answer {outcome}"
    published = sum(
        relay.metric("whatsapp_relay_records_published_total", event_type=t)
        for t in relay.settings.topics.names()
    )
    assert asyncio.run(relay.published()) == published > 0
    assert '"level":"ERROR"' not in relay.log()
    assert TOKEN not in relay.log()


RAW_ANSWERS = {
    "malformed request line": (b"POST /webhook HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
    "malformed header": (b"POST /webhook HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),
    "head too large": (raw_request(*[b"X-Pad: " + b"a" * 8000] * 5, length=None), 431),
    "head too slow": (b"POST /webhook HTTP/1.1\r\nHost: x\r\n", 408),
    "body too large": (raw_request(length=70000), 413),
    "compressed body": (raw_request(b"Content-Encoding: gzip", body=b"{}"), 415),
    "unknown expectation": (raw_request(b"Expect: teapot", body=b"{}"), 417),
}


@pytest.mark.parametrize(("request_bytes", "status"), RAW_ANSWERS.values(), ids=RAW_ANSWERS)
async def test_answers_an_http_client_cannot_provoke_conform_too(
    openapi_relay: RelayUnderTest, request_bytes: bytes, status: int
) -> None:
    assert_conforms((await exchange(openapi_relay.port, request_bytes)).answer, status)


async def test_a_503_conforms_with_its_retry_after(openapi_relay: RelayUnderTest) -> None:
    _, writer = await asyncio.open_connection(LOOPBACK, openapi_relay.port)
    try:
        # In flight until it sends the rest: the one slot is taken.
        writer.write(raw_request(length=100, body=b"{"))
        await writer.drain()
        await asyncio.sleep(0.3)
        body = b'{"object":"whatsapp_business_account","entry":[]}'
        answer = await exchange(openapi_relay.port, raw_request(body=body))
        assert_conforms(answer.answer, 503)
    finally:
        writer.close()


def assert_conforms(answer: bytes, status: int) -> None:
    """A raw answer has `status` and the headers and body the document gives it."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert int(lines[0].split(" ")[1]) == status, answer[:200]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    documented = response("/webhook", "post", status)
    for name, header in documented["headers"].items():
        schema = lookup(header["$ref"])["schema"]
        assert validator(schema).is_valid(headers[name.lower()]), f"{name}: {headers}"
    errors = list(validator(body_schema(documented)).iter_errors(orjson.loads(body)))
    assert not errors, errors[0].message

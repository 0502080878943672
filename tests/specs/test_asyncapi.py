"""docs/asyncapi.yaml: valid AsyncAPI 3 by the AsyncAPI parser itself, naming the relay's five
topics, and describing what a real relay publishes to a real broker: every record read back
is checked against its message's key, headers and payload schemas.

The parser is npm's @asyncapi/parser, installed once from scripts/asyncapi/package-lock.json
by scripts/get-asyncapi-parser (cached in ~/.cache/whatsapp-relay) and run with node.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from devsupport import samples
from devsupport.topics import consume
from relay import __version__
from relay.config import EventType, Settings, TopicsConfig
from relay.records import CE_TYPES
from tests.relays import Relays

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "docs" / "asyncapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
# AsyncAPI schemas are a superset of JSON Schema draft 7; the document is the root resource.
_REGISTRY = Registry().with_resource(
    "urn:asyncapi", Resource.from_contents(SPEC, default_specification=DRAFT7)
)


def validator(schema: dict[str, Any]) -> Draft7Validator:
    def rebased(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: f"urn:asyncapi{v}" if k == "$ref" else rebased(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rebased(item) for item in node]
        return node

    return Draft7Validator(rebased(schema), registry=_REGISTRY)


@pytest.fixture(scope="module")
def parsed() -> dict[str, Any]:
    """What the AsyncAPI parser made of the document (scripts/asyncapi/validate.mjs)."""
    fetched = subprocess.run(
        [str(REPO / "scripts" / "get-asyncapi-parser")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert fetched.returncode == 0, f"scripts/get-asyncapi-parser failed:\n{fetched.stderr}"
    script = fetched.stdout.strip().splitlines()[-1]
    result = subprocess.run(
        ["node", script, str(SPEC_PATH)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    assert result.stdout, f"node {script} printed nothing:\n{result.stderr}"
    output: dict[str, Any] = json.loads(result.stdout)
    assert result.returncode == 0, output
    return output


@pytest.mark.needs_tool("asyncapi")
def test_the_asyncapi_parser_accepts_the_document(parsed: dict[str, Any]) -> None:
    assert parsed["parsed"]
    assert parsed["version"].startswith("3.")
    assert SPEC["info"]["version"] == __version__
    problems = [d for d in parsed["diagnostics"] if d["severity"] in ("error", "warning")]
    assert not problems, problems


@pytest.mark.needs_tool("asyncapi")
def test_the_channels_are_the_relays_topics(parsed: dict[str, Any]) -> None:
    defaults = TopicsConfig().names()
    assert {c["id"]: c["address"] for c in parsed["channels"]} == {
        t.value: name for t, name in defaults.items()
    }
    for channel in parsed["channels"]:
        assert channel["messages"] == [CE_TYPES[EventType(channel["id"])].decode()]
    sends = {op["channels"][0] for op in parsed["operations"] if op["action"] == "send"}
    assert sends == {t.value for t in EventType}
    assert len(parsed["operations"]) == len(EventType)


def test_the_topic_binding_is_what_topics_create_makes() -> None:
    binding = SPEC["components"]["channelBindings"]["topic"]["kafka"]
    assert binding["partitions"] == TopicsConfig().partitions
    assert binding["topicConfiguration"]["max.message.bytes"] == Settings().record_size_limit


def test_a_wrong_record_does_not_conform() -> None:
    """The schemas are strict enough to catch a header the relay does not document."""
    headers = validator(SPEC["components"]["messages"]["template"]["headers"])
    good = {
        "ce_specversion": "1.0",
        "ce_id": "a" * 64 + "-template",
        "ce_source": "/waba/1",
        "ce_type": "whatsapp.template",
        "ce_time": "2026-11-25T21:05:05.131009Z",
        "content-type": "application/json",
        "wa-fields": "message_template_status_update",
        "relay-request-id": "r-1",
    }
    assert headers.is_valid(good)
    assert not headers.is_valid({**good, "undocumented": "x"})
    assert not headers.is_valid({**good, "ce_type": "whatsapp.status"})
    assert not headers.is_valid({**good, "ce_id": "a" * 64 + "-status"})


async def test_what_the_relay_publishes_conforms(relays: Relays, tmp_path: Path) -> None:
    relay = await relays(routing={"fields": {"smb_message_echoes": "message"}})
    tracestate = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    posts = [
        (
            samples.envelope(samples.message_change(), samples.status_change()),
            {
                "traceparent": samples.TRACEPARENT,
                "tracestate": tracestate,
                "X-Hub-Signature-256": "sha256=" + "ab" * 32,
                "X-Request-Id": "asyncapi.check-1",
            },
        ),
        (samples.envelope(samples.echo_change(to=None, to_user_id=samples.BSUID)), {}),
        (samples.envelope(samples.template_change()), {}),
        (samples.envelope(samples.account_change(), samples.errors_change()), {}),
        (samples.envelope(samples.call_status_change(), {"field": "history", "value": {}}), {}),
        ({"object": "whatsapp_business_account", "entry": []}, {}),
    ]
    for data, headers in posts:
        response = await relay.post(samples.body(data), headers=headers)
        assert response.status == 200, data
    # One more through the durable spool, whose records carry relay-spooled-at as well.
    spooling = await relays(
        spool={"enabled": True, "directory": str(tmp_path / "spool"), "after_seconds": 0}
    )
    spooled = samples.envelope(samples.template_change(), waba_id="102290129340399")
    assert (await spooling.post(samples.body(spooled))).status == 200
    expected = {
        EventType.MESSAGE: 2,
        EventType.STATUS: 1,
        EventType.TEMPLATE: 2,
        EventType.ACCOUNT: 1,
        EventType.UNROUTED: 2,
    }
    bootstrap = relay.settings.kafka.bootstrap_servers
    seen: set[str] = set()
    for event_type, count in expected.items():
        message = SPEC["components"]["messages"][event_type.value]
        topic = relay.settings.topics.for_type(event_type)
        records = await consume(bootstrap, topic, expect=count)
        assert len(records) == count, event_type
        for record in records:
            headers = {name: value.decode("utf-8") for name, value in record.headers}
            seen |= headers.keys()
            where = f"{event_type.value} record"
            for part, instance in (
                ("headers", headers),
                ("payload", orjson.loads(record.value)),
                ("key", record.key.decode("utf-8")),
            ):
                schema = message["bindings"]["kafka"]["key"] if part == "key" else message[part]
                errors = list(validator(schema).iter_errors(instance))
                assert not errors, f"{where}, {part}: {errors[0].message}"
    # Every header the document describes was seen on a real record.
    documented = SPEC["components"]["schemas"]["Headers"]["properties"].keys()
    assert seen == set(documented)

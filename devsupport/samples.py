"""Webhook bodies shaped like Meta's WhatsApp Cloud API payloads, for tests.

The business-scoped user id (BSUID) shapes follow Meta's "Business-scoped user IDs" page and
its webhook references (messages, status, system messages, smb_message_echoes, calls), as of
2026: a BSUID in every messages webhook, the phone number withheld for some users who adopted
a username, and identifier changes announced by system messages.
"""

from __future__ import annotations

from typing import Any

import orjson

from relay.classify import MAX_FIELD_NAME_CHARS, MAX_FIELDS_PER_RECORD, MAX_ID_CHARS
from relay.config import EventType

WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
# Meta's examples: a BSUID is the user's country code, a dot and up to 128 alphanumerics; a
# parent BSUID (linked business portfolios only) has `ENT.` after the country code.
BSUID = "US.13491208655302741918"
PARENT_BSUID = "US.ENT.11815799212886844830"


def envelope(*changes: dict[str, Any], waba_id: str = WABA_ID) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": list(changes)}],
    }


def body(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data)


def metadata() -> dict[str, str]:
    return {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID}


def message_change(
    sender: str | None = "16315551181",
    text: str = "Hello",
    *,
    user_id: str | None = None,
    username: str | None = None,
) -> dict[str, Any]:
    """A customer's text message. With `user_id` it carries the BSUID as Meta sends it since
    April 2026; `sender=None` is a user whose phone number Meta withholds (username only)."""
    contact: dict[str, Any] = {"profile": {"name": "Kerry Fisher"}}
    message: dict[str, Any] = {
        "id": "wamid.HBgLMTYzMTU1NTExODEVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
        "timestamp": "1744344496",
        "type": "text",
        "text": {"body": text},
    }
    if username is not None:
        contact["profile"]["username"] = username
    if sender is not None:
        contact["wa_id"] = message["from"] = sender
    if user_id is not None:
        contact["user_id"] = message["from_user_id"] = user_id
    return {
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "contacts": [contact],
            "messages": [message],
        },
    }


def status_change(
    recipient: str | None = "16505551234",
    status: str = "delivered",
    *,
    user_id: str | None = None,
) -> dict[str, Any]:
    """A delivery status. With `user_id`, the BSUID fields Meta adds to sent, delivered and
    read statuses (`recipient_user_id`, and a `contacts` entry); `recipient=None` is a message
    sent to the BSUID of a user whose phone number Meta withholds."""
    item: dict[str, Any] = {
        "id": "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
        "status": status,
        "timestamp": "1750263773",
        "conversation": {
            "id": "6ceb9d929c0bd3cbbdc7d6a4ab4b7b4c",
            "origin": {"type": "marketing"},
        },
        "pricing": {
            "billable": True,
            "pricing_model": "PMP",
            "category": "marketing",
            "type": "regular",
        },
    }
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": metadata(),
        "statuses": [item],
    }
    if recipient is not None:
        item["recipient_id"] = recipient
    if user_id is not None:
        item["recipient_user_id"] = user_id
        contact: dict[str, Any] = {"profile": {"name": "Sheena Nelson"}, "user_id": user_id}
        if recipient is not None:
            contact["wa_id"] = recipient
        value["contacts"] = [contact]
    return {"field": "messages", "value": value}


def system_change(
    previous_user_id: str = BSUID,
    user_id: str = "US.40187760351962118042",
    *,
    sender: str | None = None,
    new_phone: str | None = None,
) -> dict[str, Any]:
    """A system message announcing a changed identifier (Meta's system messages reference,
    2026-08-11): `user_changed_user_id` when only the BSUID changed (no phone number shared),
    `user_changed_number` with the old `sender` and `new_phone`, which also regenerates the
    BSUID. System messages carry no `contacts` array."""
    kind = "user_changed_number" if new_phone is not None else "user_changed_user_id"
    system: dict[str, Any] = {
        "body": "User Kerry Fisher changed their WhatsApp account",
        "type": kind,
        "user_id": user_id,
        "previous_user_id": previous_user_id,
    }
    message: dict[str, Any] = {
        "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=",
        "timestamp": "1739321024",
        "type": "system",
        "system": system,
    }
    if new_phone is not None:
        system["wa_id"] = new_phone
    if sender is not None:
        message["from"] = sender
    return {
        "field": "messages",
        "value": {"messaging_product": "whatsapp", "metadata": metadata(), "messages": [message]},
    }


def template_change() -> dict[str, Any]:
    return {
        "field": "message_template_status_update",
        "value": {
            "event": "APPROVED",
            "message_template_id": 1689556908129832,
            "message_template_name": "order_confirmation",
            "message_template_language": "en_US",
            "reason": "NONE",
        },
    }


def account_change() -> dict[str, Any]:
    return {
        "field": "account_update",
        "value": {"phone_number": "15550783881", "event": "VERIFIED_ACCOUNT"},
    }


def errors_change() -> dict[str, Any]:
    return {
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "errors": [{"code": 131000, "title": "Something went wrong"}],
        },
    }


def echo_change(to: str | None = "16505551234", *, to_user_id: str | None = None) -> dict[str, Any]:
    """A message the business sent from the WhatsApp Business app (coexistence): Meta's field
    is `smb_message_echoes`, holding a `message_echoes` array."""
    echo: dict[str, Any] = {
        "from": "15550783881",
        "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=",
        "timestamp": "1739321024",
        "type": "text",
        "text": {"body": "Here's the info you requested!"},
    }
    if to is not None:
        echo["to"] = to
    if to_user_id is not None:
        echo["to_user_id"] = to_user_id
    return {
        "field": "smb_message_echoes",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "message_echoes": [echo],
        },
    }


def call_status_change(recipient: str = "16505551234", status: str = "RINGING") -> dict[str, Any]:
    """A business-initiated call's status (Calling API `calls` webhook): a `statuses` array
    like a message's, but for a call id."""
    return {
        "field": "calls",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "statuses": [
                {
                    "id": "wacid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
                    "timestamp": "1750263773",
                    "type": "call",
                    "status": status,
                    "recipient_id": recipient,
                    "recipient_user_id": BSUID,
                }
            ],
        },
    }


def largest_record(
    extra_id_chars: int = 0, extra_fields: int = 0
) -> tuple[dict[str, Any], dict[str, EventType]]:
    """A body whose message record carries the longest ids and the most and longest field
    names the classifier accepts, plus the given excess; with the `routing.fields` it needs.
    Every character takes four bytes in UTF-8, the most any can: the bounds count characters.
    """
    longest = "\U0001f600" * (MAX_ID_CHARS + extra_id_chars)
    change = message_change(sender=None, user_id=longest, text="")
    change["value"]["metadata"]["phone_number_id"] = longest
    names = [
        f"{i:03d}".ljust(MAX_FIELD_NAME_CHARS, "\U0001f600")
        for i in range(MAX_FIELDS_PER_RECORD - 1 + extra_fields)
    ]
    changes = [change, *({"field": name, "value": {}} for name in names)]
    return envelope(*changes, waba_id=longest), dict.fromkeys(names, EventType.MESSAGE)


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def longest_tracestate() -> tuple[str, str]:
    """A `tracestate` the relay cuts to exactly its bound (relay.tracecontext), and what it
    carries: three members of 128 characters, one of 125 and three commas make 512; a member of
    258 characters in between goes first."""
    kept = [f"{i}{'k' * 99}={'v' * 27}" for i in range(3)] + ["3" + "k" * 99 + "=" + "v" * 24]
    sent = [*kept[:2], "z=" + "v" * 256, *kept[2:]]
    return ",".join(sent), ",".join(kept)

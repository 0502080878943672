"""Webhook bodies shaped like Meta's WhatsApp Cloud API payloads, for tests."""

from __future__ import annotations

from typing import Any

import orjson

WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"


def envelope(*changes: dict[str, Any], waba_id: str = WABA_ID) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": list(changes)}],
    }


def body(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data)


def metadata() -> dict[str, str]:
    return {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID}


def message_change(sender: str = "16315551181", text: str = "Hello") -> dict[str, Any]:
    return {
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": sender}],
            "messages": [
                {
                    "from": sender,
                    "id": "wamid.HBgLMTYzMTU1NTExODEVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                    "timestamp": "1744344496",
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        },
    }


def status_change(recipient: str = "16505551234", status: str = "delivered") -> dict[str, Any]:
    return {
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "statuses": [
                {
                    "id": "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
                    "status": status,
                    "timestamp": "1750263773",
                    "recipient_id": recipient,
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
            ],
        },
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


def echo_change() -> dict[str, Any]:
    return {
        "field": "message_echoes",
        "value": {"messaging_product": "whatsapp", "metadata": metadata(), "message_echoes": []},
    }

"""Decide which event types a webhook body carries (DESIGN section 3).

Only the envelope is inspected; the body itself is published untouched. Anything the table
does not know goes to `unrouted`, so a field Meta adds tomorrow is kept, not rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relay.config import EventType

WHATSAPP_OBJECT = "whatsapp_business_account"
MESSAGES_FIELD = "messages"

DEFAULT_FIELD_TYPES: Mapping[str, EventType] = {
    **dict.fromkeys(
        (
            "message_template_status_update",
            "message_template_quality_update",
            "message_template_components_update",
            "template_category_update",
        ),
        EventType.TEMPLATE,
    ),
    **dict.fromkeys(
        (
            "account_update",
            "account_review_update",
            "account_alerts",
            "account_settings_update",
            "business_capability_update",
            "phone_number_name_update",
            "phone_number_quality_update",
            "security",
            "partner_solutions",
            "payment_configuration_update",
        ),
        EventType.ACCOUNT,
    ),
}


# In a `messages` change: (event type, list holding the items, field naming the other party).
_CONVERSATION_ITEMS = (
    (EventType.MESSAGE, "messages", "from"),
    (EventType.STATUS, "statuses", "recipient_id"),
)


class EnvelopeError(ValueError):
    """The body is JSON but not a usable webhook envelope (400)."""


class NotWhatsApp(ValueError):
    """A JSON object for another Meta product (404, as the gateway's boilerplate does)."""


@dataclass(slots=True)
class EventGroup:
    """Everything in one body that goes to one event type's topic: one Kafka record."""

    event_type: EventType
    key: str
    waba_id: str
    fields: list[str] = field(default_factory=list)

    def add_field(self, name: str) -> None:
        if name not in self.fields:
            self.fields.append(name)


class Classifier:
    def __init__(self, overrides: Mapping[str, EventType] | None = None) -> None:
        self._field_types = {**DEFAULT_FIELD_TYPES, **(overrides or {})}

    def classify(self, envelope: Any) -> list[EventGroup]:
        """Group the body's changes by event type, in order of first appearance.

        Raises `EnvelopeError` or `NotWhatsApp`; never returns an empty list, because a body
        with no recognisable change is still kept, on the unrouted topic.
        """
        if not isinstance(envelope, dict):
            raise EnvelopeError("body is not a JSON object")
        if envelope.get("object") != WHATSAPP_OBJECT:
            raise NotWhatsApp("object is not whatsapp_business_account")
        entries = envelope.get("entry")
        if not isinstance(entries, list):
            raise EnvelopeError("envelope has no entry list")

        groups: dict[EventType, EventGroup] = {}
        first_waba = ""
        for entry in entries:
            if not isinstance(entry, dict):
                raise EnvelopeError("entry items must be objects")
            waba_id = _text(entry.get("id"))
            first_waba = first_waba or waba_id
            changes = entry.get("changes", [])
            if not isinstance(changes, list):
                raise EnvelopeError("entry changes must be a list")
            for change in changes:
                if not isinstance(change, dict):
                    raise EnvelopeError("changes items must be objects")
                self._classify_change(change, waba_id, groups)

        if not groups:
            groups[EventType.UNROUTED] = EventGroup(EventType.UNROUTED, first_waba, first_waba)
        return list(groups.values())

    def _classify_change(
        self, change: dict[str, Any], waba_id: str, groups: dict[EventType, EventGroup]
    ) -> None:
        name = change.get("field")
        name = name if isinstance(name, str) else ""
        value = change.get("value")
        if name == MESSAGES_FIELD and isinstance(value, dict):
            self._classify_messages(value, waba_id, groups)
            return
        event_type = self._field_types.get(name, EventType.UNROUTED)
        _group(groups, event_type, waba_id, waba_id).add_field(name)

    def _classify_messages(
        self, value: dict[str, Any], waba_id: str, groups: dict[EventType, EventGroup]
    ) -> None:
        # One `messages` change may carry customer messages and statuses at once; each kind
        # is keyed by the phone number and the person of its first item.
        phone_number_id = _text(_get(value.get("metadata"), "phone_number_id"))
        found = False
        for event_type, items_name, person_name in _CONVERSATION_ITEMS:
            items = value.get(items_name)
            if isinstance(items, list) and items:
                person = _text(_get(items[0], person_name))
                key = f"{phone_number_id}:{person}" if person else waba_id
                _group(groups, event_type, key, waba_id).add_field(MESSAGES_FIELD)
                found = True
        if found:
            return
        errors = value.get("errors")
        only_errors = isinstance(errors, list) and bool(errors)
        fallback = EventType.ACCOUNT if only_errors else EventType.UNROUTED
        _group(groups, fallback, waba_id, waba_id).add_field(MESSAGES_FIELD)


def _group(
    groups: dict[EventType, EventGroup], event_type: EventType, key: str, waba_id: str
) -> EventGroup:
    # The first change of a type decides its record's key and source, per the contract.
    group = groups.get(event_type)
    if group is None:
        group = groups[event_type] = EventGroup(event_type, key, waba_id)
    return group


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else None


def _text(value: Any) -> str:
    # Ids are strings in Meta's payloads; tolerate numbers, ignore anything else.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""

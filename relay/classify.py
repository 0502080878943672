"""Which event types a webhook body carries, and each record's key (docs/design.md §4, §5).

Only the envelope is inspected; the body itself is published untouched. Anything the table
does not know goes to `unrouted`, so a field Meta adds tomorrow is kept, not rejected. Every
list of Meta field names the relay knows lives here.
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

# Fields Meta documents for WhatsApp that have no route of their own. The unrouted counter is
# labelled by these names and `other`, so a sender cannot grow its label set. `messages` is
# here for a change that holds neither messages, statuses nor errors.
KNOWN_UNROUTED_FIELDS = frozenset(
    {
        "smb_message_echoes",
        "history",
        "smb_app_state_sync",
        "calls",
        "flows",
        "user_preferences",
        "automatic_events",
        "group_lifecycle_update",
        "group_participants_update",
        "group_settings_update",
        "group_status_update",
        MESSAGES_FIELD,
    }
)

# What the relay copies from a body into a record's key and headers is bounded, so that key
# and headers always fit in the room the producer reserves next to the body
# (config.RECORD_OVERHEAD_BYTES); tests/unit/test_records.py measures the worst case.
# Meta's ids are short: WABA and phone number ids about 15 digits, phone numbers at most 15,
# business-scoped user ids (BSUIDs) a country code, an optional `ENT.` and up to 128
# characters; field names at most 34 characters, and fewer than 40 fields exist.
MAX_ID_CHARS = 256
MAX_FIELD_NAME_CHARS = 128
MAX_FIELDS_PER_RECORD = 64

# Where a conversation item names the user it is about: its list -> (BSUID, phone number).
# Meta may withhold the phone number of a user who adopted a username; it sends the BSUID in
# every messages webhook (but failed statuses of messages sent to a phone number), and a
# user's BSUID changes only when the phone number does: the BSUID is the stable one.
_PERSON_FIELDS: Mapping[str, tuple[str, str]] = {
    "messages": ("from_user_id", "from"),
    "statuses": ("recipient_user_id", "recipient_id"),
    "message_echoes": ("to_user_id", "to"),  # the business app wrote to this user
    "calls": ("from_user_id", "from"),  # user-initiated; business-initiated use `to`
}
_CONVERSATION_TYPES = (EventType.MESSAGE, EventType.STATUS)
# In a `messages` change: the lists holding conversation items, and the type of each.
_MESSAGES_LISTS = ((EventType.MESSAGE, "messages"), (EventType.STATUS, "statuses"))


class EnvelopeError(ValueError):
    """The body is JSON but not a usable webhook envelope (400)."""


class RecordTooLarge(EnvelopeError):
    """An id or field names the record would carry exceed the bounds above (400): Kafka
    would refuse the record, and a retry could never fix that."""


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
            if len(name) > MAX_FIELD_NAME_CHARS:
                raise RecordTooLarge(
                    f"a field name is longer than {MAX_FIELD_NAME_CHARS} characters"
                )
            if len(self.fields) == MAX_FIELDS_PER_RECORD:
                raise RecordTooLarge(
                    f"more than {MAX_FIELDS_PER_RECORD} field names for one record"
                )
            self.fields.append(name)


class Classifier:
    def __init__(self, overrides: Mapping[str, EventType] | None = None) -> None:
        self._field_types = {**DEFAULT_FIELD_TYPES, **(overrides or {})}

    def classify(self, envelope: Any) -> list[EventGroup]:
        """Group the body's changes by event type, in order of first appearance.

        Raises `EnvelopeError` (or its `RecordTooLarge`) or `NotWhatsApp`; never returns an
        empty list, because a body with no recognisable change is still kept, on unrouted.
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
            _new_group(groups, EventType.UNROUTED, first_waba, first_waba)
        return list(groups.values())

    def _classify_change(
        self, change: dict[str, Any], waba_id: str, groups: dict[EventType, EventGroup]
    ) -> None:
        name = change.get("field")
        name = name if isinstance(name, str) else ""
        value = change.get("value")
        if name == MESSAGES_FIELD and isinstance(value, dict):
            _classify_messages(value, waba_id, groups)
            return
        event_type = self._field_types.get(name, EventType.UNROUTED)
        group = groups.get(event_type)
        if group is None:
            # A field routed to message or status by `routing.fields` is keyed like them.
            key = waba_id
            if event_type in _CONVERSATION_TYPES and isinstance(value, dict):
                key = _conversation_key(value, _person_in(value)) or waba_id
            group = _new_group(groups, event_type, key, waba_id)
        group.add_field(name)


def _classify_messages(
    value: dict[str, Any], waba_id: str, groups: dict[EventType, EventGroup]
) -> None:
    # One `messages` change may carry customer messages and statuses at once, each kind
    # keyed by the person of its first item. `errors[]` next to them is about them and stays
    # in their records; a change holding only `errors[]` is an account-level error.
    found = False
    for event_type, items_name in _MESSAGES_LISTS:
        items = value.get(items_name)
        if isinstance(items, list) and items:
            found = True
            group = groups.get(event_type)
            if group is None:
                person = _person(value, items_name, items[0])
                key = _conversation_key(value, person) or waba_id
                group = _new_group(groups, event_type, key, waba_id)
            group.add_field(MESSAGES_FIELD)
    if found:
        return
    errors = value.get("errors")
    fallback = EventType.ACCOUNT if isinstance(errors, list) and errors else EventType.UNROUTED
    group = groups.get(fallback) or _new_group(groups, fallback, waba_id, waba_id)
    group.add_field(MESSAGES_FIELD)


def _new_group(
    groups: dict[EventType, EventGroup], event_type: EventType, key: str, waba_id: str
) -> EventGroup:
    # The first change of a type decides its record's key and source, per the contract.
    if len(waba_id) > MAX_ID_CHARS:
        raise RecordTooLarge(f"an id is longer than {MAX_ID_CHARS} characters")
    group = groups[event_type] = EventGroup(event_type, key, waba_id)
    return group


def _conversation_key(value: dict[str, Any], person: str) -> str:
    """`<phone_number_id>:<person>`, or "" when the value names nobody."""
    if not person:
        return ""
    metadata = value.get("metadata")
    phone_number_id = _text(metadata.get("phone_number_id")) if isinstance(metadata, dict) else ""
    if len(person) > MAX_ID_CHARS or len(phone_number_id) > MAX_ID_CHARS:
        raise RecordTooLarge(f"an id is longer than {MAX_ID_CHARS} characters")
    return f"{phone_number_id}:{person}"


def _person(value: dict[str, Any], items_name: str, item: Any) -> str:
    """Who a conversation item is about, by the contract's key rule: the group of a group
    conversation; else the user's BSUID (the new one for a system message announcing a
    change); else the phone number. Runs once per record, on the first item."""
    if not isinstance(item, dict):
        item = {}
    bsuid_name, phone_name = _PERSON_FIELDS[items_name]
    if items_name == "messages":
        if "group_id" in item:
            group_id = _text(item["group_id"])
            if group_id:
                return group_id
        if "system" in item:
            new_id = _text(_get(item["system"], "user_id"))
            if new_id:
                return new_id
    elif items_name == "statuses":
        if item.get("recipient_type") == "group":
            return _text(item.get("recipient_id"))
    elif items_name == "calls" and item.get("direction") == "BUSINESS_INITIATED":
        bsuid_name, phone_name = _PERSON_FIELDS["message_echoes"]
    bsuid = item.get(bsuid_name)
    if isinstance(bsuid, str) and bsuid:  # never a number: it has a dot
        return bsuid
    phone = _text(item.get(phone_name))
    contacts = value.get("contacts")
    if contacts is None:
        return phone
    contact = _contact(contacts, phone)
    if contact is None:
        return phone
    return _text(contact.get("user_id")) or phone or _text(contact.get("wa_id"))


def _person_in(value: dict[str, Any]) -> str:
    """Who a change routed to message or status by `routing.fields` is about: the first item
    of the first list Meta names people in, else its contacts."""
    for items_name in _PERSON_FIELDS:
        items = value.get(items_name)
        if isinstance(items, list) and items:
            return _person(value, items_name, items[0])
    contact = _contact(value.get("contacts"), "")
    if contact is None:
        return ""
    return _text(contact.get("user_id")) or _text(contact.get("wa_id"))


def _contact(contacts: Any, phone: str) -> dict[str, Any] | None:
    """The `contacts[]` entry of the user a change is about: Meta sends one, first. It is
    theirs when it has the item's phone number, or when the item names no phone number."""
    if not isinstance(contacts, list) or not contacts:
        return None
    contact = contacts[0]
    if isinstance(contact, dict) and (not phone or _text(contact.get("wa_id")) == phone):
        return contact
    return None


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else None


def _text(value: Any) -> str:
    # Ids are strings in Meta's payloads; tolerate numbers, ignore anything else.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""

from typing import Any

import pytest

from relay.classify import Classifier, EnvelopeError, NotWhatsApp
from relay.config import EventType
from tests import samples


def classify(data: Any, **overrides: EventType) -> list[tuple[EventType, str, str, list[str]]]:
    groups = Classifier(overrides).classify(data)
    return [(g.event_type, g.key, g.waba_id, g.fields) for g in groups]


W, P = samples.WABA_ID, samples.PHONE_NUMBER_ID


def test_customer_message_is_keyed_by_phone_number_and_sender() -> None:
    got = classify(samples.envelope(samples.message_change(sender="491701")))
    assert got == [(EventType.MESSAGE, f"{P}:491701", W, ["messages"])]


def test_status_is_keyed_by_phone_number_and_recipient() -> None:
    got = classify(samples.envelope(samples.status_change(recipient="491702")))
    assert got == [(EventType.STATUS, f"{P}:491702", W, ["messages"])]


def test_one_messages_change_with_messages_and_statuses_gives_two_groups() -> None:
    change = samples.message_change(sender="1")
    change["value"]["statuses"] = samples.status_change(recipient="2")["value"]["statuses"]
    got = classify(samples.envelope(change))
    assert [(t, k) for t, k, _, _ in got] == [
        (EventType.MESSAGE, f"{P}:1"),
        (EventType.STATUS, f"{P}:2"),
    ]


def test_mixed_batch_gives_one_group_per_type_keyed_by_its_first_event() -> None:
    data = samples.envelope(
        samples.status_change(recipient="first"),
        samples.template_change(),
        samples.status_change(recipient="second"),
        samples.account_change(),
        samples.echo_change(),
        {"field": "brand_new_field", "value": {}},
    )
    data["entry"].append({"id": "other-waba", "changes": [samples.message_change(sender="s")]})
    got = classify(data)
    assert got == [
        (EventType.STATUS, f"{P}:first", W, ["messages"]),
        (EventType.TEMPLATE, W, W, ["message_template_status_update"]),
        (EventType.ACCOUNT, W, W, ["account_update"]),
        (EventType.UNROUTED, W, W, ["message_echoes", "brand_new_field"]),
        (EventType.MESSAGE, f"{P}:s", "other-waba", ["messages"]),
    ]


@pytest.mark.parametrize(
    "name",
    [
        "message_template_status_update",
        "message_template_quality_update",
        "message_template_components_update",
        "template_category_update",
    ],
)
def test_template_fields(name: str) -> None:
    assert classify(samples.envelope({"field": name, "value": {}}))[0][0] is EventType.TEMPLATE


@pytest.mark.parametrize(
    "name",
    [
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
    ],
)
def test_account_fields(name: str) -> None:
    assert classify(samples.envelope({"field": name, "value": {}}))[0][0] is EventType.ACCOUNT


def test_messages_change_with_only_errors_is_account() -> None:
    assert classify(samples.envelope(samples.errors_change()))[0][0] is EventType.ACCOUNT


@pytest.mark.parametrize(
    "change",
    [
        {"field": "history", "value": {}},
        {"field": "calls", "value": {}},
        {"field": "group_lifecycle_update", "value": {}},
        {"field": "messages", "value": {"messaging_product": "whatsapp"}},
        {"field": "messages", "value": "not an object"},
        {"field": 42},
        {},
    ],
)
def test_everything_else_is_unrouted_never_rejected(change: dict[str, Any]) -> None:
    assert classify(samples.envelope(change))[0][0] is EventType.UNROUTED


def test_routing_overrides_apply() -> None:
    got = classify(samples.envelope(samples.echo_change()), message_echoes=EventType.MESSAGE)
    assert got == [(EventType.MESSAGE, W, W, ["message_echoes"])]


def test_body_without_changes_still_goes_to_unrouted() -> None:
    assert classify({"object": "whatsapp_business_account", "entry": []}) == [
        (EventType.UNROUTED, "", "", [])
    ]
    assert classify({"object": "whatsapp_business_account", "entry": [{"id": "9"}]}) == [
        (EventType.UNROUTED, "9", "9", [])
    ]


def test_numeric_ids_are_tolerated() -> None:
    data = samples.envelope(samples.template_change())
    data["entry"][0]["id"] = 12345
    assert classify(data)[0][1] == "12345"


@pytest.mark.parametrize(
    "data",
    [
        [1, 2],
        "text",
        None,
        {"object": "whatsapp_business_account"},
        {"object": "whatsapp_business_account", "entry": {}},
        {"object": "whatsapp_business_account", "entry": ["x"]},
        {"object": "whatsapp_business_account", "entry": [{"changes": {}}]},
        {"object": "whatsapp_business_account", "entry": [{"changes": [1]}]},
    ],
)
def test_malformed_envelopes_are_envelope_errors(data: Any) -> None:
    with pytest.raises(EnvelopeError):
        Classifier().classify(data)


@pytest.mark.parametrize("obj", ["page", "instagram", None, 1])
def test_other_objects_are_not_whatsapp(obj: Any) -> None:
    with pytest.raises(NotWhatsApp):
        Classifier().classify({"object": obj, "entry": []})

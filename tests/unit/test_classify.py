import copy
from typing import Any

import pytest

from devsupport import samples
from relay.classify import (
    MAX_FIELD_NAME_CHARS,
    MAX_FIELDS_PER_RECORD,
    MAX_ID_CHARS,
    Classifier,
    EnvelopeError,
    NotWhatsApp,
    RecordTooLarge,
)
from relay.config import EventType


def classify(data: Any, **overrides: EventType) -> list[tuple[EventType, str, str, list[str]]]:
    groups = Classifier(overrides).classify(data)
    return [(g.event_type, g.key, g.waba_id, g.fields) for g in groups]


W, P, B = samples.WABA_ID, samples.PHONE_NUMBER_ID, samples.BSUID


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
        (EventType.UNROUTED, W, W, ["smb_message_echoes", "brand_new_field"]),
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
        samples.call_status_change(),
        samples.echo_change(to_user_id=B),
        {"field": "group_lifecycle_update", "value": {}},
        {"field": "messages", "value": {"messaging_product": "whatsapp"}},
        {"field": "messages", "value": "not an object"},
        {"field": 42},
        {},
    ],
)
def test_everything_else_is_unrouted_never_rejected(change: dict[str, Any]) -> None:
    assert classify(samples.envelope(change))[0][0] is EventType.UNROUTED


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


# -- the key rule: one user, one key, whatever Meta withholds ------------------------------


def test_a_user_with_a_bsuid_is_keyed_by_it_whether_or_not_the_phone_number_is_there() -> None:
    # Meta adds the BSUID to every messages webhook and may withhold the phone number of a
    # user who adopted a username, at any point of a conversation.
    with_phone = samples.message_change(sender="16315551181", user_id=B)
    username_only = samples.message_change(sender=None, user_id=B, username="@kerry")
    assert classify(samples.envelope(with_phone))[0][1] == f"{P}:{B}"
    assert classify(samples.envelope(username_only))[0][1] == f"{P}:{B}"


def test_statuses_follow_the_same_rule_as_the_messages_of_that_user() -> None:
    sent_to_phone = samples.status_change(recipient="16315551181", status="sent", user_id=B)
    sent_to_bsuid = samples.status_change(recipient=None, status="read", user_id=B)
    incoming = samples.message_change(sender=None, user_id=B)
    keys = {classify(samples.envelope(c))[0][1] for c in (sent_to_phone, sent_to_bsuid, incoming)}
    assert keys == {f"{P}:{B}"}


def test_without_any_bsuid_the_phone_number_is_the_key_as_before() -> None:
    # Bodies from before April 2026, and failed statuses of messages sent to a phone number
    # (Meta omits both `contacts` and `recipient_user_id` there).
    failed = samples.status_change(recipient="16505551234", status="failed")
    assert classify(samples.envelope(failed))[0][1] == f"{P}:16505551234"
    assert (
        classify(samples.envelope(samples.message_change(sender="491701")))[0][1] == f"{P}:491701"
    )


def test_the_bsuid_of_the_contact_counts_when_the_item_lacks_it() -> None:
    change = samples.message_change(sender="16315551181", user_id=B)
    del change["value"]["messages"][0]["from_user_id"]  # contacts[].user_id still names them
    assert classify(samples.envelope(change))[0][1] == f"{P}:{B}"
    del change["value"]["messages"][0]["from"]  # neither id on the item: the one contact
    assert classify(samples.envelope(change))[0][1] == f"{P}:{B}"


def test_a_contact_of_another_phone_number_is_not_taken_for_the_user() -> None:
    change = samples.status_change(recipient="16505551234")
    change["value"]["contacts"] = [{"wa_id": "4400000000", "user_id": "GB.999"}]
    assert classify(samples.envelope(change))[0][1] == f"{P}:16505551234"


def test_parent_bsuids_do_not_change_the_key() -> None:
    # Parent BSUIDs appear only once Meta enables them for linked portfolios: keying by them
    # would move every conversation again on that day.
    change = samples.message_change(sender=None, user_id=B)
    change["value"]["messages"][0]["from_parent_user_id"] = samples.PARENT_BSUID
    change["value"]["contacts"][0]["parent_user_id"] = samples.PARENT_BSUID
    assert classify(samples.envelope(change))[0][1] == f"{P}:{B}"


def test_an_identity_change_is_keyed_by_the_new_bsuid() -> None:
    # On the new id's partition the notice precedes everything the user sends afterwards.
    new = "US.40187760351962118042"
    only_bsuid = samples.system_change(previous_user_id=B, user_id=new)
    new_number = samples.system_change(
        previous_user_id=B, user_id=new, sender="16315551181", new_phone="16315559999"
    )
    for change in (only_bsuid, new_number):
        assert classify(samples.envelope(change)) == [
            (EventType.MESSAGE, f"{P}:{new}", W, ["messages"])
        ]


def test_a_system_message_without_bsuids_keeps_the_old_phone_number_key() -> None:
    change = samples.system_change(sender="16315551181", new_phone="16315559999")
    del change["value"]["messages"][0]["system"]["user_id"]
    assert classify(samples.envelope(change))[0][1] == f"{P}:16315551181"


def test_group_conversations_are_keyed_by_the_group() -> None:
    message = samples.message_change(sender="16315551181", user_id=B)
    message["value"]["messages"][0]["group_id"] = "Y2FsbC1ncm91cC0x"
    status = samples.status_change(recipient="Y2FsbC1ncm91cC0x", user_id=None)
    item = status["value"]["statuses"][0]
    item.update(recipient_type="group", recipient_participant_user_id=B)
    for change in (message, status):
        assert classify(samples.envelope(change))[0][1] == f"{P}:Y2FsbC1ncm91cC0x"


def test_the_waba_id_only_when_the_body_names_nobody() -> None:
    change = samples.status_change(recipient=None)
    assert classify(samples.envelope(change))[0][1] == W


@pytest.mark.parametrize(
    ("change", "target", "person"),
    [
        (samples.echo_change(to="16505551234", to_user_id=B), EventType.MESSAGE, B),
        (samples.echo_change(to="16505551234"), EventType.MESSAGE, "16505551234"),
        (samples.call_status_change(), EventType.STATUS, B),
    ],
)
def test_fields_routed_to_message_or_status_are_keyed_by_the_person(
    change: dict[str, Any], target: EventType, person: str
) -> None:
    got = classify(samples.envelope(change), **{change["field"]: target})
    assert got == [(target, f"{P}:{person}", W, [change["field"]])]


def test_calls_routed_by_configuration_are_keyed_by_the_user_in_either_direction() -> None:
    def call(direction: str, **ids: str) -> dict[str, Any]:
        item = {"id": "wacid.1", "event": "connect", "direction": direction, **ids}
        return {"field": "calls", "value": {"metadata": samples.metadata(), "calls": [item]}}

    user_called = call("USER_INITIATED", **{"from": "16315551181", "from_user_id": B})
    business_called = call("BUSINESS_INITIATED", **{"from": "15550783881", "to_user_id": B})
    for change in (user_called, business_called):
        assert classify(samples.envelope(change), calls=EventType.MESSAGE)[0][1] == f"{P}:{B}"


def test_fields_routed_elsewhere_keep_the_waba_key() -> None:
    change = samples.echo_change(to_user_id=B)
    assert classify(samples.envelope(change), smb_message_echoes=EventType.ACCOUNT) == [
        (EventType.ACCOUNT, W, W, ["smb_message_echoes"])
    ]


# -- shapes the contract decides --------------------------------------------------------------


def test_call_statuses_and_errors_stay_with_their_call_on_unrouted() -> None:
    errors = {"field": "calls", "value": {"errors": [{"code": 138006, "title": "x"}]}}
    got = classify(samples.envelope(samples.call_status_change(), errors))
    assert got == [(EventType.UNROUTED, W, W, ["calls"])]


def test_errors_next_to_messages_stay_in_the_message_record() -> None:
    change = samples.message_change(sender="1")
    change["value"]["errors"] = samples.errors_change()["value"]["errors"]
    assert classify(samples.envelope(change)) == [(EventType.MESSAGE, f"{P}:1", W, ["messages"])]


# -- bounds: what a record copies from the body fits the producer's room for it ------------


def test_ids_at_the_bound_are_accepted_and_one_more_character_is_refused() -> None:
    at_bound = "9" * MAX_ID_CHARS
    change = samples.message_change(sender=None, user_id=at_bound)
    change["value"]["metadata"]["phone_number_id"] = at_bound
    data = samples.envelope(change, waba_id=at_bound)
    assert classify(data)[0][1:3] == (f"{at_bound}:{at_bound}", at_bound)
    for place in ("waba", "phone_number_id", "user"):
        over = samples.envelope(copy.deepcopy(change), waba_id=at_bound)
        item = over["entry"][0]["changes"][0]["value"]
        if place == "waba":
            over["entry"][0]["id"] = at_bound + "9"
        elif place == "phone_number_id":
            item["metadata"] = {"phone_number_id": at_bound + "9"}
        else:
            item["messages"] = [{"from_user_id": at_bound + "9"}]
        with pytest.raises(RecordTooLarge, match="longer than"):
            Classifier().classify(over)


def test_long_ids_that_no_record_carries_are_not_refused() -> None:
    # Only the first item of a type decides its key.
    data = samples.envelope(samples.status_change(recipient="1"), samples.status_change("9" * 5000))
    assert classify(data)[0][1] == f"{P}:1"


def test_field_names_are_bounded_in_length_and_number_per_record() -> None:
    names = [f"f{i}".ljust(MAX_FIELD_NAME_CHARS, "x") for i in range(MAX_FIELDS_PER_RECORD)]
    data = samples.envelope(*({"field": n, "value": {}} for n in names * 2))
    assert classify(data)[0][3] == names  # each name once, up to the bound
    data["entry"][0]["changes"].append({"field": "one_more", "value": {}})
    with pytest.raises(RecordTooLarge, match=f"more than {MAX_FIELDS_PER_RECORD}"):
        Classifier().classify(data)
    too_long = samples.envelope({"field": "x" * (MAX_FIELD_NAME_CHARS + 1), "value": {}})
    with pytest.raises(RecordTooLarge, match="field name is longer"):
        Classifier().classify(too_long)


def test_record_too_large_is_an_envelope_error_so_it_answers_400() -> None:
    assert issubclass(RecordTooLarge, EnvelopeError)

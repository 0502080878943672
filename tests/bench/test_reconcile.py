"""The benchmark's verdict, without a broker: reconcile() is what fails a run that lost a record,
so it must notice every way the records read back can disagree with the answers. (The smoke
test only ever sees a run that lost nothing.)
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.payloads import Payload
from bench.reconcile import reconcile

MESSAGE = Payload(body=b'{"m":1}', types=("message",), fields=("messages",))
BOTH = Payload(body=b'{"m":2}', types=("message", "status"), fields=("messages",))


def consumed(found: dict[tuple[int, str], int], foreign: int = 0) -> dict[str, Any]:
    total = sum(found.values()) + foreign
    return {
        "found": Counter(found),
        "foreign": {"message": foreign} if foreign else {},
        "consumed": total,
        "offsets_total": total,
        "ce_type_mismatch": 0,
        "records_without_ce_headers": 0,
        "seconds": 0.1,
    }


def test_every_200_with_its_records_is_ok() -> None:
    found = {(0, "message"): 2, (1, "message"): 1, (1, "status"): 1}
    result = reconcile([MESSAGE, BOTH], sent=[2, 1], ok=[2, 1], consumed=consumed(found))
    assert result["ok"], result["problems"]
    assert result["expected"]["message"] == 3
    assert result["expected"]["status"] == 1
    assert sum(result["lost"].values()) == 0


def test_a_missing_record_is_lost() -> None:
    # The second body was answered 200 but only its message record is in Kafka.
    found = {(0, "message"): 1, (1, "message"): 1}
    result = reconcile([MESSAGE, BOTH], sent=[1, 1], ok=[1, 1], consumed=consumed(found))
    assert not result["ok"]
    assert result["lost"]["status"] == 1
    assert result["problems"][0].startswith("LOST RECORDS: 1 ")
    assert result["lost_examples"][0]["payload"] == 1


def test_a_retried_request_may_be_written_twice_but_no_more() -> None:
    # Sent twice (one 503, one 200): two records are at-least-once, three are not.
    twice = reconcile([MESSAGE], sent=[2], ok=[1], consumed=consumed({(0, "message"): 2}))
    assert twice["ok"], twice["problems"]
    assert twice["extra"]["message"] == 1
    thrice = reconcile([MESSAGE], sent=[2], ok=[1], consumed=consumed({(0, "message"): 3}))
    assert not thrice["ok"]
    assert thrice["extra_unexplained"]["message"] == 1


def test_a_record_on_the_wrong_topic_is_misrouted() -> None:
    found = {(0, "message"): 1, (0, "status"): 1}
    result = reconcile([MESSAGE], sent=[1], ok=[1], consumed=consumed(found))
    assert not result["ok"]
    assert result["misrouted"] == {"status": 1}


def test_a_record_matching_no_payload_is_foreign() -> None:
    found = {(0, "message"): 1}
    result = reconcile([MESSAGE], sent=[1], ok=[1], consumed=consumed(found, foreign=1))
    assert not result["ok"]
    assert result["foreign"] == 1

"""Reading every record back and holding it against the answers: every 200 must have its
records, on the topics its body classifies to, byte for byte; anything more needs a request
that got no 200 to explain it (at least once allows that, and only that).

The oracle is bench/payloads.py's classification, not the relay's, on purpose: the benchmark
checks the relay rather than agreeing with it.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import topics as run_topics
from bench.payloads import EVENT_TYPES, Payload
from bench.progress import BenchError


async def consume_all(
    bootstrap: str, topics: dict[str, str], index: dict[bytes, int]
) -> dict[str, Any]:
    """Read every topic from the beginning up to its end offsets (taken now, after the relay
    stopped) and count records per (payload index, event type)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        request_timeout_ms=30000,
    )
    await consumer.start()
    try:
        type_of_topic = {name: t for t, name in topics.items()}
        described = await run_topics.partitions(bootstrap, list(topics.values()))
        partitions = [TopicPartition(name, p) for name, parts in described.items() for p in parts]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        begin = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if end[tp] > begin[tp]}
        found: Counter[tuple[int, str]] = Counter()
        per_topic: Counter[str] = Counter()
        foreign: Counter[str] = Counter()
        ce_type_mismatch = 0
        no_ce_headers = 0
        consumed = 0
        started = time.monotonic()
        last_progress = started
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=2000, max_records=20000)
            if not batches:
                if time.monotonic() - last_progress > 60:
                    raise BenchError(
                        "consumer made no progress for 60 s; still waiting on "
                        f"{sorted(map(str, remaining))}"
                    )
                continue
            last_progress = time.monotonic()
            for tp, records in batches.items():
                event_type = type_of_topic[tp.topic]
                for rec in records:
                    if rec.offset >= end[tp]:
                        break
                    consumed += 1
                    per_topic[event_type] += 1
                    idx = index.get(rec.value)
                    if idx is None:
                        foreign[event_type] += 1
                    else:
                        found[(idx, event_type)] += 1
                    headers = dict(rec.headers or ())
                    ce_type = headers.get("ce_type")
                    if ce_type is None:
                        no_ce_headers += 1
                    elif ce_type != f"whatsapp.{event_type}".encode():
                        ce_type_mismatch += 1
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        offsets_total = sum(end[tp] - begin[tp] for tp in partitions)
        return {
            "found": found,
            "per_topic": dict(per_topic),
            "foreign": dict(foreign),
            "consumed": consumed,
            "offsets_total": offsets_total,
            "ce_type_mismatch": ce_type_mismatch,
            "records_without_ce_headers": no_ce_headers,
            "seconds": round(time.monotonic() - started, 2),
        }
    finally:
        await consumer.stop()


def reconcile(
    payloads: list[Payload], sent: list[int], ok: list[int], consumed: dict[str, Any]
) -> dict[str, Any]:
    """Every 200 must have its records; any record beyond that needs a non-200 to explain it."""
    found: Counter[tuple[int, str]] = consumed["found"]
    expected_by_type = dict.fromkeys(EVENT_TYPES, 0)
    found_by_type = dict.fromkeys(EVENT_TYPES, 0)
    lost_by_type = dict.fromkeys(EVENT_TYPES, 0)
    extra_by_type = dict.fromkeys(EVENT_TYPES, 0)
    unexplained_by_type = dict.fromkeys(EVENT_TYPES, 0)
    misrouted: Counter[str] = Counter()
    lost_examples: list[dict[str, Any]] = []
    for idx, p in enumerate(payloads):
        for t in EVENT_TYPES:
            n = found.get((idx, t), 0)
            found_by_type[t] += n
            if t not in p.types:
                if n:
                    misrouted[t] += n
                continue
            expected_by_type[t] += ok[idx]
            if n < ok[idx]:
                lost_by_type[t] += ok[idx] - n
                if len(lost_examples) < 5:
                    lost_examples.append(
                        {
                            "payload": idx,
                            "kind": p.kind,
                            "event_type": t,
                            "ok_answers": ok[idx],
                            "records": n,
                            "sha256": p.sha256,
                        }
                    )
            elif n > ok[idx]:
                extra_by_type[t] += n - ok[idx]
                # A request that got no 200 (503, timeout) may still have been written:
                # at-least-once allows that, but only that.
                if n > sent[idx]:
                    unexplained_by_type[t] += n - sent[idx]
    foreign = sum(consumed["foreign"].values())
    problems = []
    if any(lost_by_type.values()):
        problems.append(
            f"LOST RECORDS: {sum(lost_by_type.values())} records missing for requests "
            f"answered 200 ({ {t: n for t, n in lost_by_type.items() if n} })"
        )
    if any(unexplained_by_type.values()):
        problems.append(
            f"DUPLICATES: {sum(unexplained_by_type.values())} records beyond the number "
            f"of requests sent ({ {t: n for t, n in unexplained_by_type.items() if n} })"
        )
    if misrouted:
        problems.append(
            f"MISROUTED: records on a topic their body does not classify to: {dict(misrouted)}"
        )
    if foreign:
        problems.append(
            f"FOREIGN RECORDS: {foreign} record values match no payload sent "
            f"(re-serialised or corrupted bodies?) {consumed['foreign']}"
        )
    if consumed["consumed"] != consumed["offsets_total"]:
        problems.append(
            f"consumed {consumed['consumed']} records but the offsets span "
            f"{consumed['offsets_total']}"
        )
    return {
        "ok": not problems,
        "problems": problems,
        "expected": expected_by_type,
        "found": found_by_type,
        "lost": lost_by_type,
        "extra": extra_by_type,
        "extra_unexplained": unexplained_by_type,
        "misrouted": dict(misrouted),
        "foreign": foreign,
        "answered_200": sum(ok),
        "sent": sum(sent),
        "records_consumed": consumed["consumed"],
        "consume_seconds": consumed["seconds"],
        "ce_type_mismatch": consumed["ce_type_mismatch"],
        "records_without_ce_headers": consumed["records_without_ce_headers"],
        "lost_examples": lost_examples,
    }

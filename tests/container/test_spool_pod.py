"""The image with the durable spool on, as the chart's StatefulSet pod runs it
(ci/spool-values.yaml): its claim mounted where the chart mounts it, given to the pod's fsGroup as
the kubelet gives it, the root file system read-only, and every request through the spool
(`after_seconds: 0`): the image's user locks the directory, writes and fsyncs the segments, and
the drainer delivers the records to Kafka with `relay-spooled-at`.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devsupport import failover, samples
from devsupport.topics import consume
from relay.config import EventType
from relay.spool.drainer import SPOOLED_AT_HEADER
from relay.spool.lock import LOCK_NAME
from tests.container.conftest import BootPod
from tests.container.pod import Booted

SCENARIO = "spool-values.yaml"
TOKEN = failover.TOKEN
REQUESTS = 5


@pytest.fixture(scope="module")
def spooled(boot_pod: BootPod) -> Iterator[Booted]:
    with boot_pod(
        SCENARIO,
        secret_files={"bearer_tokens": f"{TOKEN}\n", "verify_token": "spool-pod-verify-token"},
        values={"config": {"spool": {"after_seconds": 0}}},
    ) as pod:
        yield pod


def _claim(spooled: Booted) -> Path:
    (claim,) = spooled.pod.claims.values()
    return claim


def _metric(spooled: Booted, name: str) -> float:
    status, body = spooled.admin("/metrics")
    assert status == 200
    (value,) = [float(line.split()[-1]) for line in body.decode().splitlines()
                if line.startswith(name + " ")]  # fmt: skip
    return value


async def test_every_webhook_goes_through_the_spool_into_kafka(spooled: Booted) -> None:
    assert spooled.pod.kind == "StatefulSet"
    bodies = [
        samples.body(samples.envelope(samples.status_change(recipient=f"1777{i:08d}")))
        for i in range(REQUESTS)
    ]
    for body in bodies:
        answer = await spooled.post(body, TOKEN)
        assert answer.status == 200, answer.body
    records = await consume(spooled.bootstrap, spooled.topics[EventType.STATUS], expect=REQUESTS)
    assert sorted(r.value for r in records) == sorted(bodies)
    for record in records:
        assert SPOOLED_AT_HEADER in dict(record.headers)
    # The first because after_seconds is 0, the others behind it while it was not drained.
    spooled_by = {
        reason: _metric(spooled, f'whatsapp_relay_spool_spooled_total{{reason="{reason}"}}')
        for reason in ("always", "queued")
    }
    assert spooled_by["always"] >= 1
    assert sum(spooled_by.values()) == REQUESTS
    # The image's user made the spool's files on the claim, in the pod's fsGroup.
    claim = _claim(spooled)
    lock = claim / LOCK_NAME
    assert lock.exists()
    assert lock.stat().st_uid == spooled.pod.uid
    assert lock.stat().st_gid == spooled.pod.fs_group
    # Written and fsynced there (group commits), drained, and the drained segments deleted.
    assert _metric(spooled, "whatsapp_relay_spool_commit_duration_seconds_count") >= 1
    # (Kafka lets a consumer see records a moment before the producer has their ack.)
    async with asyncio.timeout(10):
        while _metric(spooled, "whatsapp_relay_spool_requests") != 0:
            await asyncio.sleep(0.1)
    assert _metric(spooled, "whatsapp_relay_spool_drained_total") == REQUESTS


def test_only_the_claim_is_written(spooled: Booted) -> None:
    container = spooled.container
    made_for_the_run = {"/app", *container.spec.tmpfs}
    for mount in container.spec.mounts:
        path = Path(mount.target)
        made_for_the_run |= {str(path), *(str(p) for p in path.parents if str(p) != "/")}
    changed = {line.split(maxsplit=1)[1] for line in container.diff()}
    assert changed <= made_for_the_run, sorted(changed - made_for_the_run)
    assert container.exec("find", "/tmp", "-mindepth", "1").stdout == ""  # noqa: S108


async def test_sigterm_exits_0_with_the_spool_drained(spooled: Booted) -> None:
    """Last: it stops the pod."""
    body = samples.body(samples.envelope(samples.message_change(text=f"spool {uuid.uuid4()}")))
    assert (await spooled.post(body, TOKEN)).status == 200
    spooled.container.signal(signal.SIGTERM)
    assert spooled.container.wait(spooled.pod.grace_seconds) == 0, spooled.container.logs()
    (record,) = await consume(spooled.bootstrap, spooled.topics[EventType.MESSAGE], expect=1)
    assert record.value == body
    lines = spooled.log_lines()
    assert not [line for line in lines if str(line["msg"]).startswith("spool not drained")]
    assert not [line for line in lines if line["level"] in ("ERROR", "CRITICAL")]

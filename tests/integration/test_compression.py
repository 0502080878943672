"""Every `kafka.compression_type` the configuration accepts works end to end.

The configuration has always accepted gzip, snappy, lz4 and zstd; aiokafka compresses the last
three only with cramjam installed, and without it the producer refuses to start ("Compression
library for zstd not found"), so the relay crashed at start-up. The container suite found it: the
chart's production scenario sets zstd. The project now depends on aiokafka's codec extras.
"""

from __future__ import annotations

from typing import get_args

import pytest

from devsupport import samples
from devsupport.topics import consume
from relay.config import KafkaConfig
from tests.relays import Relays

# Optional[Literal["gzip", ...]]: the literal's values.
(LITERAL, _none) = get_args(KafkaConfig.model_fields["compression_type"].annotation)
NAMED: list[str] = list(get_args(LITERAL))


def test_the_configuration_offers_these_codecs() -> None:
    assert set(NAMED) == {"gzip", "snappy", "lz4", "zstd"}


@pytest.mark.parametrize("codec", NAMED)
async def test_a_webhook_is_published_with_each_codec(relays: Relays, codec: str) -> None:
    relay = await relays(kafka={"compression_type": codec})
    body = samples.body(samples.envelope(samples.status_change(status=f"read-{codec}")))
    response = await relay.post(body)
    assert response.status == 200
    (record,) = await consume(
        relay.settings.kafka.bootstrap_servers, relay.settings.topics.status, expect=1
    )
    assert record.value == body

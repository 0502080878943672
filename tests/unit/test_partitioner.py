import random

from aiokafka.partitioner import DefaultPartitioner

from relay.publish import CachedPartitioner


def test_cached_partitioner_agrees_with_kafkas_default() -> None:
    rng = random.Random(7)
    keys = [f"{rng.randrange(10**15)}:{rng.randrange(10**12)}".encode() for _ in range(2000)]
    keys += [b"", b"a", b"102290129340398", "ünïcode".encode()]
    cached, default = CachedPartitioner(cache_size=64), DefaultPartitioner()
    for partitions in ([0], [0, 1, 2], list(range(12))):
        for key in keys + keys[:100]:  # the second pass hits the cache
            assert cached(key, partitions, partitions) == default(key, partitions, partitions)


def test_keyless_records_still_spread() -> None:
    cached = CachedPartitioner()
    chosen = {cached(None, [0, 1, 2], [0, 1, 2]) for _ in range(200)}
    assert chosen == {0, 1, 2}

import asyncio
import time

import pytest

from relay.deadlines import Deadlines


async def guarded(deadlines: Deadlines, work: float) -> str:
    entry = deadlines.arm()
    try:
        await asyncio.sleep(work)
    except asyncio.CancelledError:
        if not entry.expired:
            raise
        deadlines.absorb()
        return "timed out"
    finally:
        entry.disarm()
    return "done"


async def test_a_deadline_cancels_work_that_outlives_it_within_the_resolution() -> None:
    deadlines = Deadlines(0.2, resolution=0.02)
    deadlines.start()
    try:
        started = time.monotonic()
        assert await guarded(deadlines, 5) == "timed out"
        assert 0.2 <= time.monotonic() - started < 0.5
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0  # absorbed, as asyncio.timeout leaves it
    finally:
        await deadlines.stop()


async def test_work_that_finishes_in_time_is_left_alone() -> None:
    deadlines = Deadlines(0.1, resolution=0.02)
    deadlines.start()
    try:
        assert await guarded(deadlines, 0.01) == "done"
        await asyncio.sleep(0.2)  # the expired entry is swept without touching the task
        assert await guarded(deadlines, 0.01) == "done"
    finally:
        await deadlines.stop()


async def test_deadlines_expire_in_order_and_only_their_own_tasks() -> None:
    deadlines = Deadlines(0.15, resolution=0.01)
    deadlines.start()
    try:
        slow = [asyncio.create_task(guarded(deadlines, 5)) for _ in range(20)]
        fast = [asyncio.create_task(guarded(deadlines, 0.01)) for _ in range(20)]
        assert await asyncio.gather(*fast) == ["done"] * 20
        assert await asyncio.gather(*slow) == ["timed out"] * 20
    finally:
        await deadlines.stop()


async def test_someone_elses_cancellation_still_propagates() -> None:
    deadlines = Deadlines(10, resolution=0.01)
    deadlines.start()
    try:
        task = asyncio.create_task(guarded(deadlines, 5))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await deadlines.stop()

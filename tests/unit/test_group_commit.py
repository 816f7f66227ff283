from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from headrace.store.group_commit import GroupCommit


async def test_concurrent_items_share_a_batch_and_keep_their_own_errors() -> None:
    batches: list[list[int]] = []

    def write(items: Sequence[int]) -> list[int | BaseException]:
        batches.append(list(items))
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    with ThreadPoolExecutor(1) as executor:
        group = GroupCommit(write, lambda call: executor.submit(call))
        results = await asyncio.gather(*(group.submit(i) for i in range(6)), return_exceptions=True)
        assert await group.submit(8) == 80  # a later item starts a new batch
    assert results[0] == 0 and results[2] == 20 and results[4] == 40
    assert [str(r) for r in results[1::2]] == ["odd 1", "odd 3", "odd 5"]
    assert batches == [[0, 1, 2, 3, 4, 5], [8]]


async def test_a_failed_batch_fails_every_caller() -> None:
    def write(items: Sequence[int]) -> list[int | BaseException]:
        raise RuntimeError("database gone")

    with ThreadPoolExecutor(1) as executor:
        group = GroupCommit(write, lambda call: executor.submit(call))
        results = await asyncio.gather(group.submit(1), group.submit(2), return_exceptions=True)
    assert [str(r) for r in results] == ["database gone", "database gone"]


async def test_batches_are_capped_and_keep_arrival_order() -> None:
    batches: list[list[int]] = []

    def write(items: Sequence[int]) -> list[int | BaseException]:
        batches.append(list(items))
        return list(items)

    with ThreadPoolExecutor(1) as executor:
        group = GroupCommit(write, lambda call: executor.submit(call), max_batch=4)
        results = await asyncio.gather(*(group.submit(i) for i in range(10)))
    assert results == list(range(10))
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]

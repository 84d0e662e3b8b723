"""A transaction runs to its end whatever happens to its caller: started eagerly, with
no task, when it never suspends, and continued in a task of its own when it does."""

from __future__ import annotations

import asyncio

import pytest

from wfe_sql.uncancellable import uncancellable


async def test_work_that_never_suspends_runs_in_the_callers_task() -> None:
    caller = asyncio.current_task()
    seen: list[asyncio.Task[object] | None] = []

    async def work() -> int:
        seen.append(asyncio.current_task())
        return 7

    assert await uncancellable(work()) == 7
    assert seen == [caller]


async def test_work_that_suspends_gets_what_it_awaits() -> None:
    loop = asyncio.get_running_loop()

    async def work() -> list[int]:
        got = []
        for value in range(3):
            future: asyncio.Future[int] = loop.create_future()
            loop.call_soon(future.set_result, value)
            got.append(await future)
            await asyncio.sleep(0)
        return got

    assert await uncancellable(work()) == [0, 1, 2]


@pytest.mark.parametrize("suspends", [False, True])
async def test_an_error_of_the_work_reaches_the_caller(suspends: bool) -> None:
    async def work() -> None:
        if suspends:
            await asyncio.sleep(0)
        raise KeyError("x")

    with pytest.raises(KeyError):
        await uncancellable(work())


async def test_a_cancelled_caller_is_cancelled_once_the_work_has_ended() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    steps: list[str] = []

    async def work() -> None:
        steps.append("begin")
        started.set()
        await release.wait()
        await asyncio.sleep(0)
        steps.append("commit")

    caller = asyncio.create_task(uncancellable(work()))
    await started.wait()
    caller.cancel()
    await asyncio.sleep(0.01)
    assert not caller.done() and steps == ["begin"]
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert steps == ["begin", "commit"]

"""Group commit: concurrent calls of one write share a transaction.

A service that starts two thousand workflows with ``asyncio.gather`` would otherwise pay
two thousand transactions, each with its BEGIN, COMMIT and (SQLite) its turn at the
single writer. Callers queue their items here; one flusher task takes everything queued
(up to ``max_batch``) into one call of ``run_batch``, and while that transaction runs,
new callers queue for the next one. Nothing waits on purpose: a lone call goes at once,
in a batch of one; batches form only when calls arrive faster than transactions end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

BatchRunner = Callable[[list[Item]], Awaitable[list["Result | BaseException"]]]
"""Runs a batch; returns, in order, each item's result or the exception for it."""


class Batcher(Generic[Item, Result]):
    """Runs queued items together, one batch at a time, in the order they came."""

    def __init__(self, run_batch: BatchRunner[Item, Result], max_batch: int = 500) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """Run ``item`` in the next batch and return its result (or raise its error).

        A caller cancelled while its item still waits in the queue takes it out; once
        its batch has started, the item's write happens whatever becomes of the caller.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        entry = (item, future)
        self._queue.append(entry)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(), name="wfe-group-commit")
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):
                self._queue.remove(entry)
            future.add_done_callback(_retrieve)  # nobody awaits it now
            raise

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = (
                self._queue[: self._max_batch],
                self._queue[self._max_batch :],
            )
            try:
                outcomes = await self._run_batch([item for item, _ in batch])
            except BaseException as exc:
                outcomes = [exc] * len(batch)
                if not isinstance(exc, Exception):
                    _settle(batch, outcomes)
                    raise
            _settle(batch, outcomes)


def _retrieve(future: asyncio.Future[Result]) -> None:
    if not future.cancelled():
        future.exception()


def _settle(
    batch: list[tuple[Item, asyncio.Future[Result]]], outcomes: list[Result | BaseException]
) -> None:
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

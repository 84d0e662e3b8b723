"""Running a transaction to its end whatever happens to the task that awaits it.

A cancellation delivered in the middle of a transaction could interrupt a statement
half-way (SQLAlchemy then invalidates the connection, and SQLite may keep holding the
write lock for an unfinalized statement) or leave a pooled connection inside a
transaction. So the transaction runs where the caller's cancellation cannot reach it,
and that cancellation is delivered to the caller once the transaction has ended.

Work that never suspends cannot be interrupted at all: a SQLite transaction, whose
connection is called directly and answers at once (:mod:`wfe_sqlite.engine`), runs
from BEGIN to COMMIT without yielding to the event loop. Such work is therefore
started eagerly, in the caller's task (as Python 3.12's eager tasks start), and only
work that does suspend (a network round trip, a wait for SQLite's write lock)
continues in a task of its own. The common case saves a task, an ``asyncio.wait`` and
two turns of the event loop per transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


async def uncancellable(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to completion even if the caller is cancelled meanwhile; such a
    cancellation is delivered once the work has ended."""
    try:
        suspended_on = work.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    task = asyncio.ensure_future(_continue(_Continuation(work, suspended_on)))
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved: the caller asked for cancellation instead
        raise asyncio.CancelledError
    return task.result()


async def _continue(continuation: _Continuation[T]) -> T:
    return await continuation


class _Continuation(Generic[T]):
    """The rest of a coroutine that was started elsewhere and suspended on
    ``suspended_on`` (what it yielded to the task running it then), for another task
    to run: what it yields goes to that task, what the task sends or throws goes to it
    (as ``yield from`` would, had it been awaited from the start)."""

    def __init__(self, coro: Coroutine[Any, Any, T], suspended_on: Any) -> None:
        self._coro = coro
        self._suspended_on = suspended_on

    def __await__(self) -> Generator[Any, Any, T]:
        coro, suspended_on = self._coro, self._suspended_on
        while True:
            try:
                sent = yield suspended_on
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown in by the task
                try:
                    suspended_on = coro.throw(exc)
                except StopIteration as done:
                    return cast(T, done.value)
            else:
                try:
                    suspended_on = coro.send(sent)
                except StopIteration as done:
                    return cast(T, done.value)

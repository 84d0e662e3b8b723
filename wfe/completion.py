"""Waiting for workflows to finish: one batched read per poll, whatever the number of
waiters.

A service that gathers two thousand ``wait_for_completion`` calls must not send two
thousand reads every poll interval (the database would spend its time answering them
instead of running the workflows). Every waiter of a client registers here; one task
reads, in chunks, the finished records of every id waited for:

* a new waiter's id at once (with its full record: an unknown id fails with
  ``NotFound`` straight away),
* a workflow this process has just finished needs no read: the host hands its
  record over (and one it started and runs itself needs no first read either),
* every other id every ``interval``, growing from ``first_interval`` to
  ``max_interval`` while nothing finishes (another host may finish them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict

from wfe_core.errors import NotFound, ShuttingDown
from wfe_core.models import FINISHED_STATUSES, WorkflowRecord
from wfe_core.ports import PersistenceProvider

log = logging.getLogger("wfe.client")

EXPECTED_LIMIT = 10_000
"""Ids of workflows this process started and runs that are remembered as existing and
unfinished (the oldest forgotten first: forgetting one only costs its waiter a read)."""


class CompletionWatcher:
    """Resolves the waiters of workflows when the store shows them finished."""

    def __init__(
        self,
        persistence: PersistenceProvider,
        *,
        first_interval: float = 0.005,
        max_interval: float = 0.25,
    ) -> None:
        self._persistence = persistence
        self._first_interval = first_interval
        self._max_interval = max_interval
        self._waiters: dict[str, list[asyncio.Future[WorkflowRecord]]] = {}
        self._new: set[str] = set()  # not read yet: existence unknown
        self._expected: OrderedDict[str, None] = OrderedDict()  # see expect()
        self._poller: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._closed = False

    async def wait(self, workflow_id: str, seconds: float) -> WorkflowRecord:
        """The finished record of ``workflow_id``.

        Raises:
            TimeoutError: not finished within ``seconds``.
            NotFound: no such workflow.
            ShuttingDown: the watcher was closed meanwhile.
            ProviderError: reading the store failed (after its retries).
        """
        if self._closed:
            raise ShuttingDown("the client is closed")
        future: asyncio.Future[WorkflowRecord] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(workflow_id, []).append(future)
        if workflow_id not in self._expected:
            self._new.add(workflow_id)
        self._kick()
        try:
            async with asyncio.timeout(max(seconds, 0.0)):
                return await asyncio.shield(future)
        finally:
            self._forget(workflow_id, future)

    def expect(self, workflow_id: str) -> None:
        """A workflow this process created and runs: it exists and is not finished, so
        its waiters need no first read. Its end comes through :meth:`finished` (or
        a sweep, should another host finish it)."""
        self._expected[workflow_id] = None
        if len(self._expected) > EXPECTED_LIMIT:
            self._expected.popitem(last=False)

    def finished(self, record: WorkflowRecord) -> None:
        """A workflow finished in this process: its waiters get the record at once."""
        self._expected.pop(record.id, None)
        if record.id in self._waiters:
            self._settle(record.id, record)

    async def close(self) -> None:
        """Stop polling; waiters still waiting fail with ``ShuttingDown``."""
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        self._fail_all(ShuttingDown("the client was closed while waiting for completion"))

    def _forget(self, workflow_id: str, future: asyncio.Future[WorkflowRecord]) -> None:
        futures = self._waiters.get(workflow_id, [])
        if future in futures:
            futures.remove(future)
        if not futures:
            self._waiters.pop(workflow_id, None)
            self._new.discard(workflow_id)

    def _kick(self) -> None:
        loop = asyncio.get_running_loop()
        if self._poller is None or self._poller.done() or self._poller.get_loop() is not loop:
            # (Again on another loop: a client used from two asyncio.run calls.)
            self._wake = asyncio.Event()
            self._poller = loop.create_task(self._poll(), name="wfe-completion-watcher")
        assert self._wake is not None
        self._wake.set()

    async def _poll(self) -> None:
        assert self._wake is not None
        wake, interval = self._wake, self._first_interval
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + interval
        # Workflows this process runs (expect()) are told of their end by finished():
        # they are read only every max_interval, in case another host finished them.
        next_full_sweep = loop.time() + self._max_interval
        while self._waiters:
            wake.clear()
            new, self._new = self._new, set()
            if new:
                interval = self._first_interval
                next_sweep = min(next_sweep, loop.time() + interval)
            now = loop.time()
            sweep, full = now >= next_sweep, now >= next_full_sweep
            others = (
                [i for i in self._waiters if i not in new and (full or i not in self._expected)]
                if sweep or full
                else []
            )
            try:
                await self._read(new, others)
            except Exception as exc:
                # Every waiter learns of it, as each one's own read would have raised.
                self._fail_all(exc)
                return
            if sweep:
                interval = min(interval * 2, self._max_interval)
                next_sweep = loop.time() + interval
            if full:
                next_full_sweep = loop.time() + self._max_interval
            with contextlib.suppress(TimeoutError):
                wait = min(next_sweep, next_full_sweep) - loop.time()
                async with asyncio.timeout(max(wait, 0.0)):
                    await wake.wait()

    async def _read(self, new: set[str], others: list[str]) -> None:
        """Read the new ids in full, the others' finished records; resolve waiters."""
        if new:
            found = {r.id: r for r in await self._persistence.get_workflows(list(new))}
            for workflow_id in new:
                record = found.get(workflow_id)
                if record is None:
                    self._settle(workflow_id, NotFound(workflow_id))
                elif record.status in FINISHED_STATUSES:
                    self._settle(workflow_id, record)
        if others:
            for record in await self._persistence.get_workflows(others, finished_only=True):
                self._settle(record.id, record)

    def _settle(self, workflow_id: str, outcome: WorkflowRecord | Exception) -> None:
        for future in self._waiters.get(workflow_id, []):
            if future.done():
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _fail_all(self, exc: Exception) -> None:
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)

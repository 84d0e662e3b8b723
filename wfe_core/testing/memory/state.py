"""The in-memory "database" the memory providers share, and its copy helpers.

Every provider method runs its reads, checks and writes without an ``await`` in
between, so on one event loop each operation is atomic, like a SQL transaction.
Records are copied on the way in and on the way out, so callers never hold a
reference into stored state.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from wfe_core.clock import SystemClock
from wfe_core.errors import InvalidData
from wfe_core.models import (
    DefinitionRecord,
    DefinitionSourceRecord,
    Event,
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    WorkflowRecord,
)
from wfe_core.ports.clock import Clock
from wfe_core.testing.clock import FakeClock

_M = TypeVar("_M", bound=BaseModel)


def copy_record(model: _M) -> _M:
    """A deep copy of a record whose fields are plain values."""
    return model.model_copy(deep=True)


def copy_json(model: _M) -> _M:
    """A copy made through JSON, as a SQL store would store and load it.

    Free-form fields (``Any``) come back as JSON values, so tests on memory see the
    same round-trip (tuples become lists) and the same failures as on SQL.

    Raises:
        InvalidData: if a field cannot be serialized to JSON.
    """
    try:
        return type(model).model_validate_json(model.model_dump_json())
    except (PydanticSerializationError, ValidationError, ValueError) as exc:
        raise InvalidData(
            f"{type(model).__name__} cannot be stored as JSON: {exc}", value=model
        ) from exc


def seconds_to_ms(seconds: float) -> int:
    """A duration in seconds as whole milliseconds, truncated like the SQL stores do."""
    return max(int(seconds * 1000), 0)


@dataclass
class LockRow:
    """One named lock. ``token`` survives release so it only ever grows."""

    owner: str | None
    token: int
    expires_at: int | None


class MemoryState:
    """The tables of one in-memory store, shared by the providers built on it.

    Args:
        clock: the store's clock, used for every stored time (create, lease expiry,
            event and completion times). Defaults to :class:`wfe_core.clock.SystemClock`;
            pass a :class:`~wfe_core.testing.FakeClock` to step leases and timers.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        # Insertion order of every dict below is creation order ("oldest first").
        self.workflows: dict[str, WorkflowRecord] = {}
        self.sequence: dict[str, int] = {}
        self.pointers: dict[str, dict[str, ExecutionPointer]] = {}
        self.subscriptions: dict[str, dict[str, EventSubscription]] = {}
        self.errors: dict[str, list[ExecutionError]] = {}
        self.idempotency: dict[str, str] = {}
        self.events: dict[str, Event] = {}
        self.deliveries: set[tuple[str, str]] = set()
        self.definitions: dict[tuple[str, int], DefinitionRecord] = {}
        self.sources: dict[str, DefinitionSourceRecord] = {}  # by digest; never deleted
        self.locks: dict[str, LockRow] = {}
        self._counter = itertools.count()
        self._work = asyncio.Event()
        self._work_loop: asyncio.AbstractEventLoop | None = None
        if isinstance(self.clock, FakeClock):
            self.clock.on_advance(self.wake)

    def now_ms(self) -> int:
        """The store's current time in milliseconds."""
        return self.clock.now_ms()

    def next_sequence(self) -> int:
        """A number that orders rows inserted at the same millisecond."""
        return next(self._counter)

    def wake(self) -> None:
        """Wake every task waiting in :meth:`wait_for_work`."""
        self._work.set()

    async def wait_for_work(self, timeout: float) -> None:
        """Return after a :meth:`wake` (even one made before the call) or ``timeout``."""
        loop = asyncio.get_running_loop()
        if self._work_loop is not loop:
            # An asyncio.Event binds to the loop of its first waiter; a store kept
            # across event loops (one per test) gets a fresh one, keeping a pending wake.
            pending = self._work.is_set()
            self._work = asyncio.Event()
            if pending:
                self._work.set()
            self._work_loop = loop
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout, 0)):
                await self._work.wait()
        # Cleared only on a normal return: a cancelled waiter must not eat a wake-up.
        self._work.clear()

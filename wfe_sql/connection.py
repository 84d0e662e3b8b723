"""What the shared SQL asks of a connection and of an engine, whichever drives them.

The SQL of a transaction is written once, as ``async def work(conn)``, for every
dialect. PostgreSQL runs it on SQLAlchemy's :class:`~sqlalchemy.ext.asyncio.AsyncConnection`
(asyncpg, truly asynchronous). SQLite runs it on a plain synchronous connection called
directly on the event loop's thread (:mod:`wfe_sqlite.engine`): each SQLite call takes
microseconds, so the greenlet switches that the async adaptation makes around each
one would cost more than the call. Both satisfy these protocols, so ``work`` cannot
tell them apart and no shared code tests which one it has.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, Protocol, Self, TypeAlias, TypeVar

from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.sql import Executable

P = ParamSpec("P")
T = TypeVar("T")

AnyResult: TypeAlias = CursorResult[*tuple[Any, ...]]
"""A result with rows of any shape (SQLAlchemy types rows by their columns)."""

Parameters = Mapping[str, Any] | Sequence[Mapping[str, Any]]
"""One statement's bound values, or a list of them (run as ``executemany``)."""


class SqlConnection(Protocol):
    """One pooled connection, checked out for one transaction.

    Every result comes back buffered (its rows already read), as the async adapters
    give them, so a statement is finished when ``execute`` returns.
    """

    async def execute(
        self, statement: Executable, parameters: Parameters | None = None
    ) -> AnyResult:
        """Run a Core statement."""
        ...

    async def exec_driver_sql(
        self, statement: str, parameters: Parameters | None = None
    ) -> AnyResult:
        """Run SQL text as it is (tests, pragmas)."""
        ...

    async def run_sync(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Call ``fn`` with the synchronous connection underneath (Alembic)."""
        ...

    async def execution_options(self, **options: Any) -> Self:
        """Set options on this connection for the rest of its checkout."""
        ...

    def begin(self) -> Awaitable[object]:
        """Start a transaction (the engine's ``begin`` event sends the BEGIN)."""
        ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    def in_transaction(self) -> bool: ...

    async def invalidate(self) -> None:
        """Close the DBAPI connection rather than return it to the pool."""
        ...

    async def close(self) -> None:
        """Hand the connection back to the pool (rolling back what is open)."""
        ...


class SqlEngine(Protocol):
    """A pool of :class:`SqlConnection`."""

    @property
    def sync_engine(self) -> Engine:
        """The synchronous engine underneath: its events, pool and dialect."""
        ...

    def connect(self) -> Awaitable[SqlConnection]:
        """Check a connection out of the pool."""
        ...

    async def dispose(self) -> None:
        """Close every pooled connection."""
        ...

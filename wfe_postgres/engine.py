"""PostgreSQL connections whose statements go straight to asyncpg.

SQLAlchemy's asyncio layer runs each ``execute`` as a synchronous call in a greenlet
that hops back to the event loop for the driver's I/O, then builds a cursor, an
execution context and a result around the rows. For the engine's statements, which
are short and many, that machinery cost five times the driver's own work: about
0.3 ms of CPU a statement against 0.06 ms for asyncpg's prepared statement.

:class:`PostgresConnection` keeps SQLAlchemy for everything but the statement: the
pool, transactions and their isolation, the session settings, Alembic, events. A
Core statement is compiled by SQLAlchemy (once: its compiled form is cached by the
statement's cache key, as SQLAlchemy's own execution does), its parameters are
processed as SQLAlchemy would, and it runs on the pooled connection's asyncpg
connection, inside the transaction SQLAlchemy began there and through the adapter's
prepared-statement cache, so both paths share one transaction and one set of
prepared statements. Driver errors are translated as SQLAlchemy translates them, so
the retry seam classifies them the same way.

A statement takes SQLAlchemy's own path when the shortcut could behave differently:
several parameter sets (``executemany``), engine or connection event listeners (tests
that capture statements), Python-side column defaults, result types that need
processing, or a connection SQLAlchemy no longer holds open.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, cast

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import LRUCache

from wfe_sql.connection import AnyResult, Parameters, SqlConnection

P = ParamSpec("P")
T = TypeVar("T")

COMPILED_CACHE_SIZE = 500
"""Compiled statements kept per engine: the engine has a few dozen distinct ones."""


class _Rows(IteratorResult[Any]):
    """A buffered result with the ``rowcount`` the driver reported, as a cursor's."""

    def __init__(
        self, keys: Sequence[str], rows: list[Any], rowcount: int, returns_rows: bool
    ) -> None:
        super().__init__(SimpleResultMetaData(keys), iter(rows))
        self.rowcount = rowcount
        self.returns_rows = returns_rows


class _Plan:
    """A compiled statement and what running it directly needs."""

    __slots__ = ("compiled", "direct", "keys")

    def __init__(self, compiled: SQLCompiler, dialect: Dialect) -> None:
        self.compiled = compiled
        self.keys = [column[0] for column in compiled._result_columns]
        self.direct = not (
            compiled.insert_prefetch
            or compiled.update_prefetch
            or compiled.schema_translate_map
            or any(
                column[3]._cached_result_processor(dialect, None) is not None
                for column in compiled._result_columns
            )
        )

    def bind(
        self, parameters: Mapping[str, Any] | None, extracted: Any, collected: Any
    ) -> tuple[str, list[Any]]:
        """The SQL and positional arguments for one parameter set, as SQLAlchemy's
        execution context makes them (expanding parameters included)."""
        compiled = self.compiled
        values = compiled.construct_params(
            parameters,
            extracted_parameters=extracted,
            escape_names=False,
            _collected_params=collected,
        )
        processors: Mapping[str, Callable[[Any], Any]] = compiled._bind_processors  # type: ignore[assignment]
        if compiled.literal_execute_params or compiled.post_compile_params:
            expanded = compiled._process_parameters_for_postcompile(values)
            sql, names = expanded.statement, expanded.positiontup or ()
            processors = {**processors, **expanded.processors}
        else:
            sql, names = compiled.string, compiled.positiontup or ()
        if processors:
            args = [
                processors[name](values[name]) if name in processors else values[name]
                for name in names
            ]
        else:
            args = [values[name] for name in names]
        return sql, args


class PostgresConnection:
    """A pooled SQLAlchemy connection whose ``execute`` goes straight to asyncpg
    (see the module's notes); every other call is SQLAlchemy's."""

    __slots__ = ("_conn", "_engine")

    def __init__(self, conn: AsyncConnection, engine: PostgresEngine) -> None:
        self._conn = conn
        self._engine = engine

    async def execute(
        self, statement: Executable, parameters: Parameters | None = None
    ) -> AnyResult:
        sync = self._conn.sync_connection
        if isinstance(parameters, Sequence) and len(parameters) == 1:
            parameters = parameters[0]  # one row: no executemany needed
        if (
            isinstance(parameters, Sequence)
            or not isinstance(statement, ClauseElement)
            or sync is None
            or sync._has_events
            or sync.engine._has_events
            or sync._dbapi_connection is None
        ):
            return await self._conn.execute(statement, parameters)
        plan, extracted, collected = self._engine.plan_of(statement, parameters)
        if not plan.direct:
            return await self._conn.execute(statement, parameters)
        sql, args = plan.bind(parameters, extracted, collected)
        adapter: Any = sync._dbapi_connection.dbapi_connection
        async with adapter._execute_mutex:
            try:
                if adapter._transaction is None:
                    await adapter._start_transaction()
                prepared, _attributes = await adapter._prepare(
                    sql, adapter._invalidate_schema_cache_asof
                )
                rows = await prepared.fetch(*args)
                status = prepared.get_statusmsg()
            except Exception as error:
                raise await self._translated(error, sql, args) from error
        keys = plan.keys or (list(rows[0].keys()) if rows else [])
        returns_rows = bool(plan.keys or rows)
        return cast(AnyResult, _Rows(keys, rows, _rowcount(status, len(rows)), returns_rows))

    async def _translated(self, error: Exception, sql: str, args: list[Any]) -> BaseException:
        """``error`` as SQLAlchemy would have raised it; a connection left in an unknown
        state (it broke, or something other than the database failed) is invalidated,
        so that the pool never hands it out again."""
        sync = self._conn.sync_connection
        dbapi_connection = sync._dbapi_connection if sync is not None else None
        adapter = dbapi_connection.dbapi_connection if dbapi_connection is not None else None
        dbapi = self._engine.dialect.loaded_dbapi
        try:
            if adapter is None:
                raise error
            adapter._handle_exception(error)
        except dbapi.Error as dbapi_error:
            lost = self._engine.dialect.is_disconnect(dbapi_error, adapter, None)
            if lost:
                await self._conn.invalidate()
            return sa_exc.DBAPIError.instance(
                sql,
                args,
                dbapi_error,
                dbapi.Error,
                connection_invalidated=lost,
                dialect=self._engine.dialect,
            )
        except Exception as other:
            await self._conn.invalidate()
            return other
        raise AssertionError("the adapter did not raise")  # pragma: no cover

    async def exec_driver_sql(
        self, statement: str, parameters: Parameters | None = None
    ) -> AnyResult:
        return await self._conn.exec_driver_sql(statement, parameters)

    async def run_sync(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        return await self._conn.run_sync(fn, *args, **kwargs)

    async def execution_options(self, **options: Any) -> Self:
        await self._conn.execution_options(**options)
        return self

    async def begin(self) -> object:
        return await self._conn.begin()

    async def commit(self) -> None:
        await self._conn.commit()

    async def rollback(self) -> None:
        await self._conn.rollback()

    def in_transaction(self) -> bool:
        return self._conn.in_transaction()

    async def invalidate(self) -> None:
        await self._conn.invalidate()

    async def close(self) -> None:
        await self._conn.close()


def _rowcount(status: str | None, rows: int) -> int:
    """The row count of a command tag (``UPDATE 3``, ``INSERT 0 2``); ``rows`` for a
    tag that has none."""
    if status:
        last = status.rpartition(" ")[2]
        if last.isdigit():
            return int(last)
    return rows


class PostgresEngine:
    """SQLAlchemy's asyncpg engine, handing out :class:`PostgresConnection`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.dialect: Dialect = engine.sync_engine.dialect
        self.compiled: LRUCache[Any, Any] = LRUCache(COMPILED_CACHE_SIZE)
        self._plans: dict[int, _Plan] = {}
        # By the statement object itself: the engine builds its statements once, and
        # a hit in the compiled cache costs a hash of the whole cache key (50 µs for
        # the one-statement commit) where this costs a dictionary lookup.
        self._statements: dict[
            tuple[int, tuple[str, ...]], tuple[ClauseElement, _Plan, Any, Any]
        ] = {}

    @property
    def sync_engine(self) -> Engine:
        return self._engine.sync_engine

    @property
    def async_engine(self) -> AsyncEngine:
        return self._engine

    def plan(self, compiled: SQLCompiler) -> _Plan:
        """The plan of a compiled statement (kept while the compiled cache keeps it)."""
        plan = self._plans.get(id(compiled))
        if plan is None or plan.compiled is not compiled:
            if len(self._plans) > 2 * COMPILED_CACHE_SIZE:
                self._plans.clear()
            plan = self._plans[id(compiled)] = _Plan(compiled, self.dialect)
        return plan

    def plan_of(
        self, statement: ClauseElement, parameters: Mapping[str, Any] | None
    ) -> tuple[_Plan, Any, Any]:
        """The plan of ``statement`` with these parameter names, and the parameter
        values its cache key extracted, as ``_compile_w_cache`` gives them."""
        names = tuple(sorted(parameters)) if parameters else ()
        key = (id(statement), names)
        known = self._statements.get(key)
        if known is not None and known[0] is statement:
            return known[1:]
        compiled, extracted, collected, _ = statement._compile_w_cache(
            self.dialect, compiled_cache=self.compiled, column_keys=list(names)
        )
        entry = (statement, self.plan(cast(SQLCompiler, compiled)), extracted, collected)
        if len(self._statements) >= COMPILED_CACHE_SIZE:
            self._statements.clear()  # statements built per call: start again
        self._statements[key] = entry  # holds the statement: its id cannot be reused
        return entry[1:]

    async def connect(self) -> SqlConnection:
        return PostgresConnection(await self._engine.connect(), self)

    async def dispose(self) -> None:
        await self._engine.dispose()

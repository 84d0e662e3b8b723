"""The PostgreSQL connection's direct lane (statements run on asyncpg itself) gives
what SQLAlchemy's own execution gives: the same rows, keys and row counts, the same
exceptions, and a connection the pool never hands out again once it broke."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from wfe_postgres.dialect import PostgresDialect
from wfe_postgres.engine import PostgresConnection, PostgresEngine


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[PostgresEngine]:
    engine = PostgresDialect(pg_url).create_engine()
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def table(engine: PostgresEngine) -> AsyncIterator[sa.Table]:
    table = sa.Table(
        f"direct_{uuid.uuid4().hex[:8]}",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("doc", sa.JSON, nullable=True),
        sa.Column("at", sa.BigInteger, nullable=True),
    )
    async with engine.async_engine.begin() as conn:
        await conn.run_sync(table.create)
    try:
        yield table
    finally:
        async with engine.async_engine.begin() as conn:
            await conn.run_sync(table.drop)


async def run_both(engine: PostgresEngine, statement: Any, params: Any = None) -> Any:
    """``statement`` through the direct lane and through SQLAlchemy, each in a
    transaction rolled back after, as (keys, rows, rowcount) pairs."""
    outcomes = []
    for direct in (True, False):
        conn = await engine.connect()
        assert isinstance(conn, PostgresConnection)
        try:
            await conn.begin()
            result = await (conn.execute if direct else conn._conn.execute)(statement, params)
            keys = list(result.keys()) if result.returns_rows else []
            rows = [tuple(row) for row in result.all()] if result.returns_rows else []
            outcomes.append((keys, rows, result.rowcount))
            await conn.rollback()
        finally:
            await conn.close()
    return outcomes


async def seed(engine: PostgresEngine, table: sa.Table, rows: int) -> None:
    async with engine.async_engine.begin() as conn:
        await conn.execute(
            table.insert(),
            [{"id": i, "name": f"n{i % 3}", "doc": {"i": i}, "at": i * 10} for i in range(rows)],
        )


async def test_reads_writes_and_counts_match_sqlalchemys(
    engine: PostgresEngine, table: sa.Table
) -> None:
    await seed(engine, table, 10)
    statements: list[tuple[Any, Any]] = [
        (sa.select(table.c.id, table.c.name).where(table.c.id.in_([1, 3, 5])), None),
        (sa.select(table.c.id).where(table.c.id.in_([])), None),
        (sa.select(table.c.id, table.c.at).where(table.c.name == sa.bindparam("n")), {"n": "n1"}),
        (sa.update(table).where(table.c.name == "n0").values(at=table.c.at + 1), None),
        (sa.update(table).where(table.c.id > 100).values(at=0), None),
        (sa.delete(table).where(table.c.id < 4).returning(table.c.id), None),
        (sa.insert(table).values(id=50, name="x").returning(table.c.id, table.c.name), None),
        (sa.insert(table), [{"id": 60, "name": "one row, as a list"}]),
        (sa.select(sa.func.count()).select_from(table), None),
    ]
    for statement, params in statements:
        direct, reference = await run_both(engine, statement, params)
        assert direct == reference, statement


async def test_results_that_need_processing_take_sqlalchemys_path(
    engine: PostgresEngine, table: sa.Table
) -> None:
    await seed(engine, table, 3)
    direct, reference = await run_both(engine, sa.select(table.c.doc).order_by(table.c.id))
    assert direct == reference == (["doc"], [({"i": 0},), ({"i": 1},), ({"i": 2},)], 3)
    rows = [{"id": 10 + i, "name": "many"} for i in range(3)]
    conn = await engine.connect()
    try:
        await conn.begin()
        await conn.execute(sa.insert(table), rows)  # executemany: SQLAlchemy's path
        await conn.commit()
    finally:
        await conn.close()
    count = sa.select(sa.func.count()).select_from(table).where(table.c.name == "many")
    assert (await run_both(engine, count))[0][1] == [(3,)]


async def test_a_constraint_violation_raises_integrity_error_and_the_connection_recovers(
    engine: PostgresEngine, table: sa.Table
) -> None:
    await seed(engine, table, 2)
    conn = await engine.connect()
    try:
        await conn.begin()
        with pytest.raises(sa_exc.IntegrityError) as caught:
            await conn.execute(sa.insert(table).values(id=1, name="again"))
        assert getattr(caught.value.orig, "sqlstate", None) == "23505"
        assert "duplicate key" in str(caught.value)
        await conn.rollback()
        await conn.begin()
        result = await conn.execute(sa.select(sa.func.count()).select_from(table))
        assert result.scalar_one() == 2
        await conn.rollback()
    finally:
        await conn.close()


async def test_a_bad_statement_raises_programming_error(engine: PostgresEngine) -> None:
    conn = await engine.connect()
    try:
        await conn.begin()
        with pytest.raises(sa_exc.ProgrammingError, match="no_such_table"):
            await conn.execute(sa.select(sa.table("no_such_table", sa.column("x"))))
        await conn.rollback()
    finally:
        await conn.close()


async def test_a_connection_killed_under_it_is_invalidated_not_reused(
    pg_url: str, engine: PostgresEngine
) -> None:
    conn = await engine.connect()
    try:
        await conn.begin()
        pid = (await conn.execute(sa.select(sa.func.pg_backend_pid()))).scalar_one()
        await conn.rollback()
        admin = await asyncpg.connect(pg_url)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await conn.begin()
        with pytest.raises(sa_exc.DBAPIError) as caught:
            await conn.execute(sa.select(sa.literal(1)))
        assert caught.value.connection_invalidated
    finally:
        await conn.close()
    fresh = await engine.connect()
    try:
        await fresh.begin()
        other = (await fresh.execute(sa.select(sa.func.pg_backend_pid()))).scalar_one()
        assert other != pid
        await fresh.rollback()
    finally:
        await fresh.close()


async def test_statement_listeners_see_every_statement(
    engine: PostgresEngine, table: sa.Table
) -> None:
    seen: list[str] = []

    def capture(*args: Any) -> None:
        seen.append(args[2])

    sa.event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        await run_both(engine, sa.select(table.c.id).where(table.c.id == 1))
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert sum(table.name in sql for sql in seen) == 2


async def test_statements_built_per_call_each_get_their_own_values(
    engine: PostgresEngine, table: sa.Table
) -> None:
    await seed(engine, table, 5)
    conn = await engine.connect()
    try:
        await conn.begin()
        for i in range(1200):  # past the statement cache's size: it starts again
            statement = sa.select(sa.literal(i), table.c.id).where(table.c.id == i % 5)
            assert (await conn.execute(statement)).one() == (i, i % 5)
        await conn.rollback()
    finally:
        await conn.close()

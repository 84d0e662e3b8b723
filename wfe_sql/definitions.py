"""Queries on the definitions hosts record, so that clients can find them, and on the
sources (the text) of definitions built from files."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from wfe_core.models import DefinitionRecord, DefinitionSourceRecord
from wfe_sql import rows
from wfe_sql.connection import SqlConnection
from wfe_sql.dialect import SqlDialect
from wfe_sql.schema import PINNED_WHERE, definition_sources, definitions, workflows


async def upsert_definition(
    conn: SqlConnection, dialect: SqlDialect, record: DefinitionRecord
) -> None:
    """Insert or replace one (definition_id, version); ``registered_at`` 0 means now."""
    changes = {
        "fingerprint": record.fingerprint,
        "data_schema": json.dumps(record.data_schema, sort_keys=True),
        "registered_at": record.registered_at or dialect.now_ms(),
        "source_digest": record.source_digest,
    }
    values = {"definition_id": record.definition_id, "version": record.version, **changes}
    await conn.execute(dialect.upsert(definitions, values, ["definition_id", "version"], changes))


async def select_definition(
    conn: SqlConnection, definition_id: str, version: int | None
) -> DefinitionRecord | None:
    """The definition at this version (the highest one when ``None``); by primary key."""
    stmt = sa.select(definitions).where(definitions.c.definition_id == definition_id)
    if version is not None:
        stmt = stmt.where(definitions.c.version == version)
    row = (
        (await conn.execute(stmt.order_by(definitions.c.version.desc()).limit(1)))
        .mappings()
        .first()
    )
    return None if row is None else rows.definition(row)


async def insert_source(
    conn: SqlConnection, dialect: SqlDialect, source: DefinitionSourceRecord
) -> None:
    """Store a definition source unless its digest is stored (sources never change)."""
    values = rows.source_values(source, dialect.now_ms())
    await conn.execute(dialect.insert_ignore(definition_sources, values))


async def select_source(conn: SqlConnection, digest: str) -> DefinitionSourceRecord | None:
    """The definition source with this digest, or ``None``; by primary key."""
    stmt = sa.select(definition_sources).where(definition_sources.c.digest == digest)
    row = (await conn.execute(stmt)).mappings().first()
    return None if row is None else rows.source(row)


async def source_exists(conn: SqlConnection, digest: str) -> bool:
    """Whether a definition source with this digest is stored; by primary key."""
    stmt = sa.select(sa.literal(1)).where(definition_sources.c.digest == digest)
    return (await conn.execute(stmt)).first() is not None


def select_pinned_statement() -> sa.Select[Any]:
    """Distinct (definition, version, source digest) of unfinished workflows that run
    against a stored source; reads ix_wfe_workflows_pinned alone."""
    columns = (workflows.c.definition_id, workflows.c.version, workflows.c.source_digest)
    return sa.select(*columns).where(PINNED_WHERE).distinct().order_by(*columns)


async def select_pinned(conn: SqlConnection) -> list[tuple[str, int, str]]:
    """Run :func:`select_pinned_statement`."""
    result = await conn.execute(select_pinned_statement())
    return [(row[0], int(row[1]), row[2]) for row in result]

"""Queries on the definitions hosts record, so that clients can find them."""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from wfe_core.models import DefinitionRecord
from wfe_sql import rows
from wfe_sql.dialect import SqlDialect
from wfe_sql.schema import definitions


async def upsert_definition(
    conn: AsyncConnection, dialect: SqlDialect, record: DefinitionRecord
) -> None:
    """Insert or replace one (definition_id, version); ``registered_at`` 0 means now."""
    changes = {
        "fingerprint": record.fingerprint,
        "data_schema": json.dumps(record.data_schema, sort_keys=True),
        "registered_at": record.registered_at or dialect.now_ms(),
    }
    values = {"definition_id": record.definition_id, "version": record.version, **changes}
    await conn.execute(dialect.upsert(definitions, values, ["definition_id", "version"], changes))


async def select_definition(
    conn: AsyncConnection, definition_id: str, version: int | None
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

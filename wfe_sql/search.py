"""A simple search index over the workflows table itself (substring match)."""

from __future__ import annotations

import sqlalchemy as sa

from wfe_core.models import WorkflowRecord
from wfe_core.ports.search import SearchIndex
from wfe_sql.connection import SqlConnection
from wfe_sql.database import Database
from wfe_sql.schema import workflows


async def search_workflows(conn: SqlConnection, text: str, limit: int) -> list[str]:
    """Ids of workflows whose reference, definition id or data contain ``text``
    (case-insensitive), newest first; a full scan, meant for operators' look-ups."""
    matches = sa.or_(
        workflows.c.reference.icontains(text, autoescape=True),
        workflows.c.definition_id.icontains(text, autoescape=True),
        workflows.c.data.icontains(text, autoescape=True),
    )
    stmt = (
        sa.select(workflows.c.id)
        .where(matches)
        .order_by(workflows.c.create_time.desc(), workflows.c.id.desc())
        .limit(limit)
    )
    return list((await conn.execute(stmt)).scalars())


class SqlSearchIndex(SearchIndex):
    """Searches the stored workflows directly: the table is the index."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def index_workflow(self, record: WorkflowRecord) -> None:
        """Nothing to do: every committed workflow is searchable as soon as it is stored."""

    async def search(self, text: str, limit: int = 50) -> list[str]:
        """Ids of workflows whose reference, definition or data contain ``text``."""
        if limit <= 0:
            return []
        return await self._db.read(
            "search workflows", lambda conn: search_workflows(conn, text, limit)
        )

"""``INSERT ... ON CONFLICT`` for dialects whose ``insert()`` supports it (SQLite, PostgreSQL).

Both SQLAlchemy dialects give the same ``on_conflict_do_nothing`` /
``on_conflict_do_update`` API on their own ``insert`` construct; a dialect names its
construct and inherits the two statements.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa


class OnConflictInserts:
    """``insert_ignore`` and ``upsert`` of :class:`~wfe_sql.dialect.SqlDialect`."""

    insert_construct: Callable[[sa.Table], Any]
    """The dialect's ``insert`` (e.g. ``sqlalchemy.dialects.sqlite.insert``)."""

    def insert_ignore(self, table: sa.Table, values: Mapping[str, Any]) -> sa.Insert:
        """``INSERT ... ON CONFLICT DO NOTHING``."""
        insert: sa.Insert = type(self).insert_construct(table).values(dict(values))
        return insert.on_conflict_do_nothing()  # type: ignore[attr-defined,no-any-return]

    def upsert(
        self,
        table: sa.Table,
        values: Mapping[str, Any],
        conflict_columns: Sequence[str],
        update: Mapping[str, Any],
        where: sa.ColumnElement[bool] | None = None,
    ) -> sa.Insert:
        """``INSERT ... ON CONFLICT (cols) DO UPDATE SET ... [WHERE ...]``."""
        insert: sa.Insert = type(self).insert_construct(table).values(dict(values))
        return insert.on_conflict_do_update(  # type: ignore[attr-defined,no-any-return]
            index_elements=list(conflict_columns), set_=update, where=where
        )

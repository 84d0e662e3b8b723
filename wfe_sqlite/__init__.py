"""SQLite backend of wfe: one database file, several processes, WAL mode.

``import wfe_sqlite`` is cheap: SQLAlchemy and the providers load when a
backend is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wfe_core.ports.backend import Backend

__all__ = ["open_backend"]


def open_backend(url: str) -> Backend:
    """Open the SQLite backend for ``url`` (``sqlite+aiosqlite:///path`` or ``sqlite:///path``).

    Nothing touches the file until first use; ``await backend.persistence.migrate()``
    creates or upgrades the schema. ``?synchronous=FULL`` in the URL makes commits
    survive power loss too (the default, NORMAL, survives process crashes).
    ``valkey=redis://host:6379/0`` (and ``valkey_prefix=...``) moves the queue and the
    lock to Valkey/Redis, as for PostgreSQL (:func:`wfe_valkey.with_valkey`).

    Raises:
        ValueError: the URL is not a SQLite file URL, or an option is malformed.
        ProviderError: ``valkey=`` is given but redis-py is not installed.
    """
    from wfe_sql.provider import open_sql_backend
    from wfe_sqlite.dialect import SqliteDialect
    from wfe_valkey.backend import open_with_valkey_option

    return open_with_valkey_option(url, lambda database: open_sql_backend(SqliteDialect(database)))

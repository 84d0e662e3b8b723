"""PostgreSQL backend of wfe: any number of hosts on one database, sharing the work
with row locks (``FOR UPDATE SKIP LOCKED``) and woken by ``LISTEN/NOTIFY``.

``import wfe_postgres`` is cheap: SQLAlchemy, asyncpg and the providers load when a
backend is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wfe_core.ports.backend import Backend

__all__ = ["open_backend"]


def open_backend(url: str) -> Backend:
    """Open the PostgreSQL backend for ``url``.

    ``postgresql://``, ``postgres://`` and ``postgresql+asyncpg://`` URLs are accepted
    (the driver is always asyncpg). Nothing connects until first use;
    ``await backend.persistence.migrate()`` creates or upgrades the schema. Settings
    go in the query string, e.g.
    ``postgresql://app@db/wfe?pool_size=20&idle_in_transaction_session_timeout=5s``:
    ``application_name`` (default ``wfe:<hostname>:<pid>``),
    ``idle_in_transaction_session_timeout`` (``10s``; keep it below the lease),
    ``statement_timeout`` (``30s``), ``lock_timeout`` (unset), ``pool_size`` (10),
    ``max_overflow`` (10), ``pool_timeout`` (30 s), ``pool_recycle`` (1800 s),
    ``pool_pre_ping`` (false: closed connections are dropped at checkout anyway),
    ``connect_timeout`` (10 s) and ``listen`` (true; false leaves other hosts' work
    to the poll). asyncpg's own connection keys (e.g. ``ssl=require``) go
    to asyncpg; any other key is refused.

    ``valkey=redis://host:6379/0`` (and ``valkey_prefix=...``, the key namespace,
    default ``wfe``) moves the queue and the lock to Valkey/Redis
    (:func:`wfe_valkey.with_valkey`); the database stays the source of truth and
    fences every commit.

    Raises:
        ValueError: the URL is not a PostgreSQL URL, or an option is malformed.
        ProviderError: ``valkey=`` is given but redis-py is not installed.
    """
    from wfe_postgres.dialect import PostgresDialect
    from wfe_sql.provider import open_sql_backend
    from wfe_valkey.backend import open_with_valkey_option

    return open_with_valkey_option(
        url, lambda database: open_sql_backend(PostgresDialect(database))
    )

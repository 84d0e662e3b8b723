"""SQL providers of wfe, shared by SQLite and PostgreSQL (SQLAlchemy 2 Core, async).

Database-specific behaviour comes from a :class:`~wfe_sql.dialect.SqlDialect`
(``wfe_sqlite``, ``wfe_postgres``); everything else is written once here.
"""

from wfe_sql.database import Database, RetryPolicy
from wfe_sql.dialect import SqlDialect
from wfe_sql.locks import SqlLock
from wfe_sql.provider import SqlPersistence, open_sql_backend
from wfe_sql.queue import SqlQueue
from wfe_sql.search import SqlSearchIndex

__all__ = [
    "Database",
    "RetryPolicy",
    "SqlDialect",
    "SqlLock",
    "SqlPersistence",
    "SqlQueue",
    "SqlSearchIndex",
    "open_sql_backend",
]

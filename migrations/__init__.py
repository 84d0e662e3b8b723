"""Alembic migrations of the wfe schema: the only source of the schema (SQLite and
PostgreSQL alike).

Run them through :func:`wfe_sql.migrate.upgrade` (or ``SqlPersistence.migrate()``); no
``alembic.ini`` is needed. :data:`SCRIPT_LOCATION` is this package's directory.
"""

from __future__ import annotations

from pathlib import Path

SCRIPT_LOCATION = str(Path(__file__).resolve().parent)

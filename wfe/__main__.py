"""The ``wfe`` command line (also ``python -m wfe``).

This version has ``migrate``; the YAML runner and the workflow commands come with the
YAML support.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from wfe import backends
from wfe_core.errors import WorkflowError

DEFAULT_DB = "sqlite:///wfe.db"


async def _migrate(url: str) -> None:
    backend = backends.open_backend(url)
    try:
        await backend.persistence.migrate()
    finally:
        await backend.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wfe`` command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="wfe", description="durable workflows for Python")
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    migrate.add_argument("--db", default=DEFAULT_DB, help=f"database URL (default {DEFAULT_DB})")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_migrate(args.db))
    except WorkflowError as exc:
        print(f"wfe: {exc}", file=sys.stderr)
        return 2
    print(f"wfe: {args.db} is at the latest schema")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

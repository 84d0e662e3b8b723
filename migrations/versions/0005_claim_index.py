"""The claim index leads with the definition and version a host claims for, so that a
claim reads the due rows of its definitions in due order and stops at its limit, even
where the planner has no statistics (a table filled in bulk with autovacuum off): the
old index (status, next_execution) left the planner free to combine it with another
index and sort every due row of the backlog on each claim.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNABLE = sa.text("status = 'RUNNABLE'")


def _due_index(columns: list[str]) -> None:
    op.create_index(
        "ix_wfe_workflows_due",
        "wfe_workflows",
        columns,
        sqlite_where=RUNNABLE,
        postgresql_where=RUNNABLE,
    )


def upgrade() -> None:
    """Rebuild ``ix_wfe_workflows_due`` on (status, definition_id, version,
    next_execution), still only over RUNNABLE rows."""
    op.drop_index("ix_wfe_workflows_due", table_name="wfe_workflows")
    _due_index(["status", "definition_id", "version", "next_execution"])


def downgrade() -> None:
    """Back to (status, next_execution)."""
    op.drop_index("ix_wfe_workflows_due", table_name="wfe_workflows")
    _due_index(["status", "next_execution"])

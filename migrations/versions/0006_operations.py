"""What operators and telemetry need to see: running hosts, operator actions, the trace a
workflow was started in, and the traceback of a failed step attempt.

* ``wfe_hosts``: each running host records itself (where it runs, what it serves) and
  refreshes a heartbeat, so "why is this stuck?" can tell a live lease holder from a
  dead one, and a definition no live host serves.
* ``wfe_actions``: an append-only record of what operators did to workflows (suspend,
  resume, terminate, retry, publish), with who and when.
* ``wfe_workflows.trace_context``: the W3C trace context the workflow was started in
  (a child workflow: its parent's step), so its spans join that trace.
* ``wfe_errors.detail``: the traceback of the failed attempt.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the two tables, their index, and the two nullable columns."""
    op.create_table(
        "wfe_hosts",
        sa.Column("host_id", sa.Text(), primary_key=True),
        sa.Column("hostname", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_at", sa.BigInteger(), nullable=False),
        sa.Column("stopped_at", sa.BigInteger(), nullable=True),
        sa.Column("definitions", sa.Text(), nullable=False),
    )
    op.create_index("ix_wfe_hosts_heartbeat", "wfe_hosts", ["heartbeat_at"])
    op.create_table(
        "wfe_actions",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("workflow_id", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_wfe_actions_workflow_at", "wfe_actions", ["workflow_id", "at"])
    op.add_column("wfe_workflows", sa.Column("trace_context", sa.Text(), nullable=True))
    op.add_column("wfe_errors", sa.Column("detail", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop what upgrade added."""
    op.drop_column("wfe_errors", "detail")
    op.drop_column("wfe_workflows", "trace_context")
    op.drop_index("ix_wfe_actions_workflow_at", table_name="wfe_actions")
    op.drop_table("wfe_actions")
    op.drop_index("ix_wfe_hosts_heartbeat", table_name="wfe_hosts")
    op.drop_table("wfe_hosts")

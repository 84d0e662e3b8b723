"""Initial wfe schema: workflows, pointers, events, subscriptions, deliveries, errors,
definitions and locks.

Revision ID: 0001
Revises:
Create Date: 2025-11-21

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = "'RUNNABLE', 'SUSPENDED', 'COMPLETE', 'FAILED', 'TERMINATED'"
_RUNNABLE = sa.text("status = 'RUNNABLE'")


def upgrade() -> None:
    """Create every table and index."""
    op.create_table(
        "wfe_workflows",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("definition_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.Column("complete_time", sa.BigInteger(), nullable=True),
        sa.Column("next_execution", sa.BigInteger(), nullable=True),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_token", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_expires_at", sa.BigInteger(), nullable=True),
        sa.Column("recoveries", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint(f"status IN ({_STATUSES})", name="ck_wfe_workflows_status"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_wfe_workflows_due",
        "wfe_workflows",
        ["status", "next_execution"],
        sqlite_where=_RUNNABLE,
        postgresql_where=_RUNNABLE,
    )
    op.create_index(
        "ux_wfe_workflows_idempotency_key", "wfe_workflows", ["idempotency_key"], unique=True
    )
    op.create_index("ix_wfe_workflows_status_created", "wfe_workflows", ["status", "create_time"])
    op.create_index(
        "ix_wfe_workflows_definition_created", "wfe_workflows", ["definition_id", "create_time"]
    )
    op.create_index("ix_wfe_workflows_created", "wfe_workflows", ["create_time"])
    op.create_index("ix_wfe_workflows_reference", "wfe_workflows", ["reference"])
    op.create_index("ix_wfe_workflows_completed", "wfe_workflows", ["complete_time"])

    op.create_table(
        "wfe_pointers",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("workflow_id", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("step_name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ux_wfe_pointers_workflow_position",
        "wfe_pointers",
        ["workflow_id", "position"],
        unique=True,
    )

    op.create_table(
        "wfe_events",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("event_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_wfe_events_name_key_time", "wfe_events", ["name", "key", "event_time"])
    op.create_index("ix_wfe_events_time", "wfe_events", ["event_time"])

    op.create_table(
        "wfe_subscriptions",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("workflow_id", sa.Text(), nullable=False),
        sa.Column("pointer_id", sa.Text(), nullable=False),
        sa.Column("event_name", sa.Text(), nullable=False),
        sa.Column("event_key", sa.Text(), nullable=False),
        sa.Column("as_of", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_wfe_subscriptions_name_key", "wfe_subscriptions", ["event_name", "event_key"]
    )
    op.create_index("ix_wfe_subscriptions_workflow", "wfe_subscriptions", ["workflow_id"])

    op.create_table(
        "wfe_deliveries",
        sa.Column("workflow_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("delivered_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("workflow_id", "event_id"),
    )

    op.create_table(
        "wfe_errors",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("workflow_id", sa.Text(), nullable=False),
        sa.Column("pointer_id", sa.Text(), nullable=False),
        sa.Column("step_name", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("error_time", sa.BigInteger(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_wfe_errors_workflow", "wfe_errors", ["workflow_id"])

    op.create_table(
        "wfe_definitions",
        sa.Column("definition_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("data_schema", sa.Text(), nullable=False),
        sa.Column("registered_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("definition_id", "version"),
    )

    op.create_table(
        "wfe_locks",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("token", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    """Drop every table (and with them their indexes)."""
    for table in (
        "wfe_locks",
        "wfe_definitions",
        "wfe_errors",
        "wfe_deliveries",
        "wfe_subscriptions",
        "wfe_events",
        "wfe_pointers",
        "wfe_workflows",
    ):
        op.drop_table(table)

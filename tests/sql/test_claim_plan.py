"""The claim query uses the partial index on due RUNNABLE workflows (spec §5)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

from wfe_core.models import WorkflowStatus
from wfe_core.ports.backend import Backend
from wfe_sql.schema import workflows

from .conftest import database_of
from .support import DEFINITION, ELIGIBLE

ROWS = 5_000
RUNNABLE_EVERY = 100  # 1 % runnable, as in RELIABILITY R16(d)


def workflow_rows(now: int) -> list[dict[str, Any]]:
    finished = (WorkflowStatus.COMPLETE, WorkflowStatus.FAILED, WorkflowStatus.TERMINATED)
    return [
        {
            "id": f"wf-{i:05d}",
            "definition_id": DEFINITION if i % 3 else "other-flow",
            "version": 1,
            "status": (
                WorkflowStatus.RUNNABLE if i % RUNNABLE_EVERY == 0 else finished[i % 3]
            ).value,
            "data": "{}",
            "create_time": now - i,
            "next_execution": now - i if i % RUNNABLE_EVERY == 0 else None,
            "complete_time": None if i % RUNNABLE_EVERY == 0 else now - i,
            "lease_token": 0,
            "recoveries": 0,
        }
        for i in range(ROWS)
    ]


async def test_the_claim_query_uses_the_due_index(sqlite_backend: Backend) -> None:
    db = database_of(sqlite_backend)
    rows = workflow_rows(db.clock.now_ms())
    await db.write("fill", lambda conn: conn.execute(sa.insert(workflows), rows))
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE WFE_WORKFLOWS"):
            captured.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        claims = await sqlite_backend.queue.claim("host", 10, 30, ELIGIBLE)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    assert len(claims) == 10
    [(statement, parameters)] = captured

    async def explain(conn: AsyncConnection) -> list[Any]:
        result = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return list(result.all())

    plan = await db.read("explain", explain)
    details = [row[-1] for row in plan]
    assert any("ix_wfe_workflows_due" in detail for detail in details), details
    assert not any(detail.startswith("SCAN wfe_workflows") for detail in details), details

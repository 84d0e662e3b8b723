"""The claim query uses the partial index on due RUNNABLE workflows (spec §5), on a
table of 100k workflows of which 1 % are runnable (RELIABILITY R16(d))."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from wfe_core.ports.backend import Backend
from wfe_sql import definitions
from wfe_sql.connection import SqlConnection
from wfe_sql.database import Database

from .conftest import database_of
from .support import DEFINITION, ELIGIBLE

ROWS = 100_000
RUNNABLE_EVERY = 100  # 1 % runnable

# Row i: RUNNABLE and due when i % 100 == 0, else finished (COMPLETE/FAILED/TERMINATED
# by i % 3); a third belong to another definition. Plain SQL, so that both databases
# fill 100k rows in one statement.
FILL = f"""
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS - 1})
INSERT INTO wfe_workflows
    (id, definition_id, version, status, data, create_time, next_execution,
     complete_time, lease_token, recoveries)
SELECT 'wf-' || i,
       CASE WHEN i % 3 = 0 THEN 'other-flow' ELSE '{DEFINITION}' END,
       1,
       CASE WHEN i % {RUNNABLE_EVERY} = 0 THEN 'RUNNABLE'
            WHEN i % 3 = 0 THEN 'COMPLETE' WHEN i % 3 = 1 THEN 'FAILED'
            ELSE 'TERMINATED' END,
       '{{}}',
       CAST(:now AS BIGINT) - i,
       CASE WHEN i % {RUNNABLE_EVERY} = 0 THEN CAST(:now AS BIGINT) - i END,
       CASE WHEN i % {RUNNABLE_EVERY} = 0 THEN NULL ELSE CAST(:now AS BIGINT) - i END,
       0, 0
FROM n
"""


async def sqlite_plan(
    db: Database, statement: str, parameters: Any, *, analyze: bool = True
) -> list[str]:
    async def explain(conn: SqlConnection) -> list[str]:
        if analyze:
            await conn.exec_driver_sql("ANALYZE")
        result = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return [str(row[-1]) for row in result.all()]

    return await db.write("explain", explain)


async def postgres_plan(
    db: Database, statement: str, parameters: Any, *, analyze: bool = True
) -> list[str]:
    async def analyze_table(conn: SqlConnection) -> None:
        await conn.exec_driver_sql("ANALYZE wfe_workflows")

    async def explain(conn: SqlConnection) -> list[str]:
        result = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
        plan = result.scalar_one()
        nodes: list[str] = []

        def walk(node: dict[str, Any]) -> None:
            relation = node.get("Relation Name", "")
            nodes.append(f"{node['Node Type']} {relation} {node.get('Index Name', '')}".strip())
            for child in node.get("Plans", []):
                walk(child)

        walk((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
        return nodes

    if analyze:
        await db.write("analyze", analyze_table)
    return await db.read("explain", explain)


PLANS: dict[str, Callable[..., Awaitable[list[str]]]] = {
    "sqlite": sqlite_plan,
    "postgres": postgres_plan,
}
"""A statement's plan as one line per step, in each database's own words (after
``ANALYZE``, unless ``analyze=False``: as a new database plans, with no statistics)."""


async def test_the_claim_query_uses_the_due_index(
    sql_backend_name: str, sql_backend: Backend
) -> None:
    db = database_of(sql_backend)
    now = db.clock.now_ms()
    await db.write("fill", lambda conn: conn.execute(sa.text(FILL), {"now": now}))
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE WFE_WORKFLOWS"):
            captured.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        claims = await sql_backend.queue.claim("host", 10, 30, ELIGIBLE)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    assert len(claims) == 10
    [(statement, parameters)] = captured

    plan = await PLANS[sql_backend_name](db, statement, parameters)
    assert any("ix_wfe_workflows_due" in step for step in plan), plan
    assert not any(step.startswith("SCAN wfe_workflows") for step in plan), plan
    assert not any(step.startswith("Seq Scan wfe_workflows") for step in plan), plan
    # Read in due order, stopping at the limit: not every due row sorted.
    assert not any("TEMP B-TREE" in step or step.startswith("Sort") for step in plan), plan


async def test_the_pinned_sources_query_reads_the_pinned_index(
    sql_backend_name: str, sql_backend: Backend
) -> None:
    """Workers serving stored sources list them every few seconds: an index-only read
    of the few unfinished sourced workflows, however many others there are."""
    db = database_of(sql_backend)
    now = db.clock.now_ms()
    await db.write("fill", lambda conn: conn.execute(sa.text(FILL), {"now": now}))
    await db.write(
        "pin some",
        lambda conn: conn.execute(
            sa.text("UPDATE wfe_workflows SET source_digest = 'd' || (create_time % 7)")
        ),
    )
    statement = str(
        definitions.select_pinned_statement().compile(
            db.engine.sync_engine, compile_kwargs={"literal_binds": True}
        )
    )

    plan = await PLANS[sql_backend_name](db, statement, ())
    assert any("ix_wfe_workflows_pinned" in step for step in plan), plan
    # SQLite scans the partial index only (covering: no table reads).
    assert not any(s.startswith("SCAN wfe_workflows") and "COVERING" not in s for s in plan), plan
    assert not any(step.startswith("Seq Scan wfe_workflows") for step in plan), plan
    pinned = await sql_backend.persistence.pinned_definitions()
    assert {(d, v) for d, v, _ in pinned} == {(DEFINITION, 1), ("other-flow", 1)}
    assert len(pinned) == 14


async def test_finished_workflows_are_read_by_primary_key(
    sql_backend_name: str, sql_backend: Backend
) -> None:
    """Waiters poll the finished records of the ids they wait for: a primary-key read,
    however many finished workflows there are, even without statistics (a ``status IN``
    the finished statuses made SQLite read every finished row through the status index)."""
    db = database_of(sql_backend)
    now = db.clock.now_ms()
    await db.write("fill", lambda conn: conn.execute(sa.text(FILL), {"now": now}))
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT WFE_WORKFLOWS.ID"):
            captured.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        # wf-0 is RUNNABLE, wf-1 FAILED, wf-2 TERMINATED.
        found = await sql_backend.persistence.get_workflows(
            ["wf-0", "wf-1", "wf-2"], finished_only=True
        )
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    assert sorted(record.id for record in found) == ["wf-1", "wf-2"]
    [(statement, parameters)] = captured

    plan = await PLANS[sql_backend_name](db, statement, parameters, analyze=False)
    assert not any("status" in step for step in plan), plan
    assert not any(step.startswith(("SCAN wfe_workflows", "Seq Scan")) for step in plan), plan

"""Assertions over the step history and the stored pointers shared by the crash tests."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from wfe import WorkflowClient
from wfe_core.models import PointerStatus


def tally(
    history: Iterable[dict[str, Any]], event: str, wf: str | None = None
) -> Tally[tuple[str, str]]:
    """How many ``event`` records each (workflow, step) has."""
    return Tally(
        (r["wf"], r["step"])
        for r in history
        if r["event"] == event and (wf is None or r["wf"] == wf)
    )


async def assert_one_complete_pointer_per_step(
    client: WorkflowClient, workflow_id: str, steps: Iterable[str]
) -> None:
    """I1 as stored: every step has exactly one pointer, and it is COMPLETE."""
    pointers = await client.backend.persistence.get_pointers(workflow_id)
    found = sorted((p.step_name, p.status) for p in pointers)
    expected = sorted((name, PointerStatus.COMPLETE) for name in steps)
    assert found == expected, f"pointers of {workflow_id}: {found}"

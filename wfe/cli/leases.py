"""Take work over from hosts of this machine that died (killed, crashed) at once,
instead of waiting for their leases to expire."""

from __future__ import annotations

from wfe.host import WorkflowHost
from wfe.owners import is_dead_local_owner
from wfe_core.models import Claim, WorkflowQuery, WorkflowRecord, WorkflowStatus

SCAN_LIMIT = 10_000
"""Runnable workflows a starting worker looks at for leases of dead local hosts."""


async def release_if_dead(host: WorkflowHost, record: WorkflowRecord) -> bool:
    """Release ``record``'s lease if its holder was a process of this machine that is
    gone; True if it did. The release is fenced by the holder's token, so a lease that
    changed hands meanwhile is left alone."""
    if record.lease_owner is None or not is_dead_local_owner(record.lease_owner):
        return False
    claim = Claim(record.id, record.lease_owner, record.lease_token, 0, 0)
    await host.backend.queue.release(claim)
    return True


async def release_dead_local_leases(host: WorkflowHost, page: int = 500) -> int:
    """Release every runnable workflow's lease held by a dead host of this machine."""
    released = 0
    for offset in range(0, SCAN_LIMIT, page):
        query = WorkflowQuery(status=WorkflowStatus.RUNNABLE, limit=page, offset=offset)
        records = await host.backend.persistence.list_workflows(query)
        for record in records:
            released += await release_if_dead(host, record)
        if len(records) < page:
            break
    return released

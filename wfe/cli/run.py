"""``wfe run FILE.yaml``: run one workflow to its end on this machine, durably.

The run is identified by the file's content, its config values and the input data: run
the same command again after a crash and it resumes that run (its committed steps do not
run again) instead of starting another. When the process that held the run is gone from
this machine, its lease is released at once rather than waited out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
from typing import Any

from wfe.cli.inputs import UsageError
from wfe.cli.leases import release_if_dead
from wfe.cli.progress import ProgressView
from wfe.cli.render import step_rows, took
from wfe.host import WorkflowHost
from wfe.instance import WorkflowInstance
from wfe_core.definition import WorkflowDefinition
from wfe_core.lifecycle import LifecycleHub
from wfe_core.models import WorkflowStatus

INTERRUPTED = 130


def run_reference(definition: WorkflowDefinition, data: dict[str, Any]) -> str:
    """The reference that marks runs of this file, config and data."""
    source = definition.source.digest if definition.source else definition.fingerprint
    payload = json.dumps([source, data], sort_keys=True, default=str).encode()
    return f"wfe-run:{hashlib.sha256(payload).hexdigest()[:32]}"


async def run_workflow(
    host: WorkflowHost,
    definition: WorkflowDefinition,
    data: dict[str, Any],
    *,
    timeout: float | None,
    view: ProgressView,
    events: LifecycleHub,
) -> int:
    """Start or resume the run, show its progress, print a summary; the exit code.

    ``events`` is the host's lifecycle hub, which feeds ``view``."""
    reference = run_reference(definition, data)
    found = await _unfinished(host, definition, reference)
    if found is None:
        workflow_id = await host.start_workflow(
            definition.id, data, version=definition.version, reference=reference
        )
        view.workflow_id = workflow_id
        print(f"started {definition.id} v{definition.version} as {workflow_id}")
    else:
        workflow_id = view.workflow_id = found.id
        if found.status is WorkflowStatus.SUSPENDED:
            raise UsageError(
                f"run {found.id} of this file and input is suspended: "
                f"`wfe resume {found.id}` lets it go on"
            )
        print(f"resuming run {found.id} (started {found.create_time:%Y-%m-%d %H:%M:%S})")
        await _take_over(host, found.id)
    view.start()
    instance = await _wait(host, workflow_id, timeout)
    if instance is None:
        print(
            f"\ninterrupted: run {workflow_id} stopped after its running steps; "
            "run the same command again to resume it"
        )
        return INTERRUPTED
    # The run's last events were published before its waiter woke, but are delivered
    # by the hub's own task: let the view show them before the summary follows it.
    await events.drain()
    return await _summary(host, instance)


async def _unfinished(
    host: WorkflowHost, definition: WorkflowDefinition, reference: str
) -> WorkflowInstance | None:
    for status in (WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED):
        found = await host.list_workflows(
            status=status, definition_id=definition.id, reference=reference, limit=1
        )
        if found:
            return found[0]
    return None


async def _take_over(host: WorkflowHost, workflow_id: str) -> None:
    """Free the lease of a holder that died on this machine, so we go on at once."""
    record = await host.backend.persistence.get_workflow(workflow_id)
    if await release_if_dead(host, record):
        print(f"  its last host ({record.lease_owner}) is gone: taking over now")
    elif record.lease_owner is not None and record.lease_owner != host.host_id:
        print(f"  held by {record.lease_owner}: waiting for it to finish or let go")


async def _wait(
    host: WorkflowHost, workflow_id: str, timeout: float | None
) -> WorkflowInstance | None:
    """The finished instance, or None when SIGINT/SIGTERM came first."""
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted.set)
    waiting = asyncio.ensure_future(
        host.wait_for_completion(workflow_id, timeout=timeout if timeout else 10.0**9)
    )
    stop = asyncio.ensure_future(interrupted.wait())
    try:
        await asyncio.wait([waiting, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        stop.cancel()
    if not waiting.done():
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        return None
    return waiting.result()


async def _summary(host: WorkflowHost, instance: WorkflowInstance) -> int:
    steps = await host.get_steps(instance.id)
    print()
    print(step_rows(steps))
    elapsed = took(instance.create_time, instance.complete_time)
    if instance.status is WorkflowStatus.COMPLETE:
        print(f"\n{instance.definition_id} completed in {elapsed} (workflow {instance.id})")
        return 0
    failed = [s for s in steps if s.status == "FAILED"]
    reason = instance.error or (f"step {failed[-1].name!r} failed" if failed else "no error")
    print(f"\n{instance.definition_id} {instance.status.value}: {reason} (workflow {instance.id})")
    return 1

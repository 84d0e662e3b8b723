"""The lifecycle hub's drain: every event published before it is delivered when it
returns (``wfe run`` prints its summary only after the live view has shown them)."""

from __future__ import annotations

import asyncio

from wfe_core.events import LifecycleEvent, StepStarted
from wfe_core.lifecycle import LifecycleHub


async def test_drain_returns_once_every_published_event_is_delivered() -> None:
    hub = LifecycleHub()
    seen: list[str] = []

    async def slow(event: LifecycleEvent) -> None:
        await asyncio.sleep(0.01)
        seen.append(event.workflow_id)

    def failing(event: LifecycleEvent) -> None:
        raise RuntimeError("a broken subscriber")

    hub.subscribe(slow)
    hub.subscribe(failing)
    hub.start()
    try:
        for i in range(5):
            hub.publish(StepStarted(workflow_id=f"wf-{i}", definition_id="d", version=1))

        await asyncio.wait_for(hub.drain(), timeout=10)

        assert seen == [f"wf-{i}" for i in range(5)]
        await asyncio.wait_for(hub.drain(), timeout=10)  # nothing queued: at once
    finally:
        await hub.stop()
    await hub.drain()  # stopped: nothing to wait for

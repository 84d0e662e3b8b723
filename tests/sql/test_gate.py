"""The priority gate: a bounded number of holders, urgent ones first, cancellation-safe."""

import asyncio

from wfe_sql.gate import PriorityGate


async def test_urgent_waiters_go_before_ordinary_ones_and_order_is_kept() -> None:
    gate, order = PriorityGate(), []

    async def writer(name: str, urgent: bool) -> None:
        async with gate.hold(urgent=urgent):
            order.append(name)
            await asyncio.sleep(0)

    async with gate.hold():
        tasks = [
            asyncio.create_task(writer(n, n.startswith("u")))
            for n in ("c1", "c2", "u1", "c3", "u2")
        ]
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert order == ["u1", "u2", "c1", "c2", "c3"]
    assert not gate.locked


async def test_cancelled_waiters_never_leak_the_gate() -> None:
    gate = PriorityGate()
    for _ in range(50):
        async with gate.hold():
            waiters = [
                asyncio.create_task(gate.hold(urgent=i % 2 == 0).__aenter__()) for i in range(4)
            ]
            await asyncio.sleep(0)
            for task in waiters[::2]:
                task.cancel()
        for task in waiters:
            try:
                await task
            except asyncio.CancelledError:
                continue
            gate._release()  # the waiter got the gate: give it back as its exit would
        assert not gate.locked


async def test_a_gate_admits_up_to_its_capacity_and_queues_the_rest_in_order() -> None:
    gate, running, order = PriorityGate(3), [], []
    peak = 0
    release = asyncio.Event()

    async def holder(name: str, urgent: bool = False) -> None:
        nonlocal peak
        async with gate.hold(urgent=urgent):
            running.append(name)
            peak = max(peak, len(running))
            order.append(name)
            await release.wait()
            running.remove(name)

    tasks = [asyncio.create_task(holder(f"o{i}")) for i in range(6)]
    await asyncio.sleep(0.01)
    tasks.append(asyncio.create_task(holder("urgent", urgent=True)))
    await asyncio.sleep(0.01)
    assert order == ["o0", "o1", "o2"] and gate.locked
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 3
    assert order == ["o0", "o1", "o2", "urgent", "o3", "o4", "o5"]
    assert gate.held == 0


def test_a_gate_without_room_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="capacity of at least 1"):
        PriorityGate(0)

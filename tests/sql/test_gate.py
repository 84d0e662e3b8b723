"""The per-process writer gate: one holder, urgent writers first, cancellation-safe."""

import asyncio

from wfe_sql.writer_gate import WriterGate


async def test_urgent_waiters_go_before_ordinary_ones_and_order_is_kept() -> None:
    gate, order = WriterGate(), []

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
    gate = WriterGate()
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

"""A durable order pipeline on the embedded SQLite store.

Run it: ``python examples/orders.py`` (or ``make demo``). Kill it with Ctrl-C or
``kill -9`` in the middle and run it again: the same order resumes from its last
committed step, and committed steps do not run again.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import timedelta

from pydantic import BaseModel

from wfe import (
    Backoff,
    ExecutionResult,
    RetryPolicy,
    StepBody,
    StepContext,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowStatus,
)


class Order(BaseModel):
    order_id: str
    amount_cents: int
    reserved: bool = False
    charged: bool = False
    receipt: str = ""
    emails: dict[str, str] = {}


class Reserve(StepBody):
    async def run(self, ctx: StepContext[Order]) -> ExecutionResult:
        print(f"  reserving stock for {ctx.data.order_id}")
        await asyncio.sleep(0.5)  # pretend to call the inventory service
        ctx.data.reserved = True
        return ExecutionResult.next()


class Charge(StepBody):
    async def run(self, ctx: StepContext[Order]) -> ExecutionResult:
        print(f"  charging {ctx.data.amount_cents} cents (attempt {ctx.attempt})")
        await asyncio.sleep(0.5)
        if ctx.attempt == 1:
            raise ConnectionError("payment gateway timed out")  # retried with back-off
        ctx.data.charged = True
        ctx.data.receipt = f"rcpt-{ctx.data.order_id}"
        return ExecutionResult.next()


async def email_customer(ctx: StepContext[Order]) -> None:
    ctx.data.emails["customer"] = f"sent {ctx.data.receipt}"


async def email_warehouse(ctx: StepContext[Order]) -> None:
    ctx.data.emails["warehouse"] = "pick list sent"


order_flow = (
    WorkflowBuilder("order", version=1, data=Order)
    .step("reserve", Reserve)
    .step(
        "charge",
        Charge,
        depends_on=["reserve"],
        retry=RetryPolicy(max_attempts=3, backoff=Backoff.fixed(timedelta(seconds=1))),
    )
    .step("email_customer", email_customer, depends_on=["charge"])
    .step("email_warehouse", email_warehouse, depends_on=["charge"])
    .build()
)


async def main(db: str, order_id: str) -> int:
    async with WorkflowHost.from_url(db, lease=5, poll_interval=0.5, log_events=False) as host:
        host.register(order_flow)
        # The idempotency key makes a rerun after a crash pick up the same instance.
        wid = await host.start_workflow(
            "order",
            Order(order_id=order_id, amount_cents=4200),
            idempotency_key=f"order:{order_id}",
        )
        print(f"order {order_id}: workflow {wid}")
        instance = await host.wait_for_completion(wid, timeout=60)
    print(f"status: {instance.status.value}")
    print(f"data:   {instance.data.model_dump_json()}")
    return 0 if instance.status is WorkflowStatus.COMPLETE else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite:///wfe-demo.db")
    parser.add_argument("--order", default="A-1001")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    raise SystemExit(asyncio.run(main(args.db, args.order)))

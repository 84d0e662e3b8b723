"""The commands that talk to the store only: start, status, list, publish, steering."""

from __future__ import annotations

import argparse
from pathlib import Path

from wfe import backends
from wfe.cli import render
from wfe.cli.inputs import UsageError, event_data, pairs, workflow_data
from wfe.client import WorkflowClient
from wfe_core.models import WorkflowStatus
from wfe_yaml import load_workflow


async def migrate(args: argparse.Namespace) -> int:
    backend = backends.open_backend(args.db)
    try:
        await backend.persistence.migrate()
    finally:
        await backend.close()
    print(f"{args.db} is at the latest schema")
    return 0


async def start(client: WorkflowClient, args: argparse.Namespace) -> int:
    definition_id, version = args.definition, args.version
    if Path(definition_id).suffix in (".yaml", ".yml"):
        # A file stands for the definition it declares; a worker must serve it.
        loaded = load_workflow(definition_id, pairs(args.config, "--config"))
        definition_id, version = loaded.id, version or loaded.version
    workflow_id = await client.start_workflow(
        definition_id,
        workflow_data(args.data, args.input),
        version=version,
        reference=args.reference,
        idempotency_key=args.idempotency_key,
    )
    print(workflow_id)
    return 0


async def status(client: WorkflowClient, args: argparse.Namespace) -> int:
    instance = await client.get_workflow(args.id)
    steps = await client.get_steps(args.id)
    print(render.status(instance, steps))
    return 0


async def list_workflows(client: WorkflowClient, args: argparse.Namespace) -> int:
    try:
        wanted = None if args.status is None else WorkflowStatus(args.status.upper())
    except ValueError:
        choices = ", ".join(s.value.lower() for s in WorkflowStatus)
        raise UsageError(f"--status {args.status!r} is not one of {choices}") from None
    instances = await client.list_workflows(
        status=wanted, definition_id=args.definition, reference=args.reference, limit=args.limit
    )
    print(render.workflows(instances))
    return 0


async def publish(client: WorkflowClient, args: argparse.Namespace) -> int:
    event_id = await client.publish_event(args.name, args.key, event_data(args.data))
    print(event_id)
    return 0


async def steer(client: WorkflowClient, args: argparse.Namespace) -> int:
    action = {
        "suspend": client.suspend_workflow,
        "resume": client.resume_workflow,
        "terminate": client.terminate_workflow,
    }[args.command]
    await action(args.id)
    past = {"suspend": "suspended", "resume": "resumed", "terminate": "terminated"}
    print(f"workflow {args.id} {past[args.command]}")
    return 0

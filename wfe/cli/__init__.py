"""The ``wfe`` command line (also ``python -m wfe``).

User mistakes (a bad file, an unknown id, a malformed option) print one paragraph and
exit with 2; a workflow that does not complete exits with 1; an interrupted run with 130.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from wfe.cli import commands
from wfe.cli.inputs import UsageError, pairs, workflow_data
from wfe.cli.parser import build
from wfe.cli.progress import ProgressView
from wfe.cli.run import run_workflow
from wfe.cli.worker import load_folder, serve
from wfe.client import WorkflowClient
from wfe.host import WorkflowHost
from wfe_core.errors import DefinitionError, InvalidData, WorkflowError
from wfe_core.lifecycle import LifecycleHub
from wfe_yaml import load_workflow

USER_ERROR = 2
FAILED = 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wfe`` command; returns the exit code."""
    args = build().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="wfe: %(levelname)s %(message)s")
    try:
        return asyncio.run(_dispatch(args))
    except (UsageError, DefinitionError, InvalidData) as exc:
        return _fail(exc, USER_ERROR)
    except TimeoutError as exc:
        return _fail(exc, FAILED)
    except WorkflowError as exc:
        return _fail(exc, USER_ERROR)
    except OSError as exc:
        return _fail(f"cannot reach the database {args.db!r}: {exc}", USER_ERROR)
    except KeyboardInterrupt:
        return 130


def _fail(error: object, code: int) -> int:
    print(f"wfe: {error}", file=sys.stderr)
    return code


async def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "migrate":
        return await commands.migrate(args)
    if args.command == "run":
        return await _run(args)
    if args.command == "worker":
        return await _worker(args)
    async with WorkflowClient.from_url(args.db) as client:
        if args.command == "start":
            return await commands.start(client, args)
        if args.command == "status":
            return await commands.status(client, args)
        if args.command == "list":
            return await commands.list_workflows(client, args)
        if args.command == "publish":
            return await commands.publish(client, args)
        return await commands.steer(client, args)


async def _run(args: argparse.Namespace) -> int:
    definition = load_workflow(args.file, pairs(args.config, "--config"))
    data = workflow_data(args.data, args.input)
    view = ProgressView([step.name for step in definition.steps])
    events = LifecycleHub()
    host = WorkflowHost.from_url(
        args.db, lease=args.lease, poll_interval=0.5, log_events=False, lifecycle=events
    )
    host.register(definition)
    host.subscribe(view.on_event)
    async with host:
        return await run_workflow(
            host, definition, data, timeout=args.timeout, view=view, events=events
        )


async def _worker(args: argparse.Namespace) -> int:
    definitions = load_folder(args.workflows, pairs(args.config, "--config"))
    host = WorkflowHost.from_url(
        args.db,
        lease=args.lease,
        max_concurrent_workflows=args.concurrency,
        serve_stored_definitions=True,
    )
    async with host:
        return await serve(host, definitions)

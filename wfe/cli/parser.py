"""The ``wfe`` argument parser: one sub-command per action, ``--db`` on each."""

from __future__ import annotations

import argparse
import os

DEFAULT_DB = "sqlite:///wfe.db"


def _common(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("WFE_DB", DEFAULT_DB)
    parser.add_argument(
        "--db", default=default, help=f"database URL (default $WFE_DB or {DEFAULT_DB})"
    )


def _values(parser: argparse.ArgumentParser, *, data: bool = True) -> None:
    parser.add_argument(
        "--config", action="append", metavar="KEY=VALUE", help="a load-time ${{ config.KEY }}"
    )
    if data:
        parser.add_argument(
            "--input", action="append", metavar="KEY=VALUE", help="a value of the initial data"
        )
        parser.add_argument("--data", metavar="JSON", help="the initial data as a JSON object")


def build() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wfe", description="Durable workflows: run YAML pipelines, steer running ones."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a YAML workflow to its end (resumes after a crash)")
    run.add_argument("file", help="the workflow file")
    _values(run)
    run.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    run.add_argument("--lease", type=float, default=30.0, help="lease seconds (default 30)")

    worker = sub.add_parser("worker", help="serve the YAML workflows of a folder")
    worker.add_argument("--workflows", required=True, metavar="DIR", help="folder of *.yaml")
    _values(worker, data=False)
    worker.add_argument("--concurrency", type=int, default=100, help="workflows run at once")
    worker.add_argument("--lease", type=float, default=30.0, help="lease seconds (default 30)")

    start = sub.add_parser("start", help="start a workflow that a worker serves")
    start.add_argument("definition", help="definition id (or its YAML file)")
    start.add_argument("--version", type=int, help="definition version (default: latest)")
    start.add_argument("--reference", help="your own reference for this run")
    start.add_argument("--idempotency-key", help="start at most once per key")
    _values(start)

    status = sub.add_parser("status", help="a workflow's state, steps, errors and timings")
    status.add_argument("id")

    listing = sub.add_parser("list", help="list workflows, newest first")
    listing.add_argument("--status", help="runnable, suspended, complete, failed, terminated")
    listing.add_argument("--definition", help="only this definition id")
    listing.add_argument("--reference", help="only this reference")
    listing.add_argument("--limit", type=int, default=50)

    publish = sub.add_parser("publish", help="publish an event to waiting workflows")
    publish.add_argument("name")
    publish.add_argument("key")
    publish.add_argument("--data", metavar="JSON", help="the event data (any JSON value)")

    for action, text in (
        ("suspend", "pause a workflow (running steps finish)"),
        ("resume", "let a suspended workflow go on"),
        ("terminate", "cancel a workflow for good"),
    ):
        sub.add_parser(action, help=text).add_argument("id")

    sub.add_parser("migrate", help="create or upgrade the database schema")
    for command in sub.choices.values():
        _common(command)
    return parser

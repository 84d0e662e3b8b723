"""Definitions built from a text source: every instance runs against the stored copy
it started from, whatever the host has registered since, and hosts that serve stored
definitions finish instances whose definition they only find in the store.

The text of the test kind is JSON: ``{"id", "version", "steps": [names]}`` builds a
flow that logs "start", waits for the event ("go", its workflow id), then logs each
named step; a flow in flight across a host swap sits in that wait.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from wfe import DefinitionError, WorkflowBuilder, WorkflowClient, WorkflowStatus
from wfe.sources import register_source_loader, unregister_source_loader
from wfe_core.definition import DefinitionSource, WorkflowDefinition
from wfe_core.models import WorkflowQuery

KIND = "test-kind"
FLOW = "stored-flow"


class Log(BaseModel):
    log: list[str] = []


def logger(label: str):
    async def body(ctx):
        ctx.data.log = [*ctx.data.log, label]

    body.__name__ = f"log_{label}"
    return body


def build(text: str, config: dict[str, Any]) -> WorkflowDefinition:
    """The test kind's loader."""
    spec = json.loads(text)
    builder = (
        WorkflowBuilder(spec["id"], version=spec.get("version", 1), data=Log)
        .start_with(logger("start"), name="start")
        .wait_for("go", lambda ctx: ctx.workflow_id)
    )
    for name in spec["steps"]:
        builder = builder.then(logger(f"{config.get('prefix', '')}{name}"), name=name)
    return builder.build()


def text(*steps: str, definition_id: str = FLOW, version: int = 1) -> str:
    return json.dumps({"id": definition_id, "version": version, "steps": list(steps)})


def sourced(
    source_text: str, kind: str = KIND, built_from: str | None = None, **config: Any
) -> WorkflowDefinition:
    """A definition as a file loader makes it: built (from ``built_from`` when the
    source itself cannot be), with its source attached."""
    base = build(built_from or source_text, config)
    return dataclasses.replace(base, source=DefinitionSource(kind, source_text, config))


@pytest.fixture(autouse=True)
def test_kind() -> Iterator[None]:
    register_source_loader(KIND, build)
    yield
    unregister_source_loader(KIND)


async def wait_waiting(host, workflow_id: str, tries: int = 500) -> None:
    """Until the workflow sits in its event wait (committed)."""
    for _ in range(tries):
        pointers = await host.backend.persistence.get_pointers(workflow_id)
        if any(p.status.value == "WAITING" for p in pointers):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{workflow_id} never reached its wait")


async def start_in_flight(make_host, definition: WorkflowDefinition) -> str:
    """Start an instance on a host that registered ``definition``, leave it waiting
    for its event, and stop that host."""
    host = make_host()
    host.register(definition)
    async with host:
        workflow_id = await host.start_workflow(definition.id, {})
        await wait_waiting(host, workflow_id)
    return workflow_id


async def test_an_instance_finishes_with_its_source_after_the_file_was_edited(make_host):
    old, new = sourced(text("a1", "a2")), sourced(text("b1"))
    first = await start_in_flight(make_host, old)

    host = make_host()
    host.register(new)  # the edited file, same id and version
    async with host:
        second = await host.start_workflow(FLOW, {})
        await wait_waiting(host, second)
        for workflow_id in (first, second):
            await host.publish_event("go", workflow_id)
        done_first = await host.wait_for_completion(first, 30)
        done_second = await host.wait_for_completion(second, 30)

    assert done_first.status is WorkflowStatus.COMPLETE, done_first.error
    assert done_first.data.log == ["start", "a1", "a2"]
    assert done_second.status is WorkflowStatus.COMPLETE, done_second.error
    assert done_second.data.log == ["start", "b1"]
    store = host.backend.persistence
    assert (await store.get_workflow(first)).source_digest == old.source.digest
    assert (await store.get_workflow(second)).source_digest == new.source.digest
    assert (await store.get_definition(FLOW, 1)).source_digest == new.source.digest
    assert (await store.get_source(old.source.digest)).text == old.source.text


async def test_load_time_config_is_part_of_the_stored_source(make_host):
    configured = sourced(text("a"), prefix="old-")
    first = await start_in_flight(make_host, configured)

    host = make_host()
    host.register(sourced(text("a"), prefix="new-"))
    async with host:
        await host.publish_event("go", first)
        done = await host.wait_for_completion(first, 30)
    assert done.status is WorkflowStatus.COMPLETE, done.error
    assert done.data.log == ["start", "old-a"]


async def test_a_serving_host_finishes_an_instance_it_only_finds_in_the_store(make_host):
    workflow_id = await start_in_flight(make_host, sourced(text("a1", "a2")))

    host = make_host(serve_stored_definitions=True)
    async with host:  # registers nothing
        await host.publish_event("go", workflow_id)
        done = await host.wait_for_completion(workflow_id, 30)
    assert done.status is WorkflowStatus.COMPLETE, done.error
    assert done.data == Log(log=["start", "a1", "a2"])  # typed by the rebuilt definition
    async with WorkflowClient(host.backend) as client:  # knows no model: a dict
        assert (await client.get_workflow(workflow_id)).data == {"log": ["start", "a1", "a2"]}


async def test_a_client_start_stamps_the_recorded_source(make_host, backend):
    definition = sourced(text("a1"))
    async with make_host() as host:
        host.register(definition)  # recorded in the store, source included
    client = WorkflowClient(backend)
    workflow_id = await client.start_workflow(FLOW, {"log": ["client"]})
    record = await backend.persistence.get_workflow(workflow_id)
    assert record.source_digest == definition.source.digest

    async with make_host(serve_stored_definitions=True) as server:
        await wait_waiting(server, workflow_id)
        await server.publish_event("go", workflow_id)
        done = await server.wait_for_completion(workflow_id, 30)
    assert done.status is WorkflowStatus.COMPLETE, done.error
    assert done.data.log == ["client", "start", "a1"]


async def test_without_the_option_a_host_leaves_unregistered_definitions_alone(make_host, backend):
    workflow_id = await start_in_flight(make_host, sourced(text("a1")))
    bystander = make_host()
    async with bystander:  # registered nothing, does not serve the store
        await bystander.publish_event("go", workflow_id)  # due now
        # Nothing to wait for but polls: long enough for many of them (0.1 s each).
        await asyncio.sleep(1.0)
        record = await backend.persistence.get_workflow(workflow_id)
        assert record.status is WorkflowStatus.RUNNABLE and record.lease_owner is None
        assert record.lease_token == 1  # only the first host's claim, ever

    async with make_host(serve_stored_definitions=True) as server:
        done = await server.wait_for_completion(workflow_id, 30)
    assert done.status is WorkflowStatus.COMPLETE, done.error


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        (lambda: sourced(text("a1"), kind="unknown-kind"), "no loader for that kind"),
        (lambda: sourced("not json", built_from=text("a1")), "cannot rebuild the definition"),
        (
            lambda: sourced(text("a1", definition_id="another-flow"), built_from=text("a1")),
            "builds 'another-flow'",
        ),
    ],
    ids=["unknown-kind", "broken-text", "other-definition"],
)
async def test_a_source_that_cannot_be_rebuilt_fails_its_instance(make_host, stored, reason):
    definition = stored()  # its host never rebuilds it: it runs what it registered
    workflow_id = await start_in_flight(make_host, definition)

    host = make_host()
    host.register(sourced(text("edited")))  # same id and version: the stored one must run
    async with host:
        await host.publish_event("go", workflow_id)
        done = await host.wait_for_completion(workflow_id, 30)
    assert done.status is WorkflowStatus.FAILED
    assert "definition unavailable" in done.error and reason in done.error, done.error
    assert definition.source.digest[:12] in done.error


async def test_a_serving_host_does_not_claim_a_kind_it_cannot_load(make_host, backend):
    workflow_id = await start_in_flight(make_host, sourced(text("a1"), kind="unknown-kind"))
    async with make_host(serve_stored_definitions=True) as host:
        await host.publish_event("go", workflow_id)
        await asyncio.sleep(1.0)  # many polls
        record = await backend.persistence.get_workflow(workflow_id)
    assert record.status is WorkflowStatus.RUNNABLE and record.lease_token == 1


async def test_one_host_refuses_two_sources_for_one_version(make_host):
    host = make_host()
    host.register(sourced(text("a1")))
    host.register(sourced(text("a1")))  # the same text again is fine
    with pytest.raises(DefinitionError, match="already registered"):
        host.register(sourced(text("b1")))


async def test_children_carry_the_source_of_their_definition(make_host, backend):
    child = sourced(text("c1", definition_id="child-flow"))
    parent = (
        WorkflowBuilder("parent-flow", data=Log)
        .start_with(logger("parent"))
        .sub_workflow("child-flow", input=lambda ctx: {})
        .build()
    )
    host = make_host()
    host.register(child)
    host.register(parent)
    async with host:
        parent_id = await host.start_workflow("parent-flow", {})
        for _ in range(500):
            children = [
                r
                for r in await backend.persistence.list_workflows(WorkflowQuery())
                if r.parent_id == parent_id
            ]
            if children:
                break
            await asyncio.sleep(0.02)
        [record] = children
        assert record.source_digest == child.source.digest
        assert (await backend.persistence.get_workflow(parent_id)).source_digest is None
        await wait_waiting(host, record.id)
        await host.publish_event("go", record.id)
        done = await host.wait_for_completion(parent_id, 30)
    assert done.status is WorkflowStatus.COMPLETE, done.error

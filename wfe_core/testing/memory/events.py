"""Events and purge for the in-memory store: functions over a :class:`MemoryState`.

Kept apart from :mod:`wfe_core.testing.memory.persistence` so each module holds one
concept; :class:`~wfe_core.testing.MemoryPersistence` delegates here.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from wfe_core.errors import InvalidData
from wfe_core.models import (
    FINISHED_STATUSES,
    Event,
    EventSubscription,
    WorkflowStatus,
)
from wfe_core.testing.memory.state import MemoryState, copy_record


def parse_json(text: str, what: str) -> Any:
    """Parse JSON text a caller hands the store.

    Raises:
        InvalidData: if ``text`` is not JSON, as a store with a JSON column would.
    """
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise InvalidData(f"{what} is not valid JSON: {exc}", value=text) from exc


def publish_event(state: MemoryState, name: str, key: str, data_json: str) -> Event:
    """Store an event and make RUNNABLE workflows subscribed to it due now."""
    data = parse_json(data_json, f"data of event {name!r}/{key!r}")
    now = state.now_ms()
    event = Event(id=uuid.uuid4().hex, name=name, key=key, data=data, event_time=now)
    state.events[event.id] = event
    woke = False
    for workflow_id, subscriptions in state.subscriptions.items():
        record = state.workflows[workflow_id]
        if record.status is WorkflowStatus.RUNNABLE and any(
            _matches(sub, event) for sub in subscriptions.values()
        ):
            record.next_execution = 0
            woke = True
    if woke:
        state.wake()
    return copy_record(event)


def find_events(
    state: MemoryState, workflow_id: str, subscriptions: list[EventSubscription]
) -> dict[str, Event]:
    """For each subscription id, the earliest matching event not yet delivered."""
    found: dict[str, Event] = {}
    for sub in subscriptions:
        candidates = [
            event
            for event in state.events.values()
            if _matches(sub, event) and (workflow_id, event.id) not in state.deliveries
        ]
        if candidates:
            # min() keeps the first of equal times, and events are in publication order.
            found[sub.id] = copy_record(min(candidates, key=lambda e: e.event_time))
    return found


def has_deliverable_event(state: MemoryState, workflow_id: str) -> bool:
    """Whether an open subscription of the workflow matches an event not yet delivered
    to it (one published after the executor last looked, or before the wait began)."""
    return any(
        _matches(sub, event) and (workflow_id, event.id) not in state.deliveries
        for sub in state.subscriptions.get(workflow_id, {}).values()
        for event in state.events.values()
    )


def purge(state: MemoryState, older_than_ms: int, statuses: frozenset[WorkflowStatus]) -> int:
    """Delete finished workflows completed before ``older_than_ms`` with their rows,
    then the old events that no unfinished workflow could still receive."""
    wanted = statuses & FINISHED_STATUSES
    victims = [
        workflow_id
        for workflow_id, record in state.workflows.items()
        if record.status in wanted
        and record.complete_time is not None
        and record.complete_time < older_than_ms
    ]
    for workflow_id in victims:
        _delete_workflow(state, workflow_id)
    _purge_events(state, older_than_ms)
    return len(victims)


def _matches(sub: EventSubscription, event: Event) -> bool:
    return (
        sub.event_name == event.name
        and sub.event_key == event.key
        and sub.as_of <= event.event_time
    )


def _delete_workflow(state: MemoryState, workflow_id: str) -> None:
    record = state.workflows.pop(workflow_id)
    state.sequence.pop(workflow_id, None)
    state.pointers.pop(workflow_id, None)
    state.subscriptions.pop(workflow_id, None)
    state.errors.pop(workflow_id, None)
    if record.idempotency_key is not None:
        state.idempotency.pop(record.idempotency_key, None)
    state.deliveries = {d for d in state.deliveries if d[0] != workflow_id}


def _purge_events(state: MemoryState, older_than_ms: int) -> None:
    # An unfinished workflow matches events from its creation on, and a subscription
    # from its as_of (which a step may set earlier), so events older than the oldest
    # unfinished workflow and the oldest subscription can never be delivered.
    keep_from = min(
        [older_than_ms]
        + [r.create_time for r in state.workflows.values() if not r.status.finished]
        + [sub.as_of for subs in state.subscriptions.values() for sub in subs.values()]
    )
    doomed = {event_id for event_id, event in state.events.items() if event.event_time < keep_from}
    for event_id in doomed:
        del state.events[event_id]
    if doomed:
        state.deliveries = {d for d in state.deliveries if d[1] not in doomed}

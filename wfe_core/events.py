"""Lifecycle events: what happened to a workflow or a step, for subscribers and logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


def _now() -> datetime:
    return datetime.now(tz=UTC)


@dataclass(frozen=True)
class LifecycleEvent:
    workflow_id: str
    definition_id: str
    version: int
    at: datetime = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True)
class WorkflowStarted(LifecycleEvent):
    reference: str | None = None


@dataclass(frozen=True)
class WorkflowCompleted(LifecycleEvent):
    pass


@dataclass(frozen=True)
class WorkflowFailed(LifecycleEvent):
    error: str = ""
    step_name: str | None = None


@dataclass(frozen=True)
class WorkflowTerminated(LifecycleEvent):
    pass


@dataclass(frozen=True)
class WorkflowSuspended(LifecycleEvent):
    pass


@dataclass(frozen=True)
class WorkflowResumed(LifecycleEvent):
    pass


@dataclass(frozen=True)
class StepEvent(LifecycleEvent):
    step_name: str = ""
    pointer_id: str = ""
    attempt: int = 1


@dataclass(frozen=True)
class StepStarted(StepEvent):
    pass


@dataclass(frozen=True)
class StepCompleted(StepEvent):
    pass


@dataclass(frozen=True)
class StepFailed(StepEvent):
    error: str = ""


@dataclass(frozen=True)
class StepRetrying(StepEvent):
    error: str = ""
    retry_at: datetime | None = None


@dataclass(frozen=True)
class StepSkipped(StepEvent):
    pass


__all__ = [
    "LifecycleEvent",
    "StepCompleted",
    "StepEvent",
    "StepFailed",
    "StepRetrying",
    "StepSkipped",
    "StepStarted",
    "WorkflowCompleted",
    "WorkflowFailed",
    "WorkflowResumed",
    "WorkflowStarted",
    "WorkflowSuspended",
    "WorkflowTerminated",
]

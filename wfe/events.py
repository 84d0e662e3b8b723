"""Lifecycle events a host publishes (see ``WorkflowHost.subscribe``)."""

from wfe_core.events import (
    LifecycleEvent,
    StepCompleted,
    StepEvent,
    StepFailed,
    StepRetrying,
    StepSkipped,
    StepStarted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowResumed,
    WorkflowStarted,
    WorkflowSuspended,
    WorkflowTerminated,
)
from wfe_core.lifecycle import LoggingSubscriber

__all__ = [
    "LifecycleEvent",
    "LoggingSubscriber",
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

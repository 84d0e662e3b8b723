"""wfe: a persistent, embeddable durable-execution workflow engine.

The public names live here; the implementation is in ``wfe_core`` and the providers.
"""

from wfe.client import WorkflowClient
from wfe.host import WorkflowHost
from wfe.host_builder import WorkflowHostBuilder
from wfe.instance import StepInstance, WorkflowInstance
from wfe_core.builder import WorkflowBuilder
from wfe_core.context import StepContext
from wfe_core.definition import WorkflowDefinition
from wfe_core.errors import (
    Cancelled,
    ChildWorkflowFailed,
    DefinitionError,
    DefinitionNotFound,
    InvalidData,
    InvalidStateTransition,
    NotFound,
    ProviderError,
    SagaRolledBack,
    ShuttingDown,
    StepFailedError,
    StepTimeout,
    WorkflowError,
)
from wfe_core.models import WorkflowStatus
from wfe_core.result import ExecutionResult
from wfe_core.retry import Backoff, ErrorBehavior, FailureAction, RetryPolicy
from wfe_core.step import StepBody

__all__ = [
    "Backoff",
    "Cancelled",
    "ChildWorkflowFailed",
    "DefinitionError",
    "DefinitionNotFound",
    "ErrorBehavior",
    "ExecutionResult",
    "FailureAction",
    "InvalidData",
    "InvalidStateTransition",
    "NotFound",
    "ProviderError",
    "RetryPolicy",
    "SagaRolledBack",
    "ShuttingDown",
    "StepBody",
    "StepContext",
    "StepFailedError",
    "StepInstance",
    "StepTimeout",
    "WorkflowBuilder",
    "WorkflowClient",
    "WorkflowDefinition",
    "WorkflowError",
    "WorkflowHost",
    "WorkflowHostBuilder",
    "WorkflowInstance",
    "WorkflowStatus",
]

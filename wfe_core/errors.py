"""The error hierarchy of wfe.

Every error a user can catch derives from :class:`WorkflowError`::

    WorkflowError
    ├── NotFound                  unknown or malformed workflow id
    ├── DefinitionNotFound        no definition with that id/version is registered
    │   └── SourceNotFound        the store holds no definition source with that digest
    ├── DefinitionError           a definition (or YAML file) is invalid
    ├── InvalidData               workflow data failed validation or serialization
    ├── StepFailedError           a step failed after its last attempt
    │   ├── SagaRolledBack        a saga undid its steps after one of them failed
    │   └── ChildWorkflowFailed   a sub-workflow ended FAILED or TERMINATED
    ├── StepTimeout               a step (or an event wait) ran out of time
    ├── Cancelled                 a step was cancelled (shutdown, termination)
    ├── InvalidStateTransition    suspend/resume/terminate from a state that forbids it
    ├── ShuttingDown              the host is stopping and takes no new work
    └── ProviderError             the store, queue or lock failed
        └── LeaseLost is *not* here: see below

:class:`LeaseLost` derives from ``BaseException`` on purpose: it is delivered into a
running step when its host no longer owns the workflow, and a step's
``except Exception:`` must not be able to swallow it and keep a fenced-off step alive.
"""

from __future__ import annotations


class WorkflowError(Exception):
    """Base class of every error wfe raises to users."""


class NotFound(WorkflowError):
    """No workflow instance has this id (or the id is malformed)."""

    def __init__(self, workflow_id: str, detail: str = "") -> None:
        self.workflow_id = workflow_id
        suffix = f": {detail}" if detail else ""
        super().__init__(f"workflow {workflow_id!r} not found{suffix}")


class DefinitionNotFound(WorkflowError):
    """No definition with this id (and version) is registered."""

    def __init__(self, definition_id: str, version: int | None = None) -> None:
        self.definition_id = definition_id
        self.version = version
        what = definition_id if version is None else f"{definition_id} v{version}"
        super().__init__(f"workflow definition {what!r} is not registered")


class SourceNotFound(DefinitionNotFound):
    """The store holds no definition source (the text a definition was built from)
    with this digest."""

    def __init__(
        self, digest: str, definition_id: str | None = None, version: int | None = None
    ) -> None:
        self.digest = digest
        self.definition_id = definition_id or ""
        self.version = version
        of = ""
        if definition_id is not None:
            of = f" of workflow definition {definition_id!r}"
            of += "" if version is None else f" v{version}"
        WorkflowError.__init__(
            self,
            f"definition source {digest[:12]}{of} is not in the store "
            "(save the definition, e.g. by registering it on a host, before starting it)",
        )


class DefinitionError(WorkflowError):
    """A workflow definition is invalid (cycle, unknown dependency, bad YAML...)."""

    def __init__(
        self,
        message: str,
        *,
        definition_id: str | None = None,
        step_name: str | None = None,
        path: str | None = None,
        line: int | None = None,
    ) -> None:
        self.definition_id = definition_id
        self.step_name = step_name
        self.path = path
        self.line = line
        where = []
        if path is not None:
            where.append(path if line is None else f"{path}:{line}")
        if definition_id is not None:
            where.append(f"workflow {definition_id!r}")
        if step_name is not None:
            where.append(f"step {step_name!r}")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(prefix + message)


class InvalidData(WorkflowError):
    """Workflow data failed validation against its model, or cannot be serialized."""

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        self.field = field
        self.value = value
        super().__init__(message)


class StepFailedError(WorkflowError):
    """A step failed after its last attempt."""

    def __init__(
        self, workflow_id: str, step_name: str, message: str, *, attempt: int | None = None
    ) -> None:
        self.workflow_id = workflow_id
        self.step_name = step_name
        self.attempt = attempt
        at = f" (attempt {attempt})" if attempt is not None else ""
        super().__init__(f"step {step_name!r} of workflow {workflow_id}{at} failed: {message}")


class SagaRolledBack(StepFailedError):
    """A step inside a saga failed for good and the saga undid its completed steps."""

    def __init__(self, workflow_id: str, saga_name: str, reason: str) -> None:
        self.workflow_id, self.step_name, self.attempt = workflow_id, saga_name, None
        self.reason = reason
        WorkflowError.__init__(self, f"saga {saga_name!r} rolled back: {reason}")


class ChildWorkflowFailed(StepFailedError):
    """A sub-workflow ended FAILED or TERMINATED, so the step waiting for it fails."""

    def __init__(
        self, workflow_id: str, step_name: str, child_id: str, status: str, error: str | None
    ) -> None:
        self.workflow_id, self.step_name, self.attempt = workflow_id, step_name, None
        self.child_id, self.status, self.error = child_id, status, error
        detail = f": {error}" if error else ""
        WorkflowError.__init__(self, f"child workflow {child_id} ended {status}{detail}")


class StepTimeout(WorkflowError):
    """A step, or a wait for an event, did not finish within its timeout."""

    def __init__(self, step_name: str, timeout: float) -> None:
        self.step_name = step_name
        self.timeout = timeout
        super().__init__(f"step {step_name!r} timed out after {timeout:g}s")


class Cancelled(WorkflowError):
    """A step was cancelled: its host is shutting down or the workflow was terminated."""


class InvalidStateTransition(WorkflowError):
    """A control operation is not allowed in the workflow's current status."""

    def __init__(self, workflow_id: str, action: str, status: str) -> None:
        self.workflow_id = workflow_id
        self.action = action
        self.status = status
        super().__init__(f"cannot {action} workflow {workflow_id}: it is {status}")


class ShuttingDown(WorkflowError):
    """The host is stopping and does not accept new work."""


class ProviderError(WorkflowError):
    """A persistence, queue or lock provider failed."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        self.transient = transient
        super().__init__(message)


class LeaseLost(BaseException):
    """This host no longer owns the workflow's lease; its writes are fenced off.

    Derives from ``BaseException`` so that user code catching ``Exception`` cannot keep a
    fenced-off step running.
    """

    def __init__(self, workflow_id: str, token: int | None = None) -> None:
        self.workflow_id = workflow_id
        self.token = token
        super().__init__(f"lease on workflow {workflow_id} lost (token {token})")

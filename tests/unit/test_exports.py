"""The public surface is pinned: a change to it shows up in review."""

import subprocess
import sys

import wfe
import wfe.events

EXPECTED = {
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
}

EVENTS = {
    "WorkflowStarted",
    "WorkflowCompleted",
    "WorkflowFailed",
    "WorkflowTerminated",
    "WorkflowSuspended",
    "WorkflowResumed",
    "StepStarted",
    "StepCompleted",
    "StepFailed",
    "StepRetrying",
    "StepSkipped",
}


def test_public_names():
    assert set(wfe.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(wfe, name) is not None


def test_lifecycle_event_classes():
    assert set(wfe.events.__all__) >= EVENTS
    for name in EVENTS:
        cls = getattr(wfe.events, name)
        assert {"workflow_id", "definition_id", "at"} <= set(cls.__dataclass_fields__)


def test_errors_form_one_hierarchy():
    for name in EXPECTED:
        obj = getattr(wfe, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, wfe.WorkflowError)


def test_import_is_cheap_and_lazy():
    code = (
        "import sys, wfe; bad = [m for m in ('asyncpg', 'sqlalchemy', 'aiosqlite') "
        "if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_migrate(tmp_path):
    db = tmp_path / "cli.db"
    out = subprocess.run(
        [sys.executable, "-m", "wfe", "migrate", "--db", f"sqlite:///{db}"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert db.exists()
    bad = subprocess.run(
        [sys.executable, "-m", "wfe", "migrate", "--db", "nosuch://x"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "nosuch" in bad.stderr and "Traceback" not in bad.stderr

"""What one step activation produced, before it is turned into a commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wfe_core.merge import Patch
from wfe_core.result import ExecutionResult


@dataclass
class StepOutcome:
    """The result of running a pointer's body once (or deciding not to run it)."""

    result: ExecutionResult | None = None  # None when the body failed or was skipped
    patch: Patch | None = None
    error: BaseException | None = None
    skipped: bool = False
    timed_out_wait: bool = False
    final_failure: bool = False  # no attempts left (or not retryable)
    retry_delay: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

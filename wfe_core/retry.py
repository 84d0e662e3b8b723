"""Retry policies, back-off, failure actions and chain-style error behaviours.

Defaults are finite: a step with no policy of its own gets
:data:`DEFAULT_RETRY` (3 attempts, exponential back-off from 1 s), never endless retries.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import timedelta


def _seconds(value: float | timedelta) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"a duration must not be negative, got {seconds}s")
    return seconds


@dataclass(frozen=True)
class Backoff:
    """How long to wait before attempt n+1. Deterministic unless ``jitter`` is set.

    Use the constructors: :meth:`fixed`, :meth:`exponential`, :meth:`linear`.
    """

    kind: str
    base: float
    maximum: float | None = None
    jitter: float = 0.0  # fraction of the delay added at random, 0 = deterministic

    @classmethod
    def fixed(cls, delay: float | timedelta, *, jitter: float = 0.0) -> Backoff:
        """The same delay before every retry."""
        return cls("fixed", _seconds(delay), None, jitter)

    @classmethod
    def exponential(
        cls, base: float | timedelta, max: float | timedelta | None = None, *, jitter: float = 0.0
    ) -> Backoff:
        """``base * 2**(n-1)`` before retry n, capped at ``max``."""
        cap = None if max is None else _seconds(max)
        return cls("exponential", _seconds(base), cap, jitter)

    @classmethod
    def linear(
        cls,
        increment: float | timedelta,
        max: float | timedelta | None = None,
        *,
        jitter: float = 0.0,
    ) -> Backoff:
        """``increment * n`` before retry n, capped at ``max``."""
        cap = None if max is None else _seconds(max)
        return cls("linear", _seconds(increment), cap, jitter)

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (1-based) failed."""
        n = max(1, failed_attempt)
        if self.kind == "fixed":
            seconds = self.base
        elif self.kind == "exponential":
            seconds = self.base * (2 ** min(n - 1, 62))
        else:
            seconds = self.base * n
        if self.maximum is not None:
            seconds = min(seconds, self.maximum)
        if self.jitter:
            seconds += seconds * self.jitter * random.random()
        return seconds


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``max_attempts`` runs of a step (1 = no retry), waiting ``backoff`` between."""

    max_attempts: int = 3
    backoff: Backoff = Backoff.exponential(1.0, 60.0)  # noqa: RUF009 - frozen, immutable

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")


DEFAULT_RETRY = RetryPolicy(max_attempts=3, backoff=Backoff.exponential(1.0, 60.0))
"""What a step gets when neither it nor its workflow sets a retry policy."""


class FailureAction(enum.StrEnum):
    """What happens when a step has failed its last attempt."""

    FAIL_WORKFLOW = "fail_workflow"
    CONTINUE = "continue"  # the step counts as done (failed); dependents proceed
    RETRY_INDEFINITELY = "retry_indefinitely"  # keep retrying with the back-off, forever


class ErrorKind(enum.StrEnum):
    RETRY = "retry"
    SUSPEND = "suspend"
    TERMINATE = "terminate"
    COMPENSATE = "compensate"


@dataclass(frozen=True)
class ErrorBehavior:
    """Chain-builder error handling (``on_error``), as in workflow-core.

    ``retry`` is a finite retry policy; ``suspend`` suspends the workflow when the step
    fails (resuming retries the step); ``terminate`` ends the workflow TERMINATED.
    """

    kind: ErrorKind
    interval: float = 0.0
    max_retries: int = 0

    @classmethod
    def retry(cls, interval: float | timedelta = 1.0, max_retries: int = 3) -> ErrorBehavior:
        """Retry after ``interval``, up to ``max_retries`` times after the first attempt."""
        if max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {max_retries}")
        return cls(ErrorKind.RETRY, _seconds(interval), max_retries)

    @classmethod
    def suspend(cls) -> ErrorBehavior:
        return cls(ErrorKind.SUSPEND)

    @classmethod
    def terminate(cls) -> ErrorBehavior:
        return cls(ErrorKind.TERMINATE)

    @classmethod
    def compensate(cls) -> ErrorBehavior:
        return cls(ErrorKind.COMPENSATE)

    def as_retry_policy(self) -> RetryPolicy | None:
        if self.kind is not ErrorKind.RETRY:
            return None
        return RetryPolicy(self.max_retries + 1, Backoff.fixed(self.interval))

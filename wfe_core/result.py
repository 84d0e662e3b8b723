"""ExecutionResult: the instruction a step returns to the executor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

_NO_OUTCOME = object()


@dataclass(frozen=True)
class ExecutionResult:
    """What a step asks for. Build one with the class methods.

    ``proceed`` ends the step (routing on ``outcome_value``); otherwise the step stays
    active and is called again later with its ``persistence_data``: after ``sleep_for``,
    when the event ``event_name``/``event_key`` arrives, or when its branch finishes.
    """

    proceed: bool = True
    outcome_value: Any = None
    persistence_data: Any = None
    sleep_for: float | None = None
    event_name: str | None = None
    event_key: str | None = None
    event_as_of: datetime | None = None
    branch_values: Sequence[Any] = field(default_factory=tuple)
    branch_steps: tuple[int, ...] | None = None
    ends_workflow: bool = False  # set by end_workflow(): COMPLETE now, the rest cancelled

    @classmethod
    def next(cls) -> ExecutionResult:
        """The step is done; go on to the next step(s)."""
        return cls()

    @classmethod
    def outcome(cls, value: Any) -> ExecutionResult:
        """The step is done with an outcome value that decides where to go next."""
        return cls(outcome_value=value)

    @classmethod
    def persist(cls, data: Any) -> ExecutionResult:
        """Stay active; the step runs again on the next pass with ``data`` saved."""
        return cls(proceed=False, persistence_data=data)

    @classmethod
    def sleep(cls, delta: float | timedelta, data: Any = None) -> ExecutionResult:
        """Run this step again after ``delta`` (a stored time, not an in-memory sleep)."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        return cls(proceed=False, persistence_data=data, sleep_for=max(0.0, seconds))

    @classmethod
    def branch(
        cls, values: Sequence[Any], data: Any = None, *, steps: Sequence[int] | None = None
    ) -> ExecutionResult:
        """Start the step's child branches once per value; run again when all finish.

        ``steps`` (for built-in containers) names the step ids to start instead of
        every child branch: a decision's chosen branch, a saga's compensation.
        """
        return cls(
            proceed=False,
            persistence_data=data,
            branch_values=tuple(values),
            branch_steps=None if steps is None else tuple(steps),
        )

    @classmethod
    def wait_for_event(
        cls, name: str, key: str, as_of: datetime | None = None, data: Any = None
    ) -> ExecutionResult:
        """Wait for the event (name, key) published at or after ``as_of`` (default:
        when the workflow started)."""
        return cls(
            proceed=False,
            persistence_data=data,
            event_name=name,
            event_key=key,
            event_as_of=as_of,
        )

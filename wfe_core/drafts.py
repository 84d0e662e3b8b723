"""Steps while a builder is still collecting them, and the small checks it applies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from wfe_core.definition import InputMapping, Outcome, OutputMapping
from wfe_core.errors import DefinitionError
from wfe_core.step import StepBody


@dataclass
class Draft:
    """A step while the builder is still collecting its settings."""

    name: str
    explicit_name: bool
    factory: Callable[[], StepBody]
    body_name: str
    next: list[Outcome] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    depends_on_any: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    inputs: list[InputMapping] = field(default_factory=list)
    outputs: list[OutputMapping] = field(default_factory=list)
    is_dag: bool = False
    initial: bool = False
    children: list[int] = field(default_factory=list)
    compensation: int | None = None
    compensates: bool = False
    saga: bool = False


def checked_seconds(value: float | timedelta | None, what: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise DefinitionError(f"{what} must not be negative, got {seconds}s")
    return seconds


def unique_name(name: str, taken: dict[str, int]) -> str:
    n = 2
    while f"{name}_{n}" in taken:
        n += 1
    return f"{name}_{n}"

"""Command-line values: ``--config``/``--input KEY=VALUE`` pairs and ``--data JSON``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


class UsageError(Exception):
    """A mistake on the command line: printed as one paragraph, exit code 2."""


def pairs(values: Sequence[str] | None, option: str) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` as ``{"a": "1", "b": "x=y"}``."""
    result: dict[str, str] = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} takes KEY=VALUE, got {item!r}")
        result[key.strip()] = value
    return result


def json_object(text: str | None, option: str) -> dict[str, Any]:
    """The JSON object given to ``option`` (``{}`` when absent)."""
    if text is None:
        return {}
    value = _json(text, option)
    if not isinstance(value, dict):
        raise UsageError(f"{option} must be a JSON object, got {type(value).__name__}")
    return value


def workflow_data(data: str | None, inputs: Sequence[str] | None) -> dict[str, Any]:
    """``--data`` with each ``--input`` laid over it."""
    return {**json_object(data, "--data"), **pairs(inputs, "--input")}


def event_data(text: str | None) -> Any:
    """``--data`` of ``wfe publish``: any JSON value."""
    return None if text is None else _json(text, "--data")


def _json(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option} is not valid JSON: {exc.msg} at column {exc.colno}") from exc

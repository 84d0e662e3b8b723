"""Recursive diffs of JSON data, so concurrent steps never lose each other's writes.

A step's changes are the diff between the data it started from and the data it ended
with; the diff is applied to the latest data at commit. Nested objects merge key by
key; lists and scalars are replaced (JSON merge-patch semantics, but with an explicit
deletion marker so that a value set to ``null`` is not mistaken for a deletion).
"""

from __future__ import annotations

import copy
from typing import Any

_DELETE = {"$wfe_delete": True}


class Patch:
    """A diff between two JSON documents (``None`` changes when they are equal)."""

    __slots__ = ("changes",)

    def __init__(self, changes: Any) -> None:
        self.changes = changes

    @property
    def empty(self) -> bool:
        return self.changes is _UNCHANGED


_UNCHANGED: Any = object()


def diff(before: Any, after: Any) -> Patch:
    """The patch that turns ``before`` into ``after``."""
    return Patch(_diff(before, after))


def _diff(before: Any, after: Any) -> Any:
    if isinstance(before, dict) and isinstance(after, dict):
        out: dict[str, Any] = {}
        for key, value in after.items():
            if key not in before:
                out[key] = ("set", value)
            else:
                sub = _diff(before[key], value)
                if sub is not _UNCHANGED:
                    out[key] = sub
        for key in before:
            if key not in after:
                out[key] = ("del",)
        return ("merge", out) if out else _UNCHANGED
    if type(before) is type(after) and before == after:
        return _UNCHANGED
    return ("set", after)


def apply(target: Any, patch: Patch) -> Any:
    """Return ``target`` with ``patch`` applied (``target`` is not modified)."""
    if patch.empty:
        return target
    return _apply(copy.deepcopy(target), patch.changes)


def _apply(target: Any, change: Any) -> Any:
    op = change[0]
    if op == "set":
        return copy.deepcopy(change[1])
    if op == "del":  # only reached inside a merge
        return _DELETE
    if not isinstance(target, dict):
        target = {}
    for key, sub in change[1].items():
        value = _apply(target.get(key), sub)
        if value is _DELETE:
            target.pop(key, None)
        else:
            target[key] = value
    return target

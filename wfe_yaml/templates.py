"""``${{ … }}`` expressions: where they are in a text, what they name, their values.

Three roots: ``config.KEY`` (replaced when the file is loaded), ``data.PATH`` (the
workflow data) and ``steps.NAME.outputs.KEY`` (a step's outputs), both read at run time.
A path is dot-separated; a segment of digits indexes a list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
"""One ``${{ expr }}``; group 1 is the expression (surrounding blanks included)."""

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
ROOTS = ("config", "data", "steps")
STEPS_KEY = "steps"
"""The key of the workflow data under which each step's outputs are kept:
``data["steps"][NAME]["outputs"][KEY]``."""


class TemplateError(ValueError):
    """An expression that is malformed or names an unknown variable."""


class UnknownVariable(TemplateError):
    """An expression whose variable has no value (yet) in the workflow data."""


@dataclass(frozen=True)
class Ref:
    """A parsed variable reference such as ``data.user.name``."""

    root: str
    path: tuple[str, ...]

    @property
    def text(self) -> str:
        return ".".join((self.root, *self.path))

    @property
    def step(self) -> str | None:
        """The step a ``steps.NAME.outputs.KEY`` reference reads from."""
        return self.path[0] if self.root == "steps" else None

    def data_path(self) -> tuple[str, ...]:
        """Where the value lives in the workflow data (``config`` refs have none)."""
        if self.root == "data":
            return self.path
        if self.root == "steps":
            return (STEPS_KEY, *self.path)
        raise TemplateError(f"{self.text} is a load-time value, not workflow data")


def parse_ref(expression: str) -> Ref:
    """Parse the inside of ``${{ … }}``.

    Raises:
        TemplateError: not ``config.KEY``, ``data.PATH`` or ``steps.NAME.outputs.KEY``.
    """
    text = expression.strip()
    parts = text.split(".")
    if not text or parts[0] not in ROOTS:
        raise TemplateError(
            f"unknown variable ${{{{ {text} }}}}: an expression starts with config., "
            "data. or steps."
        )
    if len(parts) < 2 or not all(_SEGMENT.fullmatch(p) for p in parts[1:]):
        raise TemplateError(f"malformed variable ${{{{ {text} }}}}: expected ROOT.NAME[.NAME…]")
    if parts[0] == "steps" and (len(parts) != 4 or parts[2] != "outputs"):
        raise TemplateError(
            f"malformed variable ${{{{ {text} }}}}: step outputs are steps.NAME.outputs.KEY"
        )
    if parts[0] == "config" and len(parts) != 2:
        raise TemplateError(f"malformed variable ${{{{ {text} }}}}: config values are config.KEY")
    return Ref(parts[0], tuple(parts[1:]))


def refs_in(text: str) -> Iterator[Ref]:
    """Every reference in ``text``, in order."""
    for match in EXPRESSION.finditer(text):
        yield parse_ref(match.group(1))


def lookup(ref: Ref, data: Mapping[str, Any]) -> Any:
    """The value of a run-time reference in the workflow data.

    Raises:
        UnknownVariable: the path does not exist; the message lists what does.
    """
    node: Any = data
    walked: list[str] = [ref.root] if ref.root == "data" else []
    for segment in ref.data_path():
        if isinstance(node, Mapping) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            raise UnknownVariable(_unknown(ref, node, walked))
        walked.append(segment)
    return node


def _unknown(ref: Ref, node: Any, walked: list[str]) -> str:
    if ref.root == "steps" and len(walked) <= 2:
        return (
            f"unknown variable ${{{{ {ref.text} }}}}: step {ref.path[0]!r} has set no outputs yet"
            if len(walked) < 2
            else f"unknown variable ${{{{ {ref.text} }}}}: step {ref.path[0]!r} set no "
            f"output {ref.path[-1]!r}"
        )
    where = ".".join(walked) or ref.root
    if isinstance(node, Mapping):
        known = ", ".join(sorted(str(k) for k in node)) or "nothing"
        return f"unknown variable ${{{{ {ref.text} }}}}: {where} has {known}"
    return f"unknown variable ${{{{ {ref.text} }}}}: {where} is not a mapping"


def as_text(value: Any) -> str:
    """How a value appears in a command or string: text as is, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

"""``if:`` conditions: a small expression language, evaluated without ``eval``.

Python-like syntax over ``data.…``, ``steps.NAME.outputs.KEY`` and ``config.KEY``:
comparisons (``== != < <= > >= in``, ``not in``), ``and``/``or``/``not`` (also written
``&&``, ``||``, ``!``), parentheses, string/number literals and ``true``/``false``/
``null``. A reference may be wrapped in ``${{ }}``. Anything else (calls, indexing,
arithmetic, attributes of literals) is refused when the file is loaded, so a condition
can read the data but never run code.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wfe_yaml.templates import EXPRESSION, Ref, TemplateError, lookup, parse_ref

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_WORDS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_SYMBOLS = {"&&": " and ", "||": " or "}
MAX_DEPTH = 50
"""Levels a condition may nest: checking and evaluating it recurse, and neither may
exhaust the stack (``not not … x`` a thousand times over)."""


@dataclass(frozen=True)
class Condition:
    """A parsed ``if:``; call :meth:`evaluate` with the workflow data."""

    text: str
    tree: ast.expr
    refs: tuple[Ref, ...]
    config: Mapping[str, Any]

    def evaluate(self, data: Mapping[str, Any]) -> bool:
        """True when the step should run.

        Raises:
            UnknownVariable: a referenced value does not exist.
            TemplateError: the comparison cannot be made (e.g. text < number).
        """
        try:
            return bool(_Evaluator(data, self.config).visit(self.tree))
        except TypeError as exc:
            raise TemplateError(f"condition {self.text!r} cannot be evaluated: {exc}") from exc


def parse_condition(text: str, config: Mapping[str, Any]) -> Condition:
    """Parse ``text``; every ``config.`` reference must name a key of ``config``.

    Raises:
        TemplateError: bad syntax, a construct that is not allowed, an unknown root or
            config key.
    """
    source = _normalise(EXPRESSION.sub(lambda m: f"({m.group(1)})", text))
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        raise TemplateError(f"condition {text!r} is not a valid expression: {exc.msg}") from exc
    except RecursionError as exc:
        raise TemplateError(f"condition {text!r:.200} is nested too deeply") from exc
    if _depth(tree) > MAX_DEPTH:
        raise TemplateError(
            f"condition {text!r:.200} is nested too deeply (more than {MAX_DEPTH} levels)"
        )
    refs = tuple(_check(tree, text))
    for ref in refs:
        if ref.root == "config" and ref.path[0] not in config:
            known = ", ".join(sorted(config)) or "none were given"
            raise TemplateError(f"condition {text!r}: unknown config.{ref.path[0]} ({known})")
    return Condition(text, tree, refs, dict(config))


def _depth(tree: ast.AST) -> int:
    """How deep ``tree`` nests, counted without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _normalise(text: str) -> str:
    """Rewrite ``&&``, ``||`` and ``!`` (not ``!=``) outside string literals."""
    out: list[str] = []
    quote: str | None = None
    index = 0
    while index < len(text):
        char, pair = text[index], text[index : index + 2]
        if quote is not None:
            out.append(char)
            if char == "\\":
                out.append(text[index + 1 : index + 2])
                index += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
            out.append(char)
        elif pair in _SYMBOLS:
            out.append(_SYMBOLS[pair])
            index += 1
        elif char == "!" and pair != "!=":
            out.append(" not ")
        else:
            out.append(char)
        index += 1
    return "".join(out)


def _check(node: ast.AST, text: str) -> list[Ref]:
    """The references in an allowed tree; TemplateError for anything else."""
    if isinstance(node, ast.BoolOp | ast.Compare | ast.UnaryOp):
        if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Not | ast.USub):
            raise TemplateError(f"condition {text!r}: only 'not' and '-' are allowed")
        if isinstance(node, ast.Compare) and any(type(op) not in _COMPARE for op in node.ops):
            raise TemplateError(f"condition {text!r}: 'is' is not allowed, use '=='")
        return [ref for child in ast.iter_child_nodes(node) for ref in _check(child, text)]
    if isinstance(node, ast.boolop | ast.cmpop | ast.unaryop):
        return []
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool | None):
        return []
    if isinstance(node, ast.Name) and node.id in _WORDS:
        return []
    if isinstance(node, ast.List | ast.Tuple):
        return [ref for item in node.elts for ref in _check(item, text)]
    if isinstance(node, ast.Attribute | ast.Name):
        return [_ref_of(node, text)]
    raise TemplateError(
        f"condition {text!r}: {type(node).__name__} is not allowed (only comparisons of "
        "data, steps.NAME.outputs and config values with literals)"
    )


def _ref_of(node: ast.AST, text: str) -> Ref:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise TemplateError(f"condition {text!r}: attributes of values are not allowed")
    parts.append(node.id)
    return parse_ref(".".join(reversed(parts)))


class _Evaluator(ast.NodeVisitor):
    def __init__(self, data: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        self.data = data
        self.config = config

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        values = (self.visit(v) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        return (not value) if isinstance(node.op, ast.Not) else -value

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = self.visit(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.visit(right_node)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def visit_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def visit_List(self, node: ast.List) -> Any:
        return [self.visit(item) for item in node.elts]

    def visit_Tuple(self, node: ast.Tuple) -> Any:
        return [self.visit(item) for item in node.elts]

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in _WORDS:
            return _WORDS[node.id]
        return self._value(_ref_of(node, ""))

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        return self._value(_ref_of(node, ""))

    def _value(self, ref: Ref) -> Any:
        if ref.root == "config":
            return self.config[ref.path[0]]
        return lookup(ref, self.data)

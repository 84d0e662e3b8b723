"""Parse YAML text into plain values, remembering the line of every node.

PyYAML's composer gives each node its position; the loader needs it to say *where* a
problem is (``deploy.yaml:12``) when validation fails far from the parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from wfe_core.errors import DefinitionError

Path = tuple[str | int, ...]

MAX_NODES = 100_000
"""Nodes a workflow file may expand to: aliases can make a small text huge."""


@dataclass
class Document:
    """The parsed values and the 1-based line where each path starts."""

    value: Any
    lines: dict[Path, int] = field(default_factory=dict)
    path: str | None = None
    definition_id: str | None = None  # once known, every error names the workflow

    def line_of(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest ancestor the document has."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None

    def error(self, message: str, at: Path = (), **where: Any) -> DefinitionError:
        where.setdefault("definition_id", self.definition_id)
        return DefinitionError(message, path=self.path, line=self.line_of(at), **where)


def parse(text: str, path: str | None = None) -> Document:
    """Parse one YAML document.

    Raises:
        DefinitionError: malformed YAML (with its line), several documents, a duplicate
            key, or anything but a mapping at the top.
    """
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # a control character: checked before parsing
        raise DefinitionError(
            f"invalid YAML: character #x{exc.character:04x} is not allowed in YAML text",
            path=path,
            line=text.count("\n", 0, exc.position) + 1,
        ) from exc
    try:
        node = loader.get_single_node()
        if node is None:
            raise DefinitionError("the file is empty: expected a 'workflow:' mapping", path=path)
        document = Document(None, path=path)
        _index(node, (), document)
        document.value = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "malformed YAML"
        # At the end of the input PyYAML points one line past the last: show the last.
        last = max(1, len(text.splitlines()))
        line = None if mark is None else min(mark.line + 1, last)
        raise DefinitionError(f"invalid YAML: {problem}", path=path, line=line) from exc
    except yaml.YAMLError as exc:
        raise DefinitionError(f"invalid YAML: {exc}", path=path) from exc
    except RecursionError as exc:
        raise DefinitionError("invalid YAML: nested too deeply", path=path) from exc
    finally:
        loader.dispose()
    if not isinstance(document.value, dict):
        raise document.error(
            f"expected a mapping with a 'workflow:' key at the top, got "
            f"{type(document.value).__name__}"
        )
    return document


def _index(node: yaml.Node, path: Path, document: Document) -> None:
    document.lines.setdefault(path, node.start_mark.line + 1)
    if len(document.lines) > MAX_NODES:
        raise DefinitionError(
            f"the file expands to more than {MAX_NODES} values (aliases?)", path=document.path
        )
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                raise DefinitionError(
                    f"duplicate key {key!r} (first at line {seen[key]})",
                    path=document.path,
                    line=line,
                )
            seen[key] = line
            document.lines.setdefault((*path, key), line)
            _index(value_node, (*path, key), document)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(item, (*path, index), document)

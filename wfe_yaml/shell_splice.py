"""Splice ``${{ … }}`` values into a shell command as environment variable references.

A value never enters the command text: each expression is replaced by a reference to an
environment variable (``WFE_VAR_0``, ``WFE_VAR_1``, … in occurrence order) and the value
travels in the environment, so run-time data reaches the shell as data and can never
become code, whatever quotes, ``$``, backticks or newlines it holds.

The reference is written for the shell quoting context at the expression, so the same
interpolation works inside and outside quotes, without word splitting or globbing:

=========================  ===============================================
context                    spliced text
=========================  ===============================================
unquoted, ``$( … )``,      ``"${WFE_VAR_0}"``
backticks
double quotes,             ``${WFE_VAR_0}``
unquoted heredoc body
single quotes              ``'"${WFE_VAR_0}"'`` (close, splice, reopen)
``$'…'``                   ``'"${WFE_VAR_0}"$'`` (reopened as ``$'`` so the
                           escapes that follow keep their meaning)
``#`` comment              ``${WFE_VAR_0}`` (inert: comments do not run)
=========================  ===============================================

Refused with :class:`ValueError`: an expression in a quoted heredoc (``<<'EOF'``, where
nothing expands), in a heredoc delimiter, in arithmetic (``$(( … ))``, ``(( … ))``, where
bash evaluates a value such as ``a[$(cmd)]`` as code), right after a backslash or a
``$`` (the result would be ambiguous), and a value holding a NUL (an environment
variable cannot).

The context is tracked by a small character-level state machine (a stack of frames:
quotes, ``$( … )`` resets to unquoted, heredoc bodies, comments). It does not parse the
whole shell grammar: a ``case`` pattern with an unbalanced ``)`` inside ``$( … )`` ends
the substitution early. A misread context only ever misplaces quotes around the
reference; the value itself is never in the text, so it cannot cause an injection.
What the script then does with the variable is its own business: ``eval``, and the
places bash evaluates text as arithmetic that the scanner cannot see (``[[ v -eq 1 ]]``,
``let``, ``declare -i``, array subscripts), still treat the value as code there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum, auto

from wfe_yaml.templates import EXPRESSION

_MARK = "\0"
"""Stands for an expression while scanning: a command (a C string) cannot hold a NUL."""

_BREAKS = frozenset(" \t\n;&|()<>")
"""Characters after which a new word starts (where ``#`` begins a comment)."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Kind(Enum):
    TOP = auto()
    CMD = auto()  # $( … )
    BACKTICK = auto()
    DOUBLE = auto()
    SINGLE = auto()
    ANSI = auto()  # $'…'
    ARITH = auto()  # $(( … )) and (( … ))
    COMMENT = auto()
    HEREDOC = auto()  # body of <<EOF: expands like double quotes
    RAW_HEREDOC = auto()  # body of <<'EOF': nothing expands


_UNQUOTED = frozenset({_Kind.TOP, _Kind.CMD, _Kind.BACKTICK})


@dataclass
class _Frame:
    kind: _Kind
    depth: int = 0
    """Open parentheses inside a ``$( … )`` or arithmetic frame."""
    delimiter: str = ""
    strip_tabs: bool = False
    line_start: bool = True


@dataclass
class _Scanner:
    """Copies the marked command to ``out``, replacing each mark by a reference."""

    text: str
    prefix: str
    out: list[str] = field(default_factory=list)
    stack: list[_Frame] = field(default_factory=lambda: [_Frame(_Kind.TOP)])
    pending: list[_Frame] = field(default_factory=list)
    """Heredocs whose bodies start after the next unquoted newline, in order."""
    count: int = 0
    word_start: bool = True

    def run(self) -> str:
        handlers = self._handlers()
        i = 0
        while i < len(self.text):
            i = handlers[self.stack[-1].kind](i)
        return "".join(self.out)

    def _handlers(self) -> dict[_Kind, Callable[[int], int]]:
        return {
            **dict.fromkeys(_UNQUOTED, self._unquoted),
            _Kind.DOUBLE: self._double,
            _Kind.SINGLE: self._single,
            _Kind.ANSI: self._ansi,
            _Kind.ARITH: self._arith,
            _Kind.COMMENT: self._comment,
            _Kind.HEREDOC: self._heredoc,
            _Kind.RAW_HEREDOC: self._raw_heredoc,
        }

    # -- helpers shared by the contexts ---------------------------------------------

    def _copy(self, i: int, n: int = 1) -> int:
        self.out.append(self.text[i : i + n])
        return i + n

    def _push(self, frame: _Frame, i: int, n: int) -> int:
        self.stack.append(frame)
        self.word_start = False
        return self._copy(i, n)

    def _pop(self, i: int, n: int = 1) -> int:
        self.stack.pop()
        self.word_start = False
        return self._copy(i, n)

    def _reference(self, template: str) -> None:
        if any(frame.kind is _Kind.ARITH for frame in self.stack):
            raise ValueError(
                "${{ … }} cannot be used in shell arithmetic ($(( … )) or (( … ))): bash "
                "would evaluate the value as an expression, which can run commands; "
                "check it is a number first, e.g. [[ $v =~ ^[0-9]+$ ]]"
            )
        self.out.append(template.format(f"{self.prefix}{self.count}"))
        self.count += 1

    def _escape(self, i: int) -> int:
        if self.text[i + 1 : i + 2] == _MARK:
            raise ValueError(
                "a backslash right before ${{ … }} is ambiguous (the value is passed as "
                "data already): remove the backslash"
            )
        return self._copy(i, 2)

    def _dollar(self, i: int) -> int:
        """``$`` where it expands (unquoted, double quotes, heredoc, arithmetic)."""
        after = self.text[i + 1 : i + 3]
        if after.startswith(_MARK):
            raise ValueError(
                "a '$' right before ${{ … }} is ambiguous: the value is not a variable "
                "name; remove the '$'"
            )
        if after == "((":
            return self._push(_Frame(_Kind.ARITH), i, 3)
        if after.startswith("("):
            return self._push(_Frame(_Kind.CMD), i, 2)
        if after.startswith("$"):
            return self._copy(i, 2)  # $$, the shell's pid
        if self.stack[-1].kind in _UNQUOTED and after[:1] in ("'", '"'):
            kind = _Kind.ANSI if after[0] == "'" else _Kind.DOUBLE
            return self._push(_Frame(kind), i, 2)
        return self._copy(i)

    # -- one function per context ----------------------------------------------------

    def _unquoted(self, i: int) -> int:
        ch, frame = self.text[i], self.stack[-1]
        if ch == _MARK:
            self._reference('"${{{}}}"')
            self.word_start = False
            return i + 1
        special = self._unquoted_special(i, ch, frame)
        if special is not None:
            return special
        if ch == "\n" and self.pending:
            self.stack.append(self.pending.pop(0))
        self.word_start = ch in _BREAKS
        return self._copy(i)

    def _unquoted_special(self, i: int, ch: str, frame: _Frame) -> int | None:
        """Quotes, substitutions, comments and heredocs; None for a plain character."""
        simple = {"'": _Kind.SINGLE, '"': _Kind.DOUBLE}
        if ch in simple:
            return self._push(_Frame(simple[ch]), i, 1)
        if ch == "\\":
            return self._escape(i)
        if ch == "$":
            return self._dollar(i)
        if ch == "`":
            if frame.kind is _Kind.BACKTICK:
                return self._pop(i)
            return self._push(_Frame(_Kind.BACKTICK), i, 1)
        if self.word_start and ch == "#":
            return self._push(_Frame(_Kind.COMMENT), i, 1)
        if self.word_start and self.text.startswith("((", i):
            return self._push(_Frame(_Kind.ARITH), i, 2)
        if self.text.startswith("<<", i):
            return self._redirect(i)
        if frame.kind is _Kind.CMD and ch in "()":
            return self._parenthesis(i, frame)
        return None

    def _parenthesis(self, i: int, frame: _Frame) -> int:
        if self.text[i] == "(":
            frame.depth += 1
        elif frame.depth:
            frame.depth -= 1
        else:
            return self._pop(i)
        self.word_start = True
        return self._copy(i)

    def _double(self, i: int) -> int:
        if self.text[i] == '"':
            return self._pop(i)
        expanded = self._expansion(i)
        return self._copy(i) if expanded is None else expanded

    def _expansion(self, i: int) -> int | None:
        """What double quotes and heredoc bodies share: references, escapes, ``$…``
        and backticks; None for a plain character."""
        ch = self.text[i]
        if ch == _MARK:
            self._reference("${{{}}}")
            return i + 1
        if ch == "\\":
            return self._escape(i)
        if ch == "$":
            return self._dollar(i)
        if ch == "`":
            return self._push(_Frame(_Kind.BACKTICK), i, 1)
        return None

    def _single(self, i: int) -> int:
        ch = self.text[i]
        if ch == _MARK:
            self._reference("'\"${{{}}}\"'")
            return i + 1
        return self._pop(i) if ch == "'" else self._copy(i)

    def _ansi(self, i: int) -> int:
        ch = self.text[i]
        if ch == _MARK:
            self._reference("'\"${{{}}}\"$'")
            return i + 1
        if ch == "\\":
            return self._escape(i)
        return self._pop(i) if ch == "'" else self._copy(i)

    def _arith(self, i: int) -> int:
        ch, frame = self.text[i], self.stack[-1]
        if ch == _MARK:
            self._reference("")  # raises: arithmetic would evaluate the value
        if ch == "$":
            return self._dollar(i)
        if ch == "`":
            return self._push(_Frame(_Kind.BACKTICK), i, 1)
        if ch == "(":
            frame.depth += 1
        elif ch == ")" and frame.depth:
            frame.depth -= 1
        elif ch == ")" and self.text.startswith("))", i):
            return self._pop(i, 2)
        return self._copy(i)

    def _comment(self, i: int) -> int:
        ch = self.text[i]
        if ch == "\n":
            self.stack.pop()  # the newline itself belongs to the enclosing context
            return i
        if ch == _MARK:
            self.out.append(f"${{{self.prefix}{self.count}}}")
            self.count += 1
            return i + 1
        return self._copy(i)

    # -- heredocs ---------------------------------------------------------------------

    def _redirect(self, i: int) -> int:
        """``<<<`` (a here-string), or ``<<``/``<<-`` and the heredoc's delimiter word."""
        if self.text.startswith("<<<", i):
            return self._copy(i, 3)
        start = i + 3 if self.text.startswith("<<-", i) else i + 2
        while self.text[start : start + 1] in (" ", "\t"):
            start += 1
        end, delimiter, quoted = _delimiter(self.text, start)
        if delimiter:
            kind = _Kind.RAW_HEREDOC if quoted else _Kind.HEREDOC
            strip_tabs = self.text.startswith("<<-", i)
            self.pending.append(_Frame(kind, delimiter=delimiter, strip_tabs=strip_tabs))
        self.word_start = False
        return self._copy(i, end - i)

    def _heredoc_end(self, i: int, frame: _Frame) -> int | None:
        """At the start of a body line: past the delimiter line if this is it."""
        frame.line_start = False
        end = self.text.find("\n", i)
        end = len(self.text) if end < 0 else end
        line = self.text[i:end]
        if (line.lstrip("\t") if frame.strip_tabs else line) != frame.delimiter:
            return None
        self.stack.pop()
        if self.pending:
            self.stack.append(self.pending.pop(0))
        return self._copy(i, end + 1 - i)

    def _heredoc(self, i: int) -> int:
        ch, frame = self.text[i], self.stack[-1]
        if frame.line_start and (done := self._heredoc_end(i, frame)) is not None:
            return done
        expanded = self._expansion(i)
        if expanded is not None:
            return expanded
        frame.line_start = ch == "\n"
        return self._copy(i)

    def _raw_heredoc(self, i: int) -> int:
        frame = self.stack[-1]
        if frame.line_start and (done := self._heredoc_end(i, frame)) is not None:
            return done
        end = self.text.find("\n", i)
        end = len(self.text) if end < 0 else end + 1
        if _MARK in self.text[i:end]:
            raise ValueError(
                f"${{{{ … }}}} does not work in a quoted heredoc (<<'{frame.delimiter}'), "
                f"where the shell expands nothing: unquote the delimiter "
                f"(<<{frame.delimiter}) to interpolate"
            )
        frame.line_start = True
        return self._copy(i, end - i)


def _delimiter(text: str, start: int) -> tuple[int, str, bool]:
    """Read a heredoc delimiter word: (end index, the word unquoted, was it quoted)."""
    word: list[str] = []
    quoted = False
    i = start
    while i < len(text) and text[i] not in _BREAKS:
        ch = text[i]
        if ch == _MARK:
            raise ValueError("${{ … }} cannot be used in a heredoc delimiter")
        if ch in "'\"":
            close = text.find(ch, i + 1)
            close = len(text) if close < 0 else close
            if _MARK in text[i:close]:
                raise ValueError("${{ … }} cannot be used in a heredoc delimiter")
            word.append(text[i + 1 : close])
            quoted, i = True, close + 1
        elif ch == "\\":
            word.append(text[i + 1 : i + 2])
            quoted, i = True, i + 2
        else:
            word.append(ch)
            i += 1
    return i, "".join(word), quoted


def splice(
    command: str, values: Sequence[str], *, prefix: str = "WFE_VAR_"
) -> tuple[str, dict[str, str]]:
    """Replace each ``${{ … }}`` in a shell command by a reference to an env variable.

    Args:
        command: shell text with ``${{ … }}`` expressions.
        values: the resolved text of each expression, in order of occurrence.
        prefix: the variable names are ``prefix`` followed by the occurrence number.

    Returns:
        The command with every expression replaced by a reference quoted for its
        context, and the environment variables (name to value) to run it with.

    Raises:
        ValueError: the number of values does not match the expressions, a value or the
            command holds a NUL, or an expression sits where a reference cannot work
            (a quoted heredoc, arithmetic, after ``\\`` or ``$``; see the module doc).
    """
    if not _NAME.fullmatch(prefix):
        raise ValueError(f"invalid environment variable prefix {prefix!r}")
    if _MARK in command:
        raise ValueError("a shell command cannot contain a NUL character")
    marked, found = EXPRESSION.subn(_MARK, command)
    if found != len(values):
        raise ValueError(f"{found} expressions in the command but {len(values)} values")
    for index, value in enumerate(values):
        if _MARK in value:
            raise ValueError(
                f"the value of expression {index + 1} holds a NUL character, which an "
                "environment variable cannot carry"
            )
    spliced = _Scanner(marked, prefix).run()
    return spliced, {f"{prefix}{index}": value for index, value in enumerate(values)}

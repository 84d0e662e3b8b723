"""The live view of ``wfe run``: each step's state while the workflow runs.

On a terminal it redraws one line per step in place; otherwise (a pipe, a CI log) it
prints one line per change, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from wfe import events as ev
from wfe.cli.render import one_line

NOTE_LIMIT = 100
"""Characters of an error shown beside a step in the live view."""

_MARKS = {
    "waiting": "·",
    "running": "▶",
    "done": "✓",
    "failed": "✗",
    "retrying": "↻",
    "skipped": "-",
}


@dataclass
class _Line:
    state: str = "waiting"
    attempt: int = 1
    started: float | None = None
    took: float | None = None
    note: str = ""


@dataclass
class ProgressView:
    """Subscribe :meth:`on_event` to a host; it shows the steps of ``workflow_id``."""

    steps: list[str]
    out: TextIO = field(default_factory=lambda: sys.stdout)
    live: bool | None = None
    workflow_id: str | None = None
    _lines: dict[str, _Line] = field(default_factory=dict)
    _drawn: int = 0

    def __post_init__(self) -> None:
        self._lines = {name: _Line() for name in self.steps}
        if self.live is None:
            self.live = self.out.isatty()

    def on_event(self, event: ev.LifecycleEvent) -> None:
        if not isinstance(event, ev.StepEvent) or event.workflow_id != self.workflow_id:
            return
        line = self._lines.setdefault(event.step_name, _Line())
        line.attempt = event.attempt
        if isinstance(event, ev.StepStarted):
            line.state, line.started, line.note = "running", time.monotonic(), ""
        elif isinstance(event, ev.StepCompleted):
            line.state, line.took = "done", _since(line.started)
        elif isinstance(event, ev.StepSkipped):
            line.state = "skipped"
        elif isinstance(event, ev.StepRetrying):
            line.state, line.note = "retrying", one_line(event.error, NOTE_LIMIT)
        elif isinstance(event, ev.StepFailed):
            line.state, line.took, line.note = (
                "failed",
                _since(line.started),
                one_line(event.error, 100),
            )
        else:
            return
        self._show(event.step_name, line)

    def _show(self, name: str, line: _Line) -> None:
        if not self.live:
            self.out.write(self._format(name, line) + "\n")
            self.out.flush()
            return
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F")  # back to the first line drawn
        for step, state in self._lines.items():
            self.out.write("\x1b[2K" + self._format(step, state) + "\n")
        self._drawn = len(self._lines)
        self.out.flush()

    def start(self) -> None:
        """Draw the initial view (every step waiting) on a terminal."""
        if self.live and self._lines:
            first = next(iter(self._lines))
            self._show(first, self._lines[first])

    @staticmethod
    def _format(name: str, line: _Line) -> str:
        attempt = f" (attempt {line.attempt})" if line.attempt > 1 else ""
        took = "" if line.took is None else f"  {line.took:.1f}s"
        note = f"  {line.note}" if line.note else ""
        return f"  {_MARKS[line.state]} {name:<24} {line.state}{attempt}{took}{note}"


def _since(started: float | None) -> float | None:
    return None if started is None else time.monotonic() - started

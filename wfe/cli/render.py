"""Text the commands print: a workflow's status, its steps, a list of workflows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from wfe.instance import StepInstance, WorkflowInstance


def when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def took(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    seconds = (end - start).total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def step_rows(steps: Sequence[StepInstance]) -> str:
    rows = [["STEP", "STATUS", "ATTEMPT", "STARTED", "TOOK", "DETAIL"]]
    for step in steps:
        rows.append(
            [
                step.name,
                step.status,
                str(step.attempt),
                when(step.start_time),
                took(step.start_time, step.end_time),
                _detail(step),
            ]
        )
    return table(rows)


def _detail(step: StepInstance) -> str:
    if step.error:
        return one_line(step.error)
    if step.event_name is not None and step.status == "WAITING":
        return f"waiting for event {step.event_name!r} key {step.event_key!r}"
    if step.sleep_until is not None and step.status in ("SLEEPING", "PENDING"):
        return f"until {when(step.sleep_until)}"
    return ""


def one_line(text: str, limit: int = 160) -> str:
    """``text`` on one line (whitespace collapsed), cut to ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def status(instance: WorkflowInstance, steps: Sequence[StepInstance]) -> str:
    """``wfe status``: the workflow, its steps with attempts, errors and timings, its data."""
    lines = [
        f"workflow {instance.id}",
        f"  definition  {instance.definition_id} v{instance.version}",
        f"  status      {instance.status.value}",
    ]
    if instance.reference:
        lines.append(f"  reference   {instance.reference}")
    lines.append(f"  created     {when(instance.create_time)}")
    if instance.complete_time is not None:
        lines.append(
            f"  finished    {when(instance.complete_time)} "
            f"(after {took(instance.create_time, instance.complete_time)})"
        )
    if instance.error:
        lines.append(f"  error       {instance.error}")
    lines += ["", step_rows(steps) if steps else "no step has run yet"]
    for step in steps:
        lines += _output(step)
        if step.error:
            lines += ["", f"{step.name} (attempt {step.attempt}) error:", _indent(step.error)]
    data = instance.data if isinstance(instance.data, dict) else {}
    lines += ["", "data:", _indent(json.dumps(data, indent=2, ensure_ascii=False, default=str))]
    return "\n".join(lines)


def _output(step: StepInstance, keep: int = 20) -> list[str]:
    """The end of what a shell or Deno step printed (its outcome keeps the text)."""
    if not isinstance(step.outcome, dict):
        return []
    lines: list[str] = []
    for stream in ("stdout", "stderr"):
        text = step.outcome.get(stream)
        if isinstance(text, str) and text.strip():
            tail = text.rstrip("\n").splitlines()[-keep:]
            lines += ["", f"{step.name} {stream}:", _indent("\n".join(tail))]
    return lines


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def workflows(instances: Sequence[WorkflowInstance]) -> str:
    """``wfe list``: one line per workflow."""
    if not instances:
        return "no workflows"
    rows = [["ID", "DEFINITION", "STATUS", "CREATED", "REFERENCE"]]
    for item in instances:
        rows.append(
            [
                item.id,
                f"{item.definition_id} v{item.version}",
                item.status.value,
                when(item.create_time),
                item.reference or "",
            ]
        )
    return table(rows)

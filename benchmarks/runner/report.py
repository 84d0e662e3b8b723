"""The markdown table (medians, ratio, goal), every rep's raw value, the errors, and
the results file with its JSON dump."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.runner import goals
from benchmarks.runner.machine import one_line


@dataclass
class Record:
    """One run: ``result`` is its protocol line (for xact: the derived counts)."""

    backend: str
    workload: str
    engine: str
    rep: int
    result: dict[str, Any] | None
    error: str | None
    wall_s: float
    log: str

    @property
    def value(self) -> float | None:
        return None if self.result is None else goals.headline(self.workload, self.result)


def _groups(records: list[Record]) -> dict[tuple[str, str], dict[str, list[Record]]]:
    groups: dict[tuple[str, str], dict[str, list[Record]]] = {}
    for r in records:
        groups.setdefault((r.backend, r.workload), {}).setdefault(r.engine, []).append(r)
    return groups


def _median(runs: list[Record]) -> float | None:
    values = [r.value for r in runs if r.error is None and r.value is not None]
    return statistics.median(values) if values else None


def _cell(workload: str, runs: list[Record] | None) -> str:
    if not runs:
        return "—"
    failed = sum(r.error is not None for r in runs)
    if failed == len(runs):
        return "**error**"
    text = goals.fmt(workload, _median(runs))
    if len(runs) == 1 and runs[0].result:
        text += goals.detail(workload, runs[0].result)
    if workload == "xact":
        rollbacks = statistics.median(
            r.result["rollbacks_per_workflow"] for r in runs if r.error is None and r.result
        )
        text += f" (+{rollbacks:.2f} rollbacks)"
    return text + (f" (**{failed} of {len(runs)} runs: error**)" if failed else "")


def _met(
    workload: str, backend: str, wfe: list[Record], value: float | None, r: float | None
) -> tuple[str, str]:
    goal = goals.goal(workload, backend)
    if goal is None:
        return "", ""
    ok = [x.result for x in wfe if x.error is None and x.result]
    if not ok or any(x.error for x in wfe):
        return goal.text, "no (error)"
    if workload in goals.SCALE and all("meets_target" in x for x in ok):
        # The scale scripts judge themselves (multihost also counts duplicates).
        return goal.text, "yes" if all(x["meets_target"] for x in ok) else "no"
    return goal.text, "yes" if goal.met(value, r) else "no"


def rows(records: list[Record]) -> list[dict[str, str]]:
    table = []
    for (backend, workload), engines in _groups(records).items():
        wfe, dbos = engines.get("wfe", []), engines.get("dbos", [])
        wfe_median, dbos_median = _median(wfe), _median(dbos)
        r = goals.ratio(workload, wfe_median, dbos_median)
        goal_text, met = _met(workload, backend, wfe, wfe_median, r)
        table.append(
            {
                "backend": backend,
                "workload": workload,
                "wfe median": _cell(workload, wfe),
                "DBOS median": _cell(workload, dbos),
                "ratio": "—" if r is None else f"{r:.2f}x",
                "goal": goal_text,
                "met": met,
            }
        )
    return table


def markdown_table(table: list[dict[str, str]]) -> str:
    if not table:
        return "(no runs)"
    header = list(table[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in table]
    return "\n".join(lines)


def raw_values(records: list[Record]) -> str:
    lines = []
    for (backend, workload), engines in _groups(records).items():
        for engine, runs in engines.items():
            values = [
                "error" if r.error else goals.fmt(workload, r.value) + _extra(r) for r in runs
            ]
            lines.append(f"- {backend} {workload} {engine}: " + ", ".join(values))
    return "\n".join(lines)


def _extra(r: Record) -> str:
    if r.result and "p90_ms" in r.result:
        return f" (p90 {r.result['p90_ms']:.2f})"
    return goals.detail(r.workload, r.result) if r.result else ""


def errors(records: list[Record]) -> str:
    failed = [r for r in records if r.error]
    return "\n\n".join(
        f"{r.backend} {r.workload} {r.engine} rep {r.rep} (log {r.log}):\n```\n{r.error}\n```"
        for r in failed
    )


def render(records: list[Record]) -> str:
    parts = [markdown_table(rows(records)), "Every run (rep 1, 2, …):", raw_values(records)]
    if any(r.error for r in records):
        parts += ["Errors:", errors(records)]
    return "\n\n".join(parts)


def write_results(
    path: Path,
    json_path: Path,
    records: list[Record],
    machine: dict[str, Any],
    command: str,
    body: str,
) -> None:
    """Append a dated section (``body``: the rendered report) to ``path`` (created if
    missing) and dump everything to ``json_path``."""
    now = datetime.now().astimezone()
    section = "\n\n".join(
        [
            f"## {now:%Y-%m-%d %H:%M %Z} — wfe vs DBOS Transact, side by side (issue 6)",
            f"Machine: {one_line(machine)}.",
            f"Command: `{command}`",
            body,
        ]
    )
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    path.write_text(text.rstrip("\n") + "\n\n" + section + "\n")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    dump = {
        "date": now.isoformat(timespec="seconds"),
        "command": command,
        "machine": machine,
        "table": rows(records),
        "runs": [asdict(r) for r in records],
    }
    json_path.write_text(json.dumps(dump, indent=2) + "\n")

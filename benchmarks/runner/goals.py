"""What each workload's headline number is, how wfe compares with DBOS on it, and the
issue 6 goal it is held to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

THROUGHPUT = ("one_step", "three_step", "dag10")
SIDE_BY_SIDE = (*THROUGHPUT, "latency")
SCALE = ("backlog", "multihost", "memory")
ALL = (*SIDE_BY_SIDE, "xact", "wake", *SCALE)
# Workloads that only make sense on one backend (NOTIFY, transaction counters, many
# hosts sharing row locks).
POSTGRES_ONLY = ("xact", "wake", "multihost")
WFE_ONLY = ("wake", *SCALE)


def headline(workload: str, result: dict[str, Any]) -> float | None:
    """The one number of a run that the table shows (medians are taken over reps)."""
    if workload in THROUGHPUT:
        return result.get("per_second")
    if workload in ("latency", "wake"):
        return result.get("p50_ms")
    if workload == "xact":
        return result.get("commits_per_workflow")
    if workload == "backlog":
        ratio = result.get("ratio")
        return min(ratio.values()) if isinstance(ratio, dict) else ratio
    if workload == "multihost":
        hosts = result.get("hosts", {}).values()
        return float(sum(h.get("never_executed", 0) for h in hosts))
    if workload == "memory":
        # The peak: the largest RSS or high-water mark the script sampled.
        sizes = [
            v for k, v in result.items() if k.startswith(("rss_", "hwm_")) and k.endswith("_mb")
        ]
        return max(sizes, default=None)
    return None


def detail(workload: str, result: dict[str, Any]) -> str:
    """What the headline leaves out: the sizes a backlog ratio compares (--quick runs
    smaller ones), and what else decides multihost's goal."""
    if workload == "backlog" and len(result.get("ratio_of", ())) == 2:
        large, small = result["ratio_of"]
        return f" ({large} vs {small} pending)"
    if workload != "multihost":
        return ""
    hosts = result.get("hosts", {}).values()
    duplicates = sum(h.get("duplicates", 0) for h in hosts)
    issues = sum(h.get("lease_claim_issues", 0) for h in hosts)
    return f", {duplicates} run twice, {issues} lease/claim issues logged"


UNITS = {
    "one_step": "{:.0f}/s",
    "three_step": "{:.0f}/s",
    "dag10": "{:.1f}/s",
    "latency": "{:.2f} ms",
    "wake": "{:.2f} ms",
    "xact": "{:.2f}",
    "backlog": "{:.2f}",
    "multihost": "{:.0f} lost",
    "memory": "{:.0f} MB",
}


def fmt(workload: str, value: float | None) -> str:
    return "—" if value is None else UNITS.get(workload, "{}").format(value)


def ratio(workload: str, wfe: float | None, dbos: float | None) -> float | None:
    """How many times better wfe is: wfe/DBOS for throughput, DBOS/wfe for latency
    and transactions per workflow (lower is better there)."""
    if wfe is None or dbos is None:
        return None
    if workload in THROUGHPUT:
        return wfe / dbos if dbos else None
    if workload in ("latency", "xact"):
        return dbos / wfe if wfe else None
    return None


@dataclass(frozen=True)
class Goal:
    text: str
    met: Callable[[float | None, float | None], bool]  # (wfe median, ratio)


def goal(workload: str, backend: str) -> Goal | None:
    if workload in THROUGHPUT:
        return Goal("≥ 15x DBOS", lambda _v, r: r is not None and r >= 15)
    limit = {"latency": 3.0 if backend == "postgres" else 1.5, "wake": 10.0}.get(workload)
    if limit is not None:
        return Goal(f"p50 ≤ {limit:g} ms", lambda v, _r: v is not None and v <= limit)
    return {
        "xact": Goal("≤ 3 commits / workflow", lambda v, _r: v is not None and v <= 3),
        "backlog": Goal("drain 100k/1k ≥ 0.8", lambda v, _r: v is not None and v >= 0.8),
        # The script also fails on a duplicate or a logged lease/claim issue.
        "multihost": Goal("no workflow lost, clean logs", lambda v, _r: v == 0),
        "memory": Goal("RSS < 150 MB", lambda v, _r: v is not None and v < 150),
    }.get(workload)

"""Where and with what a run was measured, for the results file."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _proc_field(path: str, name: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return None


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "?"


def describe(pg_version: str | None, dbos_version: str | None) -> dict[str, str | int | None]:
    mem_kb = _proc_field("/proc/meminfo", "MemTotal")
    return {
        "nproc": os.cpu_count(),
        "memory": f"{int(mem_kb.split()[0]) / 2**20:.1f} GiB" if mem_kb else None,
        "cpu": _proc_field("/proc/cpuinfo", "model name"),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "sqlite": sqlite3.sqlite_version,
        "wfe": f"{_git('describe', '--always', '--dirty')} ({_git('rev-parse', 'HEAD')})",
        "dbos": dbos_version,
    }


def one_line(machine: dict[str, str | int | None]) -> str:
    return (
        f"{machine['nproc']} cores, {machine['memory']}, {machine['cpu']}; "
        f"Python {machine['python']}; PostgreSQL {machine['postgresql']} on loopback; "
        f"SQLite {machine['sqlite']}; wfe {machine['wfe']}; dbos {machine['dbos']}"
    )

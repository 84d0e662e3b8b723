"""One benchmark run in a fresh subprocess: its protocol line, or a loud error.

A run is an error when it exits non-zero, outlives its timeout, or does not end its
stdout with one JSON object; the error keeps the tail of its stderr so the report can
show why. Each run's stderr is also kept whole in ``benchmarks/.work/logs/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "benchmarks" / ".work" / "logs"
TAIL_LINES = 12


@dataclass
class Run:
    """What one subprocess gave: ``result`` (its protocol line) or ``error``."""

    command: list[str]
    result: dict[str, Any] | None = None
    error: str | None = None
    wall_s: float = 0.0
    log: str = ""


def protocol_line(stdout: str) -> dict[str, Any] | None:
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        value = json.loads(lines[-1])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the run's process group (the run and any host processes it spawned),
    then SIGKILL what is left after 10 s."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), grace)
            return


async def run(command: list[str], label: str, timeout: float) -> Run:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{label}.log"
    outcome = Run(command, log=str(log.relative_to(ROOT)))
    began = time.perf_counter()
    with log.open("w") as stderr:
        stderr.write(" ".join(command) + "\n")
        stderr.flush()
        proc = await asyncio.create_subprocess_exec(
            *command,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,  # its own process group, so a timeout stops it all
        )
        try:
            stdout, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            await _stop(proc)
            outcome.error = f"timed out after {timeout:g} s"
        except BaseException:
            await _stop(proc)
            raise
    outcome.wall_s = time.perf_counter() - began
    if outcome.error is None:
        outcome.result = protocol_line(stdout.decode(errors="replace"))
        if proc.returncode != 0:
            outcome.error = f"exit status {proc.returncode}"
        elif outcome.result is None:
            outcome.error = "no JSON protocol line at the end of stdout"
    if outcome.error is not None:
        outcome.error += "\n" + tail(log)
    return outcome

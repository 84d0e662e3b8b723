"""Fixtures for the command-line tests: the real ``wfe`` program in real processes.

``cli`` runs ``python -m wfe COMMAND ... --db URL`` in the test's ``tmp_path`` (so the
files a step writes land there) and returns what it printed and its exit code;
``cli.many`` runs several commands at once; ``cli.spawn`` starts a long-lived one
(``wfe worker``, a ``wfe run`` to be killed) in a session of its own, killed with
SIGKILL to its whole group at teardown whether the test passed or not. ``client`` reads
the same database in-process; ``step_groups`` kills step processes a killed ``wfe`` left.

Deadlines here only keep a broken test from hanging; no test asserts how long anything
took.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DEADLINE = 60.0
"""Seconds before a command or a wait is declared stuck (never a measured bound)."""

STARTED = re.compile(r"^started \S+ v\d+ as (\S+)$", re.MULTILINE)
RESUMING = re.compile(r"^resuming run (\S+) ", re.MULTILINE)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("WFE_DB", None)  # every command gets --db; a stray default must not leak in
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def printed_id(output: str, context: str) -> str:
    """The workflow id in ``wfe run``'s ``started ... as ID`` or ``resuming run ID``."""
    match = STARTED.search(output) or RESUMING.search(output)
    assert match is not None, f"no workflow id printed:\n{context}"
    return match.group(1)


@dataclass(frozen=True)
class Done:
    """A finished command: its arguments, exit code and output."""

    args: Sequence[str]
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def explain(self) -> str:
        command = " ".join(self.args)
        return f"wfe {command} -> {self.code}\n{self.stdout}\n--- stderr ---\n{self.stderr}"

    def workflow_id(self) -> str:
        """The id ``wfe run`` printed (started or resumed)."""
        return printed_id(self.stdout, self.explain())

    def user_error(self) -> str:
        """Assert a user error (exit 2, one ``wfe:`` paragraph, no traceback); its text."""
        assert self.code == 2, self.explain()
        assert "Traceback" not in self.output, self.explain()
        message = self.stderr.strip()
        assert message.startswith("wfe: "), self.explain()
        assert "\n\n" not in message, f"more than one paragraph:\n{self.explain()}"
        return message


class Spawned:
    """A long-lived ``wfe`` process in its own session; stdout and stderr go to a file."""

    def __init__(self, args: Sequence[str], cwd: Path, log: Path) -> None:
        self.args = list(args)
        self.log = log
        with open(log, "wb") as sink:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wfe", *self.args],
                cwd=cwd,
                env=_env(),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def workflow_id(self) -> str:
        """The id a spawned ``wfe run`` printed so far."""
        output = self.output()
        return printed_id(output, output)

    def wait_for_output(self, text: str, deadline: float = DEADLINE) -> str:
        """The output once it contains ``text``; fails if the process exits first."""
        end = time.monotonic() + deadline
        while text not in (seen := self.output()):
            if self.proc.poll() is not None:
                raise AssertionError(f"wfe {self.args} exited ({self.proc.returncode}):\n{seen}")
            if time.monotonic() > end:
                raise AssertionError(f"no {text!r} from wfe {self.args} in {deadline}s:\n{seen}")
            time.sleep(0.05)
        return seen

    def kill(self) -> None:
        """SIGKILL the whole process group (the program and anything in its group)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


class Cli:
    """Runs ``wfe`` commands against the test's database, in the test's folder."""

    def __init__(self, cwd: Path, db: str) -> None:
        self.cwd = cwd
        self.db = db
        self.spawned: list[Spawned] = []

    def _argv(self, args: Sequence[str]) -> list[str]:
        return [sys.executable, "-m", "wfe", *args, "--db", self.db]

    def __call__(self, *args: str, timeout: float = DEADLINE) -> Done:
        return self.many([*args], timeout=timeout)[0]

    def many(self, *commands: Sequence[str], timeout: float = DEADLINE) -> list[Done]:
        """Run the commands at the same time; each result, in order."""
        procs = [
            subprocess.Popen(
                self._argv(args),
                cwd=self.cwd,
                env=_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                encoding="utf-8",
                errors="replace",
                start_new_session=True,
            )
            for args in commands
        ]
        end = time.monotonic() + timeout
        results: list[Done] = []
        try:
            for args, proc in zip(commands, procs, strict=True):
                try:
                    out, err = proc.communicate(timeout=max(end - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
                    out, err = proc.communicate()
                    raise AssertionError(
                        f"wfe {' '.join(args)} still running after {timeout}s:\n{out}\n{err}"
                    ) from None
                results.append(Done(list(args), proc.returncode, out, err))
        finally:
            for proc in procs[len(results) :]:  # left over when one of them failed
                _kill_group(proc)
                proc.communicate()
        return results

    def spawn(self, *args: str, name: str) -> Spawned:
        """Start a long-lived command (with ``--db``); killed at teardown."""
        spawned = Spawned([*args, "--db", self.db], self.cwd, self.cwd / f"{name}.log")
        self.spawned.append(spawned)
        return spawned


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def cli(tmp_path: Path, db_url: str) -> Iterator[Cli]:
    """The ``wfe`` program on the test's database; spawned processes die at teardown."""
    runner = Cli(tmp_path, db_url)
    try:
        yield runner
    finally:
        for spawned in runner.spawned:
            spawned.kill()


@pytest.fixture
def step_groups() -> Iterator[list[int]]:
    """Step processes a test saw (pids from a pid file they wrote); the process group of
    each is killed at teardown, so a step can never outlive its test, even if the step
    watcher that kills it with its host failed."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)


def write(folder: Path, name: str, text: str) -> Path:
    """Write a workflow file (or any file) and return its path."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie nobody reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


Describe = str | Callable[[], str]
"""What a wait is for: text, or a function giving it when the wait fails (to show the
output a process had printed by then)."""


def _stuck(what: Describe, deadline: float) -> AssertionError:
    return AssertionError(f"{what if isinstance(what, str) else what()}: not within {deadline}s")


def poll(check: Callable[[], Any], what: Describe, deadline: float = DEADLINE) -> Any:
    """Poll ``check`` until it returns something truthy (and return that), in a
    synchronous test; async tests use ``tests.crash.procs.wait_until``."""
    end = time.monotonic() + deadline
    while not (result := check()):
        if time.monotonic() > end:
            raise _stuck(what, deadline)
        time.sleep(0.05)
    return result


def status_data(status_output: str) -> dict[str, Any]:
    """The workflow data ``wfe status`` prints after its ``data:`` line."""
    _, sep, block = status_output.partition("\ndata:\n")
    assert sep, f"no data block in:\n{status_output}"
    value = json.loads(block)
    assert isinstance(value, dict)
    return value


def step_row(status_output: str, step: str) -> list[str]:
    """The cells of ``step``'s row in a printed step table (name, status, attempt, ...)."""
    for line in status_output.splitlines():
        cells = line.split()
        if cells and cells[0] == step:
            return cells
    raise AssertionError(f"no row for step {step!r} in:\n{status_output}")

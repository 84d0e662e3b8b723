"""Lease owner names that say which process holds a lease.

A host's owner name carries its machine, process id and the process's start time, so a
command on the same machine can tell that the holder of a lease is gone (killed,
crashed) and take the work over at once instead of waiting for the lease to expire. The
start time guards against a recycled process id.
"""

from __future__ import annotations

import os
import socket
import uuid


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[19] if len(fields) > 19 else None


def owner_name() -> str:
    """A unique owner name for a new host in this process."""
    pid = os.getpid()
    return f"host-{uuid.uuid4().hex[:12]}@{socket.gethostname()}:{pid}:{_start_time(pid) or 0}"


def is_dead_local_owner(owner: str | None) -> bool:
    """True when ``owner`` names a process of this machine that no longer runs.

    False when it cannot be told (another machine, an old-style name, no ``/proc``
    and the pid is alive): the caller then waits for the lease as usual.
    """
    if owner is None or "@" not in owner:
        return False
    try:
        machine, pid_text, started = owner.rsplit("@", 1)[1].rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if machine != socket.gethostname() or pid == os.getpid():
        return False
    now_started = _start_time(pid)
    if now_started is not None:
        return now_started != started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return started != "0" and os.path.isdir("/proc")

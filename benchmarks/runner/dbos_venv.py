"""The DBOS venv at ``benchmarks/.venv-dbos``: created once, reused while it holds the
pinned version. It is built from the interpreter running the benchmarks (the project
venv's base Python), so both engines run on the same Python and the same SQLite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
VENV = BENCH / ".venv-dbos"
REQUIREMENTS = BENCH / "peers" / "requirements-dbos.txt"
PYTHON = VENV / "bin" / "python"


def pinned_version() -> str:
    for line in REQUIREMENTS.read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if name == "dbos" and sep:
            return version
    raise RuntimeError(f"{REQUIREMENTS} pins no dbos==<version>")


def installed_version() -> str | None:
    if not PYTHON.exists():
        return None
    probe = subprocess.run(
        [str(PYTHON), "-c", "import importlib.metadata as m; print(m.version('dbos'))"],
        capture_output=True,
        text=True,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure() -> Path:
    """The venv's python, (re)creating the venv when it is missing or holds another
    dbos version."""
    wanted = pinned_version()
    if installed_version() == wanted:
        return PYTHON
    print(f"creating {VENV} with dbos=={wanted}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    if installed_version() != wanted:
        raise RuntimeError(f"{VENV}: dbos=={wanted} did not install")
    return PYTHON

"""Entry points the multi-process tests run as real processes.

``python -m tests.sql.procs migrate URL``
    migrate the database (of any SQL backend) and exit.
``python -m tests.sql.procs claim URL OWNER START_AT``
    wait until the wall-clock time ``START_AT`` (so that every process starts
    together), then claim (two at a time, 30 s leases) until nothing is left, and
    print the claimed workflow ids as one JSON list.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from wfe.backends import open_backend

from .support import ELIGIBLE


async def migrate(url: str) -> None:
    backend = open_backend(url)
    try:
        await backend.persistence.migrate()
    finally:
        await backend.close()


async def claim_all(url: str, owner: str, start_at: float) -> list[str]:
    backend = open_backend(url)
    claimed: list[str] = []
    try:
        await backend.persistence.migrate()
        await asyncio.sleep(max(start_at - time.time(), 0))
        empty_rounds = 0
        while empty_rounds < 3:
            claims = await backend.queue.claim(owner, 2, 30.0, ELIGIBLE)
            claimed += [claim.workflow_id for claim in claims]
            empty_rounds = 0 if claims else empty_rounds + 1
    finally:
        await backend.close()
    return claimed


def main(argv: list[str]) -> None:
    command, url, *rest = argv
    if command == "migrate":
        asyncio.run(migrate(url))
    elif command == "claim":
        owner, start_at = rest
        print(json.dumps(asyncio.run(claim_all(url, owner, float(start_at)))))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

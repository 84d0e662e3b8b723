"""Durations as YAML files write them: ``"120s"``, ``"1m30s"``, ``"500ms"``, or seconds."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds in ``value``: a non-negative number, or text like ``"1h30m"``/``"250ms"``.

    Raises:
        ValueError: anything else, with the accepted forms in the message.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace(" ", "")
        parts = list(_PART.finditer(text))
        if "".join(p.group(0) for p in parts) != text:
            raise ValueError(
                f"{value!r} is not a duration: use e.g. 90, '90s', '1m30s', '500ms', '2h'"
            )
        seconds = sum(float(p.group(1)) * _UNITS[p.group(2)] for p in parts)
    else:
        raise ValueError(f"{value!r} is not a duration: use e.g. 90, '90s', '1m30s', '2h'")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{value!r} is not a duration: it must be a finite time >= 0")
    return seconds

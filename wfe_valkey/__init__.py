"""Valkey/Redis providers of wfe, for many hosts on one database: a distributed lock
and queue, with the database still the source of truth and the fence.

``with_valkey(backend, "redis://host:6379/0")`` moves a backend's queue and lock to
Valkey; a database URL does the same with ``?valkey=redis://host:6379/0``. ``import
wfe_valkey`` is cheap and does not need redis-py; the providers load it when used.
"""

from __future__ import annotations

from wfe_valkey.backend import ValkeyBackend, with_valkey
from wfe_valkey.url import ValkeyUrl, parse_url

__all__ = ["ValkeyBackend", "ValkeyUrl", "parse_url", "with_valkey"]

"""Valkey/Redis URLs: parsed and checked before anything connects.

Pure parsing with no import of redis-py, so that a PostgreSQL URL carrying a
``valkey=`` option is checked (and a bad one refused) before any store is opened, and
so that ``wfe_postgres`` can read the option without the ``valkey`` extra installed.

Accepted forms::

    redis://[[user]:password@]host[:port][/db][?prefix=wfe]
    rediss://...                      (TLS)
    valkey://... / valkeys://...      (the same as redis:// / rediss://)
    unix://[[user]:password@]/path/to/socket[?db=0&prefix=wfe]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import SplitResult, parse_qsl, unquote, unquote_plus, urlsplit

DEFAULT_PREFIX = "wfe"
DEFAULT_PORT = 6379

_SCHEMES = {"redis": "redis", "rediss": "rediss", "valkey": "redis", "valkeys": "rediss"}
_PREFIX = re.compile(r"[A-Za-z0-9_.:{}-]+")
"""Key prefixes are plain words: no spaces, and no glob characters, so that a prefix can
be matched with ``SCAN MATCH prefix:*`` to find (or clean up) every key it owns."""


@dataclass(frozen=True)
class ValkeyUrl:
    """Where a Valkey/Redis server is and which key namespace wfe uses on it."""

    scheme: str
    """``"redis"``, ``"rediss"`` (TLS) or ``"unix"``; ``valkey(s)://`` map to redis(s)."""
    host: str = "localhost"
    port: int = DEFAULT_PORT
    path: str | None = None
    """The socket file of a ``unix://`` URL (then ``host`` and ``port`` are unused)."""
    db: int = 0
    username: str | None = None
    password: str | None = None
    prefix: str = DEFAULT_PREFIX
    """Every key wfe writes starts with ``{prefix}:``."""

    @property
    def tls(self) -> bool:
        return self.scheme == "rediss"

    def with_prefix(self, prefix: str) -> ValkeyUrl:
        """This URL with another key namespace (checked as in :func:`parse_url`)."""
        return replace(self, prefix=check_prefix(prefix))

    def display(self) -> str:
        """The URL for messages and logs, password hidden, options left out."""
        auth = ""
        if self.username or self.password:
            auth = f"{self.username or ''}{':***' if self.password else ''}@"
        if self.path is not None:
            return f"unix://{auth}{self.path}?db={self.db}"
        return f"{self.scheme}://{auth}{self.host}:{self.port}/{self.db}"


def parse_url(url: str) -> ValkeyUrl:
    """Parse and check a Valkey/Redis URL (forms in the module's docstring).

    Raises:
        ValueError: naming the malformed or unknown part: the scheme, the port, the
            database number, an option, or a unix URL without a socket path.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme != "unix" and scheme not in _SCHEMES:
        raise ValueError(
            f"unsupported scheme {parts.scheme!r} in Valkey URL (or no scheme): use "
            "redis://, rediss://, valkey://, valkeys:// or unix://"
        )
    if parts.fragment:
        raise ValueError(f"a Valkey URL takes no fragment (#{parts.fragment})")
    options = _options(parts.query)
    prefix = check_prefix(options.pop("prefix", DEFAULT_PREFIX))
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if scheme == "unix":
        return _unix(parts.hostname, parts.path, options, username, password, prefix)
    if options:
        raise _unknown(options, ["prefix"], "(the database number goes in the path: /0)")
    return ValkeyUrl(
        scheme=_SCHEMES[scheme],
        host=parts.hostname or "localhost",
        port=_port(parts),
        db=_db(parts.path.removeprefix("/"), "path"),
        username=username,
        password=password,
        prefix=prefix,
    )


def check_prefix(prefix: str) -> str:
    """``prefix`` if it can name a key namespace.

    Raises:
        ValueError: it is empty or holds characters other than those of ``_PREFIX``.
    """
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"bad Valkey key prefix {prefix!r}: use letters, digits and _ . : - {{ }}")
    return prefix


def _unix(
    host: str | None,
    path: str,
    options: dict[str, str],
    username: str | None,
    password: str | None,
    prefix: str,
) -> ValkeyUrl:
    if host:
        raise ValueError(f"a unix:// Valkey URL takes a socket path, not a host ({host!r})")
    if not path or path == "/":
        raise ValueError("a unix:// Valkey URL needs the socket's path: unix:///path/to/socket")
    db = _db(options.pop("db", "0"), "option db")
    if options:
        raise _unknown(options, ["db", "prefix"], "")
    return ValkeyUrl(
        scheme="unix",
        path=unquote(path),
        db=db,
        username=username,
        password=password,
        prefix=prefix,
    )


def _options(query: str) -> dict[str, str]:
    """The query's options; a key given twice, or without ``=``, is refused."""
    options: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ValueError(f"malformed Valkey URL options {query!r}: {exc}") from None
    for key, value in pairs:
        if key in options:
            raise ValueError(f"Valkey URL option {key!r} is given twice")
        options[key] = value
    return options


def _unknown(options: dict[str, str], known: list[str], hint: str) -> ValueError:
    return ValueError(
        f"unknown Valkey URL option(s) {sorted(options)}: known are {known} {hint}".rstrip()
    )


def _port(parts: SplitResult) -> int:
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"bad port in Valkey URL host {parts.netloc!r}: a number 1-65535")
    return DEFAULT_PORT if port is None else port


def _db(raw: str, where: str) -> int:
    if raw == "":
        return 0
    if not raw.isdigit() or not raw.isascii():
        raise ValueError(f"bad database number {raw!r} in Valkey URL {where}: a number 0, 1, ...")
    return int(raw)


DATABASE_URL_OPTIONS = ("valkey", "valkey_prefix")
"""The options a database URL takes to put its lock (and queue) in Valkey."""


def split_database_url(url: str) -> tuple[str, ValkeyUrl | None]:
    """A database URL without its Valkey options, and the Valkey URL they give.

    ``postgresql://db/wfe?valkey=redis://cache:6379/0&valkey_prefix=orders`` gives
    ``postgresql://db/wfe`` and the Valkey URL with prefix ``orders``. The database's
    other options are kept as written. Without ``valkey=`` the second value is ``None``.

    Raises:
        ValueError: the Valkey URL is malformed, an option is given twice, or
            ``valkey_prefix`` comes without ``valkey``.
    """
    base, mark, query = url.partition("?")
    if not mark:
        return url, None
    found: dict[str, str] = {}
    kept: list[str] = []
    for pair in query.split("&"):
        key = unquote_plus(pair.partition("=")[0])
        if key not in DATABASE_URL_OPTIONS:
            kept.append(pair)
        elif key in found:
            raise ValueError(f"database URL option {key!r} is given twice")
        else:
            found[key] = unquote_plus(pair.partition("=")[2])
    rest = f"{base}?{'&'.join(kept)}" if kept else base
    if "valkey" not in found:
        if "valkey_prefix" in found:
            raise ValueError("database URL option valkey_prefix needs valkey=redis://...")
        return rest, None
    valkey = parse_url(found["valkey"])
    if "valkey_prefix" in found:
        valkey = valkey.with_prefix(found["valkey_prefix"])
    return rest, valkey

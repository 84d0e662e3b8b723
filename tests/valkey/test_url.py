"""Valkey URLs: the accepted forms, and a clear ``ValueError`` naming the bad part of
anything else (no server needed)."""

from __future__ import annotations

import pytest

from wfe_valkey.url import ValkeyUrl, parse_url, split_database_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6380/2", ValkeyUrl("redis", "127.0.0.1", 6380, db=2)),
        ("redis://cache", ValkeyUrl("redis", "cache")),
        ("valkey://cache/1?prefix=orders", ValkeyUrl("redis", "cache", db=1, prefix="orders")),
        (
            "rediss://u:p%40ss@cache:6390",
            ValkeyUrl("rediss", "cache", 6390, username="u", password="p@ss"),
        ),
        ("valkeys://:secret@cache", ValkeyUrl("rediss", "cache", password="secret")),
        (
            "unix:///run/valkey.sock?db=3&prefix=a:b",
            ValkeyUrl("unix", path="/run/valkey.sock", db=3, prefix="a:b"),
        ),
        ("REDIS://cache/", ValkeyUrl("redis", "cache")),
    ],
)
def test_accepted_urls(url: str, expected: ValkeyUrl) -> None:
    assert parse_url(url) == expected


def test_tls_and_the_display_form_hide_the_password() -> None:
    url = parse_url("valkeys://app:secret@cache:6390/4")

    assert url.tls
    assert "secret" not in url.display()
    assert url.display() == "rediss://app:***@cache:6390/4"


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("http://cache:6379", "scheme 'http'"),
        ("cache:6379", "scheme"),
        ("redis://cache:port/0", "port"),
        ("redis://cache:0/0", "port"),
        ("redis://cache:70000/0", "port"),
        ("redis://cache/zero", "database number 'zero'"),
        ("redis://cache/0/1", "database number"),
        ("redis://cache/-1", "database number"),
        ("redis://cache/0?timeout=5", "unknown Valkey URL option(s) ['timeout']"),
        ("redis://cache/0?db=1", "['db']"),
        ("redis://cache/0?prefix=a&prefix=b", "'prefix' is given twice"),
        ("redis://cache/0?prefix=", "prefix ''"),
        ("redis://cache/0?prefix=a%20b", "prefix 'a b'"),
        ("redis://cache/0?prefix=wfe*", "prefix 'wfe*'"),
        ("redis://cache/0?prefix", "options"),
        ("redis://cache/0#frag", "fragment"),
        ("unix://cache/run/valkey.sock", "not a host ('cache')"),
        ("unix://", "socket's path"),
        ("unix:///run/valkey.sock?db=x", "database number 'x'"),
        ("unix:///run/valkey.sock?size=1", "['size']"),
    ],
)
def test_malformed_urls_name_the_bad_part(url: str, names: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_url(url)

    assert names in str(caught.value)


def test_a_database_url_gives_up_its_valkey_options_and_keeps_the_others() -> None:
    db, valkey = split_database_url(
        "postgresql://app@db/wfe?pool_size=5&valkey=redis%3A%2F%2Fcache%3A6380%2F1"
        "&valkey_prefix=orders&listen=false"
    )

    assert db == "postgresql://app@db/wfe?pool_size=5&listen=false"
    assert valkey == ValkeyUrl("redis", "cache", 6380, db=1, prefix="orders")


def test_an_unencoded_valkey_url_and_no_options_at_all() -> None:
    assert split_database_url("postgresql://db/wfe?valkey=redis://cache:6379/2") == (
        "postgresql://db/wfe",
        ValkeyUrl("redis", "cache", db=2),
    )
    assert split_database_url("postgresql://db/wfe?pool_size=5") == (
        "postgresql://db/wfe?pool_size=5",
        None,
    )
    assert split_database_url("postgresql://db/wfe") == ("postgresql://db/wfe", None)


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("postgresql://db/wfe?valkey_prefix=x", "valkey_prefix needs valkey="),
        ("postgresql://db/wfe?valkey=redis://a&valkey=redis://b", "'valkey' is given twice"),
        ("postgresql://db/wfe?valkey=http://cache", "scheme 'http'"),
        ("postgresql://db/wfe?valkey=redis://cache&valkey_prefix=a*b", "prefix 'a*b'"),
    ],
)
def test_bad_valkey_options_of_a_database_url(url: str, names: str) -> None:
    with pytest.raises(ValueError) as caught:
        split_database_url(url)

    assert names in str(caught.value)

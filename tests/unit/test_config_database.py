"""[database]: several hosts in url, read_url for reports, clear errors for bad ones."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, from_mapping

MULTI = "postgresql://gw:pw@db1:5432,db2:5433,[::1]:5434/gw?target_session_attrs=read-write"


def test_a_multi_host_url_and_a_read_url_are_taken_as_written() -> None:
    read = "postgresql://gw@db1:5432,db2:5433/gw?target_session_attrs=prefer-standby"
    cfg = from_mapping({"database": {"url": MULTI, "read_url": read}})
    assert cfg.database.url == MULTI
    assert cfg.database.read_url == read


def test_read_url_defaults_to_empty_and_comes_from_the_environment() -> None:
    assert from_mapping({}).database.read_url == ""
    env = {"GATEWAY_DATABASE_URL": MULTI, "GATEWAY_DATABASE_READ_URL": "postgres://r@db2/gw"}
    cfg = from_mapping({}, env)
    assert (cfg.database.url, cfg.database.read_url) == (MULTI, "postgres://r@db2/gw")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://db1,db2/gw",  # default ports
        "postgresql://gw@db1:5432,db2:5433?target_session_attrs=primary",  # no path
        "postgresql:///gw?host=/run/postgresql",  # a Unix socket
        "postgres://gw@[2001:db8::1]:5432/gw",
    ],
)
def test_other_libpq_shapes_pass(url: str) -> None:
    assert from_mapping({"database": {"url": url}}).database.url == url


@pytest.mark.parametrize(
    ("key", "url", "message"),
    [
        ("url", "mysql://db1/gw", "database.url: must be empty (embedded server) or a URL"),
        ("url", "postgresql://db1:5432,db2:port/gw", "host 'db2:port': the port must be"),
        ("url", "postgresql://db1:99999/gw", "the port must be a number 1-65535"),
        ("url", "postgresql://db1,,db2/gw", "has an empty host in its host list"),
        ("read_url", "postgresql://[::1:5432/gw", "an IPv6 address needs its closing ]"),
        (
            "url",
            "postgresql://db1,db2/gw?target_session_attrs=master",
            "target_session_attrs must be one of any, primary, standby, prefer-standby",
        ),
    ],
)
def test_a_bad_url_names_the_key_and_the_fault(key: str, url: str, message: str) -> None:
    table = {"url": MULTI, key: url}
    with pytest.raises(ConfigError, match=rf"database\.{key}:") as caught:
        from_mapping({"database": table})
    assert message.replace("database.url: ", "") in str(caught.value)


def test_read_url_needs_url() -> None:
    with pytest.raises(ConfigError, match=r"database\.read_url: needs database\.url") as caught:
        from_mapping({"database": {"read_url": "postgresql://gw:secret@db2/gw"}})
    assert "secret" not in str(caught.value)

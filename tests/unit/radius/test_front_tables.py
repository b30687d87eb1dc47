"""Client matching, the reply cache and the refusal table: no sockets needed."""

from __future__ import annotations

import pytest

from gateway.config import RadiusClientConfig
from gateway.core.reasons import Reason
from gateway.radius.clients import ClientTable
from gateway.radius.dedup import ReplyCache
from gateway.radius.replies import DEFAULT_RETURN_CODES, SILENT, ReturnCodes, reply_message


def _table() -> ClientTable:
    return ClientTable.from_config(
        (
            RadiusClientConfig(name="lan", address="10.0.0.0/8", secret="a"),
            RadiusClientConfig(name="one", address="10.1.2.3", secret="b", profile="standard"),
            RadiusClientConfig(name="v6", address="2001:db8::/32", secret="c"),
        )
    )


@pytest.mark.parametrize(
    ("address", "name"),
    [
        ("10.1.2.3", "one"),
        ("10.9.9.9", "lan"),
        ("::ffff:10.1.2.3", "one"),
        ("2001:db8::1", "v6"),
        ("192.0.2.1", None),
        ("::1", None),
    ],
)
def test_most_specific_client_wins(address: str, name: str | None) -> None:
    found = _table().match(address)
    assert (found.name if found else None) == name


def test_client_carries_its_policy() -> None:
    client = _table().match("10.1.2.3")
    assert client is not None
    assert client.secret == b"b" and client.profile == "standard"
    assert client.policy.order == ("extension", "caller_id")


def test_reply_cache_answers_copies_and_forgets_unanswered() -> None:
    cache = ReplyCache(window_s=30)
    key = ("10.0.0.1", 4000, 7, b"A" * 16)
    assert cache.begin(key, now=0) is None
    assert cache.begin(key, now=1) == b""  # in progress: drop the copy
    cache.finish(key, b"reply", now=2)
    assert cache.begin(key, now=3) == b"reply"
    assert cache.begin(key, now=40) is None  # expired: a new request
    cache.finish(key, None, now=41)
    assert cache.begin(key, now=42) is None  # no reply was sent: process again
    other = ("10.0.0.1", 4001, 7, b"A" * 16)
    assert cache.begin(other, now=42) is None  # another source port is another request


def test_reply_cache_is_bounded() -> None:
    cache = ReplyCache(window_s=30, max_entries=100)
    for i in range(1000):
        cache.begin(("10.0.0.1", 1, i % 256, i.to_bytes(16, "big")), now=0)
    assert len(cache) == 100


def test_return_codes_defaults_and_overrides() -> None:
    codes = ReturnCodes([("ZERO_BALANCE", 14)])
    assert codes.code(Reason.ZERO_BALANCE) == 14
    assert codes.code(Reason.AGENT_CAP) == 6
    assert DEFAULT_RETURN_CODES[Reason.INSUFFICIENT_FUNDS] == 12
    with pytest.raises(ValueError, match="unknown refusal reason"):
        ReturnCodes([("BROKE", 1)])
    assert Reason.BACKEND_UNAVAILABLE in SILENT
    for reason in Reason:
        if reason not in SILENT:
            assert reply_message(reason)

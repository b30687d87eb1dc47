"""The shipped dictionaries and the attribute table compiled from them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pyrad.dictionary import Dictionary as PyradDictionary

from gateway.radius import Dictionary, UnknownAttribute, default_dictionary
from gateway.radius.dictionary import DICTIONARY_DIR, wire_key

CISCO = {
    "Cisco-AVPair": 1,
    "h323-remote-address": 23,
    "h323-conf-id": 24,
    "h323-setup-time": 25,
    "h323-call-origin": 26,
    "h323-call-type": 27,
    "h323-connect-time": 28,
    "h323-disconnect-time": 29,
    "h323-disconnect-cause": 30,
    "h323-voice-quality": 31,
    "h323-gw-id": 33,
    "h323-incoming-conf-id": 35,
    "h323-credit-amount": 101,
    "h323-credit-time": 102,
    "h323-return-code": 103,
    "h323-prompt-id": 104,
    "h323-time-and-day": 105,
    "h323-redirect-number": 106,
    "h323-preferred-lang": 107,
    "h323-redirect-ip-address": 108,
    "h323-billing-model": 109,
    "h323-currency": 110,
}


def test_pyrad_reads_every_file_without_skipping(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pyrad"):
        d = PyradDictionary(str(DICTIONARY_DIR / "dictionary"))
    assert not caplog.records  # nothing skipped, no VALUE for an unknown attribute
    assert not d.skipped_attributes
    files = {p.name for p in DICTIONARY_DIR.iterdir()}
    assert files == {
        "dictionary",
        "dictionary.rfc2865",
        "dictionary.rfc2866",
        "dictionary.rfc2869",
        "dictionary.rfc5176",
        "dictionary.cisco",
    }


@pytest.mark.parametrize(("name", "number"), sorted(CISCO.items()))
def test_cisco_attributes_are_vendor_9_strings(name: str, number: int) -> None:
    d = default_dictionary().attribute(name)
    assert (d.vendor, d.number, d.type) == (9, number, "string")
    assert d.key == wire_key(9, number) == 9 << 8 | number


@pytest.mark.parametrize(
    ("name", "number", "kind"),
    [
        ("User-Name", 1, "string"),
        ("User-Password", 2, "string"),
        ("CHAP-Password", 3, "octets"),
        ("NAS-IP-Address", 4, "ipaddr"),
        ("Service-Type", 6, "integer"),
        ("Reply-Message", 18, "string"),
        ("Class", 25, "octets"),
        ("Session-Timeout", 27, "integer"),
        ("Called-Station-Id", 30, "string"),
        ("Calling-Station-Id", 31, "string"),
        ("Proxy-State", 33, "octets"),
        ("Acct-Status-Type", 40, "integer"),
        ("Acct-Session-Id", 44, "string"),
        ("Acct-Session-Time", 46, "integer"),
        ("Acct-Terminate-Cause", 49, "integer"),
        ("Event-Timestamp", 55, "date"),
        ("CHAP-Challenge", 60, "octets"),
        ("NAS-Port-Type", 61, "integer"),
        ("Message-Authenticator", 80, "octets"),
        ("Acct-Interim-Interval", 85, "integer"),
        ("NAS-Port-Id", 87, "string"),
        ("Error-Cause", 101, "integer"),
    ],
)
def test_standard_attributes(name: str, number: int, kind: str) -> None:
    d = default_dictionary().attribute(name)
    assert (d.vendor, d.number, d.type, d.key) == (0, number, kind, number)


def test_user_password_is_hidden_octets() -> None:
    d = default_dictionary().attribute("User-Password")
    assert d.encrypt == 1
    assert d.python_type is bytes  # decoded as the hidden octets


@pytest.mark.parametrize(
    ("attribute", "name", "number"),
    [
        ("Acct-Status-Type", "Start", 1),
        ("Acct-Status-Type", "Stop", 2),
        ("Acct-Status-Type", "Interim-Update", 3),
        ("Acct-Status-Type", "Accounting-On", 7),
        ("Acct-Status-Type", "Accounting-Off", 8),
        ("Service-Type", "Call-Check", 10),
        ("Service-Type", "Authorize-Only", 17),
        ("NAS-Port-Type", "Virtual", 5),
        ("Acct-Terminate-Cause", "User-Request", 1),
        ("Acct-Terminate-Cause", "Session-Timeout", 5),
        ("Acct-Terminate-Cause", "Host-Request", 18),
        ("Error-Cause", "Session-Context-Not-Found", 503),
    ],
)
def test_values(attribute: str, name: str, number: int) -> None:
    d = default_dictionary()
    assert d.value_of(attribute, name) == number
    assert d.value_name(attribute, number) == name


def test_compiled_table_matches_pyrad() -> None:
    d = default_dictionary()
    source = d.pyrad
    assert len(d) == len(source.attributes)
    for name, attr in source.attributes.items():
        ours = d.attribute(name)
        vendor = source.vendors.GetForward(attr.vendor) if attr.vendor else 0
        assert (ours.vendor, ours.number, ours.type) == (vendor, attr.code, attr.type)
        assert source.attrindex.GetForward(name) == ((vendor, attr.code) if vendor else attr.code)
        for value_name, encoded in attr.values.forward.items():
            assert ours.values[value_name].to_bytes(len(encoded)) == encoded
    assert d.vendors == {"Cisco": 9}


def test_lookup_and_errors() -> None:
    d = default_dictionary()
    assert d.lookup(9, 24) is d.attribute("h323-conf-id")
    assert d.lookup(0, 26) is None  # the VSA container is not an attribute
    assert d.lookup(311, 1) is None
    assert "User-Name" in d and "No-Such" not in d
    with pytest.raises(UnknownAttribute):
        d.attribute("No-Such")
    with pytest.raises(KeyError):
        d.value_of("Acct-Status-Type", "Sideways")
    assert d.value_name("Acct-Status-Type", 99) is None


def test_default_dictionary_is_built_once() -> None:
    assert default_dictionary() is default_dictionary()


def test_a_profile_adds_its_own_file(tmp_path: Path) -> None:
    # A switch with a non-standard number: the profile ships a file, no code changes.
    extra = tmp_path / "dictionary.acme"
    extra.write_text(
        "VENDOR Acme 99999\n"
        "BEGIN-VENDOR Acme\n"
        "ATTRIBUTE Acme-Call-Id 7 string\n"
        "ATTRIBUTE Acme-Credit 8 integer\n"
        "VALUE Acme-Credit Unlimited 4294967295\n"
        "END-VENDOR Acme\n"
        "ATTRIBUTE Acme-Legacy-Leg 224 string\n"
    )
    d = Dictionary.load(DICTIONARY_DIR / "dictionary", extra)
    assert d.attribute("Acme-Call-Id").key == 99999 << 8 | 7
    assert d.attribute("Acme-Legacy-Leg").key == 224
    assert d.value_of("Acme-Credit", "Unlimited") == 2**32 - 1
    assert d.attribute("h323-conf-id").vendor == 9
    assert d.vendors == {"Cisco": 9, "Acme": 99999}

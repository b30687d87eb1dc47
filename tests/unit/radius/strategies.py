"""Hypothesis strategies for RADIUS tests: attribute lists drawn from the dictionary."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from gateway.radius import AttributeDef, default_dictionary

DICTIONARY = default_dictionary()
SECRETS = st.binary(min_size=1, max_size=40)

# Attributes the encoders compute or copy themselves.
_MANAGED = {"Message-Authenticator", "Proxy-State", "User-Password"}


def value_for(d: AttributeDef) -> st.SearchStrategy[Any]:
    """Values an encoder accepts for ``d`` (and pyrad encodes identically)."""
    if d.python_type is int:
        numbers = st.integers(min_value=0, max_value=2**32 - 1)
        if d.values:
            return numbers | st.sampled_from(sorted(d.values))
        return numbers
    if d.type == "ipaddr":
        return st.ip_addresses(v=4).map(str)
    if d.python_type is bytes:
        # pyrad hex-decodes octets that start with "0x"; keep clear of that quirk.
        return st.binary(max_size=60).filter(lambda b: not b.startswith(b"0x"))
    # Up to 60 characters of at most 4 UTF-8 octets: fits even a vendor attribute.
    return st.text(max_size=60)


PLAIN = [d for d in DICTIONARY.by_name.values() if d.name not in _MANAGED]


@st.composite
def attribute(draw: st.DrawFn, defs: list[AttributeDef] = PLAIN) -> tuple[str, Any]:
    d = draw(st.sampled_from(defs))
    return d.name, draw(value_for(d))


attribute_lists = st.lists(attribute(), max_size=12)
identifiers = st.integers(min_value=0, max_value=255)
authenticators = st.binary(min_size=16, max_size=16)
passwords = st.text(max_size=32).filter(lambda p: "\x00" not in p)

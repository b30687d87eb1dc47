"""Turning dialled numbers and SIP/TEL URIs into E.164 digit strings (no '+').

Rating matches prefixes on E.164 digits, so every number coming from a switch
passes through ``normalize`` with the number plan of the trunk it came from.
"""

from dataclasses import dataclass
from urllib.parse import unquote

# '/' is not in E.164 but is a common visual separator in German numbers.
_SEPARATORS = str.maketrans("", "", "-.()/")
_URI_SCHEMES = ("sips:", "sip:", "tel:")


class InvalidNumber(ValueError):
    """Raised when a number cannot be normalised to a non-empty string of digits."""


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _check_digits(name: str, value: str, *, allow_empty: bool) -> None:
    if value == "" and allow_empty:
        return
    if not _is_digits(value):
        raise ValueError(f"{name} must be digits 0-9, got {value!r}")


@dataclass(frozen=True, slots=True)
class NumberPlan:
    """How numbers arriving from one switch or trunk are written.

    ``strip_prefixes`` are technical prefixes the switch adds (e.g. ``"9#"``); the
    longest matching one is removed first. ``country_code`` enables turning
    national numbers (starting with ``national_prefix``) into international ones.
    ``add_prefix`` is prepended to every normalised result.
    """

    country_code: str = ""
    international_prefixes: tuple[str, ...] = ("00", "011")
    national_prefix: str = "0"
    strip_prefixes: tuple[str, ...] = ()
    add_prefix: str = ""

    def __post_init__(self) -> None:
        _check_digits("country_code", self.country_code, allow_empty=True)
        _check_digits("national_prefix", self.national_prefix, allow_empty=True)
        _check_digits("add_prefix", self.add_prefix, allow_empty=True)
        for prefix in self.international_prefixes:
            _check_digits("international prefix", prefix, allow_empty=False)
        for prefix in self.strip_prefixes:
            if not isinstance(prefix, str) or not prefix:
                raise ValueError(f"strip prefixes must be non-empty strings, got {prefix!r}")


def _longest_match(text: str, prefixes: tuple[str, ...]) -> str:
    # Longest first so "011" wins over a hypothetical "01" regardless of plan order.
    for prefix in sorted(prefixes, key=len, reverse=True):
        if text.startswith(prefix):
            return prefix
    return ""


def _user_part(text: str) -> str:
    """Extract the user part of a SIP/TEL URI; plain numbers pass through."""
    # Name-addr form: "Alice" <sip:+4930123@host>
    open_at = text.find("<")
    if open_at != -1:
        close_at = text.find(">", open_at)
        if close_at != -1:
            text = text[open_at + 1 : close_at].strip()
    lowered = text.lower()
    for scheme in _URI_SCHEMES:
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            break
    else:
        return text.split("@", 1)[0]
    text = text.split("@", 1)[0]
    # ';' starts user/URI parameters, '?' headers, ':' a password.
    for marker in (";", "?", ":"):
        text = text.split(marker, 1)[0]
    # In URIs '#' and friends are percent-escaped (e.g. a "9#" tech prefix is "9%23").
    return unquote(text)


def normalize(raw: str, plan: NumberPlan) -> str:
    """Return ``raw`` as E.164 digits (no '+') according to ``plan``.

    Steps, in order: trim whitespace; take the user part of a ``sip:``/``sips:``/
    ``tel:`` URI (dropping ``;params``); remove whitespace and visual separators
    (``- . ( ) /``); remove the longest matching strip prefix; then a leading '+'
    or international prefix is removed, or else a national prefix is replaced by
    ``country_code`` (only when the plan has one); finally ``add_prefix`` is
    prepended. Raises ``InvalidNumber`` when the number is empty or not digits.
    """
    if not isinstance(raw, str):
        raise InvalidNumber(f"number must be a str, got {type(raw).__name__}")
    text = "".join(_user_part(raw.strip()).split()).translate(_SEPARATORS)

    strip = _longest_match(text, plan.strip_prefixes)
    text = text[len(strip) :]

    if text.startswith("+"):
        text = text[1:]
    elif intl := _longest_match(text, plan.international_prefixes):
        text = text[len(intl) :]
    elif plan.country_code and plan.national_prefix and text.startswith(plan.national_prefix):
        national = text[len(plan.national_prefix) :]
        # A bare trunk prefix must not turn into just the country code.
        text = plan.country_code + national if national else ""

    if not text:
        raise InvalidNumber(f"number {raw!r} has no digits after normalisation")
    if not _is_digits(text):
        raise InvalidNumber(f"number {raw!r} contains non-digits after normalisation: {text!r}")
    return plan.add_prefix + text

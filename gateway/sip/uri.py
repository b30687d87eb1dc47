"""SIP header values: name-addr / addr-spec, URIs, parameters (RFC 3261 §20, §25).

Only what a redirect server reads: the user part of a URI (the dialled number, the
caller's extension), header parameters (``tag``, ``party``), and splitting a header
line that carries several comma-separated values (Via, Contact, P-Asserted-Identity).
"""

from __future__ import annotations

from urllib.parse import unquote

_SCHEMES = ("sip:", "sips:", "tel:")


def split_values(text: str) -> list[str]:
    """Split a header line on commas that are outside quotes and angle brackets."""
    values: list[str] = []
    start = 0
    quoted = False
    angle = 0
    escaped = False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            if char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == "<":
            angle += 1
        elif char == ">":
            angle = max(0, angle - 1)
        elif char == "," and angle == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return [v for v in values if v]


def _skip_display_name(value: str) -> str:
    text = value.strip()
    if text.startswith('"'):
        i, escaped = 1, False
        while i < len(text):
            char = text[i]
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                return text[i + 1 :].lstrip()
            i += 1
        return ""
    return text


def split_addr(value: str) -> tuple[str, str]:
    """A From/To/Contact-style value -> (URI, header parameters text after it).

    ``"Alice" <sip:a@x;user=phone>;tag=1`` -> (``sip:a@x;user=phone``, ``;tag=1``).
    Without angle brackets every ``;`` parameter belongs to the header, not the URI.
    """
    rest = _skip_display_name(value)
    if "<" in rest:
        open_at = rest.index("<")
        close_at = rest.find(">", open_at)
        if close_at < 0:
            return "", ""
        return rest[open_at + 1 : close_at].strip(), rest[close_at + 1 :].strip()
    uri, _, params = rest.partition(";")
    return uri.strip(), f";{params}" if params else ""


def params(text: str) -> dict[str, str | None]:
    """``;tag=1;lr;q=0.5`` -> {"tag": "1", "lr": None, "q": "0.5"} (names lower-cased)."""
    found: dict[str, str | None] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, val = part.partition("=")
        found[name.strip().lower()] = val.strip().strip('"') if sep else None
    return found


def header_params(value: str) -> dict[str, str | None]:
    """The header parameters of a From/To-style value (the tag lives here)."""
    return params(split_addr(value)[1])


def uri_user(uri: str) -> str | None:
    """The user part of a sip:/sips:/tel: URI, unescaped; None when it has none.

    ``sip:+4930123@gw;user=phone`` -> ``+4930123``; ``tel:+4930123;phone-context=x``
    -> ``+4930123``; ``sip:gw.example`` -> None.
    """
    lowered = uri[:5].lower()
    scheme = next((s for s in _SCHEMES if lowered.startswith(s)), None)
    if scheme is None:
        return None
    rest = uri[len(scheme) :]
    if scheme == "tel:":
        user = rest.split(";", 1)[0]
    else:
        if "@" not in rest:
            return None
        # The user part ends at '@'; user parameters (';' inside it) are kept out.
        user = rest.split("@", 1)[0].split(";", 1)[0].split(":", 1)[0]
    user = unquote(user).strip()
    return user or None


def addr_user(value: str) -> str | None:
    """The user part of the URI inside a From/To/P-Asserted-Identity-style value."""
    return uri_user(split_addr(value)[0])

"""Compact JSON for the call path's Redis payloads."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def compact_encoder() -> Callable[[Any], str]:
    """Compact JSON of plain data, as ``json.dumps(separators=(",", ":"))`` writes it.

    ``JSONEncoder.encode`` builds its C encoder anew on every call, which costs more
    than encoding the few fields of a call; the C encoder is built once here.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the pure Python encoder
        return json.JSONEncoder(separators=(",", ":")).encode
    encode = make(
        None, None, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
    )
    join = "".join
    return lambda value: join(encode(value, 0))


dumps = compact_encoder()

"""The balance scripts' calls are packed by hand (gateway.balance.scripts.pack_call):
the bytes must be what redis-py's own packer sends for the same EVALSHA."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection

from gateway.balance.scripts import load_scripts, pack_call


@pytest.mark.parametrize(
    ("keys", "args"),
    [
        ((), ()),
        (("{s0}:sess:a|b|", "{s0}:due"), (1795851412, 60, 7200, "[[1,2]]", '{"é":"ü"}')),
        (("k",), (0, -5, 2**53, 1.5, 1795851412.123, "", "x" * 300)),
    ],
)
def test_pack_call_equals_redis_py(
    keys: tuple[str, ...], args: tuple[str | int | float, ...]
) -> None:
    script = load_scripts()["reserve"]
    expected = b"".join(Connection().pack_command("EVALSHA", script.sha, len(keys), *keys, *args))
    assert pack_call(script.head, keys, args) == expected


def test_bool_is_refused() -> None:
    with pytest.raises(TypeError):
        pack_call(load_scripts()["reserve"].head, (), (True,))

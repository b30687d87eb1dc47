"""Spread one switch's requests over the worker processes (SO_REUSEPORT steering).

The kernel picks a socket of a SO_REUSEPORT group by hashing the 4-tuple; a
switch that sends everything from one source port then lands on one worker and
leaves the other cores idle. A classic BPF program attached to the group picks
the socket from the request's own bytes instead: the first four octets of the
Request Authenticator, random per request and identical in its retransmissions,
so a retransmission reaches the worker whose reply cache knows it.

Linux only (SO_ATTACH_REUSEPORT_CBPF, 3.9+); elsewhere the kernel's hash stays.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct

log = logging.getLogger(__name__)

SO_ATTACH_REUSEPORT_CBPF = 51

# Classic BPF opcodes (linux/filter.h).
_BPF_LD_W_ABS = 0x20  # A = word at [k] of the UDP payload
_BPF_ALU_MOD_K = 0x94  # A %= k
_BPF_RET_A = 0x16  # return A (the index of the socket in the group)
_BPF_RET_K = 0x06

_AUTHENTICATOR_OFFSET = 4


class _Filter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_Filter))]


def steering_program(workers: int) -> list[tuple[int, int, int, int]]:
    """The instructions: socket index = authenticator[0:4] mod workers."""
    return [
        (_BPF_LD_W_ABS, 0, 0, _AUTHENTICATOR_OFFSET),
        (_BPF_ALU_MOD_K, 0, 0, workers),
        (_BPF_RET_A, 0, 0, 0),
    ]


def socket_index(payload: bytes, workers: int) -> int:
    """What the program computes for ``payload`` (for tests and reasoning)."""
    (word,) = struct.unpack_from("!I", payload, _AUTHENTICATOR_OFFSET)
    return int(word % workers)


def attach(sock: socket.socket, workers: int) -> bool:
    """Attach the steering program to ``sock``'s reuseport group; False if unsupported.

    Any member may attach it; it applies to the whole group. Indexes past the
    sockets present (a worker restarting) fall back to the kernel's hash.
    """
    if workers < 2:
        return False
    instructions = steering_program(workers)
    array = (_Filter * len(instructions))(*(_Filter(*i) for i in instructions))
    program = _Program(len(instructions), ctypes.cast(array, ctypes.POINTER(_Filter)))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(memoryview(program)))
    except OSError as exc:
        log.warning("radius.steering_unavailable", extra={"error": str(exc)})
        return False
    log.info("radius.steering", extra={"workers": workers, "port": sock.getsockname()[1]})
    return True

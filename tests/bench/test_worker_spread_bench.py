"""Benchmark: how evenly `gateway run --workers 2` spreads one switch's requests.

Sends Access-Requests (demo customer, login checks and calls) from ONE source
port, then from many, with SO_REUSEPORT steering on and off, and reports each
worker's CPU time: without steering the kernel's 4-tuple hash puts a one-port
switch on one worker and leaves the other core idle. Prints figures; asserts
only that every request was answered.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.radius.codec import PacketCode, encode_request
from gateway.runtime.demo import DEMO_RADIUS_SECRET

REQUESTS = 6000
WINDOW = 64  # requests in flight per socket


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _blast(port: int, sockets: int) -> int:
    """Send REQUESTS login checks over ``sockets`` source ports; return replies."""
    socks = []
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        socks.append(s)
    answered = 0
    sent = 0
    try:
        while sent < REQUESTS:
            for s in socks:
                batch = min(WINDOW, REQUESTS - sent)
                for i in range(batch):
                    datagram = encode_request(
                        PacketCode.ACCESS_REQUEST,
                        i,
                        [
                            ("User-Name", "1001"),
                            ("User-Password", "alice-sip"),
                        ],
                        DEMO_RADIUS_SECRET.encode(),
                    )
                    s.sendto(datagram, ("127.0.0.1", port))
                for _ in range(batch):
                    s.recv(4096)
                    answered += 1
                sent += batch
    finally:
        for s in socks:
            s.close()
    return answered


@pytest.mark.parametrize("steering", [False, True])
def test_spread_over_workers(tmp_path: Path, steering: bool) -> None:
    auth, acct, metrics = (
        _free_port(socket.SOCK_DGRAM),
        _free_port(socket.SOCK_DGRAM),
        _free_port(socket.SOCK_STREAM),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        {
            "GATEWAY_STATE_DIR": str(tmp_path / "var"),
            "GATEWAY_LOG_LEVEL": "warning",
            "GATEWAY_RADIUS_BIND": "127.0.0.1",
            "GATEWAY_RADIUS_AUTH_PORT": str(auth),
            "GATEWAY_RADIUS_ACCT_PORT": str(acct),
            "GATEWAY_METRICS_PORT": str(metrics),
            "GATEWAY_METRICS_BIND": "127.0.0.1",
            "GATEWAY_RADIUS_STEERING": "true" if steering else "false",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--demo", "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                with socket.create_connection(("127.0.0.1", metrics), 0.2) as c:
                    c.sendall(b"GET /readyz HTTP/1.0\r\n\r\n")
                    if b" 200 " in c.recv(100):
                        break
            except OSError:
                pass
            time.sleep(0.1)
        workers = _children(proc.pid)
        workers = [
            w for w in workers if Path(f"/proc/{w}/cmdline").read_bytes().find(b"--worker") > 0
        ]
        for label, sockets in (("one source port", 1), ("many source ports", 16)):
            before = {w: _cpu_s(w) for w in workers}
            started = time.perf_counter()
            answered = _blast(auth, sockets)
            wall = time.perf_counter() - started
            used = [round(_cpu_s(w) - before[w], 2) for w in workers]
            share = max(used) / max(sum(used), 1e-9)
            print(
                f"\nsteering={'on' if steering else 'off'} {label}: {answered} replies in "
                f"{wall:.1f}s ({answered / wall:,.0f}/s); worker CPU s {used}; "
                f"busiest worker {share:.0%}"
            )
            assert answered == REQUESTS
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)

"""SO_REUSEPORT steering: one source port still spreads over the workers' sockets,
and each request (and its retransmissions) reaches the socket its bytes choose."""

from __future__ import annotations

import os
import socket
import time

from gateway.radius.steering import attach, socket_index

WORKERS = 2


def test_one_source_port_spreads_by_request() -> None:
    group: list[socket.socket] = []
    try:
        for _ in range(WORKERS):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.bind(("127.0.0.1", group[0].getsockname()[1] if group else 0))
            s.setblocking(False)
            group.append(s)
        assert attach(group[0], WORKERS)
        port = group[0].getsockname()[1]
        received = [0] * WORKERS
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as switch:
            switch.bind(("127.0.0.1", 0))  # one source port, as a switch would
            for k in range(300):
                payload = bytes((4, k % 256, 0, 40)) + os.urandom(16) + bytes(20)
                for _ in range(2):  # the request and its retransmission
                    switch.sendto(payload, ("127.0.0.1", port))
                time.sleep(0.0005)
                for index, s in enumerate(group):
                    while True:
                        try:
                            data = s.recv(2048)
                        except BlockingIOError:
                            break
                        assert socket_index(data, WORKERS) == index
                        received[index] += 1
        assert sum(received) > 500
        assert min(received) > 0.35 * sum(received), received
    finally:
        for s in group:
            s.close()

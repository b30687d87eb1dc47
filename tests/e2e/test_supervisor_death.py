"""A supervisor SIGKILLed (OOM killer, `kill -9`) takes its workers with it: each was
told by the kernel (PR_SET_PDEATHSIG) and drains and exits, rather than go on
answering as a gateway the operator and the balancer believe dead."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.e2e.test_loadgen import GatewayProcess, gateway_config, gw

__all__ = ["gateway_config", "gw"]  # the fixtures, for pytest


def _children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(p) for p in found]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def test_workers_end_when_their_supervisor_is_killed(gw: GatewayProcess) -> None:
    gw.start()
    assert gw.proc is not None
    workers = _children(gw.proc.pid)
    assert len(workers) >= 2, workers
    gw.kill()
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), gw.tail()

"""What the invoice tests share: calls committed the committer's way, PDF to text and
picture through poppler, and where the pictures land for people to look at."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from gateway.settlement.cdr_row import CdrRow
from gateway.settlement.cdr_writer import write_batch

ARTIFACTS = Path(os.environ.get("GATEWAY_TEST_ARTIFACTS", "test-artifacts")) / "invoices"
_sessions = itertools.count(1)


async def commit_call(
    db_pool: asyncpg.Pool,
    chain: tuple[int, ...],
    costs: tuple[int, ...],
    *,
    group: int,
    prefix: str = "44",
    called: str = "441632960001",
    billed_s: int = 60,
) -> None:
    """One answered call written as the committer writes it: the CDR, a ``call_debit``
    per level of the chain and the balances, in one transaction."""
    setup = datetime.now(UTC) - timedelta(seconds=billed_s + 20)
    row = CdrRow(
        nas="10.7.7.7",
        session_id=f"inv-{os.getpid()}-{next(_sessions)}-{setup.timestamp()}",
        leg="",
        setup_at=setup,
        connect_at=setup + timedelta(seconds=5),
        disconnect_at=setup + timedelta(seconds=5 + billed_s),
        chain=chain,
        caller="4930111",
        called_dialled="00" + called,
        called=called,
        rate_groups=(group,) * len(chain),
        prefixes=(prefix,) * len(chain),
        prices_micros=costs,
        duration_s=billed_s,
        billed_s=(billed_s,) * len(chain),
        costs_micros=costs,
        cause="10",
        remote_addr="10.7.7.7",
    )
    async with db_pool.acquire() as conn:
        result = await write_batch(conn, [row])
    assert result.cdrs == 1


def poppler(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(
                f"{tool} is missing: `make test` installs it (Debian package poppler-utils)"
            )
        pytest.skip(f"{tool} is not installed (Debian package poppler-utils)")
    return found


def pdf_text(pdf: bytes) -> str:
    """The PDF's text, laid out as on the page (pdftotext -layout)."""
    out = subprocess.run(
        [poppler("pdftotext"), "-layout", "-", "-"], input=pdf, capture_output=True, check=True
    )
    return out.stdout.decode()


def pdf_picture(pdf: bytes, name: str, dpi: int = 60) -> Path:
    """The PDF's first page as a grey PNG (pdftoppm), kept under ``ARTIFACTS``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = ARTIFACTS / name
    subprocess.run(
        [
            poppler("pdftoppm"),
            "-png",
            "-gray",
            "-r",
            str(dpi),
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            "-",
            str(stem),
        ],
        input=pdf,
        check=True,
    )
    return stem.with_suffix(".png")


def pdf_pgm(pdf: bytes, dpi: int = 60) -> tuple[int, int, bytes]:
    """The first page as raw grey pixels: (width, height, one byte per pixel)."""
    out = subprocess.run(
        [poppler("pdftoppm"), "-gray", "-r", str(dpi), "-f", "1", "-l", "1", "-singlefile", "-"],
        input=pdf,
        capture_output=True,
        check=True,
    ).stdout
    # Binary PGM: "P5", width, height, max value, each followed by one whitespace
    # byte, then the pixels (read by position: a pixel may look like whitespace).
    fields: list[bytes] = []
    at = 0
    while len(fields) < 4:
        end = at
        while out[end : end + 1] not in (b" ", b"\n", b"\t", b"\r"):
            end += 1
        fields.append(out[at:end])
        at = end + 1
    assert fields[0] == b"P5" and fields[3] == b"255", fields
    width, height = int(fields[1]), int(fields[2])
    pixels = out[at:]
    assert len(pixels) == width * height
    return width, height, pixels


def pdf_words(pdf: bytes) -> list[tuple[str, float, float, float, float]]:
    """(text, x0, y0, x1, y1) in points, from the top left, of every word on the pages."""
    html = subprocess.run(
        [poppler("pdftotext"), "-bbox", "-", "-"], input=pdf, capture_output=True, check=True
    ).stdout.decode()
    pattern = (
        r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>'
    )
    return [
        (text, float(x0), float(y0), float(x1), float(y1))
        for x0, y0, x1, y1, text in re.findall(pattern, html)
    ]

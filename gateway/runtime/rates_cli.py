"""``gateway rates import|export``: rate decks as CSV, in and out of PostgreSQL.

Kept apart from ``gateway.cli`` so the command's progress display and messages do
not crowd the entry point; ``cli`` registers the parser and runs the job with
its back-ends.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from gateway.core.errors import GatewayError
from gateway.db import rates
from gateway.runtime.app import Runtime

PROGRESS_MIN_ROWS = 50_000  # smaller files import in about a second: no progress shown
_COUNT_CHUNK_BYTES = 1 << 20


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``rates import`` and ``rates export`` under the main parser."""
    parser = sub.add_parser("rates", help="import and export rate decks (CSV)")
    rates_sub = parser.add_subparsers(dest="rates_command", required=True)
    imp = rates_sub.add_parser(
        "import", help="import a CSV deck into a rate group; a file with a bad row changes nothing"
    )
    imp.add_argument("group", help="rate group name or id")
    imp.add_argument("file", type=Path, help="CSV file (header row, columns named)")
    imp.add_argument(
        "--replace",
        action="store_true",
        help="remove the group's rates that are not in the file (default: add and update)",
    )
    exp = rates_sub.add_parser("export", help="write a rate group's rates as CSV")
    exp.add_argument("group", help="rate group name or id")
    exp.add_argument("file", type=Path, nargs="?", help="output file (default: stdout)")


def job(args: argparse.Namespace) -> Callable[[Runtime], Awaitable[int]]:
    """The work of the parsed ``rates`` command, to run once the back-ends are up."""
    if args.rates_command == "import":
        path: Path = args.file
        if not path.is_file():
            raise GatewayError(f"{path}: no such file")

        async def run_import(runtime: Runtime) -> int:
            return await _import(runtime, args.group, path, replace=args.replace)

        return run_import

    async def run_export(runtime: Runtime) -> int:
        return await _export(runtime, args.group, args.file)

    return run_export


class Progress:
    """An import's progress on a stream: one line redrawn every 1% on a terminal,
    a plain line every 25% otherwise (logs, CI)."""

    def __init__(self, label: str, total_rows: int, stream: TextIO) -> None:
        self.label = label
        self.total_rows = max(total_rows, 1)
        self.stream = stream
        self.tty = stream.isatty()
        self.step = 1 if self.tty else 25
        self.shown = -1

    def __call__(self, rows: int) -> None:
        percent = min(100, rows * 100 // self.total_rows)
        mark = percent - percent % self.step
        if mark <= self.shown:
            return
        self.shown = mark
        text = f"{self.label}: {mark:3d}% ({rows:,} of ~{self.total_rows:,} rows)"
        if self.tty:
            self.stream.write(f"\r{text}")
        else:
            self.stream.write(f"{text}\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self.shown >= 0:
            self.stream.write("\n")
            self.stream.flush()


def count_data_lines(path: Path) -> int:
    """Lines after the header (an estimate: quoted line breaks count too)."""
    lines = 0
    with path.open("rb") as f:
        while chunk := f.read(_COUNT_CHUNK_BYTES):
            lines += chunk.count(b"\n")
    return max(lines - 1, 0)


async def _import(runtime: Runtime, group: str, path: Path, *, replace: bool) -> int:
    total = count_data_lines(path)
    progress = Progress(f"importing {path.name}", total, sys.stderr)
    async with runtime.pool().acquire() as conn:
        group_id = await rates.resolve_group(conn, group)
        try:
            with path.open(encoding="utf-8", newline="") as lines:
                result = await rates.import_rates(
                    conn,
                    group_id,
                    lines,
                    replace=replace,
                    progress=progress if total >= PROGRESS_MIN_ROWS else None,
                )
        except rates.RateFileInvalid as exc:
            progress.finish()
            for error in exc.errors:
                print(error, file=sys.stderr)
            print(
                f"gateway: {path}: {len(exc.errors)} bad row(s); nothing imported",
                file=sys.stderr,
            )
            return 1
        except UnicodeDecodeError as exc:
            progress.finish()
            raise GatewayError(
                f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from exc
    progress.finish()
    removed = f", {result.deleted:,} removed" if replace else ""
    print(
        f"imported {result.rows:,} rates into rate group {group_id}: {result.inserted:,} new, "
        f"{result.updated:,} changed, {result.unchanged:,} unchanged{removed} "
        f"in {result.elapsed_s:.1f}s"
    )
    return 0


async def _export(runtime: Runtime, group: str, path: Path | None) -> int:
    async with runtime.pool().acquire() as conn:
        group_id = await rates.resolve_group(conn, group)
        if path is None:
            count = await rates.export_rates(conn, group_id, sys.stdout)
            sys.stdout.flush()
        else:
            # Written aside and renamed: a failed export never leaves half a deck.
            partial = path.with_name(f".{path.name}.part")
            try:
                with partial.open("w", encoding="utf-8", newline="") as out:
                    count = await rates.export_rates(conn, group_id, out)
                os.replace(partial, path)
            finally:
                partial.unlink(missing_ok=True)
    print(f"exported {count:,} rates of rate group {group_id}", file=sys.stderr)
    return 0

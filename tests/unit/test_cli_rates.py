"""The import progress display of `gateway rates import`."""

from __future__ import annotations

import io
from pathlib import Path

from gateway.runtime.rates_cli import Progress, count_data_lines


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_redraws_one_line_every_percent() -> None:
    stream = Terminal()
    progress = Progress("importing deck.csv", 1000, stream)
    for rows in range(0, 1001, 5):
        progress(rows)
    progress.finish()
    text = stream.getvalue()
    assert text.count("\r") == 101  # 0% .. 100%, each drawn once
    assert text.endswith("importing deck.csv: 100% (1,000 of ~1,000 rows)\n")
    assert text.count("\n") == 1


def test_log_stream_gets_a_line_per_quarter() -> None:
    stream = io.StringIO()
    progress = Progress("importing deck.csv", 1000, stream)
    for rows in range(0, 1201, 100):  # the line count is an estimate: may be passed
        progress(rows)
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert [line.split(": ")[1].split("%")[0].strip() for line in lines] == [
        "0",
        "25",
        "50",
        "75",
        "100",
    ]


def test_count_data_lines(tmp_path: Path) -> None:
    deck = tmp_path / "deck.csv"
    deck.write_bytes(b"prefix,destination,price_per_min\n44,UK,1\n33,FR,1\n")
    assert count_data_lines(deck) == 2
    deck.write_bytes(b"")
    assert count_data_lines(deck) == 0

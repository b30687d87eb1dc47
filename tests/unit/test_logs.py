from __future__ import annotations

import json
import logging

from gateway.core.logs import JsonFormatter, TextFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "gateway.x", "levelname": "INFO", "msg": "call.ended"})
    record.__dict__.update(extra)
    return record


def test_json_line_carries_event_and_fields() -> None:
    line = json.loads(JsonFormatter().format(_record(session="abc", cost_micros=1200)))
    assert line["event"] == "call.ended"
    assert line["session"] == "abc"
    assert line["cost_micros"] == 1200
    assert line["level"] == "info"
    assert line["ts"].endswith("Z")


def test_text_line_has_pairs() -> None:
    text = TextFormatter().format(_record(session="abc"))
    assert "call.ended session=abc" in text

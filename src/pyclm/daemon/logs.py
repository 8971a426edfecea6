"""Structured log lines on stderr for ``pyclm node``: one ``key=value`` record per line.

Each line is ``ts=<UTC ISO time> level=<level> logger=<name> msg="<text>"`` followed by
any ``extra`` fields a call passed (``log.info("...", extra={"fields": {...}})``).  Values
with spaces, quotes or ``=`` are quoted with JSON string escapes, so a line splits on
spaces outside quotes (logfmt).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@[],+")


def _value(value: object) -> str:
    text = str(value)
    if text and all(ch in _PLAIN for ch in text):
        return text
    return json.dumps(text)


class LogfmtFormatter(logging.Formatter):
    """Formats a record as one logfmt line (see the module docstring)."""

    def __init__(self, node_id: int | None = None) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        millis = int(record.created * 1000) % 1000
        parts = [
            f"ts={time.strftime('%Y-%m-%dT%H:%M:%S', seconds)}.{millis:03d}Z",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
        ]
        if self.node_id is not None:
            parts.append(f"node={self.node_id}")
        parts.append(f"msg={_value(record.getMessage())}")
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            parts.extend(f"{key}={_value(value)}" for key, value in fields.items())
        if record.exc_info:
            parts.append(f"exc={_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


def configure(level: str, node_id: int, stream: TextIO | None = None) -> logging.Handler:
    """Send the ``pyclm`` loggers at ``level`` and above to ``stream`` (stderr) as logfmt."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(LogfmtFormatter(node_id))
    logger = logging.getLogger("pyclm")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    return handler

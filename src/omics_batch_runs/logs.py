"""Logging for the command: text or JSON lines on stderr, with secrets scrubbed."""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timezone
from typing import Any

import orjson
from rich.console import Console
from rich.logging import RichHandler

# What must never reach a log: access keys, signatures, session and pagination tokens.
_SECRETS = re.compile(
    r"(?P<key>\b(?:AKIA|ASIA)[A-Z0-9]{16}\b)"
    r"|(?P<kv>(?:Signature|Credential|X-Amz-Security-Token|X-Amz-Signature|startingToken"
    r"|nextToken|aws_secret_access_key|aws_session_token)['\"]?\s*[=:]\s*['\"]?)[^\s,&'\"}]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    return _SECRETS.sub(lambda m: "[redacted]" if m["key"] else m["kv"] + "[redacted]", text)


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True


def json_line(level: str, message: str, *, created: float | None = None, **extra: Any) -> str:
    """One log entry as a JSON object, the shape every JSON line on stderr has."""
    entry = {
        "time": datetime.fromtimestamp(created or time.time(), timezone.utc).isoformat(),
        "level": level.upper(),
        "logger": "omics_batch_runs",
        "message": redact(message),
        **extra,
    }
    return orjson.dumps(entry).decode()


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log collectors of batch jobs."""

    def format(self, record: logging.LogRecord) -> str:
        return json_line(record.levelname, record.getMessage(), created=record.created)


def setup_logging(level: str, fmt: str, console: Console) -> None:
    """Route this package's logs (and nothing of botocore's) to stderr."""
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(console.file)
        handler.setFormatter(JsonFormatter())
    elif console.is_terminal:
        handler = RichHandler(console=console, show_path=False, markup=False)
    else:  # a log file or collector: one unwrapped line an entry
        handler = logging.StreamHandler(console.file)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(_Redact())
    logger = logging.getLogger("omics_batch_runs")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    # Without a handler of its own, another library's warning (and its traceback) would
    # reach stderr through logging's last resort.
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())

"""Logging: one JSON event per line (with ``work_rid`` when it is about a work), or human text on a terminal."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

#: LogRecord attributes that are not user extras
_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                event[name] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S")


HANDLER_NAME = "finisher"
#: the work the current thread is busy with: lines from libraries (bagit, boto) get its RID too
current_work_rid: ContextVar[str | None] = ContextVar("current_work_rid", default=None)


class WorkRidFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "work_rid", None) is None:
            rid = current_work_rid.get()
            if rid is not None:
                record.work_rid = rid
        return True


def reset_logging() -> None:
    """Remove the handler ``configure_logging`` installed (others, e.g. pytest's, stay)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)


def use_json(log_format: str, stream: IO[str]) -> bool:
    if log_format in ("json", "text"):
        return log_format == "json"
    return not stream.isatty()


def configure_logging(log_format: str = "auto", level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Log to ``stream`` (stderr) in the chosen format, replacing an earlier call's handler."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if use_json(log_format, stream) else TextFormatter())
    handler.set_name(HANDLER_NAME)
    handler.addFilter(WorkRidFilter())
    reset_logging()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

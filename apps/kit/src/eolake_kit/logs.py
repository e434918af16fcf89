"""Structured JSON logs: one object a line, with the request id and trace id of the request being served."""

from __future__ import annotations

import contextvars
import logging
import sys
import time

import orjson
from prometheus_client import Counter

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)
# The service serving the current request (set by the kit's middleware), for when one process hosts several.
current_service: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_service", default=None)

LOG_MESSAGES = Counter(
    "eolake_log_messages", "Log records emitted, by level (the error-log-rate alert reads it)", ["service", "level"]
)
_LEVELS = (
    (logging.CRITICAL, "critical"),
    (logging.ERROR, "error"),
    (logging.WARNING, "warning"),
    (logging.INFO, "info"),
    (logging.DEBUG, "debug"),
)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if rid := request_id.get():
            entry["request_id"] = rid
        if tid := trace_id.get():
            entry["trace_id"] = tid
        entry.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class LogCounter(logging.Handler):
    """Counts every record reaching the root logger in `eolake_log_messages_total{service,level}`.

    Levels are folded onto the five standard names, so custom levels cannot add label values.
    """

    def __init__(self, service: str):
        super().__init__(logging.NOTSET)
        self.service = service
        _zero(service)

    def emit(self, record: logging.LogRecord) -> None:
        level = next((name for number, name in _LEVELS if record.levelno >= number), "debug")
        LOG_MESSAGES.labels(current_service.get() or self.service, level).inc()


def _zero(name: str) -> None:
    for _, level in _LEVELS:  # every series exists from the start, at zero: rates work before the first error
        LOG_MESSAGES.labels(name, level)


def count_log_messages(name: str) -> None:
    """Put one log counter on the root logger (idempotent: records outside a request carry the first name)."""
    root = logging.getLogger()
    if not any(isinstance(h, LogCounter) for h in root.handlers):
        root.addHandler(LogCounter(name))
    _zero(name)


def configure_logging(service: str, level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler, LogCounter(service)]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # The kit writes its own access log line, with the route template and request id.
    logging.getLogger("uvicorn.access").disabled = True

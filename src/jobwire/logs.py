"""Logging: plain text or one JSON object per line, with the connection's id, user and
transport as fields. Tokens are never logged, and uvicorn's access log (whose URLs may carry
?token=) is off."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime

import orjson

FIELDS = ("conn", "user", "transport", "code", "reason")
_SECRETS = re.compile(r"((?:[?&]token=)|(?:jobwire_token=)|(?:sessionid=)|"
                      r"(?:[Bb]earer\s+))[^&\s\"';,]+")


class RedactTokens(logging.Filter):
    """Blank out tokens and session ids wherever a message carries them (the web server logs
    the request line of a WebSocket handshake at debug level, with its ?token=)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRETS.sub(r"\1[redacted]", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(),
                 "level": record.levelname.lower(), "logger": record.name,
                 "message": record.getMessage()}
        entry.update({k: getattr(record, k) for k in FIELDS if hasattr(record, k)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={getattr(record, k)}" for k in FIELDS if hasattr(record, k))
        return f"{line} {extra}" if extra else line


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactTokens())
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("jobwire")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def uvicorn_log_config(level: str, fmt: str) -> dict[str, object]:
    """uvicorn's own loggers in the same format."""
    formatter = ({"()": "jobwire.logs.JsonFormatter"} if fmt == "json" else
                 {"()": "jobwire.logs.TextFormatter",
                  "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s"})
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"jobwire": formatter},
            "filters": {"redact": {"()": "jobwire.logs.RedactTokens"}},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "jobwire",
                                    "filters": ["redact"], "stream": "ext://sys.stderr"}},
            "loggers": {"uvicorn": {"handlers": ["stderr"], "level": level.upper(),
                                    "propagate": False},
                        "uvicorn.error": {"level": level.upper()}}}

"""The Finnhub API key: read from the environment only, and kept out of every log line, error and metric.

Sources never format the key into a message themselves; as a second line of defence, install_redaction() puts
a filter on the root logger's handlers that masks the key in any record, including exception text.
"""
from __future__ import annotations

import logging
import os
from typing import Mapping

API_KEY_ENV = "FINNHUB_API_KEY"  # the variable's name  # pragma: allowlist secret
MASK = "***"


class MissingApiKey(RuntimeError):
    pass


def api_key(environ: Mapping[str, str] | None = None) -> str:
    """The Finnhub API key from FINNHUB_API_KEY; MissingApiKey (a one-line message) when unset or blank."""
    value = (os.environ if environ is None else environ).get(API_KEY_ENV, "").strip()
    if not value:
        raise MissingApiKey(f"{API_KEY_ENV} is not set: export your Finnhub API key "
                            f"(https://finnhub.io/dashboard) to use the finnhub sources")
    return value


def redact(text: str, secret: str | None) -> str:
    """text with every occurrence of secret masked."""
    return text.replace(secret, MASK) if secret else text


class RedactingFilter(logging.Filter):
    """Masks a secret in the fully formatted message and in exception text of every record it sees."""

    def __init__(self, secret: str):
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = redact(message, self.secret), None
        if record.exc_info:
            # Format the traceback now, masked, and drop exc_info so handlers do not format it again unmasked.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, redact(text, self.secret)
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, self.secret)
        return True


class RedactingAdapter(logging.LoggerAdapter):
    """A logger for libraries that log what they send: the websockets client logs its request line, which
    carries Finnhub's `?token=`, at DEBUG. Everything is formatted and masked before it reaches the logger."""

    def __init__(self, logger: logging.Logger, secret: str):
        super().__init__(logger, {})
        self.secret = secret

    def log(self, level: int, msg: object, *args: object, **kwargs) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            if kwargs.get("exc_info"):
                # Render the traceback masked and pass it as text: the handler must not format it unmasked.
                exc_info = kwargs.pop("exc_info")
                if exc_info is True:
                    import sys
                    exc_info = sys.exc_info()
                if isinstance(exc_info, BaseException):
                    exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
                text += "\n" + logging.Formatter().formatException(exc_info)
            self.logger.log(level, redact(text, self.secret), **kwargs)


def install_redaction(secret: str) -> RedactingFilter:
    """Mask secret in everything logged through the root logger's handlers (those installed now)."""
    redactor = RedactingFilter(secret)
    root = logging.getLogger()
    for handler in root.handlers:
        handler.addFilter(redactor)
    # Records from any logger propagate to root's handlers; a filter on root itself would miss child loggers.
    return redactor

"""One line of an error, for a log line, a summary or a message a user reads: its first line, capped, or the
exception class's name when it has no message (str() of some exceptions is empty)."""
from __future__ import annotations

MAX_CHARS = 500


def first_line(error: BaseException | str) -> str:
    text = str(error).strip()
    if not text:
        return "" if isinstance(error, str) else type(error).__name__
    return text.splitlines()[0][:MAX_CHARS]

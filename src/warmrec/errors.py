"""warmrec's own exceptions.

Every error caused by bad input is a :class:`WarmrecError`. Data errors name the file, the
line or field, what was found and what was expected, so the CLI can print them as one line.
"""

from __future__ import annotations

from pathlib import Path


class WarmrecError(Exception):
    """Base class of every error warmrec raises on purpose."""


def summary(e: BaseException, limit: int = 200) -> str:
    """An unexpected exception in one line: its type and its message's first line (cut)."""
    text = str(e).strip()
    first = text.splitlines()[0][:limit] if text else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


class DataError(WarmrecError):
    """Bad input data: names the file, the line or field, what was found and what was expected."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        expected: str | None = None,
        found: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.expected = expected
        self.found = found
        parts = []
        if self.path is not None:
            loc = self.path
            if line is not None:
                loc += f", line {line}"
            parts.append(loc)
        if field is not None:
            parts.append(f"field '{field}'")
        head = ": ".join(parts)
        text = f"{head}: {message}" if head else message
        if expected is not None or found is not None:
            text += f" (expected {expected}, found {found})"
        super().__init__(text)


class ConfigError(WarmrecError):
    """A bad configuration value, key or file."""


class ModelError(WarmrecError):
    """A model used wrongly (not fitted, incompatible file, unknown name, ...)."""


class WarmrecWarning(UserWarning):
    """Base class of the warnings warmrec gives on purpose (filter them with this class)."""


class DataWarning(WarmrecWarning):
    """Input that is accepted but probably not what was meant (e.g. a very small test part)."""


class DataNote(WarmrecWarning):
    """What was done to the data as asked, said once (e.g. how many duplicate events
    ``--drop-duplicates`` dropped); the command line prints it as ``warmrec: note: ...``."""

"""The in-process session store under its former name (see :mod:`warmrec.serving.sessions`)."""

from __future__ import annotations

from warmrec.serving.sessions import MemorySessionStore as SessionStore

__all__ = ["SessionStore"]

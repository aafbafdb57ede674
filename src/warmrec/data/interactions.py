"""The result of reading a log: :class:`Interactions`, the canonical table and its feature tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl


@dataclass
class Interactions:
    """A validated canonical interaction table with optional item and user feature tables.

    ``time_unit`` is ``"s"`` when ``timestamp`` holds Unix seconds and ``"ordinal"`` when it holds
    event positions (see :func:`warmrec.data.schema.require_seconds`).

    ``parts`` is set when the source was a split folder (:mod:`warmrec.data.splitdir`):
    ``{"train": ..., "valid": ..., "test": ...}`` canonical tables (``valid`` may be absent) and
    ``interactions`` is their concatenation; ``split_info`` then says where the split came from
    (files, row counts, and the manifest's method and options when the folder has one).
    ``ratings`` holds a second, explicit log where a dataset ships one.
    """

    interactions: pl.DataFrame
    item_features: pl.DataFrame | None = None
    user_features: pl.DataFrame | None = None
    source: str = ""
    time_unit: str = "s"
    parts: dict[str, pl.DataFrame] | None = None
    split_info: dict[str, Any] | None = None
    ratings: pl.DataFrame | None = None
    """Explicit ratings beside an implicit log, as a canonical table (MARS: the watch
    percentage and a 1-10 rating per learner and video); ``None`` for most logs."""

    def __repr__(self) -> str:
        def shape(df: pl.DataFrame | None) -> str:
            return "None" if df is None else f"{df.height}x{df.width}"

        return (
            f"Interactions(source={self.source!r}, interactions={shape(self.interactions)}, "
            f"item_features={shape(self.item_features)}, "
            f"user_features={shape(self.user_features)})"
        )

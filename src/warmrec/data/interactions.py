"""The result of reading a log: :class:`Interactions`, the canonical table and its feature tables."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass
class Interactions:
    """A validated canonical interaction table with optional item and user feature tables.

    ``time_unit`` is ``"s"`` when ``timestamp`` holds Unix seconds and ``"ordinal"`` when it holds
    event positions (see :func:`warmrec.data.schema.require_seconds`).
    """

    interactions: pl.DataFrame
    item_features: pl.DataFrame | None = None
    user_features: pl.DataFrame | None = None
    source: str = ""
    time_unit: str = "s"

    def __repr__(self) -> str:
        def shape(df: pl.DataFrame | None) -> str:
            return "None" if df is None else f"{df.height}x{df.width}"

        return (
            f"Interactions(source={self.source!r}, interactions={shape(self.interactions)}, "
            f"item_features={shape(self.item_features)}, "
            f"user_features={shape(self.user_features)})"
        )

"""ItemVocab: raw item id <-> dense index, with index 0 reserved for padding.

The vocabulary travels with every saved model (``vocab.json``), so raw ids go in and raw ids
come out. Unknown raw ids encode to 0 (padding), which every model ignores.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from warmrec.data.schema import COMPACT_SLACK, compact_offsets
from warmrec.errors import DataError

PAD = 0
_LUT_MIN = 1 << 16  # a dense lookup table for integer ids below this many slots, or when they
# are compact (:data:`~warmrec.data.schema.COMPACT_SLACK` slots per id)


_INT_TEXT = re.compile(r"-?(?:0|[1-9][0-9]{0,18})")
"""A canonical decimal integer id as text (ASCII digits only; ``re.fullmatch``)."""


def as_int_ids(values: pl.Series) -> pl.Series:
    """``values`` as Int64 ids, each read as :meth:`ItemVocab.index_of` reads one: text only in
    canonical decimal form (``"015"``, ``"+15"``, ``" 15"`` and ``"-0"`` are no integer ids:
    null), floats only when integral, booleans never."""
    none = pl.repeat(None, len(values), dtype=pl.Int64, eager=True).rename(values.name)
    if values.dtype in (pl.Utf8, pl.String):
        canonical = values.str.contains(f"^(?:{_INT_TEXT.pattern})$") & (values != "-0")
        return values.cast(pl.Int64, strict=False).zip_with(canonical.fill_null(False), none)
    if values.dtype.is_float():
        integral = values.is_finite() & (values.round(0) == values)
        return values.cast(pl.Int64, strict=False).zip_with(integral.fill_null(False), none)
    if values.dtype == pl.Boolean or not values.dtype.is_numeric():
        return none
    return values.cast(pl.Int64, strict=False)


def _id_series(ids: Sequence | np.ndarray) -> pl.Series:
    """Raw vocabulary ids given in Python as a Series; a mix of kinds (ints and strings) is
    refused with a :class:`~warmrec.errors.DataError`, not Polars' TypeError."""
    try:
        return pl.Series("id", ids)
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError) as e:
        kinds = sorted({type(v).__name__ for v in ids if v is not None})
        raise DataError(
            "vocabulary ids must be all integers (int64) or all strings",
            field="item_id",
            expected="one kind of id: int (within int64) or str",
            found=" and ".join(kinds) + f" ({str(e).splitlines()[0]})",
        ) from e


class ItemVocab:
    """A fixed mapping from raw ids (all ints or all strings) to indices ``1..n``; 0 is padding.

    Counting convention, the same everywhere in warmrec: ``n_items`` (and ``len(vocab)``) counts
    the padding index, so it is the width of a score matrix and equals ``model.n_items``,
    ``SequenceDataset.n_items`` and ``EvalSet.n_items``; ``n_ids`` is the number of real ids.
    """

    def __init__(self, ids: Sequence | np.ndarray | pl.Series) -> None:
        series = _id_series(ids) if not isinstance(ids, pl.Series) else ids.rename("id")
        if series.dtype.is_integer():
            series = series.cast(pl.Int64)
        elif series.dtype in (pl.Utf8, pl.String):
            pass
        elif series.len() == 0:
            series = series.cast(pl.Int64)
        else:
            raise DataError(
                "vocabulary ids must be integers or strings",
                field="item_id",
                expected="int or str",
                found=str(series.dtype),
            )
        if series.n_unique() != series.len():
            raise DataError(
                "vocabulary ids must be unique",
                field="item_id",
                expected="unique ids",
                found=f"{series.len() - series.n_unique()} duplicates",
            )
        self._ids = series
        self._index = pl.DataFrame(
            {"id": series, "idx": np.arange(1, series.len() + 1, dtype=np.int64)}
        )
        self._lut: tuple[int, int, pl.Series] | None = None
        if series.dtype == pl.Int64 and series.len():
            lo, hi = int(series.min()), int(series.max())
            if hi - lo < max(COMPACT_SLACK * series.len(), _LUT_MIN):
                table = np.zeros(hi - lo + 1, dtype=np.int64)
                table[series.to_numpy() - lo] = np.arange(1, series.len() + 1)
                self._lut = (lo, hi, pl.Series("idx", table))

    @classmethod
    def from_ids(cls, ids: Iterable | pl.Series) -> ItemVocab:
        """Build a vocabulary of the distinct ids, in sorted order (independent of row order)."""
        s = ids if isinstance(ids, pl.Series) else _id_series(list(ids))
        s = s.drop_nulls()
        off = compact_offsets(s)
        if off is not None:  # compact integer ids: a bincount instead of a hash
            seen = np.flatnonzero(np.bincount(off)) + int(s.min())
            return cls(pl.Series("id", seen, dtype=pl.Int64))
        return cls(s.unique().sort())

    @property
    def ids(self) -> pl.Series:
        """Raw ids in index order (index ``i`` holds ``ids[i - 1]``)."""
        return self._ids

    @property
    def is_str(self) -> bool:
        return self._ids.dtype in (pl.Utf8, pl.String)

    def __len__(self) -> int:
        return self._ids.len() + 1

    @property
    def n_items(self) -> int:
        """Width of a score matrix: the real ids plus the padding index 0 (``len(vocab)``)."""
        return self._ids.len() + 1

    @property
    def n_ids(self) -> int:
        """Number of real ids (without the padding index)."""
        return self._ids.len()

    def index_of(self, raw: Any) -> int:
        """THE reading of one raw id from outside (a request, a command line, a Python call):
        its index, 0 when unknown. An integer vocabulary takes ints and canonical decimal text
        only (``"12"``, ``"-3"``; not ``"012"``, ``"--5"``, ``"²"`` or ``"٣"``, which Python's
        ``int()`` would read) and integral floats (``12.0``, as JSON may carry them); a string
        vocabulary compares text. Booleans are never ids. The CLI, the Python API
        (:meth:`~warmrec.models.base.Recommender.recommend`) and the service read ids here."""
        if raw is None or isinstance(raw, bool):
            return 0
        table = self._lookup()
        if self.is_str:
            return table.get(raw if isinstance(raw, str) else str(raw), 0)
        if isinstance(raw, str):
            if not _INT_TEXT.fullmatch(raw) or raw == "-0":
                return 0
            raw = int(raw)
        elif isinstance(raw, float):
            if not raw.is_integer():
                return 0
            raw = int(raw)
        elif isinstance(raw, np.integer):
            raw = int(raw)
        elif not isinstance(raw, int):
            return 0
        return table.get(raw, 0)

    def lookup(self, raw: Iterable[Any]) -> np.ndarray:
        """:meth:`index_of` of each raw id -> int64 indices (0 = unknown)."""
        values = list(raw)
        return np.fromiter((self.index_of(x) for x in values), dtype=np.int64, count=len(values))

    def prepare(self) -> ItemVocab:
        """Build the raw-id lookup table of :meth:`index_of` now (it is otherwise built on the
        first call: a server pays it when it loads a model, not on its first request)."""
        self._lookup()
        return self

    def _lookup(self) -> dict[Any, int]:
        table = getattr(self, "_table", None)
        if table is None:
            table = dict(zip(self._ids.to_list(), range(1, self._ids.len() + 1)))
            self._table = table
        return table

    def _coerce(self, values: pl.Series) -> pl.Series:
        """Raw ids as the vocabulary's type, each read as :meth:`index_of` reads one."""
        if self.is_str:
            if values.dtype == pl.Boolean:  # booleans are never ids (not "true")
                return pl.repeat(None, len(values), dtype=pl.Utf8, eager=True)
            return values.cast(pl.Utf8)
        return as_int_ids(values)

    def encode(self, values: Iterable | pl.Series | np.ndarray) -> np.ndarray:
        """Raw ids -> int64 indices; unknown ids become 0 (padding). Each id is read as
        :meth:`index_of` reads it, whatever the other ids in ``values`` are: a list that mixes
        kinds (``["7", 7.0]``, ``[True, "a"]``) is read one id at a time, never as a column
        of one type that the mix was converted to."""
        if isinstance(values, pl.Series):
            s = values
        elif isinstance(values, np.ndarray) and values.dtype != object:
            s = pl.Series("id", values)
        else:  # a list, or an array of Python objects (which may mix kinds)
            vals = values.tolist() if isinstance(values, np.ndarray) else list(values)
            if any(isinstance(v, np.generic) for v in vals):  # NumPy scalars as Python ones
                vals = [v.item() if isinstance(v, np.generic) else v for v in vals]
            kinds = {type(v) for v in vals if v is not None}
            if not (kinds <= {int} or kinds <= {str}):  # floats, bools, a mix: one at a time
                return self.lookup(vals)
            try:
                s = pl.Series("id", vals, dtype=pl.Int64 if kinds == {int} else pl.Utf8)
            except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
                return self.lookup(vals)  # an int beyond int64
        s = self._coerce(s.rename("id"))
        if s.len() == 0:
            return np.zeros(0, dtype=np.int64)
        if self._lut is not None and s.dtype == pl.Int64:
            return self._encode_dense(s)
        out = s.replace_strict(
            self._index["id"], self._index["idx"], default=0, return_dtype=pl.Int64
        )
        return out.fill_null(0).to_numpy().astype(np.int64, copy=False)

    def _encode_dense(self, s: pl.Series) -> np.ndarray:
        """Integer ids through the dense lookup table (a gather instead of a hash lookup)."""
        lo, hi, table = self._lut  # type: ignore[misc]
        s = s.fill_null(lo - 1) if s.null_count() else s
        mn, mx = s.min(), s.max()
        if lo <= mn and mx <= hi:
            return table.gather(s - lo).to_numpy()
        out = table.gather(s.clip(lo, hi) - lo)
        return out.zip_with((s >= lo) & (s <= hi), pl.Series([0])).to_numpy()

    def decode(self, indices: Iterable[int] | np.ndarray) -> list:
        """Indices -> raw ids; raises on padding or out-of-range indices."""
        idx = np.asarray(
            list(indices) if not isinstance(indices, np.ndarray) else indices, dtype=np.int64
        )
        if idx.size and (idx.min() < 1 or idx.max() >= len(self)):
            raise DataError(
                "index out of the vocabulary",
                field="item index",
                expected=f"1..{len(self) - 1}",
                found=str(idx[(idx < 1) | (idx >= len(self))][0]),
            )
        return self._ids.gather(idx - 1).to_list()

    def __contains__(self, raw) -> bool:
        return bool(self.encode([raw])[0])

    def to_dict(self) -> dict:
        return {"kind": "str" if self.is_str else "int", "ids": self._ids.to_list()}

    @classmethod
    def from_dict(cls, d: dict) -> ItemVocab:
        ids = d["ids"]
        if d.get("kind") == "str":
            return cls(pl.Series("id", ids, dtype=pl.Utf8))
        return cls(pl.Series("id", ids, dtype=pl.Int64))

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON (to a temporary name, then renamed: never half-written)."""
        from warmrec.io import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> ItemVocab:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError) as e:
            raise DataError(f"cannot read vocabulary: {e}", path=path) from e

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ItemVocab) and self._ids.equals(other._ids)

    def __repr__(self) -> str:
        return f"ItemVocab({self.n_ids} items, {'str' if self.is_str else 'int'} ids)"

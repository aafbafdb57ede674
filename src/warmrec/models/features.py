"""Side features: the one mechanism every feature-aware model shares.

A :class:`~warmrec.data.dataset.SequenceDataset` may carry ``item_features`` / ``user_features``:
Polars tables keyed by the raw ``item_id`` / ``user_id``. This module turns chosen columns of such
a table into an integer **code matrix aligned with a vocabulary** (row ``i`` = vocabulary index
``i``; row 0, padding / unknown, is all zeros) and embeds those codes.

Column kinds (``kinds`` overrides the automatic choice):

- ``"categorical"`` -- one value per row (string, integer, boolean). Levels are the distinct
  values of the rows the vocabulary knows, sorted as text, coded ``1..n``; ``0`` is missing.
  Default for every non-list, non-float column.
- ``"multi"`` -- a list of values per row (e.g. MovieLens genres ``class``). Levels are the
  distinct list elements; a row's codes fill ``width`` columns (the longest list), padded with
  ``0``. Embedded as the **mean** of its values' embeddings (an ``EmbeddingBag(mode="mean")``
  written as a masked mean). Default for list columns.
- ``"numeric"`` -- numbers (or numeric strings such as ml-100k's ``age``) bucketised into at most
  ``n_bins`` quantile bins of the known rows; codes ``1..len(edges) + 1``; ``0`` is missing.
  Default for float columns.

:func:`fit_features` learns the encoding (a list of :class:`FeatureSpec`: kind, levels or bin
edges, width) and returns it with the codes; :func:`encode_features` applies a saved encoding to
any table (unseen levels -> ``0``), so an encoding stored in a model's ``meta`` reproduces the same
codes. :class:`SideFeatures` does both for the items and users of a training set and round-trips
through JSON (``to_meta`` / ``from_meta``). :class:`FeatureEmbedder` holds the code matrix as a
(saved) buffer and maps indices to embeddings: single-valued features through
:class:`~warmrec.models.layers.FeatureEmbedding`, multi-valued ones through masked means; the
per-feature vectors are summed (``"sum"``, ``[..., dim]``) or concatenated (``"concat"``,
``[..., dim * n_features]``).

Using it in a model (see :mod:`warmrec.models.bst`, :mod:`warmrec.models.ssept`): override
``_bind`` to call :meth:`SideFeatures.fit` on the training set and store ``to_meta()`` in
``self.meta.features`` (saved in ``config.json``); ``build_net`` reads the specs back with
:meth:`SideFeatures.specs_from_meta`, builds :class:`FeatureEmbedder` modules and, when freshly
fitted, fills their codes. A loaded model gets its codes from the saved weights, so scoring
needs no feature table.

Columns asked for but absent are skipped: silently when the dataset has no such table at all,
with a :class:`FeatureWarning` when the table exists (the skipped names are kept in the meta).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from warmrec.artifacts import FeaturesMeta
from warmrec.data.dataset import SequenceDataset
from warmrec.data.schema import ITEM, USER
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, DataError, WarmrecWarning
from warmrec.models.layers import FeatureEmbedding

KINDS = ("categorical", "multi", "numeric")


class FeatureWarning(WarmrecWarning):
    """A requested feature column was not found and is not used."""


@dataclass
class FeatureSpec:
    """How one column is encoded: its kind, levels (categorical/multi) or bin edges (numeric)."""

    name: str
    kind: str
    levels: list[str] = field(default_factory=list)
    edges: list[float] = field(default_factory=list)
    width: int = 1

    @property
    def cardinality(self) -> int:
        """Number of codes including ``0`` (missing)."""
        if self.kind == "numeric":
            return len(self.edges) + 2
        return len(self.levels) + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "levels": list(self.levels),
            "edges": [float(e) for e in self.edges],
            "width": int(self.width),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        kind = d.get("kind")
        if kind not in KINDS:
            raise ConfigError(
                f"feature spec '{d.get('name')}': kind expected one of {KINDS}, found {kind!r}"
            )
        return cls(
            str(d["name"]),
            kind,
            [str(v) for v in d.get("levels", [])],
            [float(v) for v in d.get("edges", [])],
            int(d.get("width", 1)),
        )


@dataclass
class EncodedFeatures:
    """Specs of the encoded columns and the code matrix ``[n_rows, sum(widths)]`` (row 0 zero)."""

    specs: list[FeatureSpec]
    codes: np.ndarray
    skipped: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        return int(sum(s.width for s in self.specs))


# -- encoding ------------------------------------------------------------------------------------
def _check_table(frame: pl.DataFrame, key: str, columns: Sequence[str]) -> None:
    if key not in frame.columns:
        raise DataError(
            "feature table lacks its key column",
            field=key,
            expected=key,
            found=", ".join(frame.columns),
        )
    dup = frame.height - frame[key].n_unique()
    if dup:
        raise DataError(
            "feature table has duplicate ids",
            field=key,
            expected="unique ids",
            found=f"{dup} duplicate(s)",
        )
    for c in columns:
        if c not in frame.columns:
            raise DataError(
                "feature table lacks a column",
                field=c,
                expected=", ".join([key, *columns]),
                found=", ".join(frame.columns),
            )


def _rows(frame: pl.DataFrame, vocab: ItemVocab, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Vocabulary index of every table row and the mask of rows the vocabulary knows."""
    idx = vocab.encode(frame[key])
    return idx, idx > 0


def _auto_kind(s: pl.Series) -> str:
    if isinstance(s.dtype, pl.List):
        return "multi"
    if s.dtype.is_float():
        return "numeric"
    return "categorical"


def _as_float(s: pl.Series, name: str) -> np.ndarray:
    if s.dtype.is_numeric():
        return s.cast(pl.Float64).fill_null(np.nan).to_numpy()
    text = s.cast(pl.Utf8).str.strip_chars()
    out = text.cast(pl.Float64, strict=False)
    bad = out.is_null() & text.is_not_null() & (text != "")
    if bad.any():
        raise DataError(
            "numeric feature has a value that is not a number",
            field=name,
            expected="a number",
            found=repr(text.filter(bad)[0]),
        )
    return out.fill_null(np.nan).to_numpy()


def _level_codes(values: pl.Series, levels: list[str]) -> np.ndarray:
    """Codes ``1..len(levels)`` of text ``values`` (unknown or null -> 0)."""
    if not levels:
        return np.zeros(values.len(), dtype=np.int64)
    lv = pl.Series("lv", levels, dtype=pl.Utf8)
    codes = values.cast(pl.Utf8).replace_strict(
        lv,
        pl.Series(np.arange(1, len(levels) + 1, dtype=np.int64)),
        default=0,
        return_dtype=pl.Int64,
    )
    return codes.fill_null(0).to_numpy().astype(np.int64)


def _encode_column(s: pl.Series, spec: FeatureSpec) -> np.ndarray:
    """Codes ``[len(s), spec.width]`` of a column under ``spec``."""
    if spec.kind == "numeric":
        v = _as_float(s, spec.name)
        codes = 1 + np.searchsorted(np.asarray(spec.edges), v, side="right")
        return np.where(np.isnan(v), 0, codes).astype(np.int64)[:, None]
    if spec.kind == "categorical":
        if isinstance(s.dtype, pl.List):
            raise DataError(
                "categorical feature holds lists",
                field=spec.name,
                expected="one value per row",
                found=str(s.dtype),
            )
        return _level_codes(s, spec.levels)[:, None]
    if not isinstance(s.dtype, pl.List):
        raise DataError(
            "multi-valued feature is not a list column",
            field=spec.name,
            expected="a list per row",
            found=str(s.dtype),
        )
    out = np.zeros((s.len(), spec.width), dtype=np.int64)
    for j in range(spec.width):  # a loop over list positions, vectorised over rows
        out[:, j] = _level_codes(s.list.get(j, null_on_oob=True), spec.levels)
    return out


def _flat_values(s: pl.Series) -> pl.Series:
    """All non-null list elements (as text), whatever the Polars version does with empties."""
    width = int(s.list.len().max() or 0)
    parts = [s.list.get(j, null_on_oob=True).cast(pl.Utf8) for j in range(width)]
    return pl.concat(parts).drop_nulls() if parts else pl.Series([], dtype=pl.Utf8)


def fit_features(
    frame: pl.DataFrame,
    vocab: ItemVocab,
    columns: Sequence[str],
    *,
    key: str = ITEM,
    kinds: Mapping[str, str] | None = None,
    n_bins: int = 10,
) -> EncodedFeatures:
    """Learn the encoding of ``columns`` from the rows of ``frame`` known to ``vocab``.

    Returns the specs and the code matrix aligned with ``vocab`` (``len(vocab)`` rows; ids absent
    from the table and row 0 get zeros; rows of ids unknown to ``vocab`` are ignored).
    """
    kinds = dict(kinds or {})
    for c, k in kinds.items():
        if k not in KINDS:
            raise ConfigError(f"feature '{c}': kind expected one of {KINDS}, found {k!r}")
    if n_bins < 1:
        raise ConfigError(f"n_bins: expected >= 1, found {n_bins}")
    _check_table(frame, key, columns)
    idx, known = _rows(frame, vocab, key)
    specs = []
    for c in columns:
        s = frame[c].filter(pl.Series(known))
        kind = kinds.get(c) or _auto_kind(s)
        spec = FeatureSpec(c, kind)
        if kind == "numeric":
            v = _as_float(s, c)
            v = v[~np.isnan(v)]
            if len(v):
                qs = np.quantile(v, np.linspace(0, 1, n_bins + 1)[1:-1])
                spec.edges = np.unique(qs).tolist()
        elif kind == "multi":
            if not isinstance(s.dtype, pl.List):
                raise DataError(
                    "multi-valued feature is not a list column",
                    field=c,
                    expected="a list per row",
                    found=str(s.dtype),
                )
            flat = _flat_values(s)
            spec.levels = flat.unique().sort().to_list()
            spec.width = max(int(s.list.len().fill_null(0).max() or 0), 1)
        else:
            if isinstance(s.dtype, pl.List):
                raise DataError(
                    "categorical feature holds lists",
                    field=c,
                    expected="one value per row",
                    found=str(s.dtype),
                )
            spec.levels = s.drop_nulls().cast(pl.Utf8).unique().sort().to_list()
        specs.append(spec)
    return EncodedFeatures(specs, encode_features(frame, vocab, specs, key=key))


def encode_features(
    frame: pl.DataFrame, vocab: ItemVocab, specs: Sequence[FeatureSpec], *, key: str = ITEM
) -> np.ndarray:
    """Codes ``[len(vocab), sum(widths)]`` of ``frame`` under saved ``specs`` (unseen -> 0)."""
    _check_table(frame, key, [s.name for s in specs])
    idx, known = _rows(frame, vocab, key)
    out = np.zeros((len(vocab), int(sum(s.width for s in specs))), dtype=np.int64)
    col = 0
    for spec in specs:
        codes = _encode_column(frame[spec.name], spec)
        out[idx[known], col : col + spec.width] = codes[known]
        col += spec.width
    return out


# -- the training-set view -----------------------------------------------------------------------
def _select(
    frame: pl.DataFrame | None, columns: Sequence[str], what: str, key: str
) -> tuple[list[str], list[str]]:
    if not columns:
        return [], []
    if frame is None:
        return [], list(columns)
    present = [c for c in columns if c in frame.columns and c != key]
    skipped = [c for c in columns if c not in present]
    if skipped:
        warnings.warn(
            f"{what} feature column(s) {', '.join(map(repr, skipped))} not found "
            f"(columns: {', '.join(frame.columns)}); not used",
            FeatureWarning,
            stacklevel=4,
        )
    return present, skipped


@dataclass
class SideFeatures:
    """Encoded item and user features of a training set (``None`` where not used)."""

    item: EncodedFeatures | None = None
    user: EncodedFeatures | None = None

    @classmethod
    def fit(
        cls,
        train: SequenceDataset,
        item_columns: Sequence[str] = (),
        user_columns: Sequence[str] = (),
        *,
        kinds: Mapping[str, str] | None = None,
        n_bins: int = 10,
    ) -> SideFeatures:
        """Encode the chosen columns of ``train.item_features`` / ``train.user_features``."""
        out = cls()
        cols, skipped = _select(train.item_features, item_columns, "item", ITEM)
        if cols:
            out.item = fit_features(
                train.item_features, train.vocab, cols, key=ITEM, kinds=kinds, n_bins=n_bins
            )
            out.item.skipped = skipped
        elif skipped:
            out.item = EncodedFeatures([], np.zeros((len(train.vocab), 0), np.int64), skipped)
        ucols, uskipped = _select(train.user_features, user_columns, "user", USER)
        if ucols and train.user_vocab is None:
            warnings.warn(
                "user features requested but the data has no user_id column; not used",
                FeatureWarning,
                stacklevel=2,
            )
            uskipped, ucols = list(user_columns), []
        if ucols:
            out.user = fit_features(
                train.user_features, train.user_vocab, ucols, key=USER, kinds=kinds, n_bins=n_bins
            )
            out.user.skipped = uskipped
        elif uskipped:
            n = len(train.user_vocab) if train.user_vocab is not None else 1
            out.user = EncodedFeatures([], np.zeros((n, 0), np.int64), uskipped)
        return out

    def to_meta(self) -> dict[str, Any]:
        """JSON-friendly encoding description (codes are not included: they are weights)."""

        def one(e: EncodedFeatures | None) -> dict[str, Any] | None:
            if e is None:
                return None
            return {"specs": [s.to_dict() for s in e.specs], "skipped": list(e.skipped)}

        return {"item": one(self.item), "user": one(self.user)}

    @staticmethod
    def specs_from_meta(
        meta: Mapping[str, Any] | FeaturesMeta | None,
    ) -> tuple[list[FeatureSpec], list[FeatureSpec]]:
        """``(item_specs, user_specs)`` stored by :meth:`to_meta` (empty lists when absent)."""
        meta = meta.model_dump() if isinstance(meta, FeaturesMeta) else (meta or {})

        def one(d: Mapping[str, Any] | None) -> list[FeatureSpec]:
            return [FeatureSpec.from_dict(s) for s in (d or {}).get("specs", [])]

        return one(meta.get("item")), one(meta.get("user"))


# -- embedding -----------------------------------------------------------------------------------
class FeatureEmbedder(nn.Module):
    """Index ``[...]`` -> feature embeddings, reading a saved code matrix (see module docstring).

    ``codes`` is a persistent buffer ``[n_rows, sum(widths)]`` (so it is saved with the weights);
    fill it with :meth:`set_codes`. Indices outside ``0..n_rows-1`` are treated as 0 (missing).
    """

    def __init__(
        self, specs: Sequence[FeatureSpec], n_rows: int, dim: int, combine: str = "sum"
    ) -> None:
        super().__init__()
        if combine not in ("sum", "concat"):
            raise ConfigError(f"feature combine '{combine}': expected 'sum' or 'concat'")
        self.specs = list(specs)
        self.dim = dim
        self.combine = combine
        width = int(sum(s.width for s in self.specs))
        self.register_buffer("codes", torch.zeros(n_rows, width, dtype=torch.long))
        starts = np.cumsum([0] + [s.width for s in self.specs])[:-1].tolist()
        self._single = [
            (i, st) for i, (s, st) in enumerate(zip(self.specs, starts)) if s.kind != "multi"
        ]
        self._multi = [
            (i, st, s.width)
            for i, (s, st) in enumerate(zip(self.specs, starts))
            if s.kind == "multi"
        ]
        self.single = FeatureEmbedding(
            [self.specs[i].cardinality for i, _ in self._single], dim, combine="concat"
        )
        self.multi = nn.ModuleList(
            nn.Embedding(self.specs[i].cardinality, dim, padding_idx=0) for i, _, _ in self._multi
        )
        for t in self.multi:
            nn.init.normal_(t.weight, std=0.02)
            with torch.no_grad():
                t.weight[0].zero_()

    @property
    def n_features(self) -> int:
        return len(self.specs)

    @property
    def out_dim(self) -> int:
        return self.dim if self.combine == "sum" else self.dim * self.n_features

    @torch.no_grad()
    def set_codes(self, codes: np.ndarray | torch.Tensor) -> None:
        c = torch.as_tensor(np.asarray(codes), dtype=torch.long)
        if tuple(c.shape) != tuple(self.codes.shape):
            raise ConfigError(
                f"feature codes of shape {tuple(c.shape)}, expected {tuple(self.codes.shape)}"
            )
        self.codes.copy_(c.to(self.codes.device))

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        n_rows = self.codes.shape[0]
        index = torch.where((index >= 0) & (index < n_rows), index, torch.zeros_like(index))
        codes = self.codes[index]  # [..., width]
        parts: list[torch.Tensor | None] = [None] * self.n_features
        if self._single:
            cols = torch.tensor([st for _, st in self._single], device=codes.device)
            emb = self.single(codes[..., cols])  # [..., n_single * dim]
            for j, (i, _) in enumerate(self._single):
                parts[i] = emb[..., j * self.dim : (j + 1) * self.dim]
        for table, (i, st, w) in zip(self.multi, self._multi):
            c = codes[..., st : st + w]
            mask = (c > 0).to(table.weight.dtype)[..., None]
            parts[i] = (table(c) * mask).sum(-2) / mask.sum(-2).clamp_min(1.0)
        if not parts:
            shape = (*index.shape, self.out_dim)
            return torch.zeros(shape, device=index.device)
        return torch.stack(parts, 0).sum(0) if self.combine == "sum" else torch.cat(parts, -1)

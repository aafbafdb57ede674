"""The encoded dataset: a log read, split and encoded once; train/valid/test are views of it.

:func:`prepare` (exported as ``warmrec.prepare``) turns a canonical table, or the
:class:`~warmrec.data.readers.Interactions` a reader returned, into a :class:`Prepared`:

1. **Split.** A split folder's parts (``Interactions.parts``) are used as given
   (:func:`warmrec.data.splitdir.given_split`) unless ``resplit=True``; otherwise the table is
   split by ``split`` (default: :func:`warmrec.data.split.default_split`).
2. **Encode once.** The three parts are stacked into one table (:attr:`Prepared.encoded`: the
   sequence key(s), ``timestamp``, the part, and item and user indices) that is encoded with the
   vocabularies once and sorted by key and time once per sequence key.
3. **Views.** ``train`` (a :class:`~warmrec.data.dataset.SequenceDataset`), ``valid`` and
   ``test`` (:class:`~warmrec.data.dataset.EvalSet`) are cut from that one table: no part is
   encoded or sorted again.

Names: ``prepare`` is the dataset step (read -> split -> encode); ``train``/``valid``/``test`` are
the parts. Counting: ``n_items`` everywhere counts the padding index (see
:class:`~warmrec.data.vocab.ItemVocab`).

Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from warmrec.data.columns import canonical_table
from warmrec.data.dataset import EvalSet, SequenceDataset, sequence_users, sorted_examples
from warmrec.data.schema import ITEM, SESSION, TIME, USER, sequence_key
from warmrec.data.sequences import IDX, SequenceData
from warmrec.data.split import Split, default_split
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError

if TYPE_CHECKING:
    from warmrec.data.readers import Interactions

PART = "_part"  # 0 train, 1 valid, 2 test, -1 history only (Split.context)
CONTEXT_PART = -1
UIDX = "_uidx"  # user indices (when the log has users)
_ROW = "_row"
GIVEN = "given"


@dataclass
class Prepared:
    """A dataset read, split and encoded: what every model is fitted and evaluated on.

    Attributes:
        frame: the whole canonical table (all parts).
        split: the :class:`~warmrec.data.split.Split` (its canonical ``train``/``valid``/``test``
            tables and ``info``).
        vocab, user_vocab: the vocabularies (``user_vocab`` when the log has users).
        train: the training part, encoded; ``valid``/``test``: the evaluation examples.
        info: how it was made: ``split`` (the method, ``"given"`` for a split folder used as
            is), its options, and ``split_info`` (the split's own record: cut-offs, shares,
            files of a given split, what held-out filtering dropped).
        encoded: the one encoded table the parts are views of (see the module docstring).
    """

    frame: pl.DataFrame
    split: Split
    vocab: ItemVocab
    user_vocab: ItemVocab | None
    train: SequenceDataset
    valid: EvalSet
    test: EvalSet
    item_features: pl.DataFrame | None = None
    user_features: pl.DataFrame | None = None
    info: dict[str, Any] = field(default_factory=dict)
    encoded: pl.DataFrame | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"Prepared(split {self.info.get('split', self.split.info.get('method'))!r}, "
            f"{self.frame.height:,} events, {len(self.vocab) - 1:,} items; train {self.train!r}, "
            f"valid {self.valid!r}, test {self.test!r})"
        )


def read(
    path: str | Path,
    *,
    format: str | None = None,
    columns: dict[str, str] | None = None,
    no_timestamp: bool = False,
    order: str | None = None,
    time_unit: str | None = None,
) -> Interactions:
    """Read any supported log into :class:`warmrec.data.readers.Interactions`."""
    from warmrec.data.readers import load_interactions

    return load_interactions(
        path,
        format=format,
        columns=columns,
        no_timestamp=no_timestamp,
        order=order,
        time_unit=time_unit,
    )


def prepare(
    data: pl.DataFrame | Interactions,
    *,
    split: str | None = None,
    split_options: dict[str, Any] | None = None,
    resplit: bool = False,
    vocab: ItemVocab | None = None,
    user_vocab: ItemVocab | None = None,
    item_features: pl.DataFrame | None = None,
    user_features: pl.DataFrame | None = None,
) -> Prepared:
    """Split a log and encode it once.

    ``data`` is a canonical table or an :class:`~warmrec.data.readers.Interactions` (whose
    feature tables are used unless given). A split folder's parts are used as given unless
    ``resplit=True``; naming a ``split`` method for such data without ``resplit`` is an error
    (the parts would silently be merged). Otherwise ``split`` (default:
    :func:`~warmrec.data.split.default_split`) with ``split_options`` splits the whole table.

    The vocabulary covers the whole catalogue (every item of every part) unless one is given (a
    saved model's), so held-out items are ranked too.
    """
    from warmrec.data.readers import Interactions
    from warmrec.data.split import split as do_split
    from warmrec.data.splitdir import given_split

    parts = None
    split_source: dict[str, Any] | None = None
    if isinstance(data, Interactions):
        frame = data.interactions
        parts = data.parts
        split_source = data.split_info
        item_features = item_features if item_features is not None else data.item_features
        user_features = user_features if user_features is not None else data.user_features
    else:
        frame = canonical_table(data)  # checked as a file's would be (text times, NaN, nulls)
    opts = dict(split_options or {})
    if parts is not None and not resplit:
        if split not in (None, GIVEN):
            raise ConfigError(
                f"the data is already split into {'/'.join(parts)} ({data.source}); "
                f"it is used as given: drop the split method {split!r}, or pass resplit=True "
                "(CLI: --resplit) to merge the parts and split them again"
            )
        if opts:
            raise ConfigError(
                f"split options ({', '.join(sorted(opts))}) given for data already split "
                f"({data.source}); pass resplit=True (CLI: --resplit) to split again"
            )
        method = GIVEN
        sp = given_split(parts, str(data.source))
        sp.info.update(split_source or {})
    else:
        if split == GIVEN:
            raise ConfigError(
                "split 'given' needs a split folder (train/valid/test files); this data has none"
            )
        method = split or default_split(frame)
        sp = do_split(frame, method, **opts)
    vocab = vocab or ItemVocab.from_ids(frame[ITEM])
    if user_vocab is None and USER in frame.columns:
        user_vocab = ItemVocab.from_ids(frame[USER])
    enc = encode_parts(sp, vocab, user_vocab)
    views = _Views(enc, sp, vocab, user_vocab)
    train = views.train(item_features, user_features)
    valid = views.held_out(1)
    test = views.held_out(2)
    info: dict[str, Any] = {"split": method, **{f"split_{k}": v for k, v in opts.items()}}
    if resplit and parts is not None:
        info["resplit"] = True
    info["split_info"] = dict(sp.info)
    info["sizes"] = {
        "train_sequences": len(train.sequences),
        "valid": len(valid),
        "test": len(test),
    }
    if len(test) == 0:
        import warnings

        from warmrec.errors import DataWarning

        warnings.warn(
            f"the {method} split leaves no test example ({_no_test_reason(sp)}): "
            "evaluating gives NaN",
            DataWarning,
            stacklevel=2,
        )
    return Prepared(
        frame, sp, vocab, user_vocab, train, valid, test, item_features, user_features, info, enc
    )


def _no_test_reason(sp: Split) -> str:
    """Why a split left no test example; a user split that held out no test user says so."""
    return held_out_none(sp, "test") or (
        "sequences too short for it, or held-out items never seen in training"
    )


def held_out_none(sp: Any, part: str) -> str | None:
    """Why a ``user`` split holds out no user for ``part`` (``"test"`` or ``"valid"``): its
    share of the users rounds to 0 (or the log has none); None for any other split, or where
    it holds some out."""
    info = getattr(sp, "info", None) or {}
    if info.get("method") != "user" or info.get(f"{part}_users") != 0:
        return None
    frac, n = info[f"{part}_frac"], info["users"]
    units = {USER: "users", SESSION: "sessions"}.get(getattr(sp, "key", USER), "sequences")
    if n == 0:
        return f"it holds out none: the log has no {units}"
    return (
        f"it holds out none: {part}_frac={frac:g} of {n:,} {units} rounds to 0; "
        f"expected {part}_frac above {0.5 / n:.4g}, or more {units}"
    )


def whole_train(prep: Prepared) -> SequenceDataset:
    """Every event of the log (all parts of the split) as training sequences, with the same
    vocabularies and feature tables: what a model refitted for deployment trains on, once its
    settings were chosen on validation (``warmrec train --refit-all``)."""
    frame = prep.frame
    sp = Split(frame, frame.head(0), frame.head(0), prep.split.kind, prep.split.key, {})
    views = _Views(encode_parts(sp, prep.vocab, prep.user_vocab), sp, prep.vocab, prep.user_vocab)
    return views.train(prep.item_features, prep.user_features)


# ---------------------------------------------------------------------------------------------
# the one encoded table and its views


def encode_parts(sp: Split, vocab: ItemVocab, user_vocab: ItemVocab | None) -> pl.DataFrame:
    """The three parts stacked (train, valid, test) with a part column, item indices and user
    indices: each vocabulary encodes the log once. Rows keep their order within each part.
    A split's history-only rows (``Split.context``) get part ``-1``: never trained on, never a
    target, read as the history of the held-out targets (and first on ties)."""
    keys = [c for c in (SESSION, USER) if c in sp.train.columns]
    parts = [(p, df) for p, df in enumerate((sp.train, sp.valid, sp.test))]
    if sp.context is not None:
        parts.append((CONTEXT_PART, sp.context))
    tables = [
        df.select([c for c in (*keys, ITEM, TIME) if c in df.columns]).with_columns(
            pl.lit(p, dtype=pl.Int8).alias(PART)
        )
        for p, df in parts
    ]
    log = pl.concat(tables, how="diagonal_relaxed").with_row_index(_ROW)
    cols = [pl.Series(IDX, vocab.encode(log[ITEM]))]
    if user_vocab is not None and USER in log.columns:
        cols.append(pl.Series(UIDX, user_vocab.encode(log[USER])))
    return log.with_columns(cols).drop(ITEM)


class _Views:
    """Cuts the parts out of the one encoded table, sorting it once per sequence key by key,
    time, part and row: history before targets on ties, input order otherwise (the order of
    :meth:`EvalSet.from_frames` and :meth:`SequenceData.from_frame`)."""

    def __init__(
        self, enc: pl.DataFrame, sp: Split, vocab: ItemVocab, user_vocab: ItemVocab | None
    ) -> None:
        self.enc, self.sp, self.vocab, self.user_vocab = enc, sp, vocab, user_vocab
        self._by_key: dict[str, pl.DataFrame] = {}

    def sorted(self, key: str) -> pl.DataFrame:
        if key not in self._by_key:
            if self.sp.context_after_valid:  # history-only rows after the valid target on ties
                rank = pl.when(pl.col(PART) == CONTEXT_PART).then(3).otherwise(pl.col(PART) * 2)
                self._by_key[key] = self.enc.sort([pl.col(key), pl.col(TIME), rank, pl.col(_ROW)])
            else:
                self._by_key[key] = self.enc.sort([key, TIME, PART, _ROW])
        return self._by_key[key]

    def train(
        self, item_features: pl.DataFrame | None, user_features: pl.DataFrame | None
    ) -> SequenceDataset:
        sp = self.sp
        key = sequence_key(sp.train)
        sub = self.sorted(key).filter(pl.col(PART) == 0)
        seqs = SequenceData.from_encoded(sub, key)
        users = _seq_users(sub, key, seqs) if UIDX in sub.columns else None
        return SequenceDataset(
            seqs, self.vocab, key, users, self.user_vocab, item_features, user_features, sp.train
        )

    def held_out(self, part: int) -> EvalSet:
        sp, n_items = self.sp, len(self.vocab)
        if sp.kind == "sessions":  # every next item of each held-out sequence given its prefix
            held = sp.valid if part == 1 else sp.test
            key = sequence_key(held)
            sub = self.sorted(key).filter(pl.col(PART) == part)
            seqs = SequenceData.from_encoded(sub, key)
            seq_users = _seq_users(sub, key, seqs) if UIDX in sub.columns else None
            return EvalSet.from_sequences(seqs, n_items, seq_users)
        # next_item: each event of this part is a target; its history is every earlier event of
        # its key in the earlier parts and earlier targets
        key = sp.key or sequence_key(sp.train)
        sub = self.sorted(key).filter(pl.col(PART) <= part)
        if part == 1 and sp.context_after_valid:  # rows after the valid target: its future
            sub = sub.filter(pl.col(PART) != CONTEXT_PART)
        is_t = (sub[PART] == part).to_numpy()
        ex = sorted_examples(sub[key], sub[IDX].to_numpy().astype(np.int64, copy=False), is_t)
        chosen = sub.filter(pl.Series(ex.selected))
        users = None
        if UIDX in chosen.columns:  # a log without users has none: a session id is no user id
            users = chosen[UIDX].to_numpy().astype(np.int64)
        es = ex.eval_set(n_items, chosen[key], users)
        # a given user split drops a user new in this part's first target: no history to continue
        return sp.held_out_examples(es, ("valid", "test")[part - 1])


def _seq_users(sub: pl.DataFrame, key: str, seqs: SequenceData) -> np.ndarray:
    """A user index per sequence of ``seqs``: the user of its events that have one
    (:func:`~warmrec.data.dataset.sequence_users`), 0 for none or a user unknown to the user
    vocabulary."""
    if USER in sub.columns and key != USER:  # events without a user say nothing of it
        sub = sub.filter(pl.col(USER).is_not_null())
    return sequence_users(sub, key, seqs.keys, UIDX).fill_null(0).to_numpy().astype(np.int64)

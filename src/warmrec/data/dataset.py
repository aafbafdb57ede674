"""The containers models see: training data, evaluation examples and scoring batches.

- :class:`SequenceDataset` -- training sequences plus the vocabulary and optional side features.
- :class:`EvalSet` -- next-item examples (a history and one target each), built so that a target
  never sees its own future.
- :class:`Batch` -- what ``Recommender.score`` receives: left-padded histories (most recent item
  last) and, where known, user indices.

torch is imported lazily (in :meth:`EvalSet.batch`): importing ``warmrec.data`` never loads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from warmrec.data.schema import ITEM, TIME, USER, sequence_key
from warmrec.data.sequences import SequenceData, pad_windows
from warmrec.data.vocab import ItemVocab
from warmrec.errors import DataError

if TYPE_CHECKING:  # torch is imported only where a Batch is built: ``warmrec.data`` stays light
    import torch


@dataclass
class SequenceDataset:
    """Training data: time-ordered sequences over an :class:`ItemVocab`.

    ``users`` gives a user index (1-based, 0 = unknown) per sequence when the log has a
    ``user_id`` column; ``user_vocab`` maps raw user ids to those indices. Feature tables are keyed
    by raw ``item_id`` / ``user_id``.
    """

    sequences: SequenceData
    vocab: ItemVocab
    key: str
    users: np.ndarray | None = None
    user_vocab: ItemVocab | None = None
    item_features: pl.DataFrame | None = None
    user_features: pl.DataFrame | None = None
    frame: pl.DataFrame | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        feats = [
            n
            for n, t in (("items", self.item_features), ("users", self.user_features))
            if t is not None
        ]
        return (
            f"SequenceDataset({len(self.sequences):,} sequences by {self.key}, "
            f"{int(self.sequences.lengths.sum()):,} events, {len(self.vocab) - 1:,} items"
            + (f", features of {' and '.join(feats)}" if feats else "")
            + ")"
        )

    @property
    def n_items(self) -> int:
        """Width of a score matrix (real items + the padding index)."""
        return len(self.vocab)

    @classmethod
    def from_frame(
        cls,
        df: pl.DataFrame,
        vocab: ItemVocab | None = None,
        *,
        user_vocab: ItemVocab | None = None,
        item_features: pl.DataFrame | None = None,
        user_features: pl.DataFrame | None = None,
    ) -> SequenceDataset:
        """Build from a canonical table; the vocabulary defaults to the table's own items."""
        vocab = vocab or ItemVocab.from_ids(df[ITEM])
        key = sequence_key(df)
        seqs = SequenceData.from_frame(df, vocab, key)
        users = None
        if USER in df.columns:
            user_vocab = user_vocab or ItemVocab.from_ids(df[USER])
            if key == USER:
                users = user_vocab.encode(seqs.keys)
            else:
                users = user_vocab.encode(sequence_users(df, key, seqs.keys))
        return cls(seqs, vocab, key, users, user_vocab, item_features, user_features, df)

    def item_counts(self) -> np.ndarray:
        """Training occurrences per item index (length ``n_items``, index 0 is 0)."""
        return np.bincount(self.sequences.items, minlength=self.n_items).astype(np.float64)


@dataclass
class EvalSet:
    """Next-item examples: example ``j`` has history ``items[starts[j]:ends[j]]`` and one target.

    Build with :meth:`from_frames` (history table + target table, e.g. leave-one-out) or
    :meth:`from_sessions` (every next item of held-out sessions).
    """

    items: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    targets: np.ndarray
    n_items: int
    keys: pl.Series
    users: np.ndarray | None = None
    n_dropped: int = 0

    def __len__(self) -> int:
        return len(self.targets)

    def __repr__(self) -> str:
        lens = np.asarray(self.ends) - np.asarray(self.starts)
        mean = f", mean history {lens.mean():.1f}" if len(lens) else ""
        return f"EvalSet({len(self):,} examples{mean})"

    def history(self, j: int) -> np.ndarray:
        return self.items[self.starts[j] : self.ends[j]]

    def target_in_history(self) -> np.ndarray:
        """Per example, whether its target is already in its history (a repeat), vectorised."""
        n = len(self.targets)
        lens = (self.ends - self.starts).astype(np.int64)
        if n == 0 or lens.sum() == 0:
            return np.zeros(n, dtype=bool)
        owner = np.repeat(np.arange(n), lens)
        # positions of every history item, example by example
        offsets = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
        idx = np.repeat(self.starts.astype(np.int64), lens) + offsets
        hit = self.items[idx] == self.targets[owner]
        return np.bincount(owner[hit], minlength=n).astype(bool)

    def batch(self, index: np.ndarray, maxlen: int) -> Batch:
        """A scoring batch of the examples at ``index`` with histories cut to ``maxlen``."""
        import torch

        index = np.asarray(index)
        mat = pad_windows(self.items, self.starts[index], self.ends[index], maxlen)
        users = torch.from_numpy(self.users[index]) if self.users is not None else None
        return Batch(torch.from_numpy(mat), users)

    def subset(self, index: np.ndarray) -> EvalSet:
        index = np.asarray(index)
        return EvalSet(
            self.items,
            self.starts[index],
            self.ends[index],
            self.targets[index],
            self.n_items,
            self.keys.gather(index),
            self.users[index] if self.users is not None else None,
            0,
        )

    @classmethod
    def from_frames(
        cls,
        history: pl.DataFrame,
        targets: pl.DataFrame,
        vocab: ItemVocab,
        *,
        user_vocab: ItemVocab | None = None,
    ) -> EvalSet:
        """Each row of ``targets`` is one example; its history is every earlier event of the same
        key in ``history`` and in ``targets``.

        "Earlier" is the package's one order of events (:mod:`warmrec.data.split`, "Order and
        ties"): by time, then, on equal times, ``history`` rows before ``targets`` rows and
        each table's row order. So two targets of one key at the same time are not
        simultaneous: the second in ``targets``' row order has the first in its history (as an
        earlier item of a held-out session is in the prefix of a later one at the same time,
        :meth:`from_sessions`, and as in RecBole), while the first never sees the second. No
        target ever sees an event after it in that order; to treat tied events as one
        step, give them distinct times (or drop the duplicates) before splitting.

        Targets whose item is unknown to the vocabulary are dropped and counted in ``n_dropped``.
        """
        key = sequence_key(targets)
        if history.height == 0:  # no history (``pl.DataFrame()`` included): the targets alone
            history = targets.head(0)
        if key not in history.columns:
            raise DataError(
                "history and targets use different sequence keys",
                field=key,
                expected=key,
                found=", ".join(history.columns),
            )
        cols = [key, ITEM, TIME] + ([USER] if USER in targets.columns and key != USER else [])
        h = history.select([c for c in cols if c in history.columns]).with_columns(
            pl.lit(False).alias("_is_target")
        )
        t = targets.select(cols).with_columns(pl.lit(True).alias("_is_target"))
        if USER in cols and USER not in h.columns:
            h = h.with_columns(pl.lit(None, dtype=t[USER].dtype).alias(USER))
        h = h.select(t.columns)
        allev = pl.concat([h, t], how="vertical_relaxed").with_row_index("_row")
        allev = allev.with_columns(pl.Series("_idx", vocab.encode(allev[ITEM])))
        allev = allev.sort([key, TIME, "_is_target", "_row"])
        is_t = allev["_is_target"].to_numpy()
        idx = allev["_idx"].to_numpy().astype(np.int64)
        ex = sorted_examples(allev[key], idx, is_t)
        users = None
        if user_vocab is not None and USER in allev.columns:  # a session id is no user id
            users = user_vocab.encode(allev.filter(pl.Series(ex.selected))[USER])
        return ex.eval_set(len(vocab), allev.filter(pl.Series(ex.selected))[key], users)

    @classmethod
    def from_sessions(
        cls,
        sessions: pl.DataFrame,
        vocab: ItemVocab,
        *,
        last_only: bool = False,
        user_vocab: ItemVocab | None = None,
    ) -> EvalSet:
        """Every next item of each held-out sequence (or only the last) given its prefix."""
        key = sequence_key(sessions)
        seqs = SequenceData.from_frame(sessions, vocab, key)
        seq_users = None
        if user_vocab is not None and USER in sessions.columns:
            seq_users = user_vocab.encode(sequence_users(sessions, key, seqs.keys))
        return cls.from_sequences(seqs, len(vocab), seq_users, last_only=last_only)

    @classmethod
    def from_sequences(
        cls,
        seqs: SequenceData,
        n_items: int,
        seq_users: np.ndarray | None = None,
        *,
        last_only: bool = False,
    ) -> EvalSet:
        """:meth:`from_sessions` of encoded sequences (``seq_users``: a user index per sequence)."""
        if last_only:
            ok = seqs.lengths >= 2
            ends = seqs.offsets[1:][ok] - 1
            seq = np.nonzero(ok)[0]
        else:
            ends, _ = seqs.prefix_targets(1)
            seq = seqs.sequence_of(ends)
        return cls(
            seqs.items,
            seqs.offsets[seq],
            ends,
            seqs.items[ends],
            n_items,
            seqs.keys.gather(seq),
            seq_users[seq] if seq_users is not None else None,
            0,
        )


def sequence_users(df: pl.DataFrame, key: str, keys: pl.Series, user: str = USER) -> pl.Series:
    """The user of each sequence in ``keys`` (values of column ``key`` of ``df``): the one
    ``user`` value of its events that have one, whatever their row or time order (a session
    whose first rows have no user belongs to the user of its later ones, as in the splits);
    null for a sequence without any. Raises :class:`~warmrec.errors.DataError` naming the key
    and its users when a sequence holds events of several users."""
    if key == user:  # sequences keyed by their user
        return keys.rename(user)
    known = df.select(key, user).filter(pl.col(user).is_not_null())
    per = known.group_by(key, maintain_order=True).agg(
        pl.col(user).first(), pl.col(user).n_unique().alias("_n_users")
    )
    bad = per.filter(pl.col("_n_users") > 1)
    if bad.height:
        k = bad[key][0]
        names = known.filter(pl.col(key) == k)[user].unique(maintain_order=True)
        shown = ", ".join(repr(u) for u in names.head(3).to_list())
        more = f" and {names.len() - 3} more" if names.len() > 3 else ""
        raise DataError(
            f"a sequence holds events of several users ({bad.height:,} such)",
            field=key,
            expected=f"one user per {key}: {key} values unique across users",
            found=f"{key} {k!r} under users {shown}{more}",
        )
    got = pl.DataFrame({key: keys}).join(per, on=key, how="left", maintain_order="left")
    return got[user]


def sequence_halves(keys: pl.Series, rng: np.random.Generator) -> np.ndarray | None:
    """A boolean mask over examples whose sequence keys are ``keys``: the sequences (learners,
    sessions) in two random halves drawn from ``rng``, so that no sequence has examples on
    both sides (for out-of-fold checks on validation); None where every example falls on one
    side (no example, or a single sequence)."""
    codes = keys.rank("dense").to_numpy().astype(np.int64) - 1
    half = rng.permutation(int(codes.max()) + 1 if len(codes) else 0)[codes] % 2 == 1
    return None if half.all() or not half.any() else half


@dataclass
class SortedExamples:
    """Next-item examples cut from events sorted by key, then time (history before targets on
    ties): see :func:`sorted_examples`."""

    items: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    targets: np.ndarray
    selected: np.ndarray
    n_dropped: int

    def eval_set(self, n_items: int, keys: pl.Series, users: np.ndarray | None) -> EvalSet:
        return EvalSet(
            self.items,
            self.starts,
            self.ends,
            self.targets,
            n_items,
            keys,
            users,
            self.n_dropped,
        )


def sorted_examples(keys: pl.Series, idx: np.ndarray, is_target: np.ndarray) -> SortedExamples:
    """Each target event (``is_target``, known item) is one example whose history is every
    earlier known event of its key. ``keys``/``idx`` (item indices, 0 = unknown) are per event,
    sorted by key, then time. Unknown items never appear inside a history; unknown targets are
    counted in ``n_dropped``. ``selected`` marks the events that became examples."""
    n = len(idx)
    gid = keys.rle_id().to_numpy() if n else np.zeros(0, dtype=np.int64)
    heads = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]]) if n else np.zeros(0, np.int64)
    starts_all = heads[gid] if n else np.zeros(0, dtype=np.int64)
    # unknown items are removed from the array so that padding never appears inside a history
    keep = idx > 0
    new_pos = np.cumsum(keep) - keep  # position in the compacted array of each event
    sel = is_target & keep
    return SortedExamples(
        idx[keep],
        new_pos[starts_all[sel]],
        new_pos[sel],
        idx[sel],
        sel,
        int((is_target & ~keep).sum()),
    )


@dataclass
class Batch:
    """Histories to score: ``items`` is ``[B, L]`` left-padded with 0, most recent item last."""

    items: torch.Tensor
    users: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.items.shape[0]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.items.to(device), None if self.users is None else self.users.to(device))

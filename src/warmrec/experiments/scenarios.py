"""Evaluation protocols as objects that check their sizes (recpack's ``Scenario`` in spirit).

A scenario holds a protocol's settings, is validated when built (a bad setting is one
:class:`~warmrec.errors.ConfigError` line), and splits data into the parts a study needs,
refusing -- in one :class:`~warmrec.errors.DataError` line, before any model is fit -- sizes that
would leave a part empty. Studies (:mod:`warmrec.experiments.studies`) are runs over one
scenario.

:class:`ColdStartUsers` -- the user cold-start protocol. *Users*, not events, are split::

    eligible users (>= max(shots) + 1 events,       every other user
                    <= max_events if set)
    |-- meta-test --|-- meta-valid --|-- ...  -->   meta-train (all their events)
     test_users       valid_users
     (or n_test_users)

``order="random"`` draws the held-out users with the seed; ``order="time"`` puts the users who
start last into meta-test and meta-valid just before them (a cut-off in time: held-out users
never train, nor does any user who starts at or after the first held-out one). Users are cold,
items are warm: ranking is over the full catalogue. For a held-out user and ``k`` in ``shots``
the example is (history = the first ``k`` events, target = event ``k + 1``) --
:func:`shot_eval_set`.

:class:`DataScarcity` -- a fraction of the training sequences (sessions, else users), drawn with
a seed and nested (a smaller fraction's sample is part of a larger one's for one seed);
validation, test and the vocabularies unchanged. The learning-curve and transfer studies vary
it; a run takes it as ``[split] train_fraction`` / ``fraction_seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from warmrec.config import ConfigModel
from warmrec.data.dataset import EvalSet, SequenceDataset
from warmrec.errors import DataError


@dataclass
class UserParts:
    """User indices of the three parts (each sorted, pairwise disjoint)."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


@dataclass
class UserSplit(UserParts):
    """:class:`UserParts` over per-user sequences (one time-ordered sequence per user)."""

    data: SequenceDataset | None = None

    def subset(self, which: np.ndarray) -> SequenceDataset:
        """The sequences of the users ``which`` (indices into ``data``)."""
        d = self.data
        return SequenceDataset(d.sequences.subset(which), d.vocab, d.key)

    def eval_set(self, part: Literal["valid", "test"], k: int) -> EvalSet:
        """The ``part``'s users with ``k`` events revealed (:func:`shot_eval_set`)."""
        return shot_eval_set(self.data, getattr(self, part), k)


class ColdStartUsers(ConfigModel):
    """The user cold-start scenario (module docstring); unknown keys are rejected."""

    shots: tuple[int, ...] = (1, 3, 5, 10)
    """Revealed events per meta-valid / meta-test user (each >= 1)."""
    order: Literal["random", "time"] = "random"
    """How users are split: at random, or by the time of their first event (test last)."""
    valid_users: float = Field(0.1, gt=0, lt=1)
    """Share of eligible users in meta-valid."""
    test_users: float = Field(0.2, gt=0, lt=1)
    """Share of eligible users in meta-test (unless ``n_test_users``)."""
    n_test_users: int = Field(0, ge=0)
    """Number of meta-test users instead of the share (0 = use ``test_users``)."""
    min_train_share: float = Field(0.0, ge=0, lt=1)
    """At least this share of all users stays meta-train (meta-test is capped to keep it)."""
    max_valid_users: int = Field(0, ge=0)
    """Cap on meta-valid users (0 = none; keeps a learning-rate search cheap)."""
    max_test_users: int = Field(0, ge=0)
    """Cap on meta-test users (0 = none)."""
    max_events: int = Field(0, ge=0)
    """Cold users only: meta-valid and meta-test users are drawn among users with at most this
    many events (0 = no cap); every longer history trains. ``max_events = 5`` with ``shots =
    (1, 2, 3)`` holds out learners with 4 or 5 events (MARS's cold learners)."""

    @field_validator("shots", mode="before")
    @classmethod
    def _shots(cls, v: Any) -> Any:
        values = list(v) if isinstance(v, (list, tuple)) else v
        if isinstance(values, list):
            if not values:
                raise ValueError("expected at least one number of revealed events, found none")
            bad = [x for x in values if isinstance(x, int) and not isinstance(x, bool) and x < 1]
            if bad:
                raise ValueError(
                    f"expected numbers of revealed events >= 1, found {', '.join(map(str, bad))}"
                )
        return v

    @model_validator(mode="after")
    def _shares(self) -> ColdStartUsers:
        if not self.n_test_users and self.valid_users + self.test_users >= 1:
            raise ValueError(
                f"valid_users + test_users: expected < 1 (meta-train users must remain), found "
                f"{self.valid_users} + {self.test_users}"
            )
        if self.max_events and self.max_events < self.need:
            raise ValueError(
                f"max_events: expected >= max(shots) + 1 = {self.need} (a held-out user needs "
                f"its revealed events and the next one), found {self.max_events}"
            )
        return self

    @property
    def need(self) -> int:
        """Events a meta-valid / meta-test user needs: ``max(shots) + 1``."""
        return max(self.shots) + 1

    def assign(
        self, lengths: np.ndarray, seed: int, first_times: np.ndarray | None = None
    ) -> UserParts:
        """Split users with ``lengths`` events each (``first_times``: the time of each user's
        first event, needed by ``order="time"``); refuses sizes that leave a part empty."""
        lens = np.asarray(lengths)
        n = len(lens)
        ok = lens >= self.need
        if self.max_events:
            ok &= lens <= self.max_events
        eligible = np.flatnonzero(ok)
        n_valid = int(round(self.valid_users * len(eligible)))
        if self.n_test_users:
            keep_train = math.ceil(self.min_train_share * n)
            n_test = min(self.n_test_users, len(eligible) - n_valid, n - n_valid - keep_train)
        else:
            n_test = int(round(self.test_users * len(eligible)))
            if self.min_train_share:
                n_test = min(n_test, n - n_valid - math.ceil(self.min_train_share * n))
        n_train = n - n_valid - n_test
        if n_valid < 1 or n_test < 1 or n_train < 2:
            raise DataError(
                "too few users for the cold-start split (meta-train, meta-valid and meta-test "
                "must each be non-empty)",
                field="shots",
                expected=f"users with >= {self.need} events (max(shots) + 1)"
                + (f" and <= {self.max_events} (max_events)" if self.max_events else "")
                + " for meta-valid and meta-test, and >= 2 meta-train users",
                found=f"{len(eligible)} eligible of {n} users: {max(n_train, 0)} train, "
                f"{max(n_valid, 0)} valid, {max(n_test, 0)} test",
            )
        if self.order == "time":
            if first_times is None:
                raise DataError(
                    "order='time' needs timestamps",
                    field="timestamp",
                    expected="a column",
                    found="none",
                )
            first = np.asarray(first_times)
            order = eligible[np.argsort(first[eligible], kind="stable")]
            cut = len(order) - n_test - n_valid
            test, valid, held = order[cut + n_valid :], order[cut : cut + n_valid], order[cut:]
            # a cut in time: users not held out (too short or too long to be) who start at or
            # after the first held-out user are the future too, and do not train
            later = np.flatnonzero(first >= first[held].min())
            held = np.union1d(held, later)
            if n - len(held) < 2:
                raise DataError(
                    "too few users start before the held-out ones for the cold-start split",
                    field="order",
                    expected=">= 2 meta-train users who start before every meta-valid and "
                    "meta-test user",
                    found=f"{n - len(held)} of {n} users",
                )
        else:
            order = np.random.default_rng(seed).permutation(eligible)
            test, valid = order[:n_test], order[n_test : n_test + n_valid]
            held = order[: n_test + n_valid]
        if self.max_test_users:
            test = test[: self.max_test_users]
        if self.max_valid_users:
            valid = valid[: self.max_valid_users]
        is_held = np.zeros(n, bool)
        is_held[held] = True  # capped-away held-out users never train either
        return UserParts(np.flatnonzero(~is_held), np.sort(valid), np.sort(test))

    def split(self, data: SequenceDataset, seed: int) -> UserSplit:
        """Split the per-user sequences of ``data`` (one sequence per user)."""
        seqs = data.sequences
        first = None
        if self.order == "time" and seqs.timestamps is not None:
            first = seqs.timestamps[seqs.offsets[:-1]]
        parts = self.assign(seqs.lengths, seed, first)
        return UserSplit(parts.train, parts.valid, parts.test, data)


def shot_eval_set(data: SequenceDataset, users: np.ndarray, k: int) -> EvalSet:
    """History = each user's first ``k`` events, target = event ``k + 1``."""
    seqs = data.sequences
    users = np.asarray(users, dtype=np.int64)
    starts = seqs.offsets[users]
    if k < 1 or (seqs.lengths[users] < k + 1).any():
        raise DataError(
            "shot_eval_set: a user has too few events (or k < 1)",
            field="k",
            expected=f">= 1 revealed event and users with >= {k + 1} events",
            found=f"k = {k}",
        )
    # its own items array (each user's first k + 1 events), not the dataset's: an EvalSet's
    # items are what that part holds (known_mask reads them), and the dataset's array held
    # every user's whole sequence, the test users' too
    items = seqs.items[starts[:, None] + np.arange(k + 1)].reshape(-1)
    own = np.arange(len(users), dtype=np.int64) * (k + 1)
    return EvalSet(items, own, own + k, items[own + k], len(data.vocab), seqs.keys.gather(users))


class DataScarcity(ConfigModel):
    """Keep ``fraction`` of the training sequences (module docstring)."""

    fraction: float = Field(1.0, gt=0, le=1)
    """Share of training sequences kept (sessions, else users)."""
    seed: int = 0
    """Seed of the draw (one permutation per seed: nested fractions)."""
    min_sequences: int = Field(1, ge=1)
    """Refuse a draw that keeps fewer training sequences than this."""

    def keys(self, train: Any) -> Any:
        """The sequence keys of ``train`` (a canonical table) kept, sorted."""
        from warmrec.data.schema import sequence_key

        units = train[sequence_key(train)].unique().sort()
        keep_n = max(1, round(self.fraction * units.len()))
        if keep_n < self.min_sequences:
            raise DataError(
                "too few training sequences for this fraction",
                field="train_fraction",
                expected=f">= {self.min_sequences} kept",
                found=f"{keep_n} of {units.len()} at fraction {self.fraction}",
            )
        perm = np.random.default_rng(self.seed).permutation(units.len())
        return units.gather(np.sort(perm[:keep_n]))

    def apply(self, prep: Any) -> Any:
        """``prep`` (a :class:`~warmrec.data.prepared.Prepared`) with its training sequences
        subsampled, its split's ``train`` part too (the dropped rows of per-user splits become
        history only); its ``info`` gains fraction, seed and ``train_units``."""
        import polars as pl

        from warmrec.data.prepared import Prepared
        from warmrec.data.schema import sequence_key

        if self.fraction >= 1.0:
            return prep
        if prep.split is None:
            raise DataError(
                "train_fraction needs a row split",
                field="train_fraction",
                expected="a split of the log's rows (loo, temporal, last_session, user, given)",
                found="the coldstart scenario",
            )
        train = prep.split.train
        key = sequence_key(train)
        keep = self.keys(train)
        kept = pl.col(key).is_in(keep.implode())
        sub = train.filter(kept)
        split = _scarce_split(prep.split, sub, train.filter(~kept), self)
        data = SequenceDataset.from_frame(
            sub,
            prep.vocab,
            user_vocab=prep.user_vocab,
            item_features=prep.item_features,
            user_features=prep.user_features,
        )
        info = {
            **prep.info,
            "fraction": self.fraction,
            "seed": self.seed,
            "train_units": keep.len(),
        }
        return Prepared(
            prep.frame, split, prep.vocab, prep.user_vocab, data, prep.valid, prep.test,
            prep.item_features, prep.user_features, info,
        )  # fmt: skip


def _scarce_split(split: Any, kept: Any, dropped: Any, scarcity: DataScarcity) -> Any:
    """``split`` whose ``train`` part is the kept sample, so that what reads the training part
    (the cold slices' new users and items, the leakage check) reads what the model trained on.
    Per-user (``next_item``) splits keep the dropped rows as history only (``context``): the
    valid and test examples built from the split keep their histories."""
    import dataclasses

    import polars as pl

    info = {**split.info, "train_fraction": scarcity.fraction, "fraction_seed": scarcity.seed,
            "train_rows_dropped": dropped.height}  # fmt: skip
    context = split.context
    if split.kind == "next_item" and dropped.height:
        parts = [p for p in (context, dropped) if p is not None and p.height]
        context = pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else dropped
    return dataclasses.replace(split, train=kept, info=info, context=context)

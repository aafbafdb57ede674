"""Train / validation / test splits that never let the future leak into training.

The protocols, each a function returning a :class:`Split`, and :func:`split` to pick one by name:

========================  ===========  =====================================================
name                      kind         held out
========================  ===========  =====================================================
``"loo"``                 next_item    each user's last event (test), second last (valid)
``"loo_new"``             next_item    each user's last event on an item new to them (test),
                                       the new one before it (valid)
``"temporal"``            sessions /   everything after global cut-offs
                          next_item
``"last_session"``        sessions     each user's last session, or the latest 10 % of sessions
``"user"``                sessions     whole users (cold start)
``"last_pair"``           sessions     (second last, last) of sampled sequences; the query is
                                       the second last item alone (Cloudera FF19's protocol)
``"time_new_learners"``   next_item    the last new item of each user who arrives after a cut
                                       (test; the earlier events are history only), trained on
                                       the events before the cut
========================  ===========  =====================================================

``kind="next_item"``: each held-out row is one target whose history is every earlier event of its
user (:meth:`EvalSet.from_frames`). ``kind="sessions"``: every next item of each held-out
sequence is a target given the sequence's prefix (:meth:`EvalSet.from_sessions`).

Targets without history: ``loo``, ``loo_new``, ``time_new_learners`` and the session protocols
never make one (too short a user or session trains, or is dropped). A ``temporal`` split of a
user log keeps the first held-out event of a user new in that part as a target with an empty
history, in valid and test alike: it is ranked by the model's empty-history fallback and the
cold-start slices (``new_users``) report such users apart. A given user split (a split folder)
drops it: :meth:`Split.held_out_examples`, which ``Split.valid_set`` / ``Split.test_set`` and
:func:`~warmrec.data.prepared.prepare` share.

For transfer studies, :func:`new_user_domains` cuts one log into two domains at a point in time:
a source of the early users' early events and a target of the users who arrive later.

Order and ties: events are ordered by timestamp; two events of the same key with the same
timestamp keep their original row order (every sort here is stable), so the row order of the
input decides ties, as in RecBole.

Rows without a user: a session log may leave ``user_id`` empty (guest invoices, anonymous
sessions). The per-user protocols (``loo``, ``loo_new``, ``last_session`` per user, ``user``,
``time_new_learners``) keep such rows in train (after a cut: dropped), never as one made-up user
with held-out events; ``Split.info`` counts them and a :class:`~warmrec.errors.DataWarning` says so.

Held-out filtering (session protocols, and ``temporal`` on user logs), as in GRU4Rec's
preprocessing: held-out events whose item never occurs in ``train`` are removed (no model could
score them), then held-out sessions left with fewer than ``min_session_length`` (2) events are
dropped. Both held-out parts are filtered against ``train`` only. ``Split.info`` counts what went.

Speed: per-session aggregates use NumPy over runs when each session's rows are contiguous (as
after sessionising, or in a log sorted by session), else lazy Polars windows; a YOOCHOOSE-sized
log (33M events, 9M sessions) splits in about 3 s of CPU.
"""

from __future__ import annotations

import datetime as dt
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from warmrec.data.checks import utc_date
from warmrec.data.dataset import EvalSet
from warmrec.data.filters import TimeLike, contiguous_runs, to_seconds
from warmrec.data.schema import ITEM, ORDINAL, SESSION, TIME, USER, require_seconds, sequence_key
from warmrec.data.sessionize import stable_sort
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, DataError, DataWarning

KINDS = ("next_item", "sessions")
DAY = 86400.0
DEFAULT_TEST_SHARE = 0.1  # last_session by time: the latest 10 % of sessions are the test part
DEFAULT_VALID_SHARE = 0.1  # temporal without valid_start: the latest 10 % before test_start
MIN_TEST_SESSIONS = 100  # fewer held-out test sequences than this give a DataWarning
LONG_HISTORY = 20  # default_split: median events per user from which a log counts as user-keyed
_PART = "_part"
TRAIN, VALID, TEST, DROPPED, CONTEXT = 0, 1, 2, 3, 4


@dataclass
class Split:
    """The three parts of a split and how to evaluate them.

    Attributes:
        train, valid, test: canonical tables (``valid`` may be empty).
        kind: ``"next_item"`` (held-out rows are targets with the user's full past as history)
            or ``"sessions"`` (held-out sequences are evaluated at every next item).
        key: the column the split was made on (``user_id`` for per-user splits, ``session_id``
            for session logs); defaults to the sequence key of ``train``.
        info: how the split was made (method, cut-offs, what held-out filtering dropped).
        context: rows that are history only (``kind="next_item"``): read as the history of a
            later valid or test target of their key, never trained on and never a target
            (``time_new_learners``: the new learners' events before their target). None for the
            other protocols.
        context_after_valid: the context rows all follow their key's valid target (``loo_new``:
            the events between the valid and the test target): they are never a valid target's
            history, and in a test history they come after the valid target on equal times.
    """

    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    kind: str  # "next_item" or "sessions"
    key: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    context: pl.DataFrame | None = None
    context_after_valid: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"Split.kind: expected one of {KINDS}, found {self.kind!r}")
        if self.context is not None and self.kind != "next_item":
            raise ConfigError(
                f"Split.context: history-only rows need kind 'next_item', found {self.kind!r}"
            )
        if self.key is None:
            self.key = sequence_key(self.train)

    def _targets_frame(self, df: pl.DataFrame) -> pl.DataFrame:
        # next-item examples are keyed on the split key: a user's history spans all sessions
        if self.key == USER and SESSION in df.columns:
            return df.drop(SESSION)
        return df

    def valid_set(self, vocab: ItemVocab, user_vocab: ItemVocab | None = None) -> EvalSet:
        """Validation examples: ``valid`` given ``train`` (next_item) or ``valid``'s sessions,
        as :meth:`held_out_examples` keeps them.

        Encodes this part alone; :func:`warmrec.prepare` encodes all parts once and cuts the
        same examples from that (use it when you need more than one part)."""
        if self.kind == "next_item":
            hist = self.train if self.context_after_valid else self._with_context(self.train)
            es = EvalSet.from_frames(
                self._targets_frame(hist),
                self._targets_frame(self.valid),
                vocab,
                user_vocab=user_vocab,
            )
            return self.held_out_examples(es, "valid")
        return EvalSet.from_sessions(self.valid, vocab, user_vocab=user_vocab)

    def test_set(self, vocab: ItemVocab, user_vocab: ItemVocab | None = None) -> EvalSet:
        """Test examples: ``test`` given ``train`` + ``valid`` (next_item) or ``test``'s
        sessions, as :meth:`held_out_examples` keeps them (the same examples as
        :func:`warmrec.prepare`'s)."""
        if self.kind == "next_item":
            hist = self._with_context(pl.concat([self.train, self.valid], how="vertical_relaxed"))
            es = EvalSet.from_frames(
                self._targets_frame(hist),
                self._targets_frame(self.test),
                vocab,
                user_vocab=user_vocab,
            )
            return self.held_out_examples(es, "test")
        return EvalSet.from_sessions(self.test, vocab, user_vocab=user_vocab)

    def held_out_examples(self, es: EvalSet, part: str) -> EvalSet:
        """The examples of the held-out ``part`` (``"valid"`` or ``"test"``) that this split
        evaluates, of ``es`` (every target of that part). A split folder used as given
        (``info["method"] == "given"``, :func:`~warmrec.data.splitdir.given_split`) drops the
        targets without history -- a user new in that part has no history to continue --
        counting them in ``n_dropped`` and ``info["<part>_without_history_dropped"]``. Every
        other protocol keeps all of them: ``loo``, ``loo_new``, ``time_new_learners`` and the
        session protocols never make a target without history; a ``temporal`` split of a user
        log ranks the first event of a user new in its part from an empty history (the model's
        fallback), and the cold-start slices (:mod:`warmrec.evaluation.slices`, ``new_users``)
        report those users apart."""
        if part not in ("valid", "test"):
            raise ConfigError(f"held-out part: expected 'valid' or 'test', found {part!r}")
        if self.info.get("method") != "given":
            return es
        empty = es.ends <= es.starts
        if not empty.any():
            return es
        self.info[f"{part}_without_history_dropped"] = int(empty.sum())
        kept = es.subset(np.flatnonzero(~empty))
        kept.n_dropped = es.n_dropped + int(empty.sum())
        return kept

    def _with_context(self, hist: pl.DataFrame) -> pl.DataFrame:
        if self.context is None or self.context.height == 0:
            return hist
        return pl.concat([hist, self.context.select(hist.columns)], how="vertical_relaxed")

    def describe(self) -> dict[str, Any]:
        """Rows, keys, items (and users / sessions where present) per part, plus ``info``.

        For held-out parts, ``targets`` is the number of evaluation examples the part yields
        (before vocabulary filtering) and ``items_not_in_train`` the distinct items unseen in
        training.
        """
        train_items = self.train[ITEM].unique() if self.train.height else None
        out: dict[str, Any] = {"kind": self.kind, "key": self.key}
        for name, df in (("train", self.train), ("valid", self.valid), ("test", self.test)):
            d: dict[str, Any] = {
                "rows": df.height,
                "keys": df[self.key].n_unique() if df.height else 0,
                "items": df[ITEM].n_unique() if df.height else 0,
            }
            for col in (USER, SESSION):
                if col in df.columns and col != self.key:
                    # an anonymous session's missing user is no user of its own
                    d[col.removesuffix("_id") + "s"] = df[col].drop_nulls().n_unique()
            if df.height:
                d["time"] = [float(df[TIME].min()), float(df[TIME].max())]
            if name != "train":
                if self.kind == "next_item":
                    d["targets"] = df.height
                else:
                    d["targets"] = df.height - (df[sequence_key(df)].n_unique() if df.height else 0)
                seen = (
                    df[ITEM].is_in(train_items.implode())
                    if train_items is not None
                    else pl.Series([False] * df.height)
                )
                d["items_not_in_train"] = df.filter(~seen)[ITEM].n_unique() if df.height else 0
            out[name] = d
        if self.context is not None:
            out["context"] = {
                "rows": self.context.height,
                "keys": self.context[self.key].n_unique() if self.context.height else 0,
            }
        out["info"] = dict(self.info)
        return out


# ---------------------------------------------------------------------------------------------
# helpers


def _require(df: pl.DataFrame, cols: list[str]) -> None:
    for col in cols:
        if col not in df.columns:
            raise DataError(
                "missing column",
                field=col,
                expected=f"a column '{col}'",
                found=", ".join(df.columns) or "no columns",
            )
    if df.height == 0:
        raise DataError(
            "no interactions to split", expected="at least one row", found="an empty table"
        )


def _share_cut(starts: np.ndarray, share: float) -> float:
    """The start time (of sorted session ``starts``) from which about ``share`` of them lie."""
    n = len(starts)
    k = min(max(round(share * n), 1), max(n - 1, 1))
    return float(starts[n - k])


def _check_share_cuts(
    starts: np.ndarray, ts: float, vs: float, test_share: float, valid_share: float, given: bool
) -> None:
    """Refuse cut-offs derived from shares that land on the earliest session start (sessions
    tied on it, or a single session): nothing would start before them, so no training part."""
    first, n = float(starts[0]), len(starts)
    tied = int((starts == first).sum())
    if ts <= first:  # the test cut is the latest start: every session starts at ``first``
        found = "the log holds 1 session" if n == 1 else f"all {n:,} sessions start at once"
        raise ConfigError(
            f"last_session: test_share={test_share:g}: {found} ({_when_str(first)}), so no cut "
            "by session start leaves training data; expected sessions that start at different "
            "times"
        )
    if vs <= first:
        later = n - tied
        default = "" if given else " (the default: test_share)"
        raise ConfigError(
            f"last_session: test_share={test_share:g} and valid_share={valid_share:g}{default} "
            f"put the validation cut at the earliest session start ({_when_str(first)}), which "
            f"{tied:,} of the {n:,} sessions share (a tie), so training would be empty; "
            f"expected test_share + valid_share of at most {later / n:.4g} ({later:,} of the "
            f"{n:,} sessions start{'s' if later == 1 else ''} later): a smaller valid_share"
        )


def _check_test_start(times: pl.Series, ts: float, given: TimeLike) -> None:
    """Refuse a test start that leaves nothing to train on or nothing to test."""
    lo, hi = float(times.min()), float(times.max())
    if lo < ts <= hi:
        return
    shown = _shown(given)
    if isinstance(given, str | dt.date) and abs(hi) < 1e8:
        raise ConfigError(
            f"temporal split: test_start {shown} is a date, but the log's times run from "
            f"{_when_str(lo)} to {_when_str(hi)}: positions (a log without timestamps), not "
            "dates; give a position"
        )
    where, edge, empty = (
        ("at or before the first event", lo, "training")
        if ts <= lo
        else ("after the last event", hi, "the test part")
    )
    raise ConfigError(
        f"temporal split: test_start {shown} is {where} ({_when_str(edge)}), so {empty} would "
        f"be empty; expected a time after {_when_str(lo)} and at or before {_when_str(hi)}"
    )


def _shown(value: TimeLike) -> str:
    """A time as the user gave it: a date as ISO text, anything else as its repr."""
    return value.isoformat() if isinstance(value, dt.date) else repr(value)


def _when_str(t: float) -> str:
    """A timestamp for messages: its UTC date and Unix seconds (a small number: a position)."""
    n = f"{int(t)}" if float(t).is_integer() else f"{t}"
    if abs(t) < 1e8:
        return n
    return f"{utc_date(t)}, {n}"


def _valid_cut(df: pl.DataFrame, ts: float, share: float) -> float:
    """The validation start that holds the latest ``share`` of what lies before ``ts``: session
    start times on a session log, event times on a user log (``ts`` itself for share 0)."""
    if share == 0:
        return ts
    if SESSION in df.columns:
        starts = df.lazy().group_by(SESSION).agg(pl.col(TIME).min()).collect()[TIME]
    else:
        starts = df[TIME]
    before = np.sort(starts.filter(starts < ts).cast(pl.Float64).to_numpy())
    if len(before) < 2:
        return ts
    return _share_cut(before, share)


def _warn_small_test(
    n_test: int, n: int, minimum: int, method: str, unit: str = "sequences"
) -> None:
    if n_test < minimum:
        warnings.warn(
            f"{method} split: only {n_test} test {unit} (of {n}; fewer than {minimum}); "
            "metrics on so few examples are noisy: hold out a larger share or period",
            DataWarning,
            stacklevel=3,
        )


def _user_key(df: pl.DataFrame, key: str | None) -> str:
    return key or (USER if USER in df.columns else sequence_key(df))


def _parts(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Train, valid and test rows by the ``_part`` column (input order kept within each)."""
    lf = df.lazy()
    parts = pl.collect_all(
        [lf.filter(pl.col(_PART) == p).drop(_PART) for p in (TRAIN, VALID, TEST)]
    )
    return parts[0], parts[1], parts[2]


def _filter_held_out(
    train_items: pl.Series, part: pl.DataFrame, key: str | None, min_len: int, info: dict, name: str
) -> pl.DataFrame:
    """Remove events of items not in ``train_items``; drop sequences shorter than ``min_len``."""
    rows, n0 = part.height, (part[key].n_unique() if key else 0)
    out = part.filter(pl.col(ITEM).is_in(train_items.implode()))
    info[f"{name}_unseen_events_removed"] = rows - out.height
    if key is not None and min_len > 1:
        out = out.lazy().filter(pl.len().over(key) >= min_len).collect()
        info[f"{name}_short_sequences_dropped"] = n0 - out[key].n_unique()
    return out


def _finish(
    df: pl.DataFrame,
    kind: str,
    key: str,
    info: dict,
    drop_unseen: bool,
    min_session_length: int,
    eval_key: str | None,
) -> Split:
    train, valid, test = _parts(df)
    if drop_unseen:
        items = train[ITEM].unique()
        valid = _filter_held_out(items, valid, eval_key, min_session_length, info, "valid")
        test = _filter_held_out(items, test, eval_key, min_session_length, info, "test")
    return Split(train, valid, test, kind, key, info)


def _check_one_user(bad: pl.DataFrame) -> None:
    """Raise if ``bad`` (sessions holding events of several users) is not empty."""
    if bad.height:
        raise DataError(
            "a session holds events of several users",
            field=SESSION,
            expected="one user per session",
            found=f"{bad.height} such sessions, e.g. {bad[SESSION][0]!r}",
        )


def _run_bounds(t: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last time of each run of ``lens`` consecutive rows.

    Rows already time-ordered within every run (as after sessionising) need two gathers; any
    other order takes a min/max reduction per run.
    """
    ends = np.cumsum(lens)
    heads = ends - lens
    up = t[1:] >= t[:-1]
    up[ends[:-1] - 1] = True  # a run's last row may be later than the next run's first
    if up.all():
        return t[heads], t[ends - 1]
    return np.minimum.reduceat(t, heads), np.maximum.reduceat(t, heads)


def _when(use_np: bool, cond, a, b):
    """``where(cond, a, b)`` with NumPy arrays, or as a Polars expression."""
    if use_np:
        return np.where(cond, a, b)
    return pl.when(cond).then(a).otherwise(b)


def _last_two(keys: pl.Series) -> np.ndarray:
    """Part of each row of a table sorted by ``keys``: a key's last row -> TEST, second last ->
    VALID, the rest -> TRAIN; keys with fewer than 3 rows stay in TRAIN, and so do rows without
    a key (a null user is no one user: see :func:`_warn_without_user`)."""
    gid = keys.rle_id().to_numpy()
    counts = np.bincount(gid)
    ends = np.cumsum(counts)
    n = counts[gid]
    rev = ends[gid] - 1 - np.arange(len(gid))  # rows after this one within its key
    part = np.full(len(gid), TRAIN, dtype=np.int32)
    part[(n >= 3) & (rev == 0)] = TEST
    part[(n >= 3) & (rev == 1)] = VALID
    if keys.null_count():
        part[keys.is_null().to_numpy()] = TRAIN
    return part


def _warn_without_user(
    n: int, total: int, method: str, unit: str, info: dict, dropped: int = 0
) -> None:
    """Count (in ``info``) and warn about the ``n`` events or sessions that have no user.

    A session log may leave ``user_id`` empty (Online Retail's guest invoices, Diginetica's
    anonymous sessions). A per-user protocol cannot hold out anything of a user it does not
    know, and the rows without a user are not one user either (grouped as one, unrelated
    sessions became a single made-up history with a held-out last event): they stay in train
    (``dropped`` of them, after a cut-off, are dropped instead).
    """
    if n + dropped == 0:
        return
    info[f"{unit}_without_user_in_train"] = n
    after = f" ({dropped:,} after the cut are dropped)" if dropped else ""
    warnings.warn(
        f"{method} split: {n + dropped:,} of {total:,} {unit} have no user_id; a per-user split "
        f"holds out nothing of them, so they are training data only{after}"
        + (
            " (by_user=False splits the sessions by time instead)"
            if method == "last_session"
            else ""
        ),
        DataWarning,
        stacklevel=3,
    )


def recbole_time(ts: pl.Series) -> pl.Series:
    """RecBole's ordering key: ``(t - min) / (max - min)`` in float64, then held as float32.

    Distinct seconds that round to the same float32 become ties (broken by row order).
    """
    lo, hi = ts.min(), ts.max()
    span = (hi - lo) if hi is not None and hi > lo else 1.0
    return ((ts.cast(pl.Float64) - lo) / span).cast(pl.Float32).cast(pl.Float64)


# ---------------------------------------------------------------------------------------------
# protocols


def leave_one_out(df: pl.DataFrame, key: str | None = None, time_order: str = "stable") -> Split:
    """Per user: last event -> test, second last -> valid, the rest -> train.

    ::

        user a:  e1 ─ e2 ─ e3 ─ e4 ─ e5 ─ e6      time ─►
                 └──────── train ───────┘ valid test
        user b:  e1 ─ e2                         (< 3 events: all in train)

    Events are ordered by timestamp per ``key`` (``user_id`` if present, else the sequence key);
    ties keep the input row order. Users with fewer than 3 events keep everything in train.
    Returns ``kind="next_item"``; rows come back sorted by key, then time. Nothing is filtered:
    a held-out item unseen in training stays a target (:func:`~warmrec.data.prepared.prepare`'s
    vocabulary covers the whole log; an ID model has no training signal for it); a vocabulary
    built from the training part alone drops it (``EvalSet.n_dropped``).

    ``time_order="recbole"`` orders by RecBole's key instead (:func:`recbole_time`): the
    min-max-normalised timestamp held as float32, stable. This reproduces RecBole's leave-one-out
    exactly (on ml-100k it changes the test item of 4 users). In that mode the returned tables
    carry the normalised value in ``timestamp`` (so every later stable sort keeps RecBole's
    order) and the original seconds in ``timestamp_raw``.
    """
    key = _user_key(df, key)
    _require(df, [key, ITEM, TIME])
    if time_order == "recbole":
        df = df.with_columns(
            pl.col(TIME).alias("timestamp_raw"), recbole_time(df[TIME]).alias(TIME)
        )
    elif time_order != "stable":
        raise ConfigError(f"time_order: expected 'stable' or 'recbole', found {time_order!r}")
    s = stable_sort(df, [key, TIME])
    s = s.with_columns(pl.Series(_PART, _last_two(s[key])))
    info: dict[str, Any] = {"method": "loo", "time_order": time_order}
    _warn_without_user(s[key].null_count(), s.height, "loo", "events", info)
    return Split(*_parts(s), "next_item", key, info)


def leave_last_new_out(df: pl.DataFrame, key: str | None = None, *, min_new: int = 3) -> Split:
    """Per user: the last event on an item the user had not opened before -> test, the new
    event before it -> valid; what follows the test target is dropped.

    The protocol of the MOOC anchor on MARS ("each learner's last *new* video ranked among the
    videos they have not opened"; evaluate with seen items excluded)::

        user a:  v1 ─ v2 ─ v1 ─ v3 ─ v2 ─ v4 ─ v3      time ─►
                 └── train ──┘  valid (v2)  test  dropped
                                     context

    An event is *new* when its item has no earlier event of the same user. With ``n`` new events
    a user of ``n >= 3`` gets test = the last new one, valid = the one before; rows before the
    valid target stay in train; rows between the valid and the test target (repeats) are
    history only (``Split.context``: the test target's history, never trained on -- trained
    on, they were the valid example's future, and a model stopped or weighed on validation
    read its answer: on MARS 269 of 1,377 validation targets came back in their learner's
    training rows, Markov's validation HR@10 0.510 against 0.443 without them); a repeat of
    the valid item at the valid target's very time (a duplicate of that event) is dropped, as
    are the rows after the test target (the future of the test example). Users with fewer
    than ``min_new`` new events keep every event in train. Ties keep the input row order.

    ``min_new=2`` also tests users with exactly two new events (the anchor counts every learner
    with at least two distinct videos: 1,898 on MARS with the watch events merged); such a user
    gets no valid target (it would have no history), the first new event stays in train.
    """
    if isinstance(min_new, bool) or not isinstance(min_new, int) or min_new < 2:
        raise ConfigError(f"split 'loo_new': min_new: expected an integer >= 2, found {min_new!r}")
    key = _user_key(df, key)
    _require(df, [key, ITEM, TIME])
    s = stable_sort(df, [key, TIME])
    new = (pl.int_range(pl.len()).over([key, ITEM]) == 0).cast(pl.Int32)
    s = s.with_columns(new.alias("_new"))
    s = s.with_columns(
        pl.col("_new").reverse().cum_sum().reverse().over(key).alias("_new_after"),
        pl.col("_new").sum().over(key).alias("_n_new"),
    )
    eligible = (pl.col("_n_new") >= min_new) & pl.col(key).is_not_null()
    is_new = pl.col("_new") == 1
    has_valid = eligible & (pl.col("_n_new") >= 3)
    is_valid = has_valid & is_new & (pl.col("_new_after") == 2)
    s = s.with_columns(
        pl.col(ITEM).filter(is_valid).first().over(key).alias("_v_item"),
        pl.col(TIME).filter(is_valid).first().over(key).alias("_v_time"),
    )
    between = has_valid & ~is_new & (pl.col("_new_after") == 1)
    duplicate = (pl.col(ITEM) == pl.col("_v_item")) & (pl.col(TIME) == pl.col("_v_time"))
    part = (
        pl.when(eligible & is_new & (pl.col("_new_after") == 1))
        .then(TEST)
        .when(is_valid)
        .then(VALID)
        .when(eligible & (pl.col("_new_after") == 0))
        .then(DROPPED)
        .when(between & duplicate)
        .then(DROPPED)
        .when(between)
        .then(CONTEXT)
        .otherwise(TRAIN)
    )
    s = s.with_columns(part.cast(pl.Int32).alias(_PART))
    counts = s.select(
        ((pl.col(_PART) == DROPPED) & (pl.col("_new_after") == 0)).sum().alias("after"),
        ((pl.col(_PART) == DROPPED) & (pl.col("_new_after") == 1)).sum().alias("dup"),
        (pl.col(_PART) == CONTEXT).sum().alias("context"),
    ).row(0, named=True)
    s = s.drop("_new", "_new_after", "_n_new", "_v_item", "_v_time")
    info = {
        "method": "loo_new",
        "events_after_test_dropped": int(counts["after"]),
        "events_between_valid_and_test_history_only": int(counts["context"]),
        "valid_target_duplicates_dropped": int(counts["dup"]),
    }
    _warn_without_user(s[key].null_count(), s.height, "loo_new", "events", info)
    lf = s.lazy()
    train, valid, test, context = pl.collect_all(
        [lf.filter(pl.col(_PART) == p).drop(_PART) for p in (TRAIN, VALID, TEST, CONTEXT)]
    )
    return Split(train, valid, test, "next_item", key, info, context, context_after_valid=True)


def time_new_learners(
    df: pl.DataFrame,
    cut: TimeLike,
    valid_start: TimeLike | None = None,
    *,
    min_new: int = 2,
    key: str | None = None,
) -> Split:
    """Train before ``cut``; test each user who arrives at or after it on their last new item,
    their earlier events given as history only (never trained on).

    The second setup of the MOOC anchor on MARS ("trained before 2019-07-01, learners who arrive
    after it"), with :func:`leave_last_new_out`'s targets (evaluate with seen items excluded)::

                       valid_start               cut
        ─────────────────────┼────────────────────┼─────────────────────►  time
        u1  a a  a   a    a  │  a   a             │  a  a         train | dropped
        u2                   │  b1 b2 b1 b3 b2    │  b4           context, valid (b3),
                             │                    │                dropped (b2, b4)
        u3                   │                    │  c1 c2 c1 c3  context (c1 c2 c1),
                                                                   test (c3)

    - *New learners* (first event at or after ``cut``) with at least ``min_new`` distinct items:
      the last event on an item they had not opened before -> test; their events before it ->
      context (the history the model reads at test time); events after it -> dropped. New
      learners with fewer distinct items are dropped.
    - *Validation learners* (first event in ``[valid_start, cut)``): the same on their events
      before ``cut`` (the last new one -> valid, earlier -> context, later and every event at or
      after ``cut`` -> dropped), so validation mirrors the test -- learners the model never
      trained on -- and reads nothing from after the cut. Those with fewer than ``min_new``
      distinct items before the cut train like everyone else.
    - Everyone else: events before ``cut`` -> train, the rest dropped.

    Every train row is before ``cut``; the other users' events in ``[valid_start, cut)`` do
    train (the validation period is not wholly unseen, as the test period is). ``valid_start``
    None: no validation part. Items first seen after the cut stay in the catalogue (the
    vocabulary of :func:`~warmrec.data.prepared.prepare` covers the whole log): ID models have no
    training signal for them, text-aware ones do. Rows come back sorted by key, then time (ties:
    input order). ``info`` counts learners, targets, the targets on items without a training
    event and what was dropped. A ``cut`` or ``valid_start`` at or before the first event is
    refused: every learner would arrive at or after it, and nothing (or only the validation
    window's learners with too few items) would train.
    """
    if isinstance(min_new, bool) or not isinstance(min_new, int) or min_new < 2:
        raise ConfigError(
            f"split 'time_new_learners': min_new: expected an integer >= 2, found {min_new!r}"
        )
    c = to_seconds(cut, "cut")
    v = None if valid_start is None else to_seconds(valid_start, "valid_start")
    if v is not None and v >= c:
        raise ConfigError(
            f"split 'time_new_learners': valid_start: expected a time before cut ({_shown(cut)}), "
            f"found {_shown(valid_start)}"
        )
    key = _user_key(df, key)
    _require(df, [key, ITEM, TIME])
    lo = float(df[TIME].min())
    empty = {
        "cut": "training would be empty",
        "valid_start": "no learner arrives before the validation window to train on",
    }
    for name, when, given in (("cut", c, cut), ("valid_start", v, valid_start)):
        if when is not None and when <= lo:  # every learner arrives at or after it
            raise ConfigError(
                f"split 'time_new_learners': {name} {_shown(given)} is at or before the first "
                f"event ({_when_str(lo)}), so {empty[name]}; expected a time after "
                f"{_when_str(lo)}"
            )
    s = stable_sort(df, [key, TIME])
    first = pl.col(TIME).min().over(key)
    before = pl.col(TIME) < c
    known = pl.col(key).is_not_null()  # rows without a user are no learner (train, or dropped)
    is_test_user = (pl.col("_first") >= c) & known
    is_valid_user = (
        (pl.col("_first") >= v) & ~is_test_user & known if v is not None else pl.lit(False)
    )
    s = s.with_columns(first.alias("_first"))
    s = s.with_columns(
        (is_test_user | (is_valid_user & before)).alias("_held"),
        is_test_user.alias("_tu"),
        is_valid_user.alias("_vu"),
    )
    # an event is new when its item has no earlier held event of the user (held rows of a
    # validation learner are a prefix of their sequence: those before the cut)
    new = pl.col("_held") & (pl.int_range(pl.len()).over([key, ITEM, "_held"]) == 0)
    s = s.with_columns(new.cast(pl.Int32).alias("_new"))
    s = s.with_columns(
        pl.col("_new").reverse().cum_sum().reverse().over(key).alias("_new_after"),
        pl.col("_new").sum().over(key).alias("_n_new"),
    )
    eligible = pl.col("_n_new") >= min_new
    target = eligible & (pl.col("_new") == 1) & (pl.col("_new_after") == 1)
    part = (
        pl.when(pl.col("_held") & eligible)
        .then(
            pl.when(target)
            .then(pl.when(pl.col("_tu")).then(TEST).otherwise(VALID))
            .when(pl.col("_new_after") == 0)
            .then(DROPPED)
            .otherwise(CONTEXT)
        )
        .when(before)
        .then(TRAIN)
        .otherwise(DROPPED)
    )
    s = s.with_columns(part.cast(pl.Int32).alias(_PART))
    counts = s.select(
        (pl.col(_PART) == DROPPED).sum().alias("dropped"),
        (~pl.col("_tu") & ~before).sum().alias("earlier_learners_after_cut"),
        ((pl.col(_PART) == DROPPED) & pl.col("_tu") & ~eligible).sum().alias("too_few_new"),
        pl.col(key).filter(pl.col("_tu")).n_unique().alias("new_learners"),
        pl.col(key).filter(pl.col("_vu")).n_unique().alias("valid_window_learners"),
    ).row(0, named=True)
    s = s.drop("_first", "_held", "_tu", "_vu", "_new", "_new_after", "_n_new")
    lf = s.lazy()
    train, valid, test, context = pl.collect_all(
        [lf.filter(pl.col(_PART) == p).drop(_PART) for p in (TRAIN, VALID, TEST, CONTEXT)]
    )
    if test.height == 0:
        raise ConfigError(
            f"split 'time_new_learners' cut {c:g}: expected learners arriving at or after the "
            f"cut with >= {min_new} distinct items, found {counts['new_learners']} arriving "
            f"(events from {df[TIME].min():g} to {df[TIME].max():g})"
        )
    if v is not None and valid.height == 0:
        warnings.warn(
            f"time_new_learners split: no learner arriving in [valid_start, cut) has {min_new} "
            "distinct items before the cut: the validation part is empty",
            DataWarning,
            stacklevel=2,
        )
    train_items = train[ITEM].unique().implode()
    info: dict[str, Any] = {
        "method": "time_new_learners",
        "cut": c,
        "valid_start": v,
        "min_new": min_new,
        "new_learners": counts["new_learners"],
        "test_learners": test.height,
        "test_targets_without_train_events": int((~test[ITEM].is_in(train_items)).sum()),
        "valid_window_learners": counts["valid_window_learners"],
        "valid_learners": valid.height,
        "valid_targets_without_train_events": int((~valid[ITEM].is_in(train_items)).sum()),
        "context_events": context.height,
        "events_dropped": counts["dropped"],
        "events_after_cut_of_learners_arriving_before": counts["earlier_learners_after_cut"],
        "new_learners_with_too_few_items_events_dropped": counts["too_few_new"],
    }
    n_train = train[key].null_count()
    n_after = df[key].null_count() - n_train
    _warn_without_user(n_train, df.height, "time_new_learners", "events", info, n_after)
    return Split(train, valid, test, "next_item", key, info, context)


def temporal_split(
    df: pl.DataFrame,
    test_start: TimeLike,
    valid_start: TimeLike | None = None,
    *,
    valid_share: float | None = None,
    assign: str = "start",
    min_session_length: int = 2,
    drop_unseen: bool = True,
    min_test_sessions: int = MIN_TEST_SESSIONS,
) -> Split:
    """Global cut-offs: train before ``valid_start``, valid up to ``test_start``, test after.

    ::

                        valid_start         test_start
        ────────────────────┼───────────────────┼──────────────►  time
          train             │  valid            │  test
          [a1 a2 a3]        │  [c1 c2]          │  [e1 e2 e3]
                  [b1 b2 b│b3]  (crosses: dropped with assign="start")

    Session logs (a ``session_id`` column) give ``kind="sessions"``. With ``assign="start"``
    (default) a session belongs to the part where it starts, and a session that crosses a later
    cut-off is dropped, so parts never overlap in time: every train event is before
    ``valid_start``, every valid event in ``[valid_start, test_start)``, every test event at or
    after ``test_start``. With ``assign="end"`` (GRU4Rec's rule) a session belongs to the part
    where it ends; nothing is dropped, train still holds nothing from after its cut-off, but a
    held-out session may begin before its cut-off.

    User logs (no ``session_id``) give ``kind="next_item"``: each event goes to the part of its own
    timestamp; every held-out event is a target whose history is all earlier events of its user.

    Without ``valid_start`` the validation part is the latest ``valid_share`` (default
    :data:`DEFAULT_VALID_SHARE`, 10 %) of what lies before ``test_start``: of the sessions by
    start time, or of the events on a user log; ``info["valid_start"]`` states the cut-off chosen.
    ``valid_share=0`` leaves ``valid`` empty; giving both is an error. A ``test_start`` at or
    before the first event, or after the last one, is refused (train or test would be empty),
    and so is a ``valid_start`` at or before the first event (train would be empty).
    Held-out events of items unseen in train are
    removed and (sessions) held-out sessions shorter than ``min_session_length`` dropped
    (``drop_unseen=False`` keeps them). Row order of the input is kept within each part. Fewer
    than ``min_test_sessions`` test sessions (user logs: test events) give a
    :class:`~warmrec.errors.DataWarning`.
    """
    ts = to_seconds(test_start, "test_start")
    if assign not in ("start", "end"):
        raise ConfigError(f"assign: expected 'start' or 'end', found {assign!r}")
    if valid_start is not None and valid_share is not None:
        raise ConfigError(
            "temporal split: give valid_start or valid_share, not both (found valid_start="
            f"{valid_start!r}, valid_share={valid_share!r})"
        )
    _require(df, [SESSION if SESSION in df.columns else _user_key(df, None), ITEM, TIME])
    _check_test_start(df[TIME], ts, test_start)
    share = None
    if valid_start is not None:
        vs = to_seconds(valid_start, "valid_start")
        if vs > ts:
            raise ConfigError(
                f"temporal split: valid_start {_shown(valid_start)} is after test_start "
                f"{_shown(test_start)}: expected it before"
            )
        lo = float(df[TIME].min())
        if vs <= lo:  # train holds what lies before valid_start: nothing
            raise ConfigError(
                f"temporal split: valid_start {_shown(valid_start)} is at or before the first "
                f"event ({_when_str(lo)}), so training would be empty; expected a time after "
                f"{_when_str(lo)} and before test_start {_shown(test_start)}"
            )
    else:
        share = DEFAULT_VALID_SHARE if valid_share is None else valid_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share < 1:
            raise ConfigError(
                f"temporal split: valid_share: expected a number in [0, 1), found {share!r}"
            )
        vs = _valid_cut(df, ts, share)
        lo = float(df[TIME].min())
        if vs <= lo < ts:  # the share's cut on starts tied at the first one: nothing trains
            unit = "session start" if SESSION in df.columns else "event time"
            raise ConfigError(
                f"temporal split: valid_share={share:g} puts the validation start at the "
                f"earliest {unit} ({_when_str(lo)}), which those before test_start "
                f"{_shown(test_start)} share as a tie, so training would be empty; expected a "
                "smaller valid_share (0: no validation part) or a valid_start after "
                f"{_when_str(lo)}"
            )
    info: dict[str, Any] = {"method": "temporal", "valid_start": vs, "test_start": ts}
    if share is not None:
        info["valid_share"] = share
    if SESSION in df.columns:
        info["assign"] = assign
        lens = contiguous_runs(df[SESSION])
        if lens is not None:  # each session's rows are contiguous: per-run NumPy
            first, last = _run_bounds(df[TIME].to_numpy(), lens)
            use_np = True
        else:
            first = pl.col(TIME).min().over(SESSION)
            last = pl.col(TIME).max().over(SESSION)
            use_np = False
        ref = first if assign == "start" else last
        part = _when(use_np, ref >= ts, TEST, _when(use_np, ref >= vs, VALID, TRAIN))
        if assign == "start":
            # a session that starts before a cut-off and ends at or after it
            cross = ((first < vs) & (last >= vs)) | ((first >= vs) & (first < ts) & (last >= ts))
            part = _when(use_np, cross, DROPPED, part)
        if use_np:
            s = df.with_columns(pl.Series(_PART, np.repeat(part.astype(np.int32), lens)))
            n_cross = int((part == DROPPED).sum())
        else:
            s = df.lazy().with_columns(part.alias(_PART)).collect()
            n_cross = s.lazy().filter(pl.col(_PART) == DROPPED).select(pl.col(SESSION).n_unique())
            n_cross = int(n_cross.collect().item())
        if assign == "start":
            info["crossing_sessions_dropped"] = n_cross
        sp = _finish(s, "sessions", SESSION, info, drop_unseen, min_session_length, SESSION)
        n_test, n = sp.test[SESSION].n_unique(), df[SESSION].n_unique()
        _warn_small_test(n_test, n, min_test_sessions, "temporal")
        return sp
    key = _user_key(df, None)
    t = pl.col(TIME)
    s = df.with_columns(
        pl.when(t >= ts).then(TEST).when(t >= vs).then(VALID).otherwise(TRAIN).alias(_PART)
    )
    sp = _finish(s, "next_item", key, info, drop_unseen, 0, None)
    _warn_small_test(sp.test.height, df.height, min_test_sessions, "temporal", "events")
    return sp


def last_session_split(
    df: pl.DataFrame,
    *,
    test_days: float | None = None,
    valid_days: float | None = None,
    test_share: float = DEFAULT_TEST_SHARE,
    valid_share: float | None = None,
    min_test_sessions: int = MIN_TEST_SESSIONS,
    by_user: bool | None = None,
    assign: str = "start",
    min_session_length: int = 2,
    drop_unseen: bool = True,
) -> Split:
    """Hold out the most recent sessions: per user, or the last days of the log.

    Per user (``by_user``; the default when the table has both ``user_id`` and ``session_id``)::

        user a:  [s1] [s2] [s3] [s4]           time ─►
                 └─ train ─┘ valid test
        user b:  [s1] [s2]                       (< 3 sessions: all in train)

    Each user's sessions are ordered by start time (ties: the session whose first row comes first
    in the input); the last goes to test, the second last to valid. A session must belong to one
    user. Users with fewer than 3 sessions keep everything in train.

    By time (session logs without users, or ``by_user=False``)::

                                          valid_start          test_start           tmax
        ──────────────────────────────────────┼────────────────────┼──────────────────┤
          train                               │  valid             │  test

    By default the test part is the latest ``test_share`` (10 %) of sessions: ``test_start`` is
    the start time of the session at rank ``n - round(test_share * n)`` in order of session
    starts, and ``valid_start`` likewise for ``test_share + valid_share`` (``valid_share``
    defaults to ``test_share``; 0 leaves valid empty); shares whose cut lands on the earliest
    session start (sessions tied there) are refused, as training would be empty. A fixed
    period ("the last day") can hold almost nothing: on a basket log one day kept 6 test
    sessions of 21,064. ``test_days`` /
    ``valid_days`` instead count the cut-offs back from the last timestamp ``tmax`` in days, like
    GRU4Rec's last-day split (``valid_days`` defaults to ``test_days`` then). The split is
    :func:`temporal_split` with those cut-offs (``assign`` as there: by default a session belongs
    to the window it starts in and sessions crossing a cut-off are dropped). ``info`` states the
    cut-offs, the period they cover (``test_days``, ``valid_days``) and the share of sessions
    each part holds; fewer than ``min_test_sessions`` test sessions give a
    :class:`~warmrec.errors.DataWarning`.

    Both give ``kind="sessions"`` with held-out filtering (see the module docstring).
    """
    if SESSION not in df.columns:
        raise DataError(
            "last_session needs sessions; sessionize the log first",
            field=SESSION,
            expected="a 'session_id' column",
            found=", ".join(df.columns),
        )
    if by_user is None:
        by_user = USER in df.columns
    if not by_user:
        _require(df, [SESSION, ITEM, TIME])
        tmax = float(df[TIME].max())
        starts = np.sort(df.group_by(SESSION).agg(pl.col(TIME).min())[TIME].to_numpy())
        if test_days is not None:
            vdays = test_days if valid_days is None else valid_days
            ts = tmax - test_days * DAY
            vs = ts - vdays * DAY if vdays > 0 else ts
            how = {"test_days": test_days, "valid_days": vdays}
            lo = float(df[TIME].min())
            if vs <= lo:  # nothing before the held-out days: no training part
                span = (tmax - lo) / DAY
                raise ConfigError(
                    f"last_session: test_days={test_days:g} and valid_days={vdays:g} hold out "
                    f"{test_days + vdays:g} days, but the log spans {span:.4g} days, so training "
                    "would be empty; expected fewer days held out (or test_share/valid_share)"
                )
        else:
            if valid_days is not None:
                raise ConfigError("last_session: valid_days needs test_days (or use valid_share)")
            vshare = test_share if valid_share is None else valid_share
            if not (0 < test_share < 1 and 0 <= vshare < 1 and test_share + vshare < 1):
                raise ConfigError(
                    "last_session: expected 0 < test_share < 1, 0 <= valid_share and a sum "
                    f"below 1, found test_share={test_share}, valid_share={vshare}"
                )
            ts = _share_cut(starts, test_share)
            vs = _share_cut(starts, test_share + vshare) if vshare > 0 else ts
            _check_share_cuts(starts, ts, vs, test_share, vshare, valid_share is not None)
            how = {"test_share": test_share, "valid_share": vshare}
        sp = temporal_split(
            df,
            ts,
            vs,
            assign=assign,
            min_session_length=min_session_length,
            drop_unseen=drop_unseen,
            min_test_sessions=0,  # warned below, with the numbers of this split
        )
        n = len(starts)
        sp.info.update(
            method="last_session",
            by_user=False,
            **how,
            test_period_days=(tmax - ts) / DAY,
            valid_period_days=(ts - vs) / DAY if vs is not None else 0.0,
            test_sessions=sp.test[SESSION].n_unique(),
            valid_sessions=sp.valid[SESSION].n_unique(),
            sessions=n,
        )
        sp.info["test_session_share"] = sp.info["test_sessions"] / max(n, 1)
        _warn_small_test(sp.info["test_sessions"], n, min_test_sessions, "last_session")
        return sp
    _require(df, [USER, SESSION, ITEM, TIME])
    lens = contiguous_runs(df[SESSION])
    if lens is not None:  # each session's rows are contiguous: per-run NumPy, no join
        heads = np.r_[0, np.cumsum(lens)[:-1]]
        run = np.repeat(np.arange(len(lens)), lens)
        users = df[USER]
        if users.null_count():  # a session's user is its first known one (null: unknown)
            runs = pl.DataFrame({"_run": run, USER: users}).lazy().group_by("_run")
            first = runs.agg(pl.col(USER).drop_nulls().first()).sort("_run").collect()[USER]
        else:
            first = users.gather(heads)
        sess = pl.DataFrame(
            {
                "_run": np.arange(len(lens)),
                SESSION: df[SESSION].gather(heads),
                USER: first,
                "_start": np.minimum.reduceat(df[TIME].to_numpy(), heads),
                "_first": heads,
            }
        )
        mixed = (users != sess[USER].gather(run)).fill_null(False)
        _check_one_user(sess.filter(pl.Series(np.bincount(run, mixed.to_numpy()) > 0)))
        sess = sess.sort([USER, "_start", "_first"])
        n_sessions, n_anonymous = sess.height, sess[USER].null_count()
        part = np.empty(len(lens), dtype=np.int32)
        part[sess["_run"].to_numpy()] = _last_two(sess[USER])
        s = df.with_columns(pl.Series(_PART, np.repeat(part, lens)))
    else:
        s = df.with_row_index("_row")
        sess = (
            s.lazy()
            .group_by(SESSION)
            .agg(
                pl.col(USER).drop_nulls().first(),
                pl.col(USER).drop_nulls().n_unique().alias("_nu"),
                pl.col(TIME).min().alias("_start"),
                pl.col("_row").min().alias("_first"),
            )
            .collect()
        )
        _check_one_user(sess.filter(pl.col("_nu") > 1))
        sess = sess.sort([USER, "_start", "_first"])
        n_sessions, n_anonymous = sess.height, sess[USER].null_count()
        sess = sess.select(SESSION, pl.Series(_PART, _last_two(sess[USER]))).lazy()
        s = s.lazy().join(sess, on=SESSION, how="left", maintain_order="left").drop("_row")
        s = s.collect()
    info: dict[str, Any] = {"method": "last_session", "by_user": True}
    _warn_without_user(n_anonymous, n_sessions, "last_session", "sessions", info)
    return _finish(s, "sessions", USER, info, drop_unseen, min_session_length, SESSION)


def user_split(
    df: pl.DataFrame,
    test_frac: float = 0.1,
    valid_frac: float = 0.1,
    seed: int | np.random.Generator = 0,
    *,
    key: str | None = None,
    min_session_length: int = 2,
    drop_unseen: bool = True,
) -> Split:
    """User-disjoint split for cold start: whole users go to test, valid or train.

    ::

        users:   u1 u2 u3 u4 u5 u6 u7 u8 u9 u10   (shuffled with the seed)
                 └──── train ─────┘ └ valid ┘ └ test ┘
        every event of a held-out user is held out; time plays no part.

    The distinct users (sorted, then permuted by ``seed``) are cut into ``round(test_frac * n)``
    test users, ``round(valid_frac * n)`` valid users and the rest. ``key`` defaults to
    ``user_id`` if present, else the sequence key (then sessions are the units). Returns
    ``kind="sessions"``: every next item of each held-out sequence (session if the table has
    ``session_id``, else the user's whole sequence) is a target given its prefix. ``info``
    counts the ``users`` and the ``test_users`` and ``valid_users`` held out.
    """
    key = _user_key(df, key)
    _require(df, [key, ITEM, TIME])
    if not (0 <= test_frac < 1 and 0 <= valid_frac < 1 and test_frac + valid_frac < 1):
        raise ConfigError(
            f"user_split: fractions must be >= 0 with a sum < 1, found "
            f"test_frac={test_frac}, valid_frac={valid_frac}"
        )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    users = df[key].drop_nulls().unique().sort()  # rows without a user: train (see below)
    n = users.len()
    n_test, n_valid = round(test_frac * n), round(valid_frac * n)
    part = np.full(n, TRAIN, dtype=np.int32)
    perm = rng.permutation(n)
    part[perm[:n_test]] = TEST
    part[perm[n_test : n_test + n_valid]] = VALID
    lookup = pl.DataFrame({key: users, _PART: part})
    s = df.lazy().join(lookup.lazy(), on=key, how="left", maintain_order="left").collect()
    info: dict[str, Any] = {
        "method": "user",
        "test_frac": test_frac,
        "valid_frac": valid_frac,
        "seed": seed if isinstance(seed, int) else "generator",
        "users": n,
        "test_users": n_test,
        "valid_users": n_valid,
    }
    n_anonymous = s[key].null_count()
    if n_anonymous:  # a null key joins no user: those rows had no part and vanished
        s = s.with_columns(pl.col(_PART).fill_null(TRAIN))
        _warn_without_user(n_anonymous, s.height, "user", "events", info)
    return _finish(s, "sessions", key, info, drop_unseen, min_session_length, sequence_key(df))


def last_pair_split(
    df: pl.DataFrame,
    *,
    n_test: int = 1000,
    n_valid: int = 1000,
    seed: int = 123,
    min_session_length: int = 3,
    key: str | None = None,
    drop_unseen: bool = False,
) -> Split:
    """Next-event prediction from one item (Cloudera Fast Forward's session-based recommender
    protocol, "FF19"): train on every sequence minus its last event; hold out the pair (second
    last, last) of ``n_test`` and of ``n_valid`` sequences drawn with ``seed``.

    ::

        sequence a:  e1 ─ e2 ─ e3 ─ e4 ─ e5        (a drawn for test)
                     └──── train ─────┘
                                    e4 ─ e5         test pair: history [e4], target e5
        sequence b:  e1 ─ e2 ─ e3                   (not drawn: e1, e2 train; e3 unused)

    - Sequences (``key``: the sequence key, ``session_id`` or else ``user_id``) with fewer than
      ``min_session_length`` (3) events are left out first, as the source project's
      preprocessing does; events are ordered by time per sequence (ties: input order).
    - The held-out sequences are drawn as the source does: the sequences sorted by key,
      ``numpy.random.default_rng(seed).choice(n, n_test + n_valid, replace=False)``; the first
      ``n_test`` are test, the next ``n_valid`` validation (disjoint). The second-last event of a
      held-out sequence is also in training (the source's ``sess[:-1]``): parts overlap by
      design, so a folder written from this split is not a valid split folder.
    - Each held-out pair is one example whose history is *the single second-last item* (the
      query of ``most_similar``), ``kind="sessions"``. Evaluate with ``exclude_seen=True`` to
      match the source, whose ``most_similar`` never returns the query item.
    - ``drop_unseen`` is off: a target never seen in training is a miss, as in the source (its
      recall divides by every pair).
    """
    key = key or sequence_key(df)
    _require(df, [key, ITEM, TIME])
    if n_test < 1 or n_valid < 0 or min_session_length < 2:
        raise ConfigError(
            "last_pair split: expected n_test >= 1, n_valid >= 0 and min_session_length >= 2, "
            f"found n_test={n_test}, n_valid={n_valid}, min_session_length={min_session_length}"
        )
    s = stable_sort(df, [key, TIME])
    gid = s[key].rle_id().to_numpy()
    lens = np.bincount(gid)
    keep = lens[gid] >= min_session_length
    n_short = int((lens < min_session_length).sum())
    s = s.filter(pl.Series(keep))
    gid = s[key].rle_id().to_numpy()
    lens = np.bincount(gid) if len(gid) else np.zeros(0, np.int64)
    n = len(lens)
    if n_test + n_valid > n:
        raise DataError(
            "too few sequences for the last_pair split",
            field="n_test",
            expected=f"at least n_test + n_valid = {n_test + n_valid} sequences with >= "
            f"{min_session_length} events",
            found=f"{n}",
        )
    drawn = np.random.default_rng(seed).choice(n, n_test + n_valid, replace=False)
    role = np.full(n, TRAIN, dtype=np.int32)
    role[drawn[:n_test]] = TEST
    role[drawn[n_test:]] = VALID
    ends = np.cumsum(lens)
    rev = ends[gid] - 1 - np.arange(len(gid))  # events after this one within its sequence
    held = role[gid]
    train = s.filter(pl.Series(rev > 0))
    valid = s.filter(pl.Series((held == VALID) & (rev <= 1)))
    test = s.filter(pl.Series((held == TEST) & (rev <= 1)))
    info: dict[str, Any] = {
        "method": "last_pair",
        "n_test": n_test,
        "n_valid": n_valid,
        "seed": seed,
        "min_session_length": min_session_length,
        "short_sequences_dropped": n_short,
    }
    if drop_unseen:
        items = train[ITEM].unique()
        valid = _filter_held_out(items, valid, key, 2, info, "valid")
        test = _filter_held_out(items, test, key, 2, info, "test")
    return Split(train, valid, test, "sessions", key, info)


@dataclass
class DomainPair:
    """A source and a target domain cut from one log (:func:`new_user_domains`).

    ``cutoff`` is in Unix seconds; ``info`` counts users and events on each side, the early
    users' events dropped after the cut-off, and target items the source never saw.
    """

    source: pl.DataFrame
    target: pl.DataFrame
    cutoff: float
    info: dict[str, Any] = field(default_factory=dict)


def new_user_domains(
    df: pl.DataFrame,
    cutoff: TimeLike | None = None,
    *,
    new_user_share: float | None = None,
    key: str | None = None,
) -> DomainPair:
    """Early users before ``cutoff`` as the source domain, later new users as the target.

    ::

                                cutoff
        ───────────────────────────┼──────────────────►  time
        u1   a a a    a    a   a   │ a  a        early user: events before the cut-off
        u2        b b b  b         │                 -> source; later ones dropped
        u3                         │  c c c c    new user (first event at or after the
        u4                         │     d d d    cut-off): all events -> target

    A user whose first event is before ``cutoff`` is *early*: their events before the cut-off
    form the source, their later events are dropped (they would let the source see the
    target's period). A user whose first event is at or after ``cutoff`` is *new*: all their
    events form the target. The two domains share no user and no time: every source event is
    before every target event, so pre-training on the source never sees the target's future.
    Items keep their raw ids (shared items are matched by id in transfer).

    Give ``cutoff`` (seconds, a date or an ISO string) or ``new_user_share``: the cut-off is
    then the first-event time of the user at rank ``n - round(share * n)`` in order of first
    events, so about that share of users is new (users tied on that time are all new). ``key``
    defaults to ``user_id`` if present, else the sequence key. Row order is kept.
    """
    if (cutoff is None) == (new_user_share is None):
        raise ConfigError("new_user_domains: give exactly one of cutoff and new_user_share")
    key = _user_key(df, key)
    _require(df, [key, ITEM, TIME])
    first = pl.col(TIME).min().over(key)
    if new_user_share is not None:
        if not 0.0 < new_user_share < 1.0:
            raise ConfigError(
                f"new_user_domains new_user_share: expected 0 < share < 1, found {new_user_share}"
            )
        starts = np.sort(df.group_by(key).agg(pl.col(TIME).min())[TIME].to_numpy())
        n_new = min(max(round(new_user_share * len(starts)), 1), len(starts) - 1)
        cut = float(starts[len(starts) - n_new]) if len(starts) > 1 else float(starts[0])
    else:
        cut = to_seconds(cutoff, "cutoff")
    marked = df.with_columns((first < cut).alias(_PART))
    early = marked.filter(pl.col(_PART))
    source = early.filter(pl.col(TIME) < cut).drop(_PART)
    target = marked.filter(~pl.col(_PART)).drop(_PART)
    if source.height == 0 or target.height == 0:
        side = "no early user" if source.height == 0 else "no new user"
        raise ConfigError(
            f"new_user_domains cutoff {cut:g}: expected early and new users, found {side} "
            f"(first events from {df[TIME].min():g} to {marked.select(first.max()).item():g})"
        )
    src_items = source[ITEM].unique().implode()
    info = {
        "cutoff": cut,
        "source_users": source[key].n_unique(),
        "source_events": source.height,
        "target_users": target[key].n_unique(),
        "target_events": target.height,
        "dropped_events": early.height - source.height,
        "target_items": target[ITEM].n_unique(),
        "target_items_not_in_source": target.filter(~pl.col(ITEM).is_in(src_items))[
            ITEM
        ].n_unique(),
    }
    return DomainPair(source, target, cut, info)


METHODS: dict[str, Callable[..., Split]] = {
    "loo": leave_one_out,
    "loo_new": leave_last_new_out,
    "temporal": temporal_split,
    "last_session": last_session_split,
    "user": user_split,
    "last_pair": last_pair_split,
    "time_new_learners": time_new_learners,
}


def default_split(frame: pl.DataFrame, *, long_history: int = LONG_HISTORY) -> str:
    """THE default split method for a log (used by ``prepare``, ``demo``, ``pretrain``,
    ``transfer`` and the transfer study when no method is named).

    - no ``session_id`` column (a user log): ``"loo"`` (each user's last event is the test);
    - sessions and users whose median history has ``long_history`` (20) or more events (e.g. a
      rating log sessionised by gaps): ``"loo"`` over the users' whole histories;
    - otherwise (a session log): ``"last_session"``: each user's last session, or without users
      the latest 10 % of sessions (:func:`last_session_split`).

    A split folder (train/valid/test files) is used as given instead: see
    :func:`warmrec.data.prepared.prepare`.
    """
    if SESSION not in frame.columns:
        return "loo"
    if USER in frame.columns and frame.height:
        per_user = frame.group_by(USER).len()["len"]
        if float(per_user.median()) >= long_history:
            return "loo"
    return "last_session"


def split(df: pl.DataFrame, method: str, **kw: Any) -> Split:
    """Split by protocol name: ``"loo"``, ``"loo_new"``, ``"temporal"``, ``"last_session"``,
    ``"user"``, ``"last_pair"`` or ``"time_new_learners"``.

    Keyword arguments go to the protocol's function (:func:`leave_one_out`,
    :func:`leave_last_new_out`, :func:`temporal_split`, :func:`last_session_split`,
    :func:`user_split`, :func:`last_pair_split`, :func:`time_new_learners`); an unknown one raises
    :class:`~warmrec.errors.ConfigError`.
    """
    fn = METHODS.get(method)
    if fn is None:
        raise ConfigError(f"unknown split method {method!r}; expected one of {', '.join(METHODS)}")
    sig = inspect.signature(fn)
    known = [n for n, prm in sig.parameters.items() if n != "df" and prm.kind != prm.VAR_KEYWORD]
    unknown = sorted(set(kw) - set(known))
    if unknown:  # named first: a typo for a required option (test_strat) is the cause
        from warmrec.config import did_you_mean

        raise ConfigError(
            f"split {method!r}: unknown option {unknown[0]!r}{did_you_mean(unknown[0], known)}; "
            "its options: "
            f"{', '.join(known)}"
        )
    try:
        sig.bind(df, **kw)
    except TypeError as e:
        raise ConfigError(f"split {method!r}: {e}") from e
    return fn(df, **kw)


def require_split_time(
    df: pl.DataFrame, method: str, options: dict[str, Any], time_unit: str
) -> None:
    """Refuse a split that counts days on a log whose timestamps are positions (``ordinal``).

    ``last_session`` by time (``test_days``/``valid_days``) needs seconds; ``temporal`` on an
    ordinal log takes its cut-offs as positions, so dates and ISO strings are refused there.
    ``loo``, ``user`` and ``last_session`` per user only use the order of events.
    """
    if time_unit != ORDINAL:
        return
    if method == "last_session":
        by_user = options.get("by_user")
        by_days = options.get("test_days") is not None or options.get("valid_days") is not None
        if by_days and (by_user is False or (by_user is None and USER not in df.columns)):
            require_seconds(
                time_unit, "the last_session split by days (no users to split per user)"
            )
    if method in ("temporal", "time_new_learners"):
        names = ("test_start", "valid_start") if method == "temporal" else ("cut", "valid_start")
        for name in names:
            value = options.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise DataError(
                    f"{method} split: {name} must be a position on an ordinal log",
                    field=name,
                    expected="a number (an event position: the log's timestamps are positions)",
                    found=repr(value),
                )

"""THE task abstraction of meta-learning: users or sequences as few-shot tasks.

One vocabulary for every meta-learner (MAML, FO-MAML, MAML++, Reptile, per-user fine-tuning):

- :class:`TaskSet` -- the pool: users or sequences of a
  :class:`~warmrec.data.dataset.SequenceDataset` (:func:`make_tasks`), each with its own support
  size;
- :class:`Task` -- one episode drawn from the pool: support batches in the model's own training
  format (one per inner step) and the query (histories and targets);
- :class:`Episodes` -- how an episode is cut: the support size (the task's own, or drawn from
  ``shots``), the query length, MELO's sub-windows, the support batch size;
- :class:`TaskStream` -- meta-batches of episodes for :func:`warmrec.training.loop.train`:
  one pass over the pool per epoch in a random order, or (Reptile's sampling) a fixed number of
  meta-batches per epoch, each drawn at random without replacement.

A **task** is one user (``by="user"``: all of the user's sequences, in time order) or one
sequence (``by="sequence"``: a session, or a user when the data is keyed by user). Its events,
concatenated in time order, are cut into

    support = the first ``n_s`` events          query = the events after them

with ``n_s = n_support`` or ``round(support_frac * n)``, clipped so that the support has at
least 2 events (one input/target pair) and the query at least 1. Support events all come before
query events, so adapting on the support never sees the query's future.

- :meth:`TaskSet.support_dataset` -- the support as a :class:`SequenceDataset` on the source
  vocabulary (each sequence of the task cut at the boundary); ``model.training_data`` of it
  gives batches that the model's own ``training_step`` accepts (any model, any objective).
- :meth:`TaskSet.query_batch` -- next-item windows (:class:`~warmrec.models.neural.WindowData`
  format, ``{"items", "targets"}``) over the task's full sequences, with the support events as
  context only: every target is a query event. For causal models (SASRec, NARM, ...).
- :meth:`TaskSet.sample` -- a meta-batch of task indices.

Tasks with fewer than ``min_len`` events are left out.

MELO's sub-window options (:func:`sub_windows`, used by the meta-learners' task stream,
:class:`~warmrec.meta.maml.TaskStream`, through :class:`~warmrec.meta.maml.MetaConfig`): a
user's events are cut to the first ``max_len``; the support (the first ``k``) is split into up
to ``n_windows`` contiguous sub-windows of at least ``min_window`` events each (each one a
separate training sequence, so no next-item target crosses a window boundary); the query is
the next ``n_query`` events. Every support window ends before the query starts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch

from warmrec.data.dataset import Batch, SequenceDataset
from warmrec.data.sequences import SequenceData, pad_windows
from warmrec.errors import ConfigError, DataError, ModelError
from warmrec.models.neural import WindowData

TASK_UNITS = ("user", "sequence")


@dataclass
class TaskSet:
    """Few-shot tasks over ``dataset`` (see the module docstring).

    Attributes:
        dataset: the source data (sequences, vocabulary).
        seq_offsets: int64 ``[n_tasks + 1]``; task ``t`` owns the sequences
            ``seq_index[seq_offsets[t]:seq_offsets[t + 1]]`` (time order).
        seq_index: int64 sequence indices into ``dataset.sequences``.
        n_support: int64 ``[n_tasks]`` support events per task.
        by: ``"user"`` or ``"sequence"``.
    """

    dataset: SequenceDataset
    seq_offsets: np.ndarray
    seq_index: np.ndarray
    n_support: np.ndarray
    by: str

    def __len__(self) -> int:
        return len(self.n_support)

    def sequences(self, t: int) -> np.ndarray:
        """Sequence indices of task ``t`` (time order)."""
        return self.seq_index[self.seq_offsets[t] : self.seq_offsets[t + 1]]

    def n_events(self, t: int) -> int:
        return int(self.dataset.sequences.lengths[self.sequences(t)].sum())

    def events(self, t: int) -> np.ndarray:
        """The item indices of task ``t``'s events, its sequences concatenated in time order."""
        seqs = self.dataset.sequences
        idx = self.sequences(t)
        if len(idx) == 1:
            return seqs.items[seqs.offsets[idx[0]] : seqs.offsets[idx[0] + 1]]
        return np.concatenate([seqs.items[seqs.offsets[i] : seqs.offsets[i + 1]] for i in idx])

    def _cuts(self, t: int, k: int | None = None) -> tuple[SequenceData, np.ndarray]:
        """The task's sequences and, per sequence, how many leading events are support (the
        first ``k`` events of the task; default its own support size)."""
        seqs = self.dataset.sequences.subset(self.sequences(t))
        lens = seqs.lengths
        before = np.cumsum(lens) - lens  # task events before each sequence
        k = int(self.n_support[t]) if k is None else int(k)
        return seqs, np.clip(k - before, 0, lens)

    def support(self, t: int, k: int | None = None) -> SequenceData:
        """Support events of task ``t`` (its first ``k``, default its own support size): each of
        its sequences cut at the boundary."""
        seqs, n_sup = self._cuts(t, k)
        keep = np.nonzero(n_sup)[0]
        offsets = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(n_sup[keep], out=offsets[1:])
        gather = np.repeat(seqs.offsets[keep] - offsets[:-1], n_sup[keep]) + np.arange(offsets[-1])
        ts = seqs.timestamps[gather] if seqs.timestamps is not None else None
        return SequenceData(offsets, seqs.items[gather], seqs.keys.gather(keep), ts)

    def query(self, t: int) -> tuple[SequenceData, np.ndarray]:
        """``(sequences, context)``: the task's sequences holding query events, and per
        sequence how many leading events are support (context only, never targets)."""
        seqs, n_sup = self._cuts(t)
        keep = np.nonzero(n_sup < seqs.lengths)[0]
        return seqs.subset(keep), n_sup[keep]

    def support_dataset(self, t: int) -> SequenceDataset:
        """The support of task ``t`` as training data on the source vocabularies."""
        ds = self.dataset
        sup = self.support(t)
        users = None
        if ds.users is not None:
            seqs, n_sup = self._cuts(t)
            users = ds.users[self.sequences(t)][n_sup > 0]
        return SequenceDataset(
            sup,
            ds.vocab,
            ds.key,
            users,
            ds.user_vocab,
            ds.item_features,
            ds.user_features,
        )

    def query_batch(self, t: int, max_len: int, context: int = 0) -> dict[str, Any]:
        """All query targets of task ``t`` as windows ``{"items", "targets"}`` ``[n, max_len]``;
        support events appear only as inputs (target 0 = not counted). ``context``: also up to
        that many items before each window (``"before"``, see
        :class:`~warmrec.models.neural.WindowData`; a model's ``seen_context``, so that its
        seen-item bias trains on the seen sets scoring uses)."""
        seqs, context_len = self.query(t)
        data = WindowData(seqs, max_len, context=context)
        index = np.arange(len(data))
        batch: dict[str, Any] = data.batch(index)
        targets = batch["targets"].numpy()  # shares the batch's tensor: masked in place
        # flat position of the target in column c of window w: in_end[w] - max_len + 1 + c
        pos = data.in_ends[index][:, None] - max_len + 1 + np.arange(max_len)[None, :]
        seq = seqs.sequence_of(data.starts[index])
        first_query = (seqs.offsets[:-1] + context_len)[seq]
        targets[pos < first_query[:, None]] = 0
        if self.dataset.users is not None:
            users = self.dataset.users[self.sequences(t)]
            n_sup = self._cuts(t)[1]
            users = users[n_sup < self.dataset.sequences.lengths[self.sequences(t)]]
            batch["users"] = torch.from_numpy(users[seq].astype(np.int64))
        return batch

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` distinct task indices (all tasks, shuffled, when ``n >= len(self)``)."""
        return rng.choice(len(self), size=min(n, len(self)), replace=False)

    def split(self, n_holdout: int, seed: int | np.random.Generator = 0) -> tuple[TaskSet, TaskSet]:
        """``(train, held_out)`` task sets with ``n_holdout`` random tasks held out."""
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(self))
        return self.select(np.sort(order[n_holdout:])), self.select(np.sort(order[:n_holdout]))

    def episode(
        self, t: int, model: Any, n_steps: int, rng: np.random.Generator, episodes: Episodes
    ) -> Task:
        """One episode of task ``t`` (see :class:`Episodes`): ``n_steps`` support batches of
        ``model``'s own training data, and the query. Every support event precedes every query
        event; a task of several sequences trains on each sequence's support part separately
        (no next-item pair crosses a sequence boundary) and its query histories run across
        them in time order. The task is a cold user's episode: no user id reaches the support
        or the query (a user-aware model, SSE-PT, reads both as the unknown user, its mean user
        vector, as it reads a meta-test user; ``TaskSet.support_dataset`` keeps the users)."""
        items = self.events(t)
        if episodes.max_len:
            items = items[: episodes.max_len]
        if episodes.shots:
            shots = np.asarray(episodes.shots)
            ok = shots[shots < len(items)]
            k = int(rng.choice(ok)) if len(ok) else len(items) - 1
        else:
            k = int(min(self.n_support[t], len(items) - 1))
        n_query = episodes.n_query or len(items)
        windows, (_, q_end) = sub_windows(
            len(items),
            k,
            n_query,
            n_windows=episodes.n_windows,
            min_window=episodes.min_window,
            rng=rng if episodes.n_windows > 1 else None,  # 1 window: no draw
        )
        one = len(self.sequences(t)) == 1
        pieces = None if one else self.support(t, k)
        # the episode is a cold user's, as at meta-test (MetaModel.adapt): no user row. The
        # task's own row (SSE-PT) was learned by the global model from the whole history,
        # query included, and only the support saw it (the query scores as the unknown user)
        return make_task(
            model,
            items[:q_end],
            k,
            n_query,
            n_steps,
            rng,
            self.dataset.vocab,
            self.dataset.key,
            windows if episodes.n_windows > 1 and one else None,
            pieces=pieces,
            batch_size=episodes.batch_size,
        )

    def select(self, tasks: np.ndarray) -> TaskSet:
        """The tasks at ``tasks`` (in that order)."""
        tasks = np.asarray(tasks, dtype=np.int64)
        counts = np.diff(self.seq_offsets)[tasks]
        offsets = np.zeros(len(tasks) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        gather = np.repeat(self.seq_offsets[tasks] - offsets[:-1], counts) + np.arange(offsets[-1])
        return TaskSet(
            self.dataset, offsets, self.seq_index[gather], self.n_support[tasks], self.by
        )


def make_tasks(
    dataset: SequenceDataset,
    by: str = "sequence",
    min_len: int = 4,
    support_frac: float = 0.5,
    n_support: int | None = None,
) -> TaskSet:
    """Users (``by="user"``) or sequences (``by="sequence"``) of ``dataset`` as tasks.

    ``n_support`` (events) wins over ``support_frac``; either is clipped per task to
    ``[2, n - 1]``. Tasks with fewer than ``max(min_len, 3)`` events are dropped. Building
    tasks draws no random numbers (tasks come in order of their first event); sampling does
    (:meth:`TaskSet.sample`, :meth:`TaskSet.split` take a generator or seed).
    """
    if by not in TASK_UNITS:
        raise ConfigError(f"make_tasks by={by!r}: expected one of {', '.join(TASK_UNITS)}")
    if n_support is None and not 0.0 < support_frac < 1.0:
        raise ConfigError(f"make_tasks support_frac: expected in (0, 1), found {support_frac}")
    if n_support is not None and n_support < 2:
        raise ConfigError(f"make_tasks n_support: expected >= 2, found {n_support}")
    seqs = dataset.sequences
    n_seq = len(seqs)
    if by == "user" and dataset.key != "user_id":
        if dataset.users is None:
            raise DataError(
                "make_tasks by='user' needs user ids",
                field="user_id",
                expected="a user_id column in the log",
                found=f"sequences keyed by {dataset.key} without users",
            )
        owner = np.asarray(dataset.users, dtype=np.int64)
        seq_index = np.argsort(owner, kind="stable")  # within a user: order of first event
        bounds = np.flatnonzero(np.diff(owner[seq_index])) + 1
        seq_offsets = np.concatenate([[0], bounds, [n_seq]]).astype(np.int64)
        first = seq_index[seq_offsets[:-1]]
        order = np.argsort(first, kind="stable")  # tasks by first event
        counts = np.diff(seq_offsets)[order]
        new_off = np.zeros(len(order) + 1, dtype=np.int64)
        np.cumsum(counts, out=new_off[1:])
        gather = np.repeat(seq_offsets[:-1][order] - new_off[:-1], counts) + np.arange(n_seq)
        seq_index, seq_offsets = seq_index[gather], new_off
    else:
        seq_index = np.arange(n_seq, dtype=np.int64)
        seq_offsets = np.arange(n_seq + 1, dtype=np.int64)
    lens = seqs.lengths[seq_index]
    totals = np.add.reduceat(lens, seq_offsets[:-1]) if n_seq else np.zeros(0, np.int64)
    if n_support is not None:
        sup = np.full(len(totals), int(n_support), dtype=np.int64)
    else:
        sup = np.rint(support_frac * totals).astype(np.int64)
    sup = np.clip(sup, 2, totals - 1)
    tasks = TaskSet(dataset, seq_offsets, seq_index, sup, by)
    keep = np.flatnonzero(totals >= max(min_len, 3))
    if len(keep) == 0:
        raise DataError(
            "make_tasks: no task is long enough",
            field="min_len",
            expected=f">= 1 task with at least {max(min_len, 3)} events",
            found=f"longest task has {int(totals.max()) if len(totals) else 0}",
        )
    return tasks.select(keep)


def sub_windows(
    n_events: int,
    k: int,
    n_query: int,
    *,
    n_windows: int = 1,
    min_window: int = 2,
    max_len: int = 0,
    rng: np.random.Generator | None = None,
) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """MELO's sub-windows of one user's ``n_events`` events (module docstring).

    Returns ``(support, query)``: ``support`` a list of ``[start, end)`` windows covering the
    first ``k`` events in order (``min(n_windows, k // min_window)`` of them, at least one;
    sizes random with ``rng``, else as equal as possible, each >= ``min_window`` when ``k``
    allows), ``query`` = ``[k, min(k + n_query, n))`` with ``n = min(n_events, max_len)``
    (``max_len`` 0 = no cut). ``k`` is clipped to ``n - 1`` so the query is never empty."""
    if n_windows < 1 or min_window < 1 or n_query < 1 or max_len < 0:
        raise ConfigError(
            f"sub_windows: expected n_windows, min_window, n_query >= 1 and max_len >= 0, "
            f"found {n_windows}, {min_window}, {n_query}, {max_len}"
        )
    n = min(n_events, max_len) if max_len else n_events
    if n < 2:
        raise DataError(
            "sub_windows: a task needs a support and a query event",
            field="n_events",
            expected=">= 2 (after max_len)",
            found=str(n),
        )
    k = int(min(max(k, 1), n - 1))
    m = max(1, min(n_windows, k // min_window))
    base = min(min_window, k // m)
    extra = k - m * base
    if rng is None:
        add = np.full(m, extra // m) + (np.arange(m) < extra % m)
    else:
        add = rng.multinomial(extra, np.full(m, 1.0 / m))
    ends = np.cumsum(base + add)
    starts = np.concatenate([[0], ends[:-1]])
    support = [(int(a), int(b)) for a, b in zip(starts, ends)]
    return support, (k, int(min(k + n_query, n)))


@dataclass(frozen=True)
class Episodes:
    """How an episode is cut from a task (:meth:`TaskSet.episode`).

    Attributes:
        shots: support sizes drawn for each episode (empty: the task's own ``n_support``);
            clipped so that the query keeps at least one event.
        n_query: query events after the support (0: all of them).
        n_windows: MELO: the support is split into up to this many contiguous sub-windows,
            each its own training sequence (:func:`sub_windows`; single-sequence tasks).
        min_window: MELO: the smallest sub-window.
        max_len: a task's events are cut to its first this many (0: all).
        batch_size: support windows per inner batch (default: all of them in one batch).
    """

    shots: tuple[int, ...] = ()
    n_query: int = 0
    n_windows: int = 1
    min_window: int = 2
    max_len: int = 0
    batch_size: int = 1 << 16


class Task:
    """One few-shot episode: support batches (one per inner step, the model's own training
    format) and query histories / targets (every query item after all earlier events)."""

    def __init__(
        self,
        support: list[dict[str, torch.Tensor]],
        hist: Batch | None,
        targets: torch.Tensor | None,
        query: dict[str, torch.Tensor] | None = None,
    ):
        self.support, self.hist, self.targets = support, hist, targets
        self.query = query
        """A query batch in the model's own format (rating tasks); None: ``hist``/``targets``."""

    def to(self, device: torch.device) -> Task:
        return Task(
            [to_device(b, device) for b in self.support],
            None if self.hist is None else self.hist.to(device),
            None if self.targets is None else self.targets.to(device),
            None if self.query is None else to_device(self.query, device),
        )


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """A batch dict with its tensors on ``device``."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def support_batches(
    model: Any,
    items: np.ndarray,
    n_steps: int,
    rng: np.random.Generator,
    vocab: Any,
    key: str,
    windows: list[tuple[int, int]] | None = None,
    *,
    pieces: SequenceData | None = None,
    batch_size: int = 1 << 16,
    user: int | None = None,
) -> list[dict[str, torch.Tensor]]:
    """``n_steps`` batches of ``model``'s own training data on one support (the sequence
    ``items``; or its ``[start, end)`` sub-``windows``, each its own training sequence; or the
    given ``pieces``). Each step takes the next batch of ``batch_size`` windows, a new pass (fresh
    draws, e.g. BERT4Rec's masks) after the last; at most ``n_steps`` passes, so a support
    without a target gives fewer batches (none for a single event)."""
    if n_steps == 0:
        return []
    if pieces is None:
        if windows is None:
            windows = [(0, len(items))]
        windows = [(a, b) for a, b in windows if b - a >= 2]
        if not windows:
            return []
        items = np.asarray(items, dtype=np.int64)
        lens = np.array([b - a for a, b in windows], dtype=np.int64)
        offsets = np.zeros(len(windows) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        pieces = SequenceData(
            offsets,
            np.concatenate([items[a:b] for a, b in windows]),
            pl.Series("key", list(range(len(windows)))),
        )
    elif not (pieces.lengths >= 2).any():
        return []
    users = None if user is None else np.full(len(pieces), user, dtype=np.int64)
    data = model.training_data(SequenceDataset(pieces, vocab, key, users))
    out: list[dict[str, torch.Tensor]] = []
    for _ in range(n_steps):
        for batch in data.batches(batch_size, rng):
            if "reset" in batch:
                # session-parallel batches walk one event per lane and batch: every inner step
                # saw one transition (the support's first n_steps), the rest of the support --
                # its latest events -- never, and second order failed in the GRU's fused step
                raise ModelError(
                    f"model '{getattr(model, 'name', model)}': meta-learning adapts on whole "
                    "support windows, and this model trains on session-parallel batches (one "
                    "event per step: each inner step would see one transition of the support); "
                    "set training='windows'"
                )
            if "targets" in batch and not bool((batch["targets"] > 0).any()):
                continue
            out.append(batch)
            if len(out) == n_steps:
                return out
    return out


def make_task(
    model: Any,
    items: np.ndarray,
    k: int,
    n_query: int,
    n_steps: int,
    rng: np.random.Generator,
    vocab: Any,
    key: str,
    windows: list[tuple[int, int]] | None = None,
    *,
    pieces: SequenceData | None = None,
    batch_size: int = 1 << 16,
    user: int | None = None,
) -> Task:
    """Support = ``items[:k]`` (in ``windows``: sub-windows of it; or ``pieces``, the support
    cut per sequence), query = ``items[k:k + n_query]``: every support event precedes every
    query event."""
    query = items[k : k + n_query]
    if windows is not None and windows and windows[-1][1] > k:
        raise ModelError(f"make_task: a support window ends at {windows[-1][1]}, after k={k}")
    sup = support_batches(
        model,
        items[:k],
        n_steps,
        rng,
        vocab,
        key,
        windows,
        pieces=pieces,
        batch_size=batch_size,
        user=user,
    )
    ends = np.arange(k, k + len(query), dtype=np.int64)
    mat = pad_windows(
        np.array(items, np.int64), np.zeros(len(query), np.int64), ends, model.history_len
    )
    return Task(sup, Batch(torch.from_numpy(mat)), torch.from_numpy(np.array(query, np.int64)))


class TaskStream:
    """Meta-batches of episodes (``n_batches`` / ``batches``, as the training loop expects).

    ``meta`` is the meta-learner (its ``base`` model makes the support batches, its
    ``config.inner_steps`` is the number of support batches, its :meth:`episodes` cut them);
    ``source`` a :class:`TaskSet`, or a dataset whose sequences become the tasks (those with at
    least ``min(shots) + 1`` events). With ``per_epoch`` an epoch is ``per_epoch`` meta-batches,
    each drawn at random without replacement (:meth:`TaskSet.sample`), and the stream ends after
    ``total`` meta-batches in all (0: never); otherwise an epoch is one pass over every task in
    a random order."""

    def __init__(
        self,
        meta: Any,
        source: TaskSet | SequenceDataset,
        episodes: Episodes | None = None,
        *,
        per_epoch: int = 0,
        total: int = 0,
    ) -> None:
        self.meta = meta
        self.episodes = episodes if episodes is not None else meta.episodes()
        if isinstance(source, TaskSet):
            self.tasks = source
        else:
            need = min(self.episodes.shots) + 1 if self.episodes.shots else 3
            if not (source.sequences.lengths >= need).any():
                lens = source.sequences.lengths
                longest = int(lens.max()) if len(lens) else 0
                what = (
                    f"train_shots {list(self.episodes.shots)}" if self.episodes.shots else "a task"
                )
                raise ModelError(
                    f"meta-training: {what} needs a sequence of at least {need} events (a support "
                    f"and a query event), found none (the longest has {longest}): lower "
                    "train_shots, or meta-train on longer histories"
                )
            self.tasks = make_tasks(source, by="sequence", min_len=need, support_frac=0.5)
        self.per_epoch, self.total, self.done = per_epoch, total, 0

    def __len__(self) -> int:
        return len(self.tasks)

    def n_batches(self, batch_size: int) -> int:
        if self.per_epoch:
            return self.per_epoch
        return math.ceil(len(self.tasks) / batch_size)

    def _groups(self, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        if self.per_epoch:
            for _ in range(self.per_epoch):
                if self.total and self.done >= self.total:
                    return
                self.done += 1
                yield self.tasks.sample(batch_size, rng)
            return
        order = rng.permutation(len(self.tasks))
        for lo in range(0, len(order), batch_size):
            yield order[lo : lo + batch_size]

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[list[Task]]:
        base, n_steps = getattr(self.meta, "base", self.meta), self.meta.config.inner_steps
        for group in self._groups(batch_size, rng):
            yield [self.tasks.episode(int(t), base, n_steps, rng, self.episodes) for t in group]

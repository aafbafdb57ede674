"""MELO's own setting: rating regression for new users (``protocol="melo"`` of the study).

MELO measured meta-learners on *rating* prediction: for a user's interaction with an item,
predict the rating (MSE on ``rating / 5``), reported as RMSE and MAE. This module reproduces
that setting over any registered neural backbone, on any rating scale: MELO's code divides its
1-5 stars (MovieLens, and Amazon in its ``--mode=amazon``) by 5, the top of the scale; here a
rating is divided by the top of its scale (:func:`rating_scale`: 5 for stars, 10 for MARS's
1-10 ratings, read from the data or given), and errors are reported in the scale's units.

- :func:`melo_ratings` -- the data: items with at least ``min_item`` ratings, then users with
  at least ``min_user`` ratings (ml-100k: 5 and 50), each user's ratings in time order, cut to
  the first ``max_len`` (30) events, divided by the top of the rating scale. A deviation from
  MELO's code, stated as one: MELO evaluates on each test user's *last* ``max_seq_len`` window
  and trains on random windows; here every user is cut to the first window (the revealed
  ratings are a user's first ones, as a new user has them);
- :class:`RatingModel` -- the backbone plus a :class:`RatingHead` over the backbone's sequence
  representation (:meth:`~warmrec.models.neural.NeuralRecommender.sequence_representation`) and
  the target item's output vector (:meth:`~warmrec.models.neural.NeuralRecommender.item_vectors`):
  nothing model-specific. An example is (history = the user's items up to and including the
  rated one, target = that item, rating / top): the item is known to have been interacted with,
  its rating is what is predicted. ``training_step`` is the MSE, so the same
  :class:`~warmrec.meta.maml.MetaModel` machinery (MAML, FO-MAML, MAML++, Reptile, the learned
  loss, per-user fine-tuning) adapts it: :class:`RatingMetaModel` only swaps the task format and
  the query loss (MSE on the query ratings instead of next-item cross-entropy);
- :class:`RatingData` -- per-user items and ratings; its ``batches`` are the examples of every
  event (the global model's training data, through :func:`warmrec.training.loop.train`).

For a test user and ``k`` revealed ratings, adaptation sees the first ``k`` (item, rating)
pairs only; the prediction targets are the ratings of all later events (their items appear as
inputs -- what the user interacted with is known -- their ratings never do).
:func:`evaluate_ratings` gives RMSE and MAE in the scale's units (predictions clipped to it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from warmrec.data.dataset import Batch, SequenceDataset
from warmrec.data.sequences import SequenceData, pad_windows
from warmrec.data.vocab import ItemVocab
from warmrec.errors import DataError, ModelError
from warmrec.meta.maml import MetaModel
from warmrec.meta.tasks import Task
from warmrec.meta.tasks import to_device as _to
from warmrec.rng import isolated

RATING_SCALE = 5.0
"""MELO's divisor: the top of a 1-5 star scale (the smallest top :func:`rating_scale` reads)."""


def rating_scale(
    ratings: np.ndarray, scale: tuple[float, float] | None = None, field: str = "rating"
) -> tuple[float, float]:
    """``(low, high)`` of the rating scale, checked against ``ratings``.

    ``scale=None`` reads it from the data: ``high`` = the largest rating rounded up, at least 5
    (MELO's stars: ml-100k and Amazon stay 1-5, MARS's ratings give 1-10), ``low`` = the
    smallest rating, at most 1. A given scale must hold every rating. Ratings are divided by
    ``high`` (MELO's ``rating / 5.0``); predictions are clipped to ``[low, high]``."""
    r = np.asarray(ratings, dtype=np.float64)
    if len(r) == 0 or not np.isfinite(r).all():
        raise DataError(
            "ratings must be finite numbers",
            field=field,
            expected="finite values",
            found=f"{len(r)} values, {int((~np.isfinite(r)).sum())} not finite",
        )
    lo, hi = float(r.min()), float(r.max())
    if scale is None:
        scale = (min(1.0, lo), max(RATING_SCALE, float(math.ceil(hi))))
    low, high = float(scale[0]), float(scale[1])
    if not 0 <= low < high:
        raise DataError(
            "bad rating scale",
            field=field,
            expected="0 <= low < high (pass the scale when ratings can be negative)",
            found=f"[{low:g}, {high:g}]",
        )
    if lo < low or hi > high:
        raise DataError(
            f"ratings outside the {low:g}-{high:g} scale",
            field=field,
            expected=f"values in [{low:g}, {high:g}]",
            found=f"[{lo:g}, {hi:g}]",
        )
    return low, high


@dataclass
class RatingData:
    """Per-user (time-ordered) encoded items and ratings / 5 on one vocabulary."""

    offsets: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    keys: pl.Series
    vocab: ItemVocab
    max_len: int = 30
    """History length of an example's input window."""
    scale: tuple[float, float] = (1.0, RATING_SCALE)
    """``(low, high)`` of the rating scale; ``ratings`` hold rating / high."""

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_items(self) -> int:
        return len(self.vocab)

    def user(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.offsets[u], self.offsets[u + 1]
        return self.items[lo:hi], self.ratings[lo:hi]

    def subset(self, users: np.ndarray) -> RatingData:
        users = np.asarray(users, dtype=np.int64)
        lens = self.lengths[users]
        offsets = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        gather = np.repeat(self.offsets[users] - offsets[:-1], lens) + np.arange(offsets[-1])
        return RatingData(
            offsets,
            self.items[gather],
            self.ratings[gather],
            self.keys.gather(users),
            self.vocab,
            self.max_len,
            self.scale,
        )

    def sequences(self) -> SequenceDataset:
        """The same users as next-item sequences (to pre-train the backbone)."""
        seqs = SequenceData(self.offsets.copy(), self.items.copy(), self.keys)
        return SequenceDataset(seqs, self.vocab, "user_id")

    # -- the training loop's data interface -------------------------------------------------
    def n_batches(self, batch_size: int) -> int:
        return math.ceil(len(self.items) / batch_size)

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
        order = rng.permutation(len(self.items))
        user = np.repeat(np.arange(len(self)), self.lengths)
        for lo in range(0, len(order), batch_size):
            pos = order[lo : lo + batch_size]
            yield rating_batch(self.items, self.ratings, self.offsets[user[pos]], pos, self.max_len)


def rating_batch(
    items: np.ndarray,
    ratings: np.ndarray,
    starts: np.ndarray,
    positions: np.ndarray,
    max_len: int,
) -> dict[str, torch.Tensor]:
    """Examples at ``positions`` of ``items``: history = ``items[start:pos + 1]`` (left-padded,
    last ``max_len``), target = ``items[pos]``, rating = ``ratings[pos]``."""
    positions = np.asarray(positions, dtype=np.int64)
    hist = pad_windows(items, np.asarray(starts, np.int64), positions + 1, max_len)
    return {
        "items": torch.from_numpy(hist),
        "targets": torch.from_numpy(items[positions].astype(np.int64)),
        "ratings": torch.from_numpy(ratings[positions].astype(np.float32)),
    }


def melo_ratings(
    frame: pl.DataFrame,
    *,
    min_user: int = 5,
    min_item: int = 50,
    max_len: int = 30,
    scale: tuple[float, float] | None = None,
) -> RatingData:
    """MELO's data (module docstring): items with >= ``min_item`` ratings, then users with
    >= ``min_user`` of them, each user's first ``max_len`` events in time order, ratings divided
    by the top of ``scale`` (:func:`rating_scale`; None: read from every rating of ``frame``,
    before the filter)."""
    missing = {"user_id", "item_id", "rating"} - set(frame.columns)
    if missing:
        raise DataError(
            "the MELO rating protocol needs ratings",
            field=", ".join(sorted(missing)),
            expected="columns user_id, item_id, rating",
            found=", ".join(frame.columns),
        )
    cols = ["user_id", "item_id", "rating"] + (
        ["timestamp"] if "timestamp" in frame.columns else []
    )
    df = frame.select(cols)
    scale = rating_scale(df["rating"].cast(pl.Float64).to_numpy(), scale)
    df = df.filter(pl.len().over("item_id") >= min_item)
    df = df.filter(pl.len().over("user_id") >= min_user)
    if df.height == 0:
        raise DataError(
            "no ratings left after MELO's filter",
            field="min_item",
            expected=f"items with >= {min_item} and users with >= {min_user} ratings",
            found="none",
        )
    sort = ["user_id", "timestamp"] if "timestamp" in cols else ["user_id"]
    df = df.sort(sort, maintain_order=True)
    df = df.filter(pl.int_range(pl.len()).over("user_id") < max_len)
    r = df["rating"].cast(pl.Float64).to_numpy()
    vocab = ItemVocab.from_ids(df["item_id"])
    users = df["user_id"]
    change = np.flatnonzero(users.to_numpy()[1:] != users.to_numpy()[:-1]) + 1
    offsets = np.concatenate([[0], change, [df.height]]).astype(np.int64)
    return RatingData(
        offsets,
        vocab.encode(df["item_id"]).astype(np.int64),
        (r / scale[1]).astype(np.float32),
        users.gather(offsets[:-1]),
        vocab,
        max_len,
        scale,
    )


class RatingHead(nn.Module):
    """``rating / top = b + MLP([h, e, h * e])`` for a history vector ``h`` and item vector ``e``;
    ``b`` starts at the mean training rating (an untrained head predicts about the mean)."""

    def __init__(self, d: int, hidden: int = 32, mean: float = 0.7) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3 * d, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        nn.init.normal_(self.mlp[2].weight, std=0.01)  # small, not 0: gradients reach h and e
        nn.init.zeros_(self.mlp[2].bias)
        self.bias = nn.Parameter(torch.tensor(float(mean)))

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.bias + self.mlp(torch.cat([h, e, h * e], dim=-1)).squeeze(-1)


class RatingNet(nn.Module):
    """The backbone's network (``base``) and the rating head."""

    def __init__(self, base: nn.Module, head: RatingHead) -> None:
        super().__init__()
        self.base = base
        self.head = head


class RatingModel:
    """A fitted neural backbone plus a :class:`RatingHead` (module docstring); trained by
    :func:`warmrec.training.loop.train` with ``fresh=False`` on a :class:`RatingData`."""

    loss_fn = "mse"  # the objective is this class's own (MetaModel must not prepare one)

    def __init__(self, backbone: Any, hidden: int = 32, mean: float = 0.7) -> None:
        if getattr(backbone, "net", None) is None:
            raise ModelError(
                f"model '{getattr(backbone, 'name', backbone)}': the rating head needs a "
                "fitted neural backbone"
            )
        self.backbone = backbone
        d = int(backbone.item_vectors(torch.zeros(1, dtype=torch.long)).shape[-1])
        self.net = RatingNet(backbone.net, RatingHead(d, hidden, mean))
        self.name = f"rating[{backbone.name}]"
        self.vocab = backbone.vocab
        self.meta = backbone.meta
        self.device = backbone.device
        self.train_result = None

    @property
    def history_len(self) -> int:
        return self.backbone.history_len

    def to(self, device: torch.device | str) -> RatingModel:
        self.device = torch.device(device)
        self.backbone.to(self.device)
        self.net.to(self.device)
        return self

    def prepare(self, data: Any) -> None:
        """Nothing to set up (the loss is the MSE)."""

    def training_data(self, data: RatingData) -> RatingData:
        if not isinstance(data, RatingData):
            raise ModelError(f"model '{self.name}': trains on RatingData, found {type(data)}")
        return data

    def optimizer_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        from warmrec.training.loop import decay_groups

        return decay_groups(self.net, weight_decay)

    def predict(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[B]`` predicted rating / top of ``batch["targets"]`` given ``batch["items"]``."""
        h = self.backbone.sequence_representation(Batch(batch["items"]))
        return self.net.head(h, self.backbone.item_vectors(batch["targets"]))

    def example_losses(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[B]`` squared errors on the rating / top scale."""
        return (self.predict(batch) - batch["ratings"].to(self.net.head.bias.dtype)) ** 2

    def training_step(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.example_losses(batch).mean()


def fit_rating_model(
    backbone: Any, data: RatingData, trainer: Mapping[str, Any] | None = None, hidden: int = 32
) -> RatingModel:
    """The global rating model: ``backbone`` (pre-trained; trained further) plus a head, fit on
    every event of ``data`` by the training loop. The head's random init is drawn from the
    trainer's ``seed`` (the global torch generator left as it was), as the loop's own draws are:
    the same seed gives the same model whatever ran before."""
    from warmrec.training.loop import TrainerConfig
    from warmrec.training.loop import train as run_training

    cfg = {"epochs": 5, "batch_size": 128, "lr": 1e-3, "progress": False, **(trainer or {})}
    with isolated(TrainerConfig(**cfg).seed):
        model = RatingModel(backbone, hidden, float(data.ratings.mean()))
    model.train_result = run_training(model, data, None, cfg, fresh=False)
    model.net.eval()
    return model


class RatingTaskStream:
    """Meta-batches of rating tasks: per user, support = the first ``k`` events (``k`` from
    ``train_shots``), query = the next ``n_query`` (each with its rating)."""

    def __init__(self, meta: RatingMetaModel, data: RatingData) -> None:
        self.meta, self.data = meta, data
        need = min(meta.config.train_shots) + 1
        self.eligible = np.flatnonzero(data.lengths >= need)
        if len(self.eligible) == 0:
            longest = int(data.lengths.max()) if len(data) else 0
            raise ModelError(
                f"meta-training: train_shots {list(meta.config.train_shots)} needs a user with at "
                f"least {need} ratings (a support and a query rating), found none (the longest "
                f"has {longest}): lower train_shots"
            )

    def n_batches(self, batch_size: int) -> int:
        return math.ceil(len(self.eligible) / batch_size)

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[list[Task]]:
        cfg = self.meta.config
        shots = np.asarray(cfg.train_shots)
        order = rng.permutation(self.eligible)
        for lo in range(0, len(order), batch_size):
            tasks = []
            for u in order[lo : lo + batch_size]:
                items, ratings = self.data.user(int(u))
                ok = shots[shots < len(items)]
                k = int(rng.choice(ok))
                tasks.append(self.meta.make_task(items, ratings, k, cfg.n_query, self.data.max_len))
            yield tasks


class RatingMetaModel(MetaModel):
    """:class:`~warmrec.meta.maml.MetaModel` over a :class:`RatingModel`: the same algorithms,
    rating tasks and an MSE query loss (module docstring)."""

    def make_task(
        self, items: np.ndarray, ratings: np.ndarray, k: int, n_query: int | None, max_len: int
    ) -> Task:
        """Support = the first ``k`` events (one batch per inner step), query = the next
        ``n_query`` (all of them with None)."""
        end = len(items) if n_query is None else min(len(items), k + n_query)
        sup = rating_batch(items, ratings, np.zeros(k, np.int64), np.arange(k), max_len)
        query = rating_batch(
            items, ratings, np.zeros(end - k, np.int64), np.arange(k, end), max_len
        )
        return Task([sup] * self.config.inner_steps if k else [], None, None, query=query)

    def training_data(self, train: RatingData) -> RatingTaskStream:  # type: ignore[override]
        return RatingTaskStream(self, train)

    def prepare(self, train: Any) -> None:
        """Nothing to set up (the loss is the MSE)."""

    def query_loss(self, learner: Any, task: Task) -> torch.Tensor:
        return learner.loss(task.query)

    def predict_user(
        self, items: np.ndarray, ratings: np.ndarray, k: int, max_len: int
    ) -> np.ndarray:
        """Rating / top predictions for events ``k..`` of one user after adapting to the first
        ``k`` (item, rating) pairs. The adaptation starts from the config's ``seed`` (dropout
        in the inner steps), as :meth:`MetaModel.score`'s does: a user's predictions depend on
        nothing but the weights, the config and the user (not on the users scored before, nor
        on a resumed study's skipped steps); without ``adapt_when_scoring``, the model as it
        is predicts."""
        task = self.make_task(items, ratings, k, None, max_len)
        if not self.config.adapt_when_scoring:
            self.net.base.eval()
            with torch.no_grad():
                out = self.base.predict(_to(task.query, self.device))
            return out.float().cpu().numpy()
        forked = [self.device] if self.device.type == "cuda" else []
        with isolated(self.config.seed, forked), torch.enable_grad():
            sup = [_to(b, self.device) for b in task.support]
            learner, _ = self.run_task(Task(sup, None, None), True)
        self.net.base.eval()
        with torch.no_grad():
            out = learner._call("predict", _to(task.query, self.device))
        return out.float().cpu().numpy()


def evaluate_ratings(
    model: RatingMetaModel, data: RatingData, users: np.ndarray, k: int
) -> dict[str, Any]:
    """RMSE and MAE in the units of ``data.scale`` (predictions clipped to it: [1, 5] stars,
    [1, 10] on MARS) over every rating after the first ``k`` of each user in ``users``;
    ``per_user`` = each user's mean squared error."""
    low, high = data.scale
    sq, ab, per_user = [], [], []
    for u in np.asarray(users, dtype=np.int64):
        items, ratings = data.user(int(u))
        if len(items) <= k:
            raise DataError(
                "evaluate_ratings: a user has too few ratings", field="k", expected=f"> {k}"
            )
        pred = np.clip(model.predict_user(items, ratings, k, data.max_len), low / high, 1.0)
        err = (pred - ratings[k:]) * high
        sq.append(err**2)
        ab.append(np.abs(err))
        per_user.append(float((err**2).mean()))
    sq_all, ab_all = np.concatenate(sq), np.concatenate(ab)
    return {
        "summary": {
            "rmse": float(np.sqrt(sq_all.mean())),
            "mae": float(ab_all.mean()),
            "n_ratings": int(len(sq_all)),
        },
        "per_user": per_user,
    }


def planted_offset_ratings(
    n_users: int = 80,
    n_items: int = 12,
    length: int = 14,
    offset: float = 0.25,
    seed: int = 0,
) -> pl.DataFrame:
    """Synthetic ratings with a planted per-user preference that only adaptation can find:
    items are drawn at random (they say nothing about the user) and ``rating = 5 * (0.55 +
    item effect in [-0.05, 0.05] + o_u)`` with ``o_u = -offset`` for even users and ``+offset``
    for odd ones. A global model sees items, never ratings, so it cannot know ``o_u``; a few
    revealed ratings of the user give it away (``offset * 5`` stars)."""
    rng = np.random.default_rng(seed)
    effect = rng.uniform(-0.05, 0.05, size=n_items + 1)
    rows = []
    for u in range(n_users):
        off = offset if u % 2 else -offset
        for t, i in enumerate(rng.integers(1, n_items + 1, size=length)):
            rows.append((u + 1, int(i), 5 * (0.55 + effect[i] + off), float(u * 100 + t)))
    return pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row")

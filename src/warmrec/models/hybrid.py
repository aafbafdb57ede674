"""Hybrid: a late fusion of two recommenders' scores, the weight chosen on validation.

Each member (by default a network, SASRec, and a neighbourhood model, V-SKNN) scores the whole
catalogue; each score list is normalised per history (``"zscore"``: minus its mean over the
catalogue, divided by its standard deviation; ``"minmax"``: mapped onto [0, 1]) so that the two
scales are comparable, and the hybrid's score is

    w * norm(network) + (1 - w) * norm(neighbours)

With ``weight`` unset, ``fit`` picks ``w`` from ``weight_grid`` by the validation ``select_metric``
(ties: the first in grid order); nothing else is learned, and the test set is never seen. ``w = 1``
ranks exactly as the network alone and ``w = 0`` as the neighbours alone (a positive affine map
per list keeps the order; those two weights skip the sum, so a non-finite score of the other
member cannot leak in). A list whose finite scores are all equal normalises to zeros: it then
leaves the other member's order untouched. Non-finite scores stay at the bottom (``-inf``).

The catalogue of the normalisation is the items known when the hybrid is fitted (training or
validation events, or the item table: :func:`~warmrec.models.known.known_mask`): the vocabulary
covers every part of a split, and an item that only the test events bring is left out of the
validation lists and of every list's statistics, so it cannot move the weight chosen; at
scoring time it, and any item added later, is scored on the known items' scale (kept with the
model). Where every item is known this is the plain normalisation, bit for bit.

The members are any registered models; ``fit`` trains those not yet fitted (a member with a
training loop gets ``trainer`` and ``callbacks``), or :meth:`Hybrid.from_members` wraps fitted
ones. The saved state is both members' states (prefixed ``network.`` / ``neighbours.``), the
chosen weight and, where some item was not known at fit time, the known items (``known``); the
validation curve of the choice is kept in ``meta.history``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from warmrec.config import ConfigModel
from warmrec.data.dataset import Batch, EvalSet, SequenceDataset
from warmrec.errors import ConfigError, ModelError
from warmrec.evaluation import metrics as M
from warmrec.models.base import Recommender
from warmrec.models.known import grown_known, known_mask, saved_known
from warmrec.registry import register_model

Fusion = Literal["zscore", "minmax"]
MEMBERS = ("network", "neighbours")


class HybridConfig(ConfigModel):
    """The two members, the per-list normalisation and the fusion weight."""

    network: str = "sasrec"
    """Registered name of the first member (weight ``w``)."""
    network_config: dict[str, Any] = {}
    """The first member's config."""
    neighbours: str = "vsknn"
    """Registered name of the second member (weight ``1 - w``)."""
    neighbours_config: dict[str, Any] = {}
    """The second member's config."""
    fusion: Fusion = "zscore"
    """Per-list normalisation before the weighted sum: ``"zscore"`` or ``"minmax"``."""
    weight: float | None = Field(None, ge=0.0, le=1.0)
    """The first member's weight; None: chosen on validation from ``weight_grid``."""
    weight_grid: list[float] = Field(
        default_factory=lambda: [round(0.1 * i, 1) for i in range(11)], min_length=1
    )
    """Candidate weights (each in [0, 1]) tried on validation when ``weight`` is None."""
    select_metric: str = "mrr@20"
    """The validation metric that chooses the weight (a rank metric, e.g. ``mrr@20``)."""
    select_exclude_seen: bool = False
    """Rank the validation targets with each history's items removed (as ``evaluate(...,
    exclude_seen=True)``): for protocols whose targets are new items (``loo_new``)."""

    @field_validator("weight_grid")
    @classmethod
    def _grid_in_unit(cls, v: list[float]) -> list[float]:
        bad = [w for w in v if not 0.0 <= w <= 1.0]
        if bad:
            raise ValueError(f"every weight must be in [0, 1], found {bad[0]}")
        return v

    @field_validator("select_metric")
    @classmethod
    def _rank_metric(cls, v: str) -> str:
        return rank_metric_label(v)


def rank_metric_label(v: str) -> str:
    """A validation metric that selects weights: a rank metric, as its label (a pydantic
    validator's ``ValueError`` otherwise; shared by ``hybrid`` and ``fresh``)."""
    try:
        spec = M.parse_metric(v)
    except ConfigError as e:
        raise ValueError(str(e)) from None
    if spec.name not in M.RANK_METRICS:
        raise ValueError(f"expected a rank metric ({', '.join(M.RANK_METRICS)}), found {v!r}")
    return spec.label


def normalise(scores: torch.Tensor, fusion: str) -> torch.Tensor:
    """Per-row normalisation of ``scores[B, n_items]`` over the catalogue (column 0, padding,
    excluded; it comes out ``-inf``). Non-finite scores come out ``-inf``; a row whose finite
    scores are all equal comes out 0 on them.

    Rows whose scores are all finite (a finite row sum says so) take a fast path of a few
    in-place passes; the others the masked arithmetic of :func:`_normalise_masked`. On
    nowplaying-1m's 121K items a batch of 512 rows took 1.1 s the masked way and 0.1-0.2 s
    this way (one thread), which made a hybrid's validation scoring 5-8x its members'."""
    if fusion not in ("zscore", "minmax"):
        raise ConfigError(f"fusion: expected 'zscore' or 'minmax', found {fusion!r}")
    x = scores.float()
    body = x[:, 1:]
    rowsum = body.sum(dim=1, keepdim=True)
    bad = ~torch.isfinite(rowsum[:, 0])
    if bad.all():
        return _normalise_masked(x, fusion)
    out = torch.empty_like(x)
    out[:, 0] = -torch.inf
    ob = out[:, 1:]
    n = max(body.shape[1], 1)
    one = torch.ones((), dtype=x.dtype)
    if fusion == "zscore":
        torch.sub(body, rowsum / n, out=ob)
        std = torch.linalg.vector_norm(ob, dim=1, keepdim=True) / math.sqrt(n)
        ob.div_(torch.where(std > 0, std, one))
    else:
        lo = body.amin(dim=1, keepdim=True)
        span = body.amax(dim=1, keepdim=True) - lo
        torch.sub(body, lo, out=ob)
        ob.div_(torch.where(span > 0, span, one))
    if bad.any():
        rows = bad.nonzero()[:, 0]
        out[rows] = _normalise_masked(x[rows], fusion)
    return out


def _normalise_masked(scores: torch.Tensor, fusion: str) -> torch.Tensor:
    """:func:`normalise` of rows that hold non-finite scores (masked arithmetic)."""
    x = scores.float()
    finite = torch.isfinite(x)
    finite[:, 0] = False
    x0 = torch.where(finite, x, torch.zeros((), dtype=x.dtype))
    count = finite.sum(dim=1, keepdim=True).clamp(min=1)
    if fusion == "zscore":
        mean = x0.sum(dim=1, keepdim=True) / count
        dev = torch.where(finite, x0 - mean, torch.zeros((), dtype=x.dtype))
        std = (dev.square().sum(dim=1, keepdim=True) / count).sqrt()
        out = dev / torch.where(std > 0, std, torch.ones((), dtype=x.dtype))
    elif fusion == "minmax":
        lo = torch.where(finite, x0, torch.full((), torch.inf)).amin(dim=1, keepdim=True)
        hi = torch.where(finite, x0, torch.full((), -torch.inf)).amax(dim=1, keepdim=True)
        span = hi - lo
        ok = torch.isfinite(span) & (span > 0)
        lo = torch.where(torch.isfinite(lo), lo, torch.zeros((), dtype=x.dtype))
        out = torch.where(ok, (x0 - lo) / torch.where(ok, span, torch.ones(())), 0.0)
    else:
        raise ConfigError(f"fusion: expected 'zscore' or 'minmax', found {fusion!r}")
    return torch.where(finite, out, torch.full((), -torch.inf))


def normalise_known(
    scores: torch.Tensor, fusion: str, known: torch.Tensor | None = None, drop: bool = False
) -> torch.Tensor:
    """:func:`normalise` of ``scores[B, n_items]`` with each row's statistics (mean and
    standard deviation, or minimum and span) taken over the ``known`` items alone (``[n_items]``
    bool, :func:`~warmrec.models.known.known_mask`; None or every item known: plain
    :func:`normalise`, bit for bit) and applied to every item: an item the model did not know
    when it was fitted is still scored, on the known items' scale (``"minmax"``: it may fall
    outside [0, 1]); with ``drop`` it comes out ``-inf`` (left out of the list, as on
    validation). The statistics are computed on the known columns gathered into one list, so
    the known items' values do not depend on how many others there are, not even in rounding.
    Non-finite scores come out ``-inf``; a row whose known finite scores are all equal keeps
    them at 0 (its scale is 1), and so does one whose known scores differ by no more than
    rounding (a spread under ``FLAT_SPREAD`` times their largest magnitude: a content base's
    list after a history of added items alone, the known items all alike): dividing by that
    spread put the other items' scores at millions, above or below every other term."""
    if known is None or bool(known[1:].all()):
        return normalise(scores, fusion)
    if fusion not in ("zscore", "minmax"):
        raise ConfigError(f"fusion: expected 'zscore' or 'minmax', found {fusion!r}")
    x = scores.float()
    shift, scale = _known_stats(x[:, torch.nonzero(known[1:])[:, 0] + 1], fusion)
    out = torch.sub(x, shift).div_(scale)
    out.masked_fill_(~torch.isfinite(x), -torch.inf)
    out[:, 0] = -torch.inf
    if drop:
        out[:, ~known] = -torch.inf
    return out


FLAT_SPREAD = 1e-5
"""A row of known scores whose spread (standard deviation, or span) is at most this times their
largest magnitude is flat for :func:`normalise_known` (scale 1): float32 rounding alone spreads
equal scores by about 1e-7 of their size."""


def _known_stats(kx: torch.Tensor, fusion: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(shift, scale)``, each ``[B, 1]``: the statistics of each row of ``kx`` (a copy: the
    known items' scores, gathered), so that ``(x - shift) / scale`` is :func:`normalise`'s map
    of its finite scores; rows whose scores are all finite take :func:`normalise`'s in-place
    passes, the others masked arithmetic; a spread within rounding of the scores' size
    (:data:`FLAT_SPREAD`) is no scale (1)."""
    zero = torch.zeros((), dtype=kx.dtype)
    one = torch.ones((), dtype=kx.dtype)
    mag = torch.where(torch.isfinite(kx), kx.abs(), zero).amax(dim=1, keepdim=True)
    n = max(kx.shape[1], 1)
    rowsum = kx.sum(dim=1, keepdim=True)
    rows = (~torch.isfinite(rowsum[:, 0])).nonzero()[:, 0]
    k = kx[rows]  # the rows with a non-finite score, before the in-place passes
    if fusion == "zscore":
        shift = rowsum / n
        scale = torch.linalg.vector_norm(kx.sub_(shift), dim=1, keepdim=True) / math.sqrt(n)
    else:
        shift = kx.amin(dim=1, keepdim=True)
        scale = kx.amax(dim=1, keepdim=True) - shift
    if len(rows):
        finite = torch.isfinite(k)
        k0 = torch.where(finite, k, zero)
        if fusion == "zscore":
            count = finite.sum(dim=1, keepdim=True).clamp(min=1)
            mean = k0.sum(dim=1, keepdim=True) / count
            dev = torch.where(finite, k0 - mean, zero)
            shift[rows] = mean
            scale[rows] = (dev.square().sum(dim=1, keepdim=True) / count).sqrt()
        else:
            lo = torch.where(finite, k0, torch.full((), torch.inf)).amin(dim=1, keepdim=True)
            hi = torch.where(finite, k0, torch.full((), -torch.inf)).amax(dim=1, keepdim=True)
            shift[rows] = torch.where(torch.isfinite(lo), lo, zero)
            scale[rows] = hi - lo
    ok = torch.isfinite(scale) & (scale > 0) & (scale > FLAT_SPREAD * mag)
    scale = torch.where(ok, scale, one)
    return shift, scale


def fuse(parts: Sequence[torch.Tensor], weight: float) -> torch.Tensor:
    """``weight * parts[0] + (1 - weight) * parts[1]`` of normalised lists; weight 1 or 0 is
    the member alone (no ``0 * -inf``)."""
    a, b = parts
    if weight >= 1.0:
        return a
    if weight <= 0.0:
        return b
    return torch.add(a * weight, b, alpha=1.0 - weight)


def _drop_seen(scores: torch.Tensor, valid: EvalSet, idx: np.ndarray) -> torch.Tensor:
    """``scores`` with each example's whole history set to ``-inf`` (a target in its history
    too: it then ranks last, a miss, as ``evaluate(..., exclude_seen=True)`` counts it)."""
    out = scores.clone()
    for r, j in enumerate(idx):
        seen = np.asarray(valid.history(int(j)), dtype=np.int64)
        out[r, torch.from_numpy(seen[seen > 0])] = -torch.inf
    return out


def target_ranks(scores: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    """1-based ranks of ``targets`` in ``scores[B, n_items]``, as
    :func:`warmrec.evaluation.evaluate.evaluate` counts them (ties against the model, padding
    and NaN never above the target, a NaN or -inf target out of the ranking:
    ``metrics.UNRANKED``, a miss at every cut-off)."""
    a = torch.where(torch.isnan(scores), -torch.inf, scores)
    a[:, 0] = -torch.inf
    a = a.numpy()
    t = a[np.arange(len(targets)), targets][:, None]
    r = np.count_nonzero(a >= t, axis=1)
    return np.where(~(t[:, 0] > -np.inf), M.UNRANKED, r)


@register_model("hybrid")
class Hybrid(Recommender):
    """Weighted fusion of two members' per-list normalised scores (see the module docstring)."""

    Config = HybridConfig
    fits_on_validation: ClassVar[bool] = True  # its weights are fitted there
    learns_sequences: ClassVar[bool] = False
    """Whether it follows order depends on its members and weight; the conformance suite holds
    it to beating Pop (``tests/models/test_hybrid.py`` checks the members are reproduced)."""
    test_config: ClassVar[dict[str, Any]] = {
        "network_config": {"d": 32, "n_layers": 1, "n_heads": 1, "ffn_dim": 64, "max_len": 10},
        "weight": 0.5,
    }

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.members: dict[str, Recommender] | None = None
        self.weight_: float | None = None
        """The fusion weight in use (the config's, or the one chosen on validation)."""
        self.known_: torch.Tensor | None = None
        """``[n_items]`` bool: the items known when the hybrid was fitted
        (:func:`~warmrec.models.known.known_mask`), whose scores alone set each list's
        normalisation; None: every item (as where every item is known)."""

    @classmethod
    def from_members(cls, network: Recommender, neighbours: Recommender, **config: Any) -> Hybrid:
        """A hybrid of two given models (fitted or not); ``config`` sets the other fields."""
        model = cls(
            {
                "network": network.name,
                "network_config": network.config.model_dump(),
                "neighbours": neighbours.name,
                "neighbours_config": neighbours.config.model_dump(),
                **config,
            }
        )
        model.members = {"network": network, "neighbours": neighbours}
        return model

    def _build_members(self) -> dict[str, Recommender]:
        from warmrec.registry import get_model

        c = self.config
        return {
            "network": get_model(c.network, c.network_config),
            "neighbours": get_model(c.neighbours, c.neighbours_config),
        }

    @property
    def history_len(self) -> int:
        if self.members is None:
            return super().history_len
        return max(m.history_len for m in self.members.values())

    # -- fit ----------------------------------------------------------------------------------
    def fit(
        self,
        train: SequenceDataset,
        valid: EvalSet | None = None,
        *,
        trainer: Any = None,
        callbacks: Sequence[Callable[[int, dict[str, Any], Any], bool | None]] = (),
    ) -> Hybrid:
        """Fit the members not yet fitted, then set the weight (the config's, or the best of
        ``weight_grid`` on ``valid``). ``trainer``/``callbacks`` go to members with a loop."""
        if self.config.weight is None and valid is None:
            raise ModelError(
                "model 'hybrid': weight is None, so fit needs a validation set to choose it; "
                "pass valid or set weight"
            )
        self._bind(train)
        if self.members is None:
            self.members = self._build_members()
        looped = {
            role
            for role, m in self.members.items()
            if not m.is_fitted and "trainer" in inspect.signature(m.fit).parameters
        }
        if trainer and not looped:
            raise ConfigError(
                "hybrid: no member to fit takes training settings; got "
                f"{', '.join(sorted(dict(trainer)))}"
            )
        for role, m in self.members.items():
            if not m.is_fitted:
                kw = {"trainer": trainer, "callbacks": callbacks} if role in looped else {}
                m.fit(train, valid, **kw)
            if m.n_items != len(train.vocab):
                raise ModelError(
                    f"hybrid {role} '{m.name}' has {m.n_items} items, the training data "
                    f"{len(train.vocab)}: fit both members on the same data"
                )
        # a network with side features (BST, SSE-PT) rebuilds its feature tables from its meta
        self.meta.features = self.members["network"].meta.features
        known = known_mask(train, valid)
        self.known_ = None if bool(known[1:].all()) else known
        if self.config.weight is not None:
            self.weight_ = float(self.config.weight)
        else:
            curve = self.validation_curve(valid)
            best = max(range(len(curve)), key=lambda i: (curve[i][1], -i))
            self.weight_ = curve[best][0]
            self.meta.history = [{"weight": w, self.config.select_metric: v} for w, v in curve]
        return self

    def fit_choices(self) -> dict[str, str]:
        if self.weight_ is None or self.config.weight is not None:
            return {}
        return {"weight": f"{self.weight_:g} (of the first member, on validation)"}

    def validation_curve(self, valid: EvalSet, batch_size: int = 512) -> list[tuple[float, float]]:
        """``(weight, select_metric)`` on ``valid`` for every weight of the grid (each member
        scores each batch once). The lists hold the items known when the hybrid was fitted
        (:attr:`known_`) alone: an item that only the test events bring is neither ranked nor
        in the normalisation, so the test part cannot move the curve or the weight chosen."""
        spec = M.parse_metric(self.config.select_metric)
        grid = list(self.config.weight_grid)
        ranks = np.zeros((len(grid), len(valid)), dtype=np.int64)
        with torch.no_grad():
            for lo in range(0, len(valid), batch_size):
                idx = np.arange(lo, min(lo + batch_size, len(valid)))
                a, b = self.member_scores(valid.batch(idx, self.history_len), drop=True)
                if self.config.select_exclude_seen:
                    a, b = _drop_seen(a, valid, idx), _drop_seen(b, valid, idx)
                rows = torch.arange(len(idx))
                tgt = torch.from_numpy(valid.targets[idx])
                buf = torch.empty_like(a)
                hit = torch.empty(a.shape, dtype=torch.bool)
                for g, w in enumerate(grid):
                    # fuse()'s arithmetic, into reused buffers; normalised lists hold no NaN and
                    # -inf at padding, so ranks are counted as target_ranks() counts them
                    if w >= 1.0:
                        fused = a
                    elif w <= 0.0:
                        fused = b
                    else:
                        fused = torch.mul(a, w, out=buf).add_(b, alpha=1.0 - w)
                    t = fused[rows, tgt][:, None]
                    # NumPy counts a boolean matrix ~10x faster than a torch sum over it
                    r = np.count_nonzero(torch.ge(fused, t, out=hit).numpy(), axis=1)
                    lost = ~(t[:, 0] > -torch.inf).numpy()
                    ranks[g, idx] = np.where(lost, M.UNRANKED, r)
        f = M.RANK_METRICS[spec.name]
        return [
            (w, float(f(ranks[g], spec.k).mean()) if len(valid) else 0.0)
            for g, w in enumerate(grid)
        ]

    # -- score --------------------------------------------------------------------------------
    def member_scores(self, batch: Batch, drop: bool = False) -> list[torch.Tensor]:
        """Each member's normalised scores for ``batch`` (each reads its own history length),
        each list's statistics taken over the items known when the hybrid was fitted
        (:func:`normalise_known`, :attr:`known_`) and applied to every item, so that the weight
        chosen on validation means the same at scoring time; with ``drop`` the other items come
        out ``-inf`` (the validation lists)."""
        self._check_fitted()
        if self.members is None:
            raise ModelError("model 'hybrid' has no members: call fit() or load() first")
        out = []
        for m in self.members.values():
            h = m.history_len
            items = batch.items[:, -h:] if batch.items.shape[1] > h else batch.items
            s = torch.as_tensor(m.score(Batch(items, batch.users))).detach().float().cpu()
            out.append(normalise_known(s, self.config.fusion, self.known_, drop))
        return out

    def score(self, batch: Batch) -> torch.Tensor:
        if self.weight_ is None:
            raise ModelError("model 'hybrid' has no fusion weight: call fit() or load() first")
        return fuse(self.member_scores(batch), self.weight_)

    # -- new items ----------------------------------------------------------------------------
    def add_items(self, item_features: Any) -> list[Any]:
        """Add the items of ``item_features`` that the model does not know to both members,
        each its own way (:func:`warmrec.models.catalogue.add_items`), without refitting; the
        weight stays. If a member cannot, neither changes. Returns the raw ids added."""
        import copy

        from warmrec.models.catalogue import add_items, grow, new_items

        self._check_fitted()
        if self.members is None:
            raise ModelError("model 'hybrid' is not fitted: nothing to add to")
        # with nothing new the members change nothing (each still says whether it could:
        # warmrec.models.catalogue.growable), so there is nothing to restore
        new = new_items(self, item_features)[0]
        before = copy.deepcopy(self.members) if new else None
        try:
            added = [add_items(m, item_features) for m in self.members.values()]
        except ModelError as e:
            if before is not None:
                self.members = before
            raise ModelError(f"hybrid: {e}") from None
        if added[0] != added[1]:  # pragma: no cover - members share one vocabulary
            self.members = before or self.members
            raise ModelError("hybrid: the members added different items")
        if added[0]:
            # the added items are scored on the scale of the items known at fit time
            self.known_ = grown_known(self.known_, self.n_items, len(added[0]))
            grow(self, self.members["network"].vocab, len(added[0]))
        return added[0]

    # -- state --------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        if self.members is None or self.weight_ is None:
            raise ModelError("model 'hybrid' is not fitted: nothing to save")
        state: dict[str, Any] = {"weight": torch.tensor([self.weight_], dtype=torch.float64)}
        if self.known_ is not None:
            state["known"] = self.known_.to(torch.uint8)
        for role, m in self.members.items():
            for k, v in m.get_state().items():
                state[f"{role}.{k}"] = v
        return state

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        self._check_fitted()
        if "weight" not in state:
            raise ModelError("model 'hybrid': the weights hold no 'weight'")
        members = self._build_members()
        for role, m in members.items():
            m.vocab, m.user_vocab = self.vocab, self.user_vocab
            m.meta.item_counts = self.meta.item_counts
            if role == "network":  # its side features' layout (BST, SSE-PT), saved with the hybrid
                m.meta.features = self.meta.features
            prefix = f"{role}."
            m.set_state({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        self.members = members
        self.weight_ = float(state["weight"].reshape(-1)[0])
        self.known_ = saved_known(self, state)

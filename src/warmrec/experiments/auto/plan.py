"""``warmrec auto``'s portfolio: the families (:data:`FAMILIES`), a trial as the search and its
state file know it (:class:`Trial`), the round-0 plan the log steers (:func:`plan_portfolio`) and
the families' search spaces (:func:`find_spaces`)."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from warmrec.errors import ConfigError
from warmrec.experiments.auto.profile import LogProfile

KNN = ("itemknn", "sknn", "vsknn")
FULL_SOFTMAX_MAX_ITEMS = 50_000
"""Largest catalogue on which SASRec's full softmax is tried beside its sampled default."""
NETWORKS = ("gru4rec", "narm", "sasrec", "bert4rec", "ssept", "bst")


@dataclass(frozen=True)
class Family:
    """A portfolio member: a registered model name, its kind and a cost prior (in units of the
    first step's time, Pop's fit and validation scoring), used until the family's own steps
    are measured."""

    name: str
    kind: str
    prior: float


FAMILIES: tuple[Family, ...] = (
    Family("pop", "baseline", 1.0),
    Family("markov", "rules", 2.0),
    Family("sr", "rules", 2.0),
    Family("ar", "rules", 3.0),
    Family("itemknn", "knn", 3.0),
    Family("sknn", "knn", 5.0),
    Family("vsknn", "knn", 5.0),
    Family("sessionpop", "baseline", 2.0),
    Family("tfidf", "content", 3.0),
    Family("fresh", "content", 5.0),
    Family("featrank", "content", 5.0),
    Family("item2vec", "embedding", 30.0),
    Family("sasrec", "network", 20.0),
    Family("gru4rec", "network", 20.0),
    Family("ssept", "network", 20.0),
    Family("bst", "network", 20.0),
    Family("narm", "network", 20.0),
    Family("bert4rec", "network", 20.0),
)
"""Every family in the order of round 0: the one-shot families cheapest first, then the
networks best first by ``benchmarks/results/neural_ml100k.md`` (SASRec, GRU4Rec, SSE-PT, BST,
NARM, BERT4Rec), so that under a short budget the likeliest winners get their first epochs."""
FAMILY = {f.name: f for f in FAMILIES}
HYBRID = "hybrid"
FRESH = "fresh"
FEATRANK = "featrank"
GROWING = (FRESH, FEATRANK)
"""The families whose base is TF-IDF (in the portfolio only where it is). Fresh is made for a
growing catalogue and joins only where validation targets fall on items without training
events; FeatRank joins wherever the items have text (its other signals -- transitions, the
catalogue order, repeats, shared tags -- serve a catalogue that does not grow too), and is also
tried with the catalogue's cold share where validation has such targets."""
PARTNERS = (*KNN, FEATRANK)
"""The families the hybrid pairs with the best network (the best of them on validation): the
session kNNs and FeatRank, whose signals (the item text, the catalogue order, shared tags) the
networks do not carry."""

TEXT_PRIOR = 5
TEXT_VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        f"defaults, item_repr=id+text, text_prior={TEXT_PRIOR}",
        {"item_repr": "id+text", "text_prior": TEXT_PRIOR},
    ),
    (
        f"defaults, item_repr=text, text_prior={TEXT_PRIOR}",
        {"item_repr": "text", "text_prior": TEXT_PRIOR},
    ),
)
"""SASRec's text-aware variants (where items have text): id + text vectors, the best on MARS
under leave-one-out, and text alone, the best where targets are new items (MARS's time split,
``benchmarks/results/mars.md``), tried where validation has such targets."""
COLD_HINT_SHARE = 0.05
"""Share of the catalogue without training events above which the report suggests
``--cold-target-share`` (when validation has less than half that share on such items)."""
COLD_TARGET_SHARE = 0.01
"""Share of validation targets on items without training events above which the text-only
variant is tried."""

FRESH_ORDER: dict[str, Any] = {
    "order_window": 5,
    "order_grid": [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0],
}
"""Fresh's catalogue-order term in auto: the settings of ``fresh+order tfidf``, the best model
on all targets of MARS's time protocol with its weights chosen on validation
(``benchmarks/results/mars.md``, run ``text-newvideo``; it chose ``o`` = 16)."""

# train settings auto owns in every network trial (a space or a variant cannot set them)
_OWNED_TRAIN = ("checkpoint_dir", "checkpoint_every", "resume", "progress", "log_path")


@dataclass
class Trial:
    """One configuration of one family, as the search and ``auto_state.json`` know it."""

    id: str
    family: str
    origin: str
    """``defaults``, ``defaults, max_len=5`` (a data-aware variant), ``sampled`` or ``hybrid``."""
    model: dict[str, Any] = field(default_factory=dict)
    """The model's config keys (flat, without the name)."""
    train: dict[str, Any] = field(default_factory=dict)
    exclude_seen: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    """Sampled values (``model.k``: 50, ...)."""
    status: str = "pending"
    """pending, running, paused (a network that can go on), done, cut, failed."""
    value: float | None = None
    prev_value: float | None = None
    """The value at the step before (a network's gain per step)."""
    valid: dict[str, float] = field(default_factory=dict)
    ci: list[float] | None = None
    """95 % bootstrap CI of the validation value."""
    value_other: float | None = None
    """The value with seen items treated the other way (defaults of logs with repeats)."""
    epochs: int = 0
    seconds: float = 0.0
    """Wall seconds spent in its steps (fit, validation, saving)."""
    eval_s: float = 0.0
    """Seconds of its last validation scoring."""
    fit_s: float = 0.0
    """Seconds of its last step up to the end of fitting (imports and reading included)."""
    epoch_s: float = 0.0
    """Seconds of one epoch, validation included (networks)."""
    round: int = 0
    error: str | None = None
    members: list[str] = field(default_factory=list)
    weight: float | None = None
    loss: str | None = None
    curve: list[list[float]] = field(default_factory=list)
    """``[search seconds, validation value]`` after each epoch or step."""
    kept: bool = False
    """Its model directory is in ``OUT/work/models``."""
    steps: int = 0
    warming: bool = False
    """A network paused during its learning-rate warm-up (kept through the next halving)."""
    train_exclude: bool | None = None
    """A network's trainer setting of ``exclude_seen`` (fixed at its first step: a resumed
    run must train as it started), while ``exclude_seen`` is how it is scored."""
    test: dict[str, float] = field(default_factory=dict)
    test_ci: list[float] | None = None

    @property
    def formed(self) -> bool:
        """Formed from saved members (a hybrid, or Fresh over another trial's model), not
        fitted from its config."""
        return self.family == HYBRID or bool(self.members)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trial:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def network(self) -> bool:
        return self.family in NETWORKS


def tie_order(t: Trial) -> tuple[float, int, int, str]:
    """How trials with equal validation values are ordered, first = preferred: the cheaper
    family by its cost prior (:attr:`Family.prior`; a hybrid after every family), then the
    portfolio's order (:data:`FAMILIES`), then the earlier trial of the family (its id).

    Nothing here reads a clock: two runs with the same seed settle a tie the same way. (Measured
    wall seconds settled it before, and a tie between two quick families went to whichever
    happened to run faster that time.)"""
    fam = FAMILY.get(t.family)
    prior, place = (fam.prior, FAMILIES.index(fam)) if fam else (math.inf, len(FAMILIES))
    return (prior, place, len(t.id), t.id)  # "sasrec-999" before "sasrec-1000"


def rank_bests(bests: Iterable[Trial]) -> list[Trial]:
    """Each family's best, best first: by validation value; on a tie a single model before one
    formed from saved members (a hybrid at weight 0 or 1 ranks exactly as one of its members,
    Fresh with its terms at 0 as its base, and serving it would score them all), then by
    :func:`tie_order` (the cheaper family by its cost prior, then the portfolio's order, then
    the earlier trial). No measured time takes part, so two runs with the same seed that reach
    the same values pick the same winner. The final step ranks by it, and so does the search's
    progress line (:meth:`~warmrec.experiments.auto.search.AutoSearch.ranked`)."""
    return sorted(bests, key=lambda t: (-t.value, t.formed, tie_order(t)))


@dataclass
class Plan:
    """The families to search, their round-0 trials and the notes on how the log steered it."""

    families: list[str]
    trials: list[Trial]
    exclude_seen: dict[str, bool | None]
    """Per family: True/False decided from the log, None: decided on validation."""
    notes: list[str]
    left_out: dict[str, str]


def fresh_defaults(profile: LogProfile, metric: str) -> tuple[dict[str, Any], str]:
    """Fresh's round-0 config in auto and its label: TF-IDF as the base, the catalogue-order
    term where item ids are integers, the weights chosen on the search's metric."""
    model: dict[str, Any] = {"base": "tfidf", "select_metric": metric}
    if profile.integer_item_ids:
        model.update(FRESH_ORDER)
    return model, "defaults, base=tfidf" + (
        f", order_window={FRESH_ORDER['order_window']}" if profile.integer_item_ids else ""
    )


def plan_portfolio(
    profile: LogProfile,
    families: list[str] | None = None,
    *,
    spaces: Mapping[str, Any],
    metric: str = "ndcg@10",
) -> Plan:
    """The round-0 trials of every family and the data-aware choices (package docstring)."""
    notes: list[str] = []
    left_out: dict[str, str] = {}
    names = [f.name for f in FAMILIES]
    wanted = list(names) if families is None else [f for f in names if f in set(families)]
    # -- which families --------------------------------------------------------------------
    r = profile.valid_target_seen_share
    if r == 0.0 and "sessionpop" in wanted:
        wanted.remove("sessionpop")
        left_out["sessionpop"] = "no validation target is in its history (it ranks history items)"
    if not profile.has_user_ids and "ssept" in wanted:
        wanted.remove("ssept")
        left_out["ssept"] = "the log has no users"
    if not (profile.item_features or profile.user_features) and "bst" in wanted:
        wanted.remove("bst")
        left_out["bst"] = "the log has no item or user features"
    if "tfidf" in wanted:
        if not profile.item_text:
            wanted.remove("tfidf")
            left_out["tfidf"] = "the log has no item text (titles, tags, descriptions)"
        elif importlib.util.find_spec("sklearn") is None:
            wanted.remove("tfidf")
            left_out["tfidf"] = "it needs scikit-learn (pip install 'warmrec[text]')"
    for fam in (f for f in GROWING if f in wanted):
        if "tfidf" not in wanted:
            wanted.remove(fam)
            left_out[fam] = "its base is TF-IDF, which is left out"
        elif fam == FRESH and profile.valid_target_cold_share < COLD_TARGET_SHARE:
            wanted.remove(fam)
            left_out[fam] = (
                f"{100 * profile.valid_target_cold_share:.1f} % of validation targets are items "
                "without a training event (it is made for a growing catalogue: its terms for "
                "such items are learnt on them)"
            )
    for name, why in left_out.items():
        notes.append(f"{name} left out: {why}")
    # -- seen items ------------------------------------------------------------------------
    exclude: dict[str, bool | None] = {}
    if r == 0.0:
        exclude = {f: True for f in wanted}
        notes.append(
            "no validation target is in its history (repeat share of targets 0 %): seen items "
            "are excluded for every family (it cannot hurt)"
        )
    else:
        exclude = {f: None for f in wanted}
        notes.append(
            f"{100 * r:.1f} % of validation targets are in their history: each family's "
            "defaults are scored with seen items kept and excluded, and the better is kept for "
            "that family" + (" (repeat-heavy: SessionPop is in the portfolio)" if r >= 0.3 else "")
        )
    # -- variants --------------------------------------------------------------------------
    trials: list[Trial] = []
    counter: dict[str, int] = {}

    def add(fam: str, origin: str, model: dict | None = None, train: dict | None = None) -> None:
        if fam not in wanted:
            return
        n = counter.get(fam, 0)
        counter[fam] = n + 1
        trials.append(
            Trial(
                id=f"{fam}-{n:03d}",
                family=fam,
                origin=origin,
                model=dict(model or {}),
                train=dict(train or {}),
                exclude_seen=bool(exclude.get(fam) or False),
            )
        )

    first = [f for f in wanted if f in ("pop",)]
    if not profile.has_user_ids:
        # session logs: the session kNNs are the strongest one-shot families in the literature
        # and on nowplaying-1m (baselines.md), so under a short budget their defaults go first
        first += [f for f in ("vsknn", "sknn") if f in wanted]
        if len(first) > 1:
            notes.append(
                "a session log (no users): V-SKNN's and SKNN's defaults run first after Pop"
            )
    for fam in first + [f for f in wanted if f not in first]:
        if fam == "gru4rec" and profile.items > 20000:
            add(fam, "defaults, loss=bpr-max", {"loss": "bpr-max"})
        elif fam == "fresh":
            model, origin = fresh_defaults(profile, metric)
            add(fam, origin, model)
        else:
            add(fam, "defaults")
    basket = max(2, round(profile.events_per_time)) if profile.basket else None
    if basket:
        notes.append(
            f"basket log ({100 * profile.tied_time_share:.0f} % of events share a time, "
            f"{profile.events_per_time:.1f} events per time): the order inside a basket is "
            f"arbitrary, so AR is also queried by the last {basket} and {2 * basket} items with "
            "equal weights (a whole basket), and the history windows below include a basket"
        )
        add("ar", f"defaults, n_last={basket}", {"n_last": basket})
        add("ar", f"defaults, n_last={2 * basket}", {"n_last": 2 * basket})
    windows = sorted({basket or 3, 10})
    windows = [w for w in windows if w < max(profile.length_p90, 2)]
    if windows:
        fams = [f for f in ("sknn", "vsknn", "sessionpop") if f in wanted]
        if fams:
            notes.append(
                f"last-N vs whole history: {', '.join(fams)} also read only the last "
                f"{' or '.join(map(str, windows))} items (90 % of sequences have at most "
                f"{profile.length_p90:g}; the default window is 50)"
            )
        for fam in fams:
            for w in windows:
                add(fam, f"defaults, max_len={w}", {"max_len": w})
    if profile.length_p90 > 75 and "sasrec" in wanted:
        notes.append(
            f"long histories (90th percentile {profile.length_p90:g} events): SASRec is also "
            "tried reading 200 items instead of 50"
        )
        add("sasrec", "defaults, max_len=200", {"max_len": 200})
    if profile.items > 5000 and "sasrec" in wanted:
        if profile.items > 20000:
            notes.append(
                f"catalogue of {profile.items:,} items: SASRec's default loss is sampled "
                "softmax (above 20,000 items)"
                + (
                    "; the full softmax is tried too"
                    if profile.items <= FULL_SOFTMAX_MAX_ITEMS
                    else f"; the full softmax is not tried (above {FULL_SOFTMAX_MAX_ITEMS:,} "
                    "items one epoch of it takes longer than most budgets)"
                )
            )
            if "gru4rec" in wanted:
                notes.append(
                    "GRU4Rec's defaults train with BPR-max over 2,048 sampled negatives instead "
                    "of its full softmax (the official choice on large catalogues)"
                )
            if profile.items <= FULL_SOFTMAX_MAX_ITEMS:
                add("sasrec", "defaults, loss=ce", {"loss": "ce"})
        else:
            notes.append(
                f"catalogue of {profile.items:,} items: SASRec's default loss is the full "
                "softmax (up to 20,000 items); sampled softmax is tried too"
            )
            add("sasrec", "defaults, loss=sampled_ce", {"loss": "sampled_ce"})
    else:
        notes.append(
            f"catalogue of {profile.items:,} items: the networks train with the full softmax "
            "(sampled softmax is tried above 5,000 items)"
        )
    from warmrec.models.bst import BSTConfig

    bst_default = BSTConfig().item_features  # ml-100k's genres
    cats = [c for c in profile.item_categories if c not in bst_default]
    if "bst" in wanted and cats and not set(bst_default) & set(profile.item_features):
        notes.append(
            "item categories and tags (" + ", ".join(cats) + "): BST is also tried with them as "
            "side features (its defaults name ml-100k's genres, which this log does not have)"
        )
        add("bst", "defaults, item_features=" + "+".join(cats), {"item_features": cats})
    if profile.item_text and "sasrec" in wanted:
        notes.append(
            "item text (" + ", ".join(profile.item_text) + "): SASRec is also tried with its "
            "items as id + text vectors (MiniLM through a learned adaptor) and the text "
            f"similarity to the last {TEXT_PRIOR} items"
        )
        add("sasrec", TEXT_VARIANTS[0][0], TEXT_VARIANTS[0][1])
        if profile.valid_target_cold_share >= COLD_TARGET_SHARE:
            notes.append(
                f"{100 * profile.valid_target_cold_share:.1f} % of validation targets are items "
                "without a training event (no ID-only model can rank them): SASRec is also "
                "tried with its items as text vectors alone"
            )
            add("sasrec", TEXT_VARIANTS[1][0], TEXT_VARIANTS[1][1])
    if "fresh" in wanted:
        notes.append(
            f"{100 * profile.valid_target_cold_share:.1f} % of validation targets are items "
            "without a training event: Fresh (TF-IDF plus a bonus for such items that follows "
            "the history"
            + (
                ", and the catalogue order of the integer item ids"
                if profile.integer_item_ids
                else ""
            )
            + ", weights chosen on validation) joins; it is also tried with those targets "
            "weighed as the catalogue's share of such items (a later period may have more), "
            "and formed after each round over the best model of the other families"
        )
        model, origin = fresh_defaults(profile, metric)
        add(
            "fresh",
            origin + ", cold_target_share=catalogue",
            {**model, "cold_target_share": "catalogue"},
        )
    if FEATRANK in wanted:
        cold = profile.valid_target_cold_share >= COLD_TARGET_SHARE
        notes.append(
            "item text: FeatRank joins (a weighted sum of item-agnostic signals: TF-IDF, "
            "training transitions, the catalogue order, repeats, shared tags, popularity and "
            "terms for items without training events, its weights fitted on the training "
            "sequences and validation; the hybrid may pair it with the best network)"
            + (", also with the catalogue's share of such items" if cold else "")
        )
        if cold:
            add(
                FEATRANK,
                "defaults, cold_target_share=catalogue",
                {"cold_target_share": "catalogue"},
            )
    c, v = profile.catalogue_cold_share, profile.valid_target_cold_share
    if c >= COLD_HINT_SHARE and c >= 2 * v:
        notes.append(
            f"{100 * c:.1f} % of the catalogue's items have no training event but only "
            f"{100 * v:.1f} % of validation targets are on such items: if the period served "
            "will see more new items, compare a run with --cold-target-share catalogue, which "
            "weighs them as the catalogue does when choosing (validation as it comes may "
            "favour models that cannot rank new items; on MARS's time split, with Fresh over "
            "the best model, it did not help: benchmarks/results/auto.md)"
        )
    if profile.items_seen_once_share >= 0.3 and "itemknn" in wanted:
        notes.append(
            f"long tail ({100 * profile.items_seen_once_share:.0f} % of items occur once): "
            "item-kNN is also tried with strong support regularisation (lambda_ = 100)"
        )
        add("itemknn", "defaults, lambda_=100", {"lambda_": 100.0})
    if any(f in wanted for f in PARTNERS) and any(f in wanted for f in NETWORKS):
        notes.append(
            "formed models (the hybrid of the best partner and the best network"
            + (", Fresh over the best model" if FRESH in wanted else "")
            + ") are valued out of fold: their weights chosen on one half of the validation "
            "sequences and scored on the other, both ways (chosen and scored on the same "
            "targets they would beat their members by the luck of their grid)"
        )
    fitted_there = [f for f in (FEATRANK, FRESH) if f in wanted]
    if fitted_there:
        notes.append(
            " and ".join(fitted_there)
            + (" fits" if len(fitted_there) == 1 else " fit")
            + " some weights on the validation targets: "
            + ("its" if len(fitted_there) == 1 else "their")
            + " trials are valued out of fold too"
        )
    no_space = [f for f in wanted if f not in spaces and f != "pop"]
    if no_space:
        notes.append(
            "no search space found for " + ", ".join(no_space) + ": defaults and variants only"
        )
    return Plan(wanted, trials, exclude, notes, left_out)


def find_spaces(spaces_dir: str | Path | None = None) -> dict[str, Any]:
    """``{family: SearchSpace}`` from ``spaces_dir`` (default: the spaces shipped with the
    package, :func:`~warmrec.tuning.space.builtin_spaces_dir`), each checked against its model;
    a family without a file has no space."""
    from warmrec.tuning.space import builtin_spaces_dir, load_space

    if spaces_dir is None:
        spaces_dir = builtin_spaces_dir()
        if not spaces_dir.is_dir():
            raise ConfigError(
                f"the built-in search spaces are missing ({spaces_dir}): a broken install; "
                "reinstall warmrec or give --spaces"
            )
    d = Path(spaces_dir)
    if not d.is_dir():
        raise ConfigError(f"--spaces {spaces_dir}: expected a folder of <family>.toml files")
    out = {}
    for f in FAMILIES:
        p = d / f"{f.name}.toml"
        if p.is_file():
            out[f.name] = load_space(p, f.name)
    return out

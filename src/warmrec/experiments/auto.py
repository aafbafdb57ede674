"""``warmrec auto``: a time-budgeted portfolio that picks the best recommender for a log.

A user with a new log does not know whether a transformer, an RNN, a kNN or a rule model will
win on it, whether to exclude the items already in a history, how much of a history to read, or
how long to train. :func:`auto` answers those on validation, within a wall-clock budget, and
leaves an ordinary model directory behind. Every run in it is a
:class:`~warmrec.experiments.spec.RunSpec` -- the search's data and split with one family's
``[model]``/``[train]``/``[eval]`` -- read, split, fitted, recorded and saved by
:func:`~warmrec.experiments.spec.prepare_run`, :func:`~warmrec.experiments.spec.fit_run` and
:func:`~warmrec.experiments.spec.save_run`; nothing here reads, splits or fits on its own.

**1. Describe the log** (:func:`describe_log`, the measures of ``warmrec data stats`` plus the
validation part): catalogue size and tail, length distribution, repeat share (of events, and of
validation targets already in their history), events that share a time (baskets), users and side
features. :func:`plan_portfolio` turns them into choices, each written down as a note of the
report (what was measured, what it changed):

- *seen items*: no validation target is in its history -> seen items are excluded everywhere
  (it cannot hurt) and SessionPop (which ranks only history items) is left out; otherwise each
  family's defaults are scored both ways and the better is kept for that family -- until the
  first :data:`CONSENSUS` families agree, after which the rest are scored that way only;
- *session logs* (no users): V-SKNN's and SKNN's defaults run right after Pop's;
- *last-N vs whole history*: the families that read a history window (SKNN, V-SKNN,
  SessionPop) get variants reading the last 3 (a basket's size on basket logs) and 10 items
  where most histories are longer; SASRec gets a whole-history variant (200 items) when the
  90th-percentile length exceeds 75;
- *baskets* (events sharing a time): AR queried by the last one and two baskets' items;
- *catalogue size*: above 5,000 items SASRec is tried with both the full softmax and sampled
  softmax (the ``auto`` loss switches at 20,000), and validation decides -- up to
  :data:`FULL_SOFTMAX_MAX_ITEMS` items; above 20,000 GRU4Rec's defaults use BPR-max over
  sampled negatives instead of its full softmax (an epoch of it over nowplaying-1m's 121K
  items would take most of a 10-minute budget);
- *tail*: many items seen once -> an item-kNN variant with strong support regularisation;
- *cost*: a validation scoring costs every family about the same (catalogue x examples), so a
  first step is estimated as its scorings plus a fit prior; Item2Vec scores after every epoch
  and waits in round 0 until it would take at most :data:`ONE_SHOT_SHARE` of the time left;
- SSE-PT only where the log has users, BST only where it has item or user features.

**2. Search** (:class:`AutoSearch`): every family (:data:`FAMILIES`) first runs at its defaults
(and the variants above), then samples its search space (``configs/spaces/<family>.toml``,
Optuna TPE per family, asked and told; a configuration already tried is not run again). Time is
shared by successive halving across families: round ``k`` gives each surviving family an equal
slot of the time left for the rounds still to come, and before each round the families are
halved -- the networks among themselves and the others among themselves (a network after its
first epochs is comparable with another network given the same time, not with a fully fitted
kNN model), each pool keeping its best ``ceil(n / 2)`` by best validation score (a network still
improving counts its last gain once more). A one-shot family also stops when its last 8 sampled
configurations did not improve it. Within a network family, the slot goes to the best half of
its paused configurations (successive halving on training time) and, when the slot holds ten
of its epochs (or nothing is left to go on), to one new sampled configuration: a new network
needs many epochs to compete, so short budgets train the best one on. The cheap rungs of a network are its first
epochs: a step trains until the trial's cumulative time reaches its allowance and then the
loop's per-epoch callback answers :data:`~warmrec.training.loop.PAUSE`; the next step resumes
from the checkpoint (``train.resume``) and ends exactly where one uninterrupted run would.
A network is not paused during its learning-rate warm-up (SASRec's 200 warm-up steps are ten
epochs of a small log) unless it has used three times its allowance, and in round 0 the
networks' first epochs get at most half of the time left when the first of them starts (later
ones wait, and a family that never ran is dropped with that reason; one still warming up is
not dropped by the next halving): under a short budget the
order of :data:`FAMILIES` decides which networks start. Patience still ends a network for good.
After each round the hybrid of the best kNN model and
the best network (:class:`~warmrec.models.hybrid.Hybrid`, its weight chosen on validation) is
formed from the two fitted members.

**3. Budget.** The budget is wall-clock time for the whole command: start-up (the CLI counts
from the process start), reading, describing, searching and the final step. The search stops at
``budget - reserve``; the reserve is what the final step is estimated to need: 2 % of the
budget, 1.5 x the longest test scoring (estimated from the validation scorings measured in the
search), 2 s for saving and the report and 3 s for the interpreter's exit (up to 4 s were
measured with torch loaded, at load 12 on the shared 2 cores). No step starts that is estimated not to end before the
search deadline (a one-shot family's cost from its own steps, else a prior in units of the
quickest step's fit plus the validation scorings measured, which cost about the same for every
family; a network's from its epochs, at least :data:`NETWORK_START_S` for a first one),
except the very first, which may use the reserve: without one score there is nothing to pick. A
network pauses at the end of an epoch when the next one would not end before the deadline, and
an epoch that runs into it anyway is cut (:func:`_deadline_hooks`): the trial keeps its last
scored state, and its checkpoint (written at every pause and about every
:data:`CHECKPOINT_S` seconds of epochs) loses at most that much training. The final step scores the winner on test first, saves it, then scores the other
families' bests on test while time is left (the rest show ``-``), so the command ends within
the budget (+5 % is the goal's tolerance; ``benchmarks/results/auto.md`` measures it).

**4. Resume.** ``OUT/auto_state.json`` (written atomically after every step) holds every trial,
its status and scores, the rounds, the decisions and the time spent; paused networks have their
checkpoints under ``OUT/work/ckpt/``. Running the same command into the same folder after a kill
continues: finished trials are not rerun, paused networks resume from their checkpoints, a trial
that was running is run again, and the search spends what is left of the budget (the time used
before the kill counts; with nothing left it goes straight to the final step). Another data
path, split, metric, family list or seed in the same folder is refused; a finished run returns
its summary (its checkpoints are removed once it is done; ``work/models`` keeps each family's
best model).

**5. Output** (``OUT/``): ``leaderboard.md``/``.csv`` (each family's best: validation and test
with 95 % bootstrap CIs from :func:`warmrec.evaluation.stats.bootstrap_ci`, fit time, epochs,
what was tried), ``trials.csv`` (every trial), ``model/`` (the winner, an ordinary model
directory: ``warmrec predict/serve/evaluate`` take it), ``winner.toml`` (its RunSpec),
``progress.png`` (best validation score over time per family), ``report.md`` (the log's
description, how it steered the search, the leaderboard, timings), ``summary.json``.

**6. Where it runs.** Locally, steps run one after another in this process. With ``address``
(``HOST:PORT`` of a Ray cluster) the same :func:`run_step` runs in Ray actors -- each reads and
splits the data once from the ``[data]``/``[split]`` record (a path every node can read) -- as
many at once as the cluster has CPUs; ``OUT`` must be on a file system every node sees.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from warmrec.errors import ConfigError, WarmrecError

STATE = "auto_state.json"
STATE_VERSION = 1
ETA = 2
"""Successive halving keeps the best ``ceil(n / ETA)`` families after each round."""
PATIENCE = 8
"""A one-shot family stops once this many sampled trials in a row did not improve it."""
CONSENSUS = 3
"""Once this many families' defaults, scored with seen items kept and excluded, all chose the
same, each by at least :data:`CONSENSUS_MARGIN`, the other families' defaults are scored that
way only."""
CONSENSUS_MARGIN = 0.1
"""Relative margin by which each agreeing family's choice must win (a close call is no
consensus)."""
BOOT = 2000
"""Bootstrap replicates of every confidence interval."""

CHECKPOINT_S = 30.0
"""A network step also writes its checkpoint about every this many seconds of epochs."""
NETWORK_START_S = 3.0
"""The least a network's first step is expected to take (imports, optimiser set-up, one epoch)."""
KNN = ("itemknn", "sknn", "vsknn")
FULL_SOFTMAX_MAX_ITEMS = 50_000
ONE_SHOT_SHARE = 0.25
"""In round 0 Item2Vec's first step (which scores validation after every epoch) is not started
when it is estimated to take more than this share of the search time left."""
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

# train settings auto owns in every network trial (a space or a variant cannot set them)
_OWNED_TRAIN = ("checkpoint_dir", "checkpoint_every", "resume", "progress", "log_path")


# -- budgets -------------------------------------------------------------------------------------
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h)?\s*$", re.IGNORECASE)


def parse_budget(text: str | float | int) -> float:
    """``"10m"``, ``"90s"``, ``"1.5h"`` or a number of seconds -> seconds (> 0)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        m = _BUDGET.match(str(text))
        if m is None:
            raise ConfigError(
                f"--budget: expected a duration like 90s, 10m or 1h, found {str(text)!r}"
            )
        unit = (m.group(2) or "s").lower()
        value = float(m.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[unit]
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"--budget: expected a positive duration, found {text!r}")
    return value


def _clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


# -- 1. the log ----------------------------------------------------------------------------------
@dataclass
class LogProfile:
    """What :func:`describe_log` measured (see the module docstring)."""

    events: int
    sequences: int
    items: int
    users: int | None
    sequence_key: str
    length_median: float
    length_p90: float
    length_max: int
    items_seen_once_share: float
    top1pct_share: float
    item_gini: float
    repeat_share: float
    repeat_consecutive_share: float
    tied_time_share: float
    events_per_time: float
    valid_examples: int
    test_examples: int
    valid_target_seen_share: float
    has_user_ids: bool
    item_features: list[str]
    user_features: list[str]
    split: str

    @property
    def basket(self) -> bool:
        """Events share times often enough to call the log a basket log."""
        return self.tied_time_share >= 0.2 and self.events_per_time >= 1.5

    def lines(self) -> list[str]:
        """The description as Markdown list items."""
        pct = lambda x: f"{100 * x:.1f} %"  # noqa: E731
        users = f", {self.users:,} users" if self.users else ""
        return [
            f"{self.events:,} events, {self.sequences:,} sequences (by {self.sequence_key})"
            + users,
            f"catalogue: {self.items:,} items; tail: {pct(self.items_seen_once_share)} of items "
            f"occur once; the top 1 % of items hold {pct(self.top1pct_share)} of events "
            f"(Gini {self.item_gini:.2f})",
            f"lengths: median {self.length_median:g}, 90th percentile {self.length_p90:g}, "
            f"max {self.length_max:,}",
            f"repeats: {pct(self.repeat_share)} of events come back to an item of their "
            f"sequence ({pct(self.repeat_consecutive_share)} the item just before); "
            f"{pct(self.valid_target_seen_share)} of validation targets are in their history",
            f"tied times: {pct(self.tied_time_share)} of events share the time of the event "
            f"before them ({self.events_per_time:.2f} events per distinct time)"
            + (" -- a basket log" if self.basket else ""),
            f"split: {self.split} ({self.valid_examples:,} validation, "
            f"{self.test_examples:,} test examples); users: "
            + ("yes" if self.has_user_ids else "no")
            + "; features: "
            + (", ".join(self.item_features + self.user_features) or "none"),
        ]


def target_seen_share(eval_set: Any) -> float:
    """Share of an :class:`~warmrec.data.dataset.EvalSet`'s targets already in their history."""
    import numpy as np

    n = len(eval_set)
    if n == 0:
        return 0.0
    lens = eval_set.ends - eval_set.starts
    owner = np.repeat(np.arange(n), lens)
    idx = np.concatenate(
        [np.arange(s, e) for s, e in zip(eval_set.starts, eval_set.ends)] or [np.zeros(0, int)]
    ).astype(np.int64)
    hit = eval_set.items[idx] == eval_set.targets[owner]
    return float(np.bincount(owner[hit], minlength=n).astype(bool).mean())


def describe_log(prepared: Any) -> LogProfile:
    """Describe a prepared log (:func:`warmrec.data.stats.describe` on the whole table, plus the
    validation part's repeat share, users and features)."""
    from warmrec.data.schema import USER
    from warmrec.data.stats import describe

    inter = prepared.info.get("interactions")
    frame = inter.interactions if inter is not None else prepared.frame
    unit = getattr(inter, "time_unit", None) or "s"
    d = describe(frame, time_unit=unit)
    spec = prepared.info.get("spec")
    split = spec.split.method if spec is not None else str(prepared.info.get("split", "?"))
    cols = lambda f, key: [c for c in f.columns if c != key] if f is not None else []  # noqa: E731
    from warmrec.data.schema import ITEM

    return LogProfile(
        events=int(d["events"]),
        sequences=int(d["sequences"]),
        items=int(d["items"]),
        users=d["users"],
        sequence_key=d["sequence_key"],
        length_median=float(d["length_median"]),
        length_p90=float(d["length_p90"]),
        length_max=int(d["length_max"]),
        items_seen_once_share=d["items_seen_once"] / max(1, d["items"]),
        top1pct_share=float(d["item_events_top1pct_share"]),
        item_gini=float(d["item_gini"]),
        repeat_share=float(d["repeat_share"]),
        repeat_consecutive_share=float(d["repeat_consecutive_share"]),
        tied_time_share=float(d["tied_time_share"]),
        events_per_time=float(d["events_per_time"]),
        valid_examples=len(prepared.valid),
        test_examples=len(prepared.test),
        valid_target_seen_share=target_seen_share(prepared.valid),
        has_user_ids=USER in frame.columns and prepared.user_vocab is not None,
        item_features=cols(prepared.item_features, ITEM),
        user_features=cols(prepared.user_features, USER),
        split=split,
    )


# -- the portfolio ---------------------------------------------------------------------------------
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

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trial:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def network(self) -> bool:
        return self.family in NETWORKS


@dataclass
class Plan:
    """The families to search, their round-0 trials and the notes on how the log steered it."""

    families: list[str]
    trials: list[Trial]
    exclude_seen: dict[str, bool | None]
    """Per family: True/False decided from the log, None: decided on validation."""
    notes: list[str]
    left_out: dict[str, str]


def plan_portfolio(
    profile: LogProfile, families: list[str] | None = None, *, spaces: Mapping[str, Any]
) -> Plan:
    """The round-0 trials of every family and the data-aware choices (module docstring)."""
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
    if profile.items_seen_once_share >= 0.3 and "itemknn" in wanted:
        notes.append(
            f"long tail ({100 * profile.items_seen_once_share:.0f} % of items occur once): "
            "item-kNN is also tried with strong support regularisation (lambda_ = 100)"
        )
        add("itemknn", "defaults, lambda_=100", {"lambda_": 100.0})
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


# -- 2. one step, the same on every executor -------------------------------------------------------
class _Deadline(Exception):
    """The search's deadline came in the middle of a step."""


class _DeadlineData:
    """A model's training data whose epochs end (raising :class:`_Deadline`) at a deadline."""

    def __init__(self, data: Any, deadline: float) -> None:
        self._data = data
        self._deadline = deadline

    def __getattr__(self, name: str) -> Any:
        return getattr(self._data, name)

    def batches(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for batch in self._data.batches(*args, **kwargs):
            if time.time() >= self._deadline:
                raise _Deadline
            yield batch


def _deadline_hooks(deadline: float) -> Any:
    from warmrec.training.loop import LoopHooks

    class _DeadlineHooks(LoopHooks):
        """Cuts an epoch that runs into the search's deadline (the trial keeps its last
        checkpoint: the epoch is lost, the budget holds)."""

        def wrap_data(self, data: Any) -> Any:
            return _DeadlineData(data, deadline)

    return _DeadlineHooks()


@dataclass
class StepContext:
    """What a step needs: the prepared data, the search's base spec, the work folder."""

    prepared: Any
    base: Any
    work: Path
    metric: str

    def spec(self, family: str, model: dict, train: dict, exclude_seen: bool) -> Any:
        from warmrec.tuning.trial import eval_metrics

        cfg = self.base.to_config()
        cfg["model"] = {"name": family, **model}
        cfg["train"] = dict(train)
        cfg["eval"] = {"metrics": eval_metrics(self.metric), "exclude_seen": exclude_seen}
        from warmrec.experiments.spec import spec_from_config

        return spec_from_config(cfg)


def _label(metric: str) -> str:
    from warmrec.evaluation.metrics import parse_metric

    return parse_metric(metric).label


def _ci(values: Any) -> list[float] | None:
    from warmrec.evaluation.stats import bootstrap_ci

    try:
        _, lo, hi = bootstrap_ci(values, n_boot=BOOT, seed=0)
    except WarmrecError:
        return None
    return [lo, hi]


def _score(ctx: StepContext, model: Any, spec: Any, part: str = "valid") -> tuple[Any, float]:
    from warmrec.experiments.spec import evaluate_run

    t0 = time.perf_counter()
    res = evaluate_run(model, getattr(ctx.prepared, part), spec, ctx.prepared)
    return res, time.perf_counter() - t0


def network_train(
    train: Mapping[str, Any], ckpt: Path, metric: str, exclude_seen: bool, every: int = 5
) -> dict:
    """A network trial's ``[train]``: the trial's settings plus what auto owns (a checkpoint
    written at every pause and every ``every`` epochs, resumed at every step, selection on the
    search metric)."""
    out = {k: v for k, v in train.items() if k not in _OWNED_TRAIN}
    out.update(
        checkpoint_dir=str(ckpt),
        checkpoint_every=max(1, int(every)),
        resume=True,
        progress=False,
        valid_metric=metric,
        exclude_seen=exclude_seen,
    )
    return out


def run_step(ctx: StepContext, step: Mapping[str, Any]) -> dict[str, Any]:
    """Run one step of a trial and return its outcome (plain JSON-able values).

    ``step``: ``trial``, ``family``, ``kind`` (``fit`` or ``hybrid``), ``model``, ``train``,
    ``exclude_seen``, ``eval_both`` (also score with seen items treated the other way),
    ``spent`` (the trial's seconds so far), ``allowance`` (seconds it may reach in this step),
    ``deadline`` (``time.time()`` at which the search ends), ``members`` (hybrid)."""
    t0 = time.time()
    base = {"trial": step["trial"], "family": step["family"]}
    try:
        if step["kind"] == "hybrid":
            out = _hybrid_step(ctx, step)
        else:
            out = _fit_step(ctx, step, t0)
    except _Deadline:
        out = {"status": "cut"}
    except Exception as e:  # noqa: BLE001 - one family failing on a log must not end the search
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        out = {"status": "failed", "error": f"{type(e).__name__}: {msg}"[:300]}
    out.update(base)
    out["seconds"] = time.time() - t0
    return out


def _fit_step(ctx: StepContext, step: Mapping[str, Any], t0: float) -> dict[str, Any]:
    from warmrec.experiments.spec import fit_run, save_run
    from warmrec.training.loop import PAUSE

    fam = step["family"]
    neural = fam in NETWORKS
    ex = bool(step["exclude_seen"])
    train = dict(step["train"])
    ckpt = ctx.work / "ckpt" / step["trial"]
    if neural:
        train_ex = step.get("train_exclude")
        ex_t = ex if train_ex is None else bool(train_ex)
        train = network_train(train, ckpt, ctx.metric, ex_t, step.get("checkpoint_every", 5))
    spec = ctx.spec(fam, step["model"], train, ex)
    deadline = float(step["deadline"])
    label = _label(ctx.metric)
    curve: list[list[float]] = []
    callbacks: list[Callable[..., Any]] = []
    hooks = None
    if neural:
        spent, allowance = float(step["spent"]), float(step["allowance"])
        base_lr = float(spec.trainer().lr)

        def on_epoch(epoch: int, record: dict[str, Any], model: Any) -> Any:
            now = time.time()
            v = record.get(f"valid_{label}")
            if v is not None:
                curve.append([float(epoch), float(v), now])
            last = float(record.get("train_seconds", 0.0)) + float(record.get("eval_seconds", 0.0))
            if now + 1.1 * last >= deadline:
                return PAUSE  # the next epoch would not end before the deadline
            used = spent + (now - t0)
            # a network is not judged during its learning-rate warm-up (SASRec's 200 steps
            # are 10 epochs of a small log), unless it has used 3x its allowance
            warm = float(record.get("lr", base_lr)) >= 0.9 * base_lr
            if used >= allowance and (warm or used >= 3 * allowance):
                return PAUSE
            return None

        callbacks = [on_epoch]
        hooks = _deadline_hooks(deadline)
    elif fam == "item2vec":

        def on_i2v_epoch(epoch: int, record: dict[str, Any], model: Any) -> None:
            if time.time() >= deadline:
                raise _Deadline

        callbacks = [on_i2v_epoch]
    with warnings_quiet():
        model = fit_run(spec, ctx.prepared, callbacks=callbacks, hooks=hooks, evaluate_valid=False)
    fit_s = time.time() - t0
    out: dict[str, Any] = {"fit_s": fit_s, "curve": curve}
    result = getattr(model, "train_result", None)
    if neural and result is not None:
        out["status"] = "paused" if result.paused else "done"
        out["epochs"] = result.epochs_run
        out["loss"] = result.extra.get("loss")
        if result.history:  # still in its learning-rate warm-up: not yet comparable
            out["warming"] = float(result.history[-1].get("lr", 0.0)) < 0.9 * float(
                spec.trainer().lr
            )
        if result.history:
            secs = [
                h.get("train_seconds", 0.0) + h.get("eval_seconds", 0.0) for h in result.history
            ]
            out["epoch_s"] = float(sum(secs[-3:]) / len(secs[-3:]))
    else:
        out["status"] = "done"
        out["epochs"] = 0
    if neural and time.time() >= deadline and result is not None:
        # past the deadline: the loop's own validation of the best epoch is the value
        out["value"] = None if math.isnan(result.best_metric) else float(result.best_metric)
        out["valid"] = {label: out["value"]} if out["value"] is not None else {}
    else:
        res, eval_s = _score(ctx, model, spec)
        out["value"] = float(res.summary[label])
        out["valid"] = {k: float(v) for k, v in res.summary.items()}
        out["ci"] = _ci(res.per_example[label])
        out["eval_s"] = eval_s
        if step.get("eval_both"):
            other = ctx.spec(fam, step["model"], train, not ex)
            res2, _ = _score(ctx, model, other)
            out["value_other"] = float(res2.summary[label])
            out["valid_other"] = {k: float(v) for k, v in res2.summary.items()}
            out["ci_other"] = _ci(res2.per_example[label])
    if out.get("value") is not None:
        save_run(model, ctx.work / "models" / step["trial"])
        out["kept"] = True
    return out


def _hybrid_step(ctx: StepContext, step: Mapping[str, Any]) -> dict[str, Any]:
    from warmrec.experiments.spec import record_run, save_run
    from warmrec.models.base import Recommender
    from warmrec.models.hybrid import Hybrid

    knn_id, net_id = step["members"]
    t0 = time.time()
    knn = Recommender.load(ctx.work / "models" / knn_id)
    net = Recommender.load(ctx.work / "models" / net_id)
    label = _label(ctx.metric)
    model = Hybrid.from_members(net, knn, select_metric=label)
    model.fit(ctx.prepared.train, ctx.prepared.valid)
    # the spec names the members by what differs from their defaults (as their own trials do)
    cfg = {**step["model"], "weight": model.weight_}
    ex = bool(step["exclude_seen"])
    spec = ctx.spec(HYBRID, cfg, dict(step.get("train") or {}), ex)
    record_run(model, spec, ctx.prepared, fit_seconds=time.time() - t0)
    res, eval_s = _score(ctx, model, spec)
    out: dict[str, Any] = {
        "status": "done",
        "value": float(res.summary[label]),
        "valid": {k: float(v) for k, v in res.summary.items()},
        "ci": _ci(res.per_example[label]),
        "eval_s": eval_s,
        "fit_s": time.time() - t0,
        "weight": model.weight_,
        "model": cfg,
    }
    if step.get("eval_both"):
        res2, _ = _score(ctx, model, ctx.spec(HYBRID, cfg, dict(step.get("train") or {}), not ex))
        out["value_other"] = float(res2.summary[label])
        out["valid_other"] = {k: float(v) for k, v in res2.summary.items()}
        out["ci_other"] = _ci(res2.per_example[label])
    save_run(model, ctx.work / "models" / step["trial"])
    out["kept"] = True
    return out


@contextlib.contextmanager
def warnings_quiet() -> Iterator[None]:
    """Resume notices and similar warnings of every step stay out of the progress lines."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# -- executors -----------------------------------------------------------------------------------
Admit = Callable[[dict[str, Any]], bool]


class LocalExecutor:
    """Steps one after another in this process."""

    workers = 1

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx

    def run(self, steps: list[dict[str, Any]], admit: Admit) -> Iterator[tuple[dict, dict]]:
        for step in steps:
            if admit(step):
                yield step, run_step(self.ctx, step)

    def close(self) -> None:
        return None


class _RayWorker:
    """A Ray actor: reads and splits the data once, then runs steps."""

    def __init__(self, base: dict[str, Any], work: str, metric: str) -> None:
        from warmrec.experiments.spec import prepare_run, spec_from_config

        spec = spec_from_config(base)
        prepared = prepare_run(spec)
        self.ctx = StepContext(prepared, prepared.info["spec"], Path(work), metric)

    def run(self, step: dict[str, Any]) -> dict[str, Any]:
        return run_step(self.ctx, step)


class RayExecutor:
    """Steps in Ray actors on a cluster (``address``), as many at once as it has CPUs."""

    def __init__(self, address: str, base: dict[str, Any], work: Path, metric: str) -> None:
        try:
            import ray
        except ImportError as e:  # pragma: no cover - ray is in the `ray` extra
            raise ConfigError("--address needs Ray: pip install 'warmrec[ray]'") from e
        from warmrec.tuning.cluster import start_ray

        self.ray = ray
        self._ray_env = start_ray(address)
        n = max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1)(_RayWorker)
        self.actors = [actor.remote(base, str(work), metric) for _ in range(n)]
        self.workers = n

    def run(self, steps: list[dict[str, Any]], admit: Admit) -> Iterator[tuple[dict, dict]]:
        ray = self.ray
        queue = list(steps)
        free = list(self.actors)
        pending: dict[Any, tuple[Any, dict]] = {}
        while queue or pending:
            while queue and free:
                step = queue.pop(0)
                if not admit(step):
                    continue
                a = free.pop()
                pending[a.run.remote(step)] = (a, step)
            if not pending:
                break
            done, _ = ray.wait(list(pending), num_returns=1)
            a, step = pending.pop(done[0])
            free.append(a)
            yield step, ray.get(done[0])

    def close(self) -> None:
        for a in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(a)
        from warmrec.tuning.cluster import stop_ray

        stop_ray(self._ray_env)


# -- 3. the search -------------------------------------------------------------------------------
class AutoSearch:
    """Successive halving across families under a wall-clock budget (module docstring).

    ``state`` is the dict stored in ``OUT/auto_state.json``; ``t_start`` the ``time.time()``
    this invocation started at; ``budget_s`` the whole budget (the time spent by earlier
    invocations is ``state["spent_s"]``)."""

    def __init__(
        self,
        *,
        out: Path,
        ctx: StepContext,
        state: dict[str, Any],
        spaces: Mapping[str, Any],
        executor: Any,
        budget_s: float,
        t_start: float,
        progress: bool,
        seed: int,
    ) -> None:
        self.out = out
        self.ctx = ctx
        self.state = state
        self.spaces = spaces
        self.executor = executor
        self.budget_s = budget_s
        self.t_start = t_start
        self.spent_prev = float(state.get("spent_s", 0.0))
        self.end = t_start + max(0.0, budget_s - self.spent_prev)
        self.progress = progress
        self.seed = seed
        self.trials: dict[str, Trial] = {t["id"]: Trial.from_dict(t) for t in state["trials"]}
        self._studies: dict[str, Any] = {}
        self._asked: dict[str, Any] = {}
        self.label = _label(ctx.metric)
        self.n_valid = max(1, len(ctx.prepared.valid))
        self.n_test = len(ctx.prepared.test)

    # -- time ------------------------------------------------------------------------------------
    def clock(self, t: float | None = None) -> float:
        """Seconds of the whole run (all invocations) at ``time.time()`` ``t``."""
        return self.spent_prev + ((time.time() if t is None else t) - self.t_start)

    def unit(self) -> float:
        """The cost priors' unit: the quickest one-shot step measured so far (a fit and a
        validation scoring; the first step of a process also pays for imports, so the
        quickest, not the first); 1 s before any."""
        done = [t.seconds for t in self.trials.values() if t.seconds > 0 and not t.network]
        return max(0.02, min(done)) if done else 1.0

    def test_cost(self, t: Trial) -> float:
        """Estimated seconds to load ``t`` and score it on test."""
        ev = t.eval_s or max((x.eval_s for x in self.trials.values()), default=0.0) or self.unit()
        return 0.5 + ev * self.n_test / self.n_valid

    def reserve(self) -> float:
        """Seconds kept for the final step (module docstring, Budget)."""
        evals = [self.test_cost(t) for t in self.trials.values() if t.eval_s]
        test = max(evals, default=2.0 * self.unit())
        return 3.0 + 0.02 * self.budget_s + 1.5 * test + 0.5 + 1.5

    def search_deadline(self) -> float:
        return self.end - self.reserve()

    # -- state -----------------------------------------------------------------------------------
    def save(self) -> None:
        from warmrec.io import atomic_write_text

        self.state["trials"] = [asdict(t) for t in self.trials.values()]
        self.state["spent_s"] = self.clock()
        atomic_write_text(self.out / STATE, json.dumps(self.state, indent=1, default=str) + "\n")

    def say(self, msg: str) -> None:
        if self.progress:
            line = f"[{_clock(self.clock())}/{_clock(self.budget_s)}] {msg}"
            print(line, file=sys.stderr, flush=True)

    # -- families --------------------------------------------------------------------------------
    def of(self, fam: str) -> list[Trial]:
        return [t for t in self.trials.values() if t.family == fam]

    def best(self, fams: Any = None, kept: bool = False) -> Trial | None:
        pool = [
            t
            for t in self.trials.values()
            if t.value is not None and (fams is None or t.family in fams) and (t.kept or not kept)
        ]
        return max(pool, key=lambda t: (t.value, -t.seconds)) if pool else None

    def score(self, fam: str) -> float:
        """A family's rank in the halving: its best value; a network still improving counts
        its last gain once more."""
        b = self.best([fam])
        if b is None:
            return -math.inf
        gain = 0.0
        if b.status == "paused" and b.prev_value is not None:
            gain = max(0.0, b.value - b.prev_value)
        return b.value + gain

    def can_go_on(self, fam: str) -> bool:
        if fam in NETWORKS:
            trials = self.of(fam)
            if any(t.status in ("paused", "pending") for t in trials):
                return True
            return fam in self.spaces and any(t.value is not None for t in trials)
        return fam in self.spaces and any(t.value is not None for t in self.of(fam))

    # -- sampling ----------------------------------------------------------------------------------
    def study(self, fam: str) -> Any:
        if fam in self._studies:
            return self._studies[fam]
        import optuna

        from warmrec.tuning.results import _distributions

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space = self.spaces[fam]
        told = [t for t in self.of(fam) if t.origin == "sampled" and t.value is not None]
        index = [f.name for f in FAMILIES].index(fam)
        sampler = optuna.samplers.TPESampler(
            seed=self.seed * 1000 + index * 37 + len(told), n_startup_trials=4
        )
        study = optuna.create_study(direction="maximize", sampler=sampler)
        dists = _distributions(space)
        for t in told:  # a resumed search keeps what the sampler learnt
            params = {k: v for k, v in t.params.items() if k in dists}
            with contextlib.suppress(ValueError):
                study.add_trial(
                    optuna.trial.create_trial(
                        params=params,
                        distributions={k: dists[k] for k in params},
                        value=t.value,
                    )
                )
        self._studies[fam] = study
        return study

    def sample(self, fam: str, r: int) -> Trial | None:
        """A new configuration of ``fam`` from its space (None when the sampler only repeats
        configurations already tried: each repeat is told the score it had)."""
        space = self.spaces[fam]
        study = self.study(fam)
        tried = {json.dumps(t.params, sort_keys=True): t for t in self.of(fam) if t.params}
        for _ in range(4):
            ot = study.ask()
            values = space.suggest(ot)
            seen = tried.get(json.dumps(values, sort_keys=True))
            if seen is None:
                break
            if seen.value is None:
                import optuna

                study.tell(ot, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(ot, seen.value)
        else:
            return None
        cfgs = space.configs(values)
        n = len(self.of(fam))
        ex = bool(self.state["exclude_seen"].get(fam) or False)
        t = Trial(
            id=f"{fam}-{n:03d}",
            family=fam,
            origin="sampled",
            model=cfgs["model"],
            train=cfgs["train"],
            exclude_seen=ex,
            params=values,
            round=r,
        )
        self.trials[t.id] = t
        self._asked[t.id] = ot
        return t

    def tell(self, t: Trial) -> None:
        ot = self._asked.pop(t.id, None)
        if ot is None:
            return
        import optuna

        study = self._studies[t.family]
        if t.value is None:
            study.tell(ot, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(ot, t.value)

    # -- steps ---------------------------------------------------------------------------------
    def step_of(self, t: Trial, allowance: float) -> dict[str, Any]:
        undecided = self.state["exclude_seen"].get(t.family, False) is None
        return {
            "trial": t.id,
            "family": t.family,
            "kind": "hybrid" if t.family == HYBRID else "fit",
            "model": t.model,
            "train": t.train,
            "exclude_seen": t.exclude_seen,
            "train_exclude": t.train_exclude,
            "eval_both": bool(undecided and t.round == 0 and t.value is None)
            or (t.family == HYBRID and t.value is None and undecided),
            "spent": t.seconds,
            "allowance": allowance,
            # a step cut at the deadline loses at most ~CHECKPOINT_S of epochs
            "checkpoint_every": max(1, int(CHECKPOINT_S / t.epoch_s)) if t.epoch_s else 5,
            "deadline": self.search_deadline(),
            "members": list(t.members),
        }

    def estimate(self, t: Trial) -> float:
        """Seconds ``t``'s next step needs at least (one epoch for a network)."""
        fam = FAMILY.get(t.family)
        if t.family == HYBRID:
            members = [self.trials[m] for m in t.members if m in self.trials]
            return 1.0 + 3.0 * sum(m.eval_s or self.unit() for m in members)
        if t.network:
            if t.epoch_s:
                return 1.5 * t.epoch_s
            known = [x.epoch_s for x in self.of(t.family) if x.epoch_s]
            if known:
                return 2.0 * max(known)
            # a first epoch: the prior, and at least the seconds torch's optimiser set-up took
            # here the first time (measured 2.5-6 s on the shared 2-core machine)
            return max(NETWORK_START_S, self.unit() * (fam.prior if fam else 20.0))
        known = [x.seconds for x in self.of(t.family) if x.seconds and x.status == "done"]
        undecided = self.state["exclude_seen"].get(t.family) is None
        scorings = 2.0 if t.round == 0 and t.value is None and undecided else 1.0
        if known:
            return max(known) * scorings
        prior = fam.prior if fam else 5.0
        ev = self.scoring_s()
        if ev is None:
            return self.unit() * prior * scorings
        if t.family == "item2vec":
            # it scores validation after every epoch to keep the best one: on nowplaying-1m's
            # 121K items its defaults took 458 s (tuning_item2vec_nowplaying1m.md)
            scorings += float(t.model.get("epochs", 10))
        # a validation scoring costs about the same for every family (the catalogue times the
        # examples: 8 s on nowplaying-1m's 121K items), and so does saving the model: only the
        # fit scales by the prior
        return scorings * ev + self.step_overhead() + self.fit_unit() * prior

    def scoring_s(self) -> float | None:
        """Seconds of the slowest one-shot validation scoring measured so far (None before
        any)."""
        evals = [x.eval_s for x in self.trials.values() if x.eval_s and not x.network]
        return max(evals) if evals else None

    def _one_shot_done(self) -> list[Trial]:
        return [
            x
            for x in self.trials.values()
            if x.seconds > 0 and x.eval_s and not x.network and x.family != HYBRID
        ]

    def fit_unit(self) -> float:
        """The quickest one-shot fit measured (a step's time to the end of its fit; without
        that, the step less its validation scorings): the unit of the fit priors."""
        parts = [
            x.fit_s or x.seconds - x.eval_s * (2 if x.value_other is not None else 1)
            for x in self._one_shot_done()
        ]
        return max(0.02, min(parts)) if parts else self.unit()

    def step_overhead(self) -> float:
        """The least a one-shot step spent besides fitting and scoring (saving the model)."""
        parts = [
            x.seconds - x.fit_s - x.eval_s * (2 if x.value_other is not None else 1)
            for x in self._one_shot_done()
            if x.fit_s
        ]
        return max(0.0, min(parts)) if parts else 0.0

    def consensus(self) -> bool | None:
        """The treatment of seen items that the first :data:`CONSENSUS` families scored both
        ways all chose, each by :data:`CONSENSUS_MARGIN` (None before that, when they disagree
        or when one of them was a close call)."""
        both = [
            t
            for t in self.trials.values()
            if t.value_other is not None and t.family != HYBRID and t.origin == "defaults"
        ]
        choices = {t.exclude_seen for t in both}
        clear = all(
            t.value is not None and t.value >= (1 + CONSENSUS_MARGIN) * (t.value_other or 0.0)
            for t in both
        )
        return choices.pop() if len(both) >= CONSENSUS and len(choices) == 1 and clear else None

    def follow_consensus(self, step: dict[str, Any]) -> None:
        """A family's defaults not yet scored both ways take the treatment of seen items that
        :meth:`consensus` agreed on: one validation scoring instead of two (on nowplaying-1m's
        121K items a scoring takes 8-15 s)."""
        if not step.get("eval_both") or step["kind"] == "hybrid":
            return
        choice = self.consensus()
        if choice is None:
            return
        t = self.trials[step["trial"]]
        step["eval_both"] = False
        step["exclude_seen"] = t.exclude_seen = choice
        decided = self.state["exclude_seen"]
        for fam in [f for f, c in decided.items() if c is None]:
            if not any(x.value_other is not None for x in self.of(fam)):
                decided[fam] = choice
        if not self.state.get("consensus_note"):
            n = len([x for x in self.trials.values() if x.value_other is not None])
            self.state["consensus_note"] = (
                f"seen items: the first {n} families scored both ways all chose "
                f"{'excluded' if choice else 'kept'}; the remaining families' defaults were "
                "scored that way only (one validation scoring instead of two)"
            )
            self.say(self.state["consensus_note"])

    def admit(self, step: dict[str, Any]) -> bool:
        self.follow_consensus(step)
        t = self.trials[step["trial"]]
        dl = self.search_deadline()
        left = dl - time.time()
        if all(x.value is None for x in self.trials.values()):
            # the first score: without one there is nothing to pick, so it may use the reserve
            if time.time() >= self.end:
                return False
        elif left <= 0 or self.estimate(t) > left:
            return False
        elif (
            t.family == "item2vec"
            and t.value is None
            and self.state["round"] == 0
            and self.estimate(t) > ONE_SHOT_SHARE * left
        ):
            # Item2Vec's first step on a large catalogue must not take the time of the
            # families after it
            return False
        elif t.network and t.round == 0 and t.value is None and self.state["round"] == 0:
            # round 0 gives the networks' first epochs at most half of its time (the one-shot
            # families' defaults are cheap): under a short budget the later networks wait
            start = self.state.setdefault("round0_left", left)
            started = any(x.network and x.steps for x in self.trials.values())
            if started and left - self.estimate(t) < 0.5 * start:
                return False
        step["deadline"] = dl
        t.status = "running"
        self.save()
        return True

    def absorb(self, step: dict[str, Any], res: dict[str, Any]) -> None:
        t = self.trials[step["trial"]]
        t.seconds += float(res.get("seconds", 0.0))
        t.steps += 1
        status = res.get("status", "failed")
        if t.network and t.train_exclude is None:
            t.train_exclude = t.exclude_seen
        if status == "cut":
            t.status = "paused" if (t.network and t.value is not None) else "cut"
            if t.network and t.value is None:
                t.status = "pending"  # nothing measured yet: its checkpoint may resume it
                t.round = max(t.round, int(self.state["round"]))
                if t.steps >= 2:
                    t.status = "cut"
            self.say(f"{t.id} ({t.origin}): cut at the search deadline")
            self.save()
            return
        if status == "failed":
            t.status = "failed"
            t.error = res.get("error")
            self.tell(t)
            self.say(f"{t.id} ({t.origin}): failed: {t.error}")
            self.save()
            return
        t.status = status
        if res.get("epochs"):
            t.epochs = int(res["epochs"])
        t.warming = bool(res.get("warming", False)) and status == "paused"
        for key in ("eval_s", "fit_s", "epoch_s", "loss", "weight"):
            if res.get(key) is not None:
                setattr(t, key, res[key])
        if t.family == HYBRID and res.get("model"):
            t.model = res["model"]
        value = res.get("value")
        if value is not None:
            valid, ci = res.get("valid") or {}, res.get("ci")
            other = res.get("value_other")
            if other is not None and other > value:  # the other treatment of seen items wins
                t.exclude_seen = not t.exclude_seen
                other, value = value, other
                valid, ci = res.get("valid_other") or {}, res.get("ci_other")
            t.value_other = other
            t.prev_value = t.value
            t.value = float(value)
            t.valid, t.ci = valid, ci
            t.kept = bool(res.get("kept"))
        for _epoch, v, when in res.get("curve") or []:
            t.curve.append([self.clock(when), v])
        if value is not None and not res.get("curve"):
            t.curve.append([self.clock(), t.value])
        self.tell(t)
        self.prune()
        lead = self.best()
        what = f"{self.ctx.metric} {t.value:.4f}" if t.value is not None else "no score"
        if t.network:
            what = f"{'paused' if t.status == 'paused' else 'finished'} at epoch {t.epochs}, {what}"
        self.say(
            f"{t.id} ({t.origin}): {what} in {res.get('seconds', 0.0):.1f} s"
            + (f" | best {lead.id} {lead.value:.4f}" if lead is not None else "")
        )
        self.save()

    def prune(self) -> None:
        """Keep the model directories of each family's best and of the hybrid's members only;
        drop the checkpoints of networks that cannot go on."""
        keep = set(self.state.get("hybrid_pair") or [])
        fams = {t.family for t in self.trials.values()}
        for fam in fams:
            b = self.best([fam], kept=True)
            if b is not None:
                keep.add(b.id)
        w = self.ctx.work
        for t in self.trials.values():
            if t.kept and t.id not in keep:
                shutil.rmtree(w / "models" / t.id, ignore_errors=True)
                t.kept = False
            dropped = t.family in self.state.get("dropped", {})
            if t.network and (t.status in ("done", "failed", "cut") or dropped):
                shutil.rmtree(w / "ckpt" / t.id, ignore_errors=True)

    # -- rounds ----------------------------------------------------------------------------------
    def alive(self) -> list[str]:
        return [f for f in self.state["alive"] if f not in self.state.get("dropped", {})]

    def converged(self, fam: str) -> bool:
        """A one-shot family whose last :data:`PATIENCE` sampled trials did not improve it."""
        if fam in NETWORKS:
            return False
        sampled = [t for t in self.of(fam) if t.origin == "sampled" and t.status == "done"]
        if len(sampled) < PATIENCE:
            return False
        b = self.best([fam])
        recent = {t.id for t in sampled[-PATIENCE:]}
        return b is not None and b.id not in recent

    def halve(self, r: int) -> list[str]:
        """Before round ``r``: drop the families that cannot go on or have converged, then keep
        the best ``ceil(n / ETA)`` networks and the best ``ceil(n / ETA)`` of the others (the
        two pools are halved apart: a network after its first epochs is not comparable with a
        fully fitted kNN model, only with other networks given the same time)."""
        dropped = self.state.setdefault("dropped", {})
        alive = []
        for f in self.alive():
            if not any(t.steps for t in self.of(f)):
                dropped[f] = "not run: no time for its first step"
            elif not self.can_go_on(f):
                dropped[f] = f"nothing left to try after round {r - 1}"
            elif self.converged(f):
                dropped[f] = (
                    f"converged after round {r - 1} (no gain in its last {PATIENCE} samples)"
                )
            else:
                alive.append(f)
        kept: list[str] = []
        for pool in ([f for f in alive if f in NETWORKS], [f for f in alive if f not in NETWORKS]):
            ranked = sorted(pool, key=self.score, reverse=True)
            keep = max(1, math.ceil(len(ranked) / ETA))
            # a network still in its learning-rate warm-up is not judged yet
            warming = [f for f in ranked[keep:] if any(t.warming for t in self.of(f))]
            for f in ranked[keep:]:
                if f not in warming:
                    dropped[f] = f"dropped after round {r - 1}"
            kept += ranked[:keep] + warming
        kept.sort(key=self.score, reverse=True)
        if len(kept) < len(self.alive()):
            self.say(f"round {r}: going on with {', '.join(kept) or 'nothing'}")
        self.state["alive"] = kept
        return kept

    def rounds_left(self, alive: list[str] | int) -> int:
        """Rounds until each pool is down to one family, plus one."""
        if isinstance(alive, int):
            pools = [alive]
        else:
            pools = [sum(f in NETWORKS for f in alive), sum(f not in NETWORKS for f in alive)]
        return 1 + max(math.ceil(math.log(n) / math.log(ETA)) if n > 1 else 0 for n in pools)

    def plan_round(self, r: int) -> list[dict[str, Any]]:
        if r == 0:
            pending = [t for t in self.trials.values() if t.status == "pending" and t.round == 0]
            alive = self.alive()
            left = self.search_deadline() - time.time()
            slot = max(0.0, left) / self.rounds_left(alive) / max(1, len(alive))
            nets: dict[str, int] = {}
            for t in pending:
                if t.network:
                    nets[t.family] = nets.get(t.family, 0) + 1
            return [
                self.step_of(t, t.seconds + slot / nets[t.family] if t.network else math.inf)
                for t in pending
            ]
        alive = self.halve(r)
        if not alive:
            return []
        left = self.search_deadline() - time.time()
        if left <= 0:
            return []
        slot = left / self.rounds_left(alive) / len(alive)
        steps: list[dict[str, Any]] = []
        for fam in alive:
            trials = self.of(fam)
            waiting = [t for t in trials if t.status == "pending"]
            if fam in NETWORKS:
                paused = sorted(
                    (t for t in trials if t.status == "paused"),
                    key=lambda t: t.value if t.value is not None else -math.inf,
                    reverse=True,
                )
                promote = waiting + paused[: max(1, math.ceil(len(paused) / ETA))]
                if not paused:
                    promote = waiting
                epoch = max((t.epoch_s for t in trials if t.epoch_s), default=0.0)
                new = 0
                if fam in self.spaces and (not promote or slot >= 10 * max(epoch, self.unit())):
                    new = 1
                share = slot / max(1, len(promote) + new)
                for t in promote:
                    steps.append(self.step_of(t, t.seconds + share))
                for _ in range(new):
                    t = self.sample(fam, r)
                    if t is not None:
                        steps.append(self.step_of(t, share))
            else:
                for t in waiting:
                    steps.append(self.step_of(t, math.inf))
                if fam in self.spaces:
                    done = [t.seconds for t in trials if t.seconds and t.status == "done"]
                    est = (
                        max(done)
                        if done
                        else (self.scoring_s() or 0.0) + self.fit_unit() * (FAMILY[fam].prior)
                    )
                    n = max(1, min(20, int(slot // max(est, 1e-3))))
                    for _ in range(n):
                        t = self.sample(fam, r)
                        if t is not None:
                            steps.append(self.step_of(t, math.inf))
        return steps

    def decide_exclusion(self) -> None:
        """After round 0: each family keeps the treatment of seen items its best defaults had."""
        decided = self.state["exclude_seen"]
        for fam, choice in list(decided.items()):
            if choice is None:
                b = self.best([fam])
                if b is not None:
                    decided[fam] = b.exclude_seen
                    if b.value_other is not None:
                        self.state.setdefault("exclusion", {})[fam] = {
                            "excluded" if b.exclude_seen else "kept": b.value,
                            "kept" if b.exclude_seen else "excluded": b.value_other,
                        }

    def hybrid(self, r: int) -> None:
        """The hybrid of the best kNN model and the best network, when either changed: another
        trial, or the same one improved since (a paused network that trained on: a hybrid
        formed from its earlier weights would stand on the leaderboard with them)."""
        knn = self.best(KNN, kept=True)
        net = self.best(NETWORKS, kept=True)
        if knn is None or net is None:
            return
        pair = [knn.id, net.id]
        values = [knn.value, net.value]
        if pair == self.state.get("hybrid_pair") and values == self.state.get(
            "hybrid_values", values
        ):
            return
        n = len(self.of(HYBRID))
        ex = knn.exclude_seen if knn.exclude_seen == net.exclude_seen else False
        train = {k: v for k, v in net.train.items() if k not in _OWNED_TRAIN}
        t = Trial(
            id=f"hybrid-{n:03d}",
            family=HYBRID,
            origin=f"hybrid of {knn.id} + {net.id}",
            model={
                "network": net.family,
                "network_config": dict(net.model),
                "neighbours": knn.family,
                "neighbours_config": dict(knn.model),
                "select_metric": self.label,
            },
            train=train,
            exclude_seen=ex,
            members=pair,
            round=r,
        )
        self.trials[t.id] = t
        self.state["hybrid_pair"] = pair
        self.state["hybrid_values"] = values
        step = self.step_of(t, math.inf)
        step["eval_both"] = knn.exclude_seen != net.exclude_seen
        for s, res in self.executor.run([step], self.admit):
            self.absorb(s, res)
        if t.status == "pending":  # no time: forget it
            del self.trials[t.id]
            self.state["hybrid_pair"] = self.state["hybrid_values"] = None

    def run(self) -> None:
        """Rounds until the search deadline or until nothing is left to try."""
        while time.time() < self.search_deadline() or (
            time.time() < self.end and all(t.value is None for t in self.trials.values())
        ):
            r = int(self.state["round"])
            steps = self.plan_round(r)
            if not steps and r > 0:
                break  # (round 0 without steps: resumed after all its trials ran; go on)
            if r == 0:
                self.say(
                    f"round 0: the defaults of {len(self.alive())} families "
                    f"({len(steps)} trials); search ends at "
                    f"{_clock(self.clock(self.search_deadline()))}"
                )
            ran = 0
            for step, res in self.executor.run(steps, self.admit):
                self.absorb(step, res)
                ran += 1
            for t in self.trials.values():  # sampled but never admitted: not tried
                if t.status == "pending" and t.origin == "sampled" and t.round == r and r > 0:
                    t.status = "skipped"
                    self._asked.pop(t.id, None)
            if r == 0:
                self.decide_exclusion()
            self.hybrid(r)
            self.state["round"] = r + 1
            self.save()
            if ran == 0 and steps:
                break
        for t in self.trials.values():
            if t.status == "running":
                t.status = "paused" if t.network and t.value is not None else "cut"
        self.save()

    def clean_spec(self, t: Trial) -> Any:
        """The RunSpec of ``t`` without what the search owns (checkpoints, resuming): what
        ``winner.toml`` holds and the saved model records."""
        train = {k: v for k, v in t.train.items() if k not in _OWNED_TRAIN}
        if t.network:
            train["valid_metric"] = self.ctx.metric
            if t.train_exclude:
                train["exclude_seen"] = True
        return self.ctx.spec(t.family, t.model, train, t.exclude_seen)


# -- 4. the final step and the report -------------------------------------------------------------
def _fmt(v: float | None, ci: list[float] | None = None) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def _tried(trials: list[Trial]) -> str:
    kinds = {"defaults": 0, "variants": 0, "sampled": 0, "formed": 0}
    for t in trials:
        if t.origin == "defaults":
            kinds["defaults"] += 1
        elif t.origin.startswith("defaults,"):
            kinds["variants"] += 1
        elif t.origin == "sampled":
            kinds["sampled"] += 1
        else:
            kinds["formed"] += 1
    states: dict[str, int] = {}
    for t in trials:
        states[t.status] = states.get(t.status, 0) + 1
    what = ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
    how = ", ".join(f"{n} {k}" for k, n in sorted(states.items()))
    return f"{what} ({how})"


def _short(t: Trial) -> str:
    if t.family == HYBRID:
        return f"weight {t.weight:.1f}" if t.weight is not None else ""
    cfg = {k.split(".", 1)[1]: v for k, v in t.params.items()} if t.params else {}
    if not cfg and t.origin.startswith("defaults,"):
        return t.origin.split(",", 1)[1].strip()
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in cfg.items())


def rank_bests(bests: Iterable[Trial]) -> list[Trial]:
    """Each family's best, best first: by validation value; on a tie a single model before a
    hybrid (a hybrid at weight 0 or 1 ranks exactly as one of its members, and serving it would
    score both), then the quicker."""
    return sorted(bests, key=lambda t: (t.value, t.family != HYBRID, -t.seconds), reverse=True)


def _plot(search: AutoSearch, path: Path, winner: Trial | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from warmrec.io import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(7, 4.5))
    fams = [f.name for f in FAMILIES] + [HYBRID]
    colours = plt.get_cmap("tab20").colors
    for i, fam in enumerate(fams):
        pts = sorted(p for t in search.of(fam) for p in t.curve)
        if not pts:
            continue
        xs, ys, best = [], [], -math.inf
        for x, y in pts:
            best = max(best, y)
            xs.append(x)
            ys.append(best)
        style = "--" if fam == HYBRID else "-"
        c = colours[(2 * i) % 20 + (2 * i) // 20]
        ax.step(xs, ys, where="post", ls=style, lw=1.4, label=fam, color=c)
        ax.plot(xs, ys, ".", ms=4, color=c)
    if winner is not None:
        ax.axhline(winner.value, color="k", lw=0.6, ls=":")
    ax.set_xlabel("seconds since the start")
    ax.set_ylabel(f"best validation {search.ctx.metric}")
    ax.set_title("best validation score over time, per family")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def finish(search: AutoSearch, plan_notes: list[str], profile: LogProfile) -> dict[str, Any]:
    """Score the winner on test, save it, score the other families' bests on test while time is
    left, and write the leaderboard, plot, report and summary (module docstring, Output)."""
    from warmrec.experiments.spec import evaluate_run, record_run, save_run
    from warmrec.io import atomic_write_text
    from warmrec.models.base import Recommender
    from warmrec.tuning.results import dump_toml

    if search.state.get("consensus_note"):
        plan_notes = [*plan_notes, search.state["consensus_note"]]

    s = search
    out = s.out
    t0 = time.time()
    s.state["phase"] = "final"
    s.save()
    prepared = s.ctx.prepared
    label = s.label
    bests = {}
    for fam in {t.family for t in s.trials.values()}:
        b = s.best([fam], kept=True)
        if b is not None:
            bests[fam] = b
    ranked = rank_bests(bests.values())
    winner = ranked[0] if ranked else None
    model_dir = out / "model"
    toml_path = out / "winner.toml"
    for t in ranked:
        if t is not winner and time.time() + s.test_cost(t) > s.end:
            continue  # no time left for this one: its test column stays empty
        model = Recommender.load(s.ctx.work / "models" / t.id)
        spec = s.clean_spec(t)
        with warnings_quiet():
            res = evaluate_run(model, prepared.test, spec, prepared)
        t.test = {k: float(v) for k, v in res.summary.items()}
        t.test_ci = _ci(res.per_example[label])
        if t is winner:
            record_run(
                model,
                spec,
                prepared,
                fit_seconds=t.seconds,
                valid=t.valid,
                n_valid=len(prepared.valid),
            )
            if model.meta.run is not None and t.loss:
                model.meta.run.loss = t.loss
            save_run(model, model_dir)
            head = [
                f"# warmrec auto's pick: {t.id} ({t.origin}), validation {label} "
                f"{t.value:.4f}, test {t.test.get(label, float('nan')):.4f}",
                f"# `warmrec train --config {toml_path.name} --out DIR` fits it again from "
                "scratch; the fitted model is in model/",
            ]
            if t.network:
                head.append(
                    f"# (the search trained it {t.epochs} epochs, paused and resumed by the "
                    "scheduler; the refit trains up to train.epochs with early stopping)"
                )
            atomic_write_text(
                toml_path, "\n".join(head) + "\n" + dump_toml(spec.to_config(absolute=True))
            )
            s.say(f"winner {t.id}: test {label} {t.test[label]:.4f}, saved to {model_dir}")
        s.save()
    final_s = time.time() - t0
    # -- tables --------------------------------------------------------------------------------
    dropped = s.state.get("dropped", {})
    rows = []
    for rank, t in enumerate(ranked, 1):
        fam_trials = s.of(t.family)
        rows.append(
            {
                "rank": rank,
                "family": t.family,
                "trial": t.id,
                "origin": t.origin,
                "settings": _short(t),
                f"valid_{label}": t.value,
                "valid_ci": t.ci,
                f"test_{label}": t.test.get(label),
                "test_ci": t.test_ci,
                "valid": t.valid,
                "test": t.test,
                "seconds": t.seconds,
                "family_seconds": sum(x.seconds for x in fam_trials),
                "epochs": t.epochs,
                "seen_items": "excluded" if t.exclude_seen else "kept",
                "tried": _tried(fam_trials),
                "status": dropped.get(t.family, "to the end"),
            }
        )
    scored = {t.family for t in ranked}
    for fam in s.state["families"] + [HYBRID]:
        if fam in scored or not s.of(fam):
            continue
        fam_trials = s.of(fam)
        errs = [t.error for t in fam_trials if t.error]
        rows.append(
            {
                "rank": None,
                "family": fam,
                "trial": "-",
                "origin": "-",
                "settings": "",
                f"valid_{label}": None,
                "valid_ci": None,
                f"test_{label}": None,
                "test_ci": None,
                "valid": {},
                "test": {},
                "seconds": 0.0,
                "family_seconds": sum(x.seconds for x in fam_trials),
                "epochs": 0,
                "seen_items": "-",
                "tried": _tried(fam_trials),
                "status": (errs[0] if errs else dropped.get(fam, "no time")),
            }
        )
    md = [
        f"| rank | family | best trial | settings | valid {label} [95 % CI] | test {label} "
        "[95 % CI] | best's time (s) | family's time (s) | epochs | seen items | tried | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            "| "
            + " | ".join(
                [
                    str(r["rank"] or "-"),
                    r["family"],
                    f"{r['trial']} ({r['origin']})" if r["trial"] != "-" else "-",
                    r["settings"].replace("|", "/"),
                    _fmt(r[f"valid_{label}"], r["valid_ci"]),
                    _fmt(r[f"test_{label}"], r["test_ci"]),
                    f"{r['seconds']:.1f}",
                    f"{r['family_seconds']:.1f}",
                    str(r["epochs"] or "-"),
                    r["seen_items"],
                    r["tried"],
                    str(r["status"]).replace("|", "/"),
                ]
            )
            + " |"
        )
    for fam, why in s.state.get("left_out", {}).items():
        md.append(f"| - | {fam} | - | - | - | - | - | - | - | - | left out | {why} |")
    table = "\n".join(md) + "\n"
    atomic_write_text(out / "leaderboard.md", table)
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    cols = ["rank", "family", "trial", "origin", "settings", f"valid_{label}", "valid_lo"]
    cols += ["valid_hi", f"test_{label}", "test_lo", "test_hi", "seconds", "family_seconds"]
    cols += ["epochs", "seen_items", "tried", "status"]
    w.writerow(cols)
    for r in rows:
        vci, tci = r["valid_ci"] or [None, None], r["test_ci"] or [None, None]
        w.writerow(
            [r["rank"], r["family"], r["trial"], r["origin"], r["settings"]]
            + [r[f"valid_{label}"], vci[0], vci[1], r[f"test_{label}"], tci[0], tci[1]]
            + [round(r["seconds"], 3), round(r["family_seconds"], 3), r["epochs"]]
            + [r["seen_items"], r["tried"], r["status"]]
        )
    atomic_write_text(out / "leaderboard.csv", buf.getvalue())
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(
        ["trial", "family", "origin", "status", f"valid_{label}", "seen_items", "epochs"]
        + ["seconds", "round", "settings", "error"]
    )
    for t in s.trials.values():
        w.writerow(
            [t.id, t.family, t.origin, t.status, t.value, "excluded" if t.exclude_seen else "kept"]
            + [t.epochs, round(t.seconds, 3), t.round, json.dumps(t.model), t.error or ""]
        )
    atomic_write_text(out / "trials.csv", buf.getvalue())
    plotted = True
    if time.time() + 2.0 < s.end + 0.02 * s.budget_s:
        _plot(s, out / "progress.png", winner)
    else:
        plotted = False
    # -- report and summary --------------------------------------------------------------------
    elapsed = s.clock()
    timings = dict(s.state.get("timings", {}))
    timings.update({"final_s": final_s, "elapsed_s": elapsed})
    load = list(s.state.get("load", []))
    with contextlib.suppress(OSError):
        load.append(round(__import__("os").getloadavg()[0], 2))
    summary = {
        "data": s.state["data"],
        "metric": s.ctx.metric,
        "budget_s": s.budget_s,
        "elapsed_s": elapsed,
        "timings": timings,
        "load_1min": load,
        "rounds": s.state["round"],
        "winner": None
        if winner is None
        else {
            "trial": winner.id,
            "family": winner.family,
            "origin": winner.origin,
            "valid": winner.valid,
            "valid_ci": winner.ci,
            "test": winner.test,
            "test_ci": winner.test_ci,
            "seen_items": "excluded" if winner.exclude_seen else "kept",
            "model_dir": str(model_dir),
            "config": str(toml_path),
        },
        "leaderboard": rows,
        "profile": asdict(profile),
        "notes": plan_notes,
        "exclusion": s.state.get("exclusion", {}),
        "trials": len(s.trials),
        "plot": str(out / "progress.png") if plotted else None,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    atomic_write_text(out / "report.md", _report(s, summary, profile, plan_notes, table))
    s.state["phase"] = "done" if winner is not None else "search"
    s.save()
    if winner is not None:  # a finished run is not resumed: its checkpoints can go
        shutil.rmtree(s.ctx.work / "ckpt", ignore_errors=True)
    return summary


def _report(s: AutoSearch, summary: dict, profile: LogProfile, notes: list[str], table: str) -> str:
    label = s.label
    t = summary["timings"]
    lines = [
        f"# warmrec auto: {summary['data'].get('path', 'data given in Python')}",
        "",
        f"Budget {summary['budget_s']:.0f} s, metric {s.ctx.metric} on validation; ended after "
        f"{summary['elapsed_s']:.1f} s (reading and describing {t.get('prepare_s', 0):.1f} s, "
        f"final step {t.get('final_s', 0):.1f} s); {summary['rounds']} rounds, "
        f"{summary['trials']} trials; 1-minute load average "
        + " -> ".join(f"{x:g}" for x in summary["load_1min"])
        + f" on {__import__('os').cpu_count()} cores.",
        "",
        "## The log",
        "",
        *[f"- {x}" for x in profile.lines()],
        "",
        "## How it steered the search",
        "",
        *[f"- {x}" for x in notes],
    ]
    for fam, v in sorted(summary["exclusion"].items()):
        lines.append(
            f"- {fam}: seen items kept {v['kept']:.4f}, excluded {v['excluded']:.4f} "
            f"-> {'excluded' if v['excluded'] > v['kept'] else 'kept'}"
        )
    lines += ["", "## Leaderboard", "", table]
    w = summary["winner"]
    if w is None:
        lines.append("No trial was fitted and scored within the budget.")
    else:
        lines += [
            "## The pick",
            "",
            f"{w['trial']} ({w['origin']}): validation {label} {_fmt(w['valid'].get(label), w['valid_ci'])}, "
            f"test {_fmt(w['test'].get(label), w['test_ci'])}; seen items {w['seen_items']}.",
            "",
            f"- model directory: `{w['model_dir']}`: `warmrec evaluate {w['model_dir']}`, "
            f"`warmrec predict {w['model_dir']} --out top.csv"
            + (" --exclude-seen`" if w["seen_items"] == "excluded" else "`")
            + f", `warmrec serve {w['model_dir']}`"
            + (' (requests with `"exclude_seen": true`)' if w["seen_items"] == "excluded" else ""),
            f"- its RunSpec: `{w['config']}`",
            "- best validation score over time per family: `progress.png`",
        ]
    return "\n".join(lines) + "\n"


# -- 5. the entry point ---------------------------------------------------------------------------
def _state_args(
    data: Any, split: Any, metric: str, families: Any, seed: int, spaces: Any
) -> dict[str, Any]:
    """What a resumed run must share with the first (its plan, trials and checkpoints were made
    under them): the arguments, the search spaces' content, and the trainer defaults the
    networks resolve (:func:`~warmrec.training.defaults.trainer_defaults_key`)."""
    from warmrec.training.defaults import trainer_defaults_key

    args = {
        "data": data,
        "split": split,
        "metric": metric,
        "families": sorted(families) if families else None,
        "seed": seed,
        # what the search draws from (its files' content)
        "spaces": {name: sp.record() for name, sp in sorted(find_spaces(spaces).items())},
        "trainer_defaults": trainer_defaults_key(),
    }
    return json.loads(json.dumps(args, default=str))  # as the state file reads them back


def auto(
    data: Any,
    *,
    out: str | Path,
    budget: str | float = "10m",
    metric: str = "ndcg@10",
    split: str | Mapping[str, Any] | None = None,
    families: list[str] | None = None,
    spaces: str | Path | None = None,
    address: str | None = None,
    seed: int = 0,
    progress: bool | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """Choose a recommender for a log within a wall-clock budget (see the module docstring).

    ``data``: a path (file, folder or dataset name), a ``[data]`` table (path and read options),
    or a canonical table / :class:`~warmrec.data.readers.Interactions` in memory (local runs
    only; the saved model then records no data source). ``split``: a method name or a
    ``[split]`` table (default: the default split policy). ``families``: a subset of
    :data:`FAMILIES` (default all that fit the log). ``spaces``: a folder of
    ``<family>.toml`` search spaces (default ``configs/spaces``). ``address``: ``HOST:PORT`` of
    a Ray cluster (or ``"local"`` for Ray on this machine). ``progress``: a line per step on
    stderr (default: when stderr is a terminal). ``started``: ``time.time()`` the budget counts
    from (default now; the CLI passes its own start).

    Returns the summary also written to ``OUT/summary.json``; the winner is in ``OUT/model``."""
    t_start = time.time() if started is None else float(started)
    budget_s = parse_budget(budget)
    from warmrec.evaluation.metrics import RANK_METRICS, parse_metric
    from warmrec.experiments.spec import prepare_run, spec_from_config
    from warmrec.io import check_output

    m = parse_metric(metric)
    if m.name not in RANK_METRICS:
        raise ConfigError(
            f"--metric: expected a rank metric ({', '.join(RANK_METRICS)}) at a cut-off, "
            f"found {metric!r}"
        )
    metric = m.label
    if families is not None:
        names = [f.name for f in FAMILIES]
        bad = [f for f in families if f not in names]
        if bad or not families:
            raise ConfigError(
                f"--families: expected names among {', '.join(names)}, found "
                f"{', '.join(bad) if bad else 'none'}"
            )
    out = check_output(out, kind="dir")
    frame = None
    if isinstance(data, (str, Path)):
        data_cfg: dict[str, Any] | None = {"path": str(data)}
    elif isinstance(data, Mapping):
        data_cfg = dict(data)
    else:
        data_cfg, frame = None, data
        if address is not None:
            raise ConfigError(
                "--address: a Ray cluster reads the log from a path; give data as a path"
            )
    split_cfg = {"method": split} if isinstance(split, str) else dict(split or {})
    base_cfg: dict[str, Any] = {"split": split_cfg}
    if data_cfg is not None:
        base_cfg["data"] = data_cfg
    base_spec = spec_from_config(base_cfg)
    args = _state_args(data_cfg or {"in_memory": True}, split_cfg, metric, families, seed, spaces)
    state_path = out / STATE
    state: dict[str, Any] | None = None
    if state_path.exists():
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"{state_path}: not a readable auto state ({e}); move it away or choose "
                "another --out"
            ) from None
        if state.get("version") != STATE_VERSION:
            raise ConfigError(
                f"{state_path}: auto state version {state.get('version')!r}, expected "
                f"{STATE_VERSION}; choose another --out"
            )
        old = state.get("args", {})
        diff = [k for k in args if old.get(k) != args[k]]
        if diff:
            k = diff[0]
            was, now = repr(old.get(k)), repr(args[k])
            what = f"{k} {was} there, {now} now" if len(was + now) <= 120 else f"{k} differ"
            raise ConfigError(
                f"--out {out}: holds an auto run with other settings ({what}); use the same "
                "settings to resume it, or another --out"
            )
        if state.get("phase") == "done" and (out / "summary.json").exists():
            return json.loads((out / "summary.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    prepared = prepare_run(base_spec, data=frame)
    base = prepared.info["spec"]
    profile = describe_log(prepared)
    space_map = find_spaces(spaces)
    if state is None:
        plan = plan_portfolio(profile, families, spaces=space_map)
        state = {
            "version": STATE_VERSION,
            "args": args,
            "data": data_cfg or {},
            "phase": "search",
            "spent_s": 0.0,
            "round": 0,
            "families": plan.families,
            "alive": list(plan.families),
            "dropped": {},
            "left_out": plan.left_out,
            "exclude_seen": plan.exclude_seen,
            "notes": plan.notes,
            "hybrid_pair": None,
            "trials": [asdict(t) for t in plan.trials],
            "timings": {},
            "load": [],
            "invocations": 0,
        }
    else:
        for t in state["trials"]:  # what a kill interrupted runs again (a network resumes)
            if t["status"] == "running":
                t["status"] = (
                    "paused" if (t["family"] in NETWORKS and t.get("value")) else "pending"
                )
    state["invocations"] = int(state.get("invocations", 0)) + 1
    with contextlib.suppress(OSError):
        state.setdefault("load", []).append(round(__import__("os").getloadavg()[0], 2))
    show = bool(getattr(sys.stderr, "isatty", lambda: False)()) if progress is None else progress
    ctx = StepContext(prepared, base, work, metric)
    if address is not None:
        executor: Any = RayExecutor(address, base.to_config(absolute=True), work, metric)
    else:
        executor = LocalExecutor(ctx)
    try:
        search = AutoSearch(
            out=out,
            ctx=ctx,
            state=state,
            spaces=space_map,
            executor=executor,
            budget_s=budget_s,
            t_start=t_start,
            progress=show,
            seed=seed,
        )
        if state["invocations"] == 1:
            for line in profile.lines():
                search.say(f"log: {line}")
            for note in state["notes"]:
                search.say(f"plan: {note}")
        else:
            search.say(
                f"resuming: {sum(t.value is not None for t in search.trials.values())} trials "
                f"scored, {search.spent_prev:.0f} s of {budget_s:.0f} s spent"
            )
        if state["invocations"] == 1:
            state["timings"] = {"prepare_s": time.time() - t_start}
        search.save()
        search.run()
        summary = finish(search, state["notes"], profile)
    finally:
        executor.close()
    if summary["winner"] is None:
        raise ConfigError(
            f"--budget {budget}: no model was fitted and scored within the budget (starting, "
            f"reading and describing the log took {state['timings'].get('prepare_s', 0):.1f} "
            "s); give more time"
        )
    return summary

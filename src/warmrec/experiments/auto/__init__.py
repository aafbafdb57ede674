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
- SSE-PT only where the log has users, BST only where it has item or user features, TF-IDF
  (content) only where its items have text (``--items``, a RecBole ``.item`` file, MARS);
- *item text*: SASRec is also tried with id + text item vectors and the text prior
  (:data:`~warmrec.experiments.auto.plan.TEXT_VARIANTS`), and with text vectors alone where
  validation targets fall on items without a training event (a growing catalogue split by
  time: an ID-only model cannot rank those); the vectors are read from the cache or encoded
  before the search where that is estimated to fit a quarter of the budget, else the variants
  are left out with the reason (:mod:`warmrec.experiments.auto.text`); Fresh (TF-IDF plus a
  learnt bonus for such items and the catalogue order of integer ids) joins there too, and
  FeatRank (a log-linear ranker over TF-IDF, transitions, the catalogue order, repeats and
  shared tags) joins wherever items have text (also with the catalogue's cold share where
  validation targets fall on new items). Where
  the catalogue has many more items without training events than validation has targets on
  them, the report suggests ``cold_target_share``: the validation figure that chooses then
  weighs those targets as a given share, or the catalogue's
  (:func:`~warmrec.experiments.auto.steps.cold_weights`).

**2. Search** (:class:`AutoSearch`): every family (:data:`FAMILIES`) first runs at its defaults
(and the variants above), then samples its built-in search space (``warmrec/tuning/spaces/<family>.toml``,
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
After each round the hybrid of the best partner (a session kNN or FeatRank,
:data:`~warmrec.experiments.auto.plan.PARTNERS`) and the best network
(:class:`~warmrec.models.hybrid.Hybrid`, its weight chosen on validation) is formed from the
two fitted members; where the plan has Fresh (validation targets on items
without training events), Fresh is then also formed over the best model of the other families
(the hybrid included) whenever that improved (:class:`~warmrec.models.fresh.Fresh`, the Fresh
family's settings, its weights chosen on validation): the bonus for new items and the catalogue
order carried by whatever ranks the known ones best. A formed model's validation value is out
of fold (:func:`~warmrec.experiments.auto.steps.validation_halves`: its weights chosen on one
half of the validation sequences and scored on the other, both ways; in sample its grid, which
holds its members, would beat them by luck), and one that ties one of its members loses the tie
to it. So is a trial of a family whose fit fits weights to the validation targets
(``Recommender.fits_on_validation``: FeatRank, Fresh), fitted twice more on the halves; its
in-sample figures stay in the trial's record as ``value_in_sample`` / ``valid_in_sample``. Other
ties are settled without a clock (:func:`~warmrec.experiments.auto.plan.tie_order`: the cheaper
family by its cost prior, then the portfolio's order, then the earlier trial), so two runs with
the same seed that reach the same values pick the same winner.

**3. Budget.** The budget is wall-clock time for the whole command: start-up (the CLI counts
from the process start), reading, describing, searching and the final step. The search stops at
``budget - reserve``; the reserve is what the final step is estimated to need: 2 % of the
budget, 1.5 x the longest test scoring (estimated from the validation scorings measured in the
search), 2 s for saving and the report and 3 s for the interpreter's exit (up to 4 s were
measured with torch loaded, at load 12 on the shared 2 cores). No step starts that is estimated not to end before the
search deadline (a one-shot family's cost from its own steps, else a prior in units of the
quickest step's fit plus the validation scorings measured, which cost about the same for every
family; a network's from its epochs, at least :data:`NETWORK_START_S` for a first one),
except the very first, which may use the reserve: without one score there is nothing to pick
(it is cut only at the budget's end, and a network among them still pauses after the epoch that
gave it a score once the next would not end before the search deadline). A
network pauses at the end of an epoch when the next one would not end before the deadline, and
an epoch that runs into it anyway is cut
(:func:`~warmrec.experiments.auto.steps._deadline_hooks`): the trial keeps its last
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
many at once as the cluster has CPUs; ``OUT`` must be on a file system every node sees. The
budget holds there too: a step still running 2 % of the budget past the search deadline (the
first score's: at the budget's end, less Ray's shutdown) is cut and its actor killed -- the
time before a step starts on an actor (Ray starting it, the actor reading and splitting the
log) escapes the step's own deadline checks -- and Ray is shut down before the final step, in
time the reserve keeps for it.

**Modules.** :mod:`~warmrec.experiments.auto.profile` (1, the log);
:mod:`~warmrec.experiments.auto.plan` (the families, a trial, the round-0 plan);
:mod:`~warmrec.experiments.auto.search` (2, the search) with its mixins
:mod:`~warmrec.experiments.auto.budget` (3, the clock and the cost estimates) and
:mod:`~warmrec.experiments.auto.sampling` (Optuna per family); :mod:`~warmrec.experiments.auto.steps`
(one step) and :mod:`~warmrec.experiments.auto.executors` (6, where steps run);
:mod:`~warmrec.experiments.auto.report` (5, the final step and its files);
:mod:`~warmrec.experiments.auto.run` (the entry point, and 4, resuming).
"""

from __future__ import annotations

from warmrec.experiments.auto.budget import NETWORK_START_S, SearchBudget, parse_budget
from warmrec.experiments.auto.executors import Admit, LocalExecutor, RayExecutor
from warmrec.experiments.auto.plan import (
    FAMILIES,
    FAMILY,
    FULL_SOFTMAX_MAX_ITEMS,
    HYBRID,
    KNN,
    NETWORKS,
    PARTNERS,
    Family,
    Plan,
    Trial,
    find_spaces,
    plan_portfolio,
    rank_bests,
)
from warmrec.experiments.auto.profile import LogProfile, describe_log, target_seen_share
from warmrec.experiments.auto.report import finish
from warmrec.experiments.auto.run import auto
from warmrec.experiments.auto.sampling import FamilySampler
from warmrec.experiments.auto.search import (
    CHECKPOINT_S,
    CONSENSUS,
    CONSENSUS_MARGIN,
    ETA,
    ONE_SHOT_SHARE,
    PATIENCE,
    STATE,
    STATE_VERSION,
    AutoSearch,
)
from warmrec.experiments.auto.steps import (
    BOOT,
    StepContext,
    network_train,
    run_step,
    warnings_quiet,
)

__all__ = [
    "BOOT",
    "CHECKPOINT_S",
    "CONSENSUS",
    "CONSENSUS_MARGIN",
    "ETA",
    "FAMILIES",
    "FAMILY",
    "FULL_SOFTMAX_MAX_ITEMS",
    "HYBRID",
    "KNN",
    "NETWORKS",
    "NETWORK_START_S",
    "ONE_SHOT_SHARE",
    "PARTNERS",
    "PATIENCE",
    "STATE",
    "STATE_VERSION",
    "Admit",
    "AutoSearch",
    "Family",
    "FamilySampler",
    "LocalExecutor",
    "LogProfile",
    "Plan",
    "RayExecutor",
    "SearchBudget",
    "StepContext",
    "Trial",
    "auto",
    "describe_log",
    "find_spaces",
    "finish",
    "network_train",
    "parse_budget",
    "plan_portfolio",
    "rank_bests",
    "run_step",
    "target_seen_share",
    "warnings_quiet",
]

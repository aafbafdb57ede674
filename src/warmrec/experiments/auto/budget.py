"""``warmrec auto``, 3: the budget: ``--budget`` parsed (:func:`parse_budget`), and the search's
clock, the reserve kept for the final step and what a step is estimated to cost
(:class:`SearchBudget`)."""

from __future__ import annotations

import math
import re
import time

from warmrec.errors import ConfigError
from warmrec.experiments.auto.plan import FAMILY, FEATRANK, GROWING, HYBRID, Trial
from warmrec.models.featrank import first_step_values

NETWORK_START_S = 3.0
"""The least a network's first step is expected to take (imports, optimiser set-up, one epoch)."""

FEATRANK_S_PER_VALUE = 2.0e-7
"""Seconds of a FeatRank fit per feature value of its first step
(:func:`~warmrec.models.featrank.first_step_values`): measured 195 ns on MARS (400 million
values, 78 s) and 203 ns on ml-100k (200 million, 41 s) with three processes on the shared
2-core machine (AMD EPYC, one torch thread). The loaded figure, not a quieter one: a step
estimated too low is started, cut at the deadline and wasted with all its seconds (on MARS
under a 90 s budget it took 77.5 s and left nothing to the networks), while one estimated too
high only waits for a longer budget. The fit's other steps are the family's prior."""

OVERRUN_SHARE = 0.02
"""The reserve's share of the budget for steps that run past the search deadline: a Ray
executor waits that long past it for a step in flight before it cuts it."""

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


OUT_OF_FOLD = 2.0
"""How many times a formed model's step does its work: fitted and scored on the whole
validation set, then once more over its two halves (fitted on one, the other scored: out of
fold, :func:`~warmrec.experiments.auto.steps.validation_halves`)."""


class SearchBudget:
    """:class:`~warmrec.experiments.auto.search.AutoSearch`'s clock and cost estimates (the
    package docstring, Budget), a mixin: it reads the search's ``trials``, ``state``,
    ``budget_s``, ``end``, ``t_start``, ``spent_prev``, ``n_valid`` and ``n_test`` and its
    :meth:`~warmrec.experiments.auto.search.AutoSearch.of`."""

    # -- time ------------------------------------------------------------------------------------
    def clock(self, t: float | None = None) -> float:
        """Seconds of the whole run (all invocations) at ``time.time()`` ``t``."""
        return self.spent_prev + ((time.time() if t is None else t) - self.t_start)

    def unit(self) -> float:
        """The cost priors' unit: the quickest one-shot step measured so far (a fit and a
        validation scoring; the first step of a process also pays for imports, so the
        quickest, not the first); 1 s before any. A failed or cut step is none: a family
        that failed at once had made the unit 0.02 s, and with it every prior (a network's first
        step estimated at 3 s where Pop's step took 2 s and the prior is 20 of them)."""
        done = [
            t.seconds
            for t in self.trials.values()
            if t.seconds > 0 and not t.network and t.status not in ("failed", "cut")
        ]
        return max(0.02, min(done)) if done else 1.0

    def test_cost(self, t: Trial) -> float:
        """Estimated seconds to load ``t`` and score it on test."""
        ev = t.eval_s or max((x.eval_s for x in self.trials.values()), default=0.0) or self.unit()
        return 0.5 + ev * self.n_test / self.n_valid

    def reserve(self) -> float:
        """Seconds kept for the final step (package docstring, Budget), and for closing the
        executor (Ray's shutdown, :data:`~warmrec.experiments.auto.executors.RAY_CLOSE_S`)."""
        evals = [self.test_cost(t) for t in self.trials.values() if t.eval_s]
        test = max(evals, default=2.0 * self.unit())
        return 3.0 + OVERRUN_SHARE * self.budget_s + 1.5 * test + 0.5 + 1.5 + self.close_s()

    def close_s(self) -> float:
        """Seconds the executor's close takes (0 for the local one)."""
        return float(getattr(getattr(self, "executor", None), "close_s", 0.0))

    def search_deadline(self) -> float:
        return self.end - self.reserve()

    # -- what a step costs -----------------------------------------------------------------------
    def estimate(self, t: Trial) -> float:
        """Seconds ``t``'s next step needs at least (one epoch for a network)."""
        fam = FAMILY.get(t.family)
        if t.family == HYBRID:
            return 1.0 + self.hybrid_factor(t) * self._members_eval(t)
        if t.members:  # Fresh over a saved model: its base scores validation twice, plus the
            # grid, whose cost the Fresh family's own steps (TF-IDF's fit, the grid, a scoring)
            # bound; all of it twice, since it is valued out of fold too (its weights chosen
            # on each half of validation, the other half scored)
            own = [x.seconds for x in self.of(t.family) if not x.members and x.status == "done"]
            grid = max(own) if own else self.unit() * (fam.prior if fam else 5.0)
            return 1.0 + OUT_OF_FOLD * (2.0 * self._members_eval(t) + grid)
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
        first = self.first_step_s(t)
        ev = self.scoring_s()
        if ev is None:
            return self.unit() * prior * scorings + first
        if t.family == "item2vec":
            # it scores validation after every epoch to keep the best one: on nowplaying-1m's
            # 121K items its defaults took 458 s (tuning_item2vec_nowplaying1m.md)
            scorings += float(t.model.get("epochs", 10))
        # a validation scoring costs about the same for every family (the catalogue times the
        # examples: 8 s on nowplaying-1m's 121K items), and so does saving the model: only the
        # fit scales by the prior. A family that fits weights on validation (FeatRank, Fresh)
        # is fitted again on its halves to be valued out of fold: its fit counts that often.
        # FeatRank's first step (on training prefixes) is fitted once and kept for the refits;
        # it grows with the catalogue and the prefixes (~1000x Pop's fit on MARS, ~5x on small
        # logs: a prior alone had a step started with 36 s left cut and wasted there)
        fits = OUT_OF_FOLD if t.family in GROWING else 1.0
        return scorings * ev + self.step_overhead() + fits * self.fit_unit() * prior + first

    def first_step_s(self, t: Trial) -> float:
        """FeatRank: the seconds of its first step, from the feature values it will read
        (:data:`FEATRANK_S_PER_VALUE`); 0 for the other families, or without the data."""
        ctx = getattr(self, "ctx", None)
        if t.family != FEATRANK or ctx is None:
            return 0.0
        cache = self.__dict__.setdefault("_first_values", {})
        key = repr(sorted(t.model.items()))
        if key not in cache:
            try:
                cache[key] = first_step_values(ctx.prepared.train, t.model, ctx.prepared.valid)
            except ValueError:  # a config the step itself will refuse, with its own message
                cache[key] = 0
        return FEATRANK_S_PER_VALUE * cache[key]

    def _members_eval(self, t: Trial) -> float:
        """Seconds of a validation scoring of each of the members of ``t`` (a hybrid, or Fresh
        over a saved model), summed."""
        members = [self.trials[m] for m in t.members if m in self.trials]
        return sum(m.eval_s or self.unit() for m in members) or self.unit()

    def hybrid_factor(self, t: Trial) -> float:
        """A hybrid step's seconds in units of its members' validation scorings: measured on
        an earlier hybrid of this search where there is one, else a prior. The step scores
        both members on validation, normalises their lists and ranks the fused list at 11
        weights, then scores the hybrid once (twice to decide on seen items); the fusion and
        the ranking grow with the catalogue as a scoring does. On nowplaying-1m's 121K items
        (members V-SKNN and GRU4Rec, one thread) the fit and one scoring took 4.3x the
        members' scorings (about 6x scored both ways); before the fused lists were
        normalised and counted faster (2026-12-05) it was 21x, and under a prior of 3x a
        10-minute search ran 18 % over its budget. The prior counts all of it
        :data:`OUT_OF_FOLD` times: the hybrid is also valued out of fold (its weight chosen on
        each half of validation, the other half scored), which fits and scores it once more
        over the two halves."""
        done = [
            h.seconds / self._members_eval(h)
            for h in self.of(HYBRID)
            if h.status == "done" and h.seconds > 0
        ]
        if done:
            return 1.2 * max(done)
        undecided = self.state["exclude_seen"].get(HYBRID, False) is None
        return OUT_OF_FOLD * (2.5 + 2.0 * (3 if t.value is None and undecided else 2))

    def scoring_s(self) -> float | None:
        """Seconds of the slowest one-shot validation scoring measured so far (None before
        any)."""
        evals = [x.eval_s for x in self.trials.values() if x.eval_s and not x.network]
        return max(evals) if evals else None

    def _one_shot_done(self) -> list[Trial]:
        return [
            x
            for x in self.trials.values()
            if x.seconds > 0 and x.eval_s and not x.network and not x.formed
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

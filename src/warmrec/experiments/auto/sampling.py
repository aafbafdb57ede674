"""``warmrec auto``, 2: the sampling of new configurations, Optuna TPE per family, asked and told
(:class:`FamilySampler`)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from warmrec.experiments.auto.plan import FAMILIES, NETWORKS, Trial


class FamilySampler:
    """:class:`~warmrec.experiments.auto.search.AutoSearch`'s sampler, a mixin: it reads the
    search's ``spaces``, ``seed``, ``state``, ``trials``, ``_studies`` and ``_asked`` and its
    :meth:`~warmrec.experiments.auto.search.AutoSearch.of`."""

    def study(self, fam: str) -> Any:
        if fam in self._studies:
            return self._studies[fam]
        import optuna

        from warmrec.tuning.results import _distributions

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space = self.spaces[fam]
        told = [t for t in self.of(fam) if t.origin == "sampled" and t.value is not None]
        index = [f.name for f in FAMILIES].index(fam)
        from warmrec.tuning.local import SEEDS

        sampler = optuna.samplers.TPESampler(
            seed=(self.seed * 1000 + index * 37 + len(told)) % SEEDS, n_startup_trials=4
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
        if fam in NETWORKS:
            # the built-in spaces fix an epoch cap and patience sized for `warmrec tune` on a
            # small machine (SASRec: 8 and 3); here the budget bounds a network's time, and a
            # sampled network trains as the defaults' trial does (its cap, its patience)
            for key in ("epochs", "patience"):
                if f"train.{key}" not in values:
                    cfgs["train"].pop(key, None)
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

"""``warmrec auto``, 2: the search (:class:`AutoSearch`): successive halving across families under
a wall-clock budget, its state saved after every step."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from warmrec.experiments.auto.budget import OVERRUN_SHARE, SearchBudget, _clock
from warmrec.experiments.auto.plan import (
    _OWNED_TRAIN,
    FAMILY,
    FRESH,
    HYBRID,
    NETWORKS,
    PARTNERS,
    Trial,
    rank_bests,
    tie_order,
)
from warmrec.experiments.auto.sampling import FamilySampler
from warmrec.experiments.auto.steps import StepContext, _label

STATE = "auto_state.json"
STATE_VERSION = 1
CLOCK = "auto_clock.json"
"""The time spent so far, written every :data:`CLOCK_S` seconds while the search runs: a run
killed inside a step (whose time the state file gets only when the step ends) counts that
time when it resumes (:func:`spent_before`)."""
CLOCK_S = 2.0
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

CHECKPOINT_S = 30.0
"""A network step also writes its checkpoint about every this many seconds of epochs."""
ONE_SHOT_SHARE = 0.25
"""In round 0 Item2Vec's first step (which scores validation after every epoch) is not started
when it is estimated to take more than this share of the search time left."""


def spent_before(out: Path, state: Mapping[str, Any]) -> float:
    """The time earlier invocations spent: the state's, or the :data:`CLOCK`'s where a kill
    stopped one inside a step (later than the state's last save)."""
    spent = float(state.get("spent_s", 0.0))
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        spent = max(spent, float(json.loads((out / CLOCK).read_text())["spent_s"]))
    return spent


class AutoSearch(SearchBudget, FamilySampler):
    """Successive halving across families under a wall-clock budget (package docstring).

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

    # -- state -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def ticking(self) -> Iterator[None]:
        """Within: :data:`CLOCK` holds the time spent, rewritten every :data:`CLOCK_S` s (a
        daemon thread), so that a kill loses at most that much of it."""
        from warmrec.io import atomic_write_text

        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(CLOCK_S):
                with contextlib.suppress(OSError):
                    atomic_write_text(self.out / CLOCK, json.dumps({"spent_s": self.clock()}))

        thread = threading.Thread(target=tick, name="warmrec-auto-clock", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

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
        """The trial with the best validation value (among ``fams``; with ``kept``, those whose
        model is saved); a tie goes by :func:`~warmrec.experiments.auto.plan.tie_order`, never
        by measured seconds, so that runs with the same seed agree."""
        pool = [
            t
            for t in self.trials.values()
            if t.value is not None and (fams is None or t.family in fams) and (t.kept or not kept)
        ]
        return min(pool, key=lambda t: (-t.value, tie_order(t))) if pool else None

    def ranked(self) -> list[Trial]:
        """Each family's best trial whose model is saved, best first (:func:`rank_bests`): the
        final step's order, so the first is the pick it would make now (the progress line
        names it)."""
        bests = (self.best([fam], kept=True) for fam in {t.family for t in self.trials.values()})
        return rank_bests(b for b in bests if b is not None)

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

    # -- steps ---------------------------------------------------------------------------------
    def step_of(self, t: Trial, allowance: float) -> dict[str, Any]:
        undecided = self.state["exclude_seen"].get(t.family, False) is None
        return {
            "trial": t.id,
            "family": t.family,
            "kind": "hybrid" if t.family == HYBRID else "fresh_over" if t.members else "fit",
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

    def consensus(self) -> bool | None:
        """The treatment of seen items that the first :data:`CONSENSUS` families scored both
        ways all chose, each by :data:`CONSENSUS_MARGIN` (None before that, when they disagree
        or when one of them was a close call)."""
        both = [
            t
            for t in self.trials.values()
            if t.value_other is not None and not t.formed and t.origin == "defaults"
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
        if not step.get("eval_both") or step["kind"] != "fit":
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
        # the very first step: nothing scored and no other step running (Ray's executor admits
        # one per free actor before any has a score; only one of them may use the reserve)
        first = all(x.value is None and x.status != "running" for x in self.trials.values())
        if first:
            # the first score: without one there is nothing to pick, so it may use the reserve
            if time.time() >= self.end:
                return False
            if t.network and t.round == 0 and self.state["round"] == 0:
                self.state.setdefault("round0_left", left)  # the first network starts here
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
        # where the executor can cut a step from outside (Ray: its actor killed), it waits for
        # it past the search deadline by the reserve's 2 % of the budget at most (the rest of
        # the reserve is the final step's)
        step["cut_at"] = dl + OVERRUN_SHARE * self.budget_s
        if first:
            # the step is cut only at the budget's end (given the search deadline, a network's
            # first epoch started in the reserve was cut at its first batch and the search
            # ended without a score); a network still pauses after its first epoch once the
            # next would not end before the search deadline
            step["deadline"] = self.end
            step["pause_at"] = dl
            # cut from outside in time for the executor's close to end by the budget's end
            step["cut_at"] = self.end - self.close_s()
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
        if t.formed and res.get("model"):
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
        lead = next(iter(self.ranked()), None)  # the final step's pick, were it now
        what = f"{self.ctx.metric} {t.value:.4f}" if t.value is not None else "no score"
        if t.network:
            what = f"{'paused' if t.status == 'paused' else 'finished'} at epoch {t.epochs}, {what}"
        self.say(
            f"{t.id} ({t.origin}): {what} in {res.get('seconds', 0.0):.1f} s"
            + (f" | best {lead.id} {lead.value:.4f}" if lead is not None else "")
        )
        self.save()

    def prune(self) -> None:
        """Keep the model directories of each family's best and of the members of the last
        hybrid and Fresh formed only; drop the checkpoints of networks that cannot go on."""
        keep = set(self.state.get("hybrid_pair") or []) | set(self.state.get("fresh_base") or [])
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
        """The hybrid of the best partner (:data:`~warmrec.experiments.auto.plan.PARTNERS`: a
        session kNN or FeatRank) and the best network, when either changed: another
        trial, or the same one improved since (a paused network that trained on: a hybrid
        formed from its earlier weights would stand on the leaderboard with them)."""
        partner = self.best(PARTNERS, kept=True)
        net = self.best(NETWORKS, kept=True)
        if partner is None or net is None:
            return
        pair = [partner.id, net.id]
        values = [partner.value, net.value]
        both = partner.exclude_seen != net.exclude_seen  # scored both ways where they differ
        if pair == self.state.get("hybrid_pair") and values == self.state.get(
            "hybrid_values", values
        ):
            # formed already, unless a kill interrupted its step: the resumed run had it
            # pending, never to run again (the pair unchanged), and lost the hybrid
            again = self.interrupted(HYBRID, pair)
            if again is not None:
                self.form(again, "hybrid_pair", "hybrid_values", both)
            return
        n = len(self.of(HYBRID))
        ex = partner.exclude_seen if partner.exclude_seen == net.exclude_seen else False
        train = {k: v for k, v in net.train.items() if k not in _OWNED_TRAIN}
        t = Trial(
            id=f"hybrid-{n:03d}",
            family=HYBRID,
            origin=f"hybrid of {partner.id} + {net.id}",
            model={
                "network": net.family,
                "network_config": dict(net.model),
                "neighbours": partner.family,
                "neighbours_config": dict(partner.model),
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
        self.form(t, "hybrid_pair", "hybrid_values", both)

    def interrupted(self, family: str, members: list[str]) -> Trial | None:
        """The formed trial of ``family`` over ``members`` whose step a kill interrupted (the
        resumed run set it back to pending), if any."""
        return next(
            (
                t
                for t in self.of(family)
                if t.members == members and t.status == "pending" and t.value is None
            ),
            None,
        )

    def form(self, t: Trial, pair_key: str, value_key: str, eval_both: bool | None = None) -> None:
        """Run the step of the formed trial ``t``; where it is not admitted (no time), forget
        it and the members it was formed from (``state[pair_key]``, ``state[value_key]``)."""
        step = self.step_of(t, math.inf)
        if eval_both is not None:
            step["eval_both"] = eval_both
        for s, res in self.executor.run([step], self.admit):
            self.absorb(s, res)
        if t.status == "pending":  # no time: forget it
            del self.trials[t.id]
            self.state[pair_key] = self.state[value_key] = None

    def fresh_over(self, r: int) -> None:
        """Fresh over the best model so far (where the plan has Fresh: validation targets on
        items without training events), when that improved: the best trial of any other family
        (the hybrid included; TF-IDF is the Fresh family's own base), wrapped by Fresh with the
        Fresh family's settings (its round-0 config) and its weights chosen on validation.
        ``benchmarks/results/mars.md``: on the anchor protocol ``fresh+order`` over a SASRec +
        SR hybrid was the best model."""
        own = next(
            (t for t in self.of(FRESH) if not t.members and t.origin.startswith("defaults")),
            None,
        )
        if own is None or FRESH not in self.state["families"]:
            return
        base = self.best(
            [f for f in {t.family for t in self.trials.values()} if f != FRESH], kept=True
        )
        if base is None or base.family == own.model.get("base", "tfidf"):
            return
        before = self.state.get("fresh_value")
        if before is not None and base.value <= before:  # a tie or worse: nothing new to wrap
            again = self.interrupted(FRESH, [base.id])  # unless a kill interrupted its step
            if again is not None:
                self.form(again, "fresh_base", "fresh_value")
            return
        model = {k: v for k, v in own.model.items() if k != "cold_target_share"}
        if self.ctx.cold_share is not None:  # its weights chosen as the search chooses
            model["cold_target_share"] = self.ctx.cold_share
        model.update(base=base.family, base_config=dict(base.model))
        n = len([t for t in self.of(FRESH) if t.members])
        t = Trial(
            id=f"fresh-over-{n:03d}",
            family=FRESH,
            origin=f"fresh over {base.id}",
            model=model,
            train={k: v for k, v in base.train.items() if k not in _OWNED_TRAIN},
            exclude_seen=base.exclude_seen,
            members=[base.id],
            round=r,
        )
        self.trials[t.id] = t
        self.state["fresh_base"], self.state["fresh_value"] = [base.id], base.value
        self.form(t, "fresh_base", "fresh_value")

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
            self.fresh_over(r)
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

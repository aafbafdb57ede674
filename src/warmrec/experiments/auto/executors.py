"""``warmrec auto``, 6: where steps run: one after another in this process
(:class:`LocalExecutor`) or in Ray actors on a cluster (:class:`RayExecutor`).

An admitted step carries ``cut_at`` (the search's
:meth:`~warmrec.experiments.auto.search.AutoSearch.admit`): the ``time.time()`` past which
:class:`RayExecutor` no longer waits for it. The step's own deadline checks (a network's
epochs, a formed model's scorings) start only once an actor runs it; the time before that --
Ray starting the actor, the actor reading and splitting the log -- is measured by nothing
else. On a loaded 2-core machine the actors took 117 s to start, and a 90 s run waited for
them and ended after 143 s. The local executor runs a step in this process and cannot cut it
from outside: there the step's own deadline checks and the search's estimates bound it."""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from warmrec.errors import ConfigError
from warmrec.experiments.auto.steps import StepContext, run_step

Admit = Callable[[dict[str, Any]], bool]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours the names in its error messages


class LocalExecutor:
    """Steps one after another in this process."""

    workers = 1
    close_s = 0.0
    """Seconds :meth:`close` takes (the search's reserve keeps them)."""

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

    def __init__(
        self, base: dict[str, Any], work: str, metric: str, cold_share: float | str | None
    ) -> None:
        from warmrec.experiments.spec import prepare_run, spec_from_config

        spec = spec_from_config(base)
        prepared = prepare_run(spec)
        self.ctx = StepContext(prepared, prepared.info["spec"], Path(work), metric, cold_share)

    def run(self, step: dict[str, Any]) -> dict[str, Any]:
        return run_step(self.ctx, step)


RAY_CLOSE_S = 3.0
"""Seconds kept for :meth:`RayExecutor.close` (killing the actors and shutting Ray down): 1.4 s
measured quiet, 1.7 s at load 3 on the shared 2-core machine."""


def _cut(step: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The outcome of a step that :class:`RayExecutor` stopped waiting for (its actor killed):
    as a step cut at the search's deadline (:func:`~warmrec.experiments.auto.steps.run_step`)."""
    return {"status": "cut", "trial": step["trial"], "family": step["family"], "seconds": seconds}


class RayExecutor:
    """Steps in Ray actors on a cluster (``address``), as many at once as it has CPUs.

    A step still running at its ``cut_at`` (the module docstring) is cut: its actor is killed
    (a step cannot be stopped inside a running actor) and the search goes on with the others;
    its outcome is ``cut``, its seconds those since it was submitted."""

    close_s = RAY_CLOSE_S

    def __init__(
        self,
        address: str,
        base: dict[str, Any],
        work: Path,
        metric: str,
        cold_share: float | str | None = None,
    ) -> None:
        try:
            import ray
        except ImportError as e:  # pragma: no cover - ray is in the `ray` extra
            raise ConfigError("--address needs Ray: pip install 'warmrec[ray]'") from e
        from warmrec.tuning.cluster import start_ray

        self.ray = ray
        self.address = address
        self._ray_env = start_ray(address)
        n = max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1)(_RayWorker)
        self.actors = [actor.remote(base, str(work), metric, cold_share) for _ in range(n)]
        self.workers = n
        self.work = Path(work)
        self.cut: list[str] = []  # the trials whose step was cut here (their actor killed)

    def run(self, steps: list[dict[str, Any]], admit: Admit) -> Iterator[tuple[dict, dict]]:
        ray = self.ray
        queue = list(steps)
        free = list(self.actors)
        pending: dict[Any, tuple[Any, dict, float]] = {}
        while queue or pending:
            while queue and free:
                step = queue.pop(0)
                if not admit(step):
                    continue
                a = free.pop()
                pending[a.run.remote(step)] = (a, step, time.time())
            if not pending:
                break
            cut_at = min(float(s.get("cut_at", math.inf)) for _, s, _ in pending.values())
            wait = None if math.isinf(cut_at) else max(0.0, cut_at - time.time())
            done, _ = ray.wait(list(pending), num_returns=1, timeout=wait)
            if done:
                a, step, t0 = pending.pop(done[0])
                try:
                    res = ray.get(done[0])
                except ray.exceptions.RayActorError as e:
                    res = self._died(a, step, e, time.time() - t0)
                else:
                    free.append(a)
                yield step, res
                continue
            now = time.time()
            for ref in [r for r, (_, s, _) in pending.items() if s.get("cut_at", math.inf) <= now]:
                a, step, t0 = pending.pop(ref)
                self._kill(a)
                self.cut.append(step["trial"])
                yield step, _cut(step, now - t0)

    def _died(self, actor: Any, step: dict[str, Any], err: Any, seconds: float) -> dict[str, Any]:
        """The outcome of a step whose actor died: a failed step (the actor is dropped, the
        others go on); a :class:`~warmrec.errors.ConfigError` where the actor could not start
        (reading and splitting the data failed there: every actor would fail alike) or where
        no actor is left. Ray's own error had ended the command with its traceback."""
        lines = [ln.strip() for ln in _ANSI.sub("", str(err)).splitlines() if ln.strip()]
        why = (lines[-1] if lines else type(err).__name__).removeprefix("warmrec.errors.")
        if getattr(err, "actor_init_failed", False):
            raise ConfigError(
                f"--address {self.address}: a Ray actor could not read and split the data "
                f"({why}); every node must read the data path and import warmrec"
            )
        self._kill(actor)
        if not self.actors:
            raise ConfigError(
                f"--address {self.address}: every Ray actor died (the last while it ran "
                f"{step['trial']}: {why})"
            )
        return {
            "status": "failed",
            "trial": step["trial"],
            "family": step["family"],
            "seconds": seconds,
            "error": f"its Ray actor died: {why}"[:300],
        }

    def _kill(self, actor: Any) -> None:
        with contextlib.suppress(Exception):
            self.ray.kill(actor)
        self.actors = [a for a in self.actors if a is not actor]

    def close(self) -> None:
        for a in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(a)
        from warmrec.io import clean_stale
        from warmrec.tuning.cluster import stop_ray

        stop_ray(self._ray_env)
        for trial in self.cut:  # a killed actor may have been saving the trial's model
            clean_stale(self.work / "models" / trial)

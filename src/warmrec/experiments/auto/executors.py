"""``warmrec auto``, 6: where steps run: one after another in this process
(:class:`LocalExecutor`) or in Ray actors on a cluster (:class:`RayExecutor`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from warmrec.errors import ConfigError
from warmrec.experiments.auto.steps import StepContext, run_step

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

    def __init__(
        self, base: dict[str, Any], work: str, metric: str, cold_share: float | str | None
    ) -> None:
        from warmrec.experiments.spec import prepare_run, spec_from_config

        spec = spec_from_config(base)
        prepared = prepare_run(spec)
        self.ctx = StepContext(prepared, prepared.info["spec"], Path(work), metric, cold_share)

    def run(self, step: dict[str, Any]) -> dict[str, Any]:
        return run_step(self.ctx, step)


class RayExecutor:
    """Steps in Ray actors on a cluster (``address``), as many at once as it has CPUs."""

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
        self._ray_env = start_ray(address)
        n = max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1)(_RayWorker)
        self.actors = [actor.remote(base, str(work), metric, cold_share) for _ in range(n)]
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

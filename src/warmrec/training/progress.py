"""Progress of a loop counted in steps rather than epochs (multi-source pre-training): a tqdm bar
where one can show, else, inside :func:`~warmrec.training.loop.epoch_lines`, a plain line on
stderr per tenth of the steps, so that a run written to a log file is not silent for minutes."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from tqdm.auto import tqdm

from warmrec.training.loop import bar_size, prints_lines, shows_bar


class StepProgress:
    """A bar (or lines) over ``total`` steps; ``progress`` as :class:`TrainerConfig`'s."""

    def __init__(self, total: int, progress: bool | None, desc: str) -> None:
        self.total, self.desc, self.done = int(total), desc, 0
        show = shows_bar(progress)
        self.lines = not show and prints_lines(progress)
        self.every = max(1, self.total // 10)
        self.printed = 0
        self.bar = tqdm(
            total=self.total,
            desc=desc,
            unit="step",
            disable=not show,
            **(bar_size() if show else {}),
        )

    def step(self, losses: Mapping[str, float], seconds: float) -> None:
        """One step done; ``losses``: each domain's smoothed loss so far."""
        self.done += 1
        self.bar.update(1)
        if self.done % max(1, self.every // 10) == 0:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()}, refresh=False)
        if self.lines and self.done % self.every == 0:
            self._line(losses, seconds)

    def skip(self) -> None:
        """A step not taken (its domain's share of the time budget is spent)."""
        self.done += 1
        self.bar.update(1)

    def close(self, losses: Mapping[str, float], seconds: float, taken: int) -> None:
        """The end: the bar closes; a last line says how many steps were taken where the
        lines have not said it yet."""
        self.bar.close()
        if self.lines and (self.printed != self.done or taken < self.total):
            self._line(losses, seconds, taken)

    def _line(self, losses: Mapping[str, float], seconds: float, taken: int | None = None) -> None:
        self.printed = self.done
        head = (
            f"step {self.done}/{self.total}"
            if taken is None
            else f"{taken} of {self.total} steps taken (time budget)"
            if taken < self.total
            else f"step {taken}/{self.total}"
        )
        loss = ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
        print(
            f"{self.desc}: {head}, loss {loss or '-'}, {seconds:.1f} s", file=sys.stderr, flush=True
        )

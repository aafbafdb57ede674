"""Helpers shared by the benchmark scripts: machine-load sampling and summaries, and replacing
one generated section of a results file (run as ``python benchmarks/X.py``, which puts this
folder on ``sys.path``)."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def _summary(s: list[float]) -> str:
    return f"{min(s):.1f}-{max(s):.1f} (mean {sum(s) / len(s):.1f}, {len(s)} samples)"


def load_range(path: str) -> str:
    """min-max (mean) of the 1-minute load averages logged in ``path`` (``/proc/loadavg`` lines)."""
    return _summary(
        [float(line.split()[0]) for line in Path(path).read_text().splitlines() if line.strip()]
    )


class LoadSampler:
    """The 1-minute load average every ``every`` seconds, in a daemon thread."""

    def __init__(self, every: float = 30.0) -> None:
        self.samples: list[float] = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._t.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> str:
        self._stop.set()
        return _summary(self.samples)


def write_section(path: Path, begin: str, end: str, block: str, title: str) -> None:
    """Replace the ``begin``...``end`` section of the Markdown file ``path`` by ``block`` (which
    starts with ``begin`` and ends with ``end``), or append it; the file is created with
    ``title`` and written atomically."""
    from warmrec.io import atomic_write_text

    text = path.read_text() if path.exists() else title
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(path, text)

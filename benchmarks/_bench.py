"""Helpers shared by the benchmark scripts: where ``../shared`` is, the machine's description
(CPU model and cache sizes) and load, machine-load sampling and summaries, and replacing one
generated section of a results file (run as ``python benchmarks/X.py``, which puts this folder
on ``sys.path``).

Every section written by :func:`write_section` carries a ``Machine:`` line (CPU model, cache
sizes, logical CPUs, and the load: the sampled range when the script passes it, else the load
averages at writing), so a figure is never read apart from the machine it was measured on.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def find_shared(start: Path = ROOT) -> Path:
    """The ``shared`` folder (data, peers): ``$WARMREC_SHARED``, else the first ``shared`` folder
    beside the repository or one of its parents (``/work/shared`` for ``/work/main`` and for a
    worktree ``/work/wt/X`` alike); ``start.parent / "shared"`` when there is none."""
    if os.environ.get("WARMREC_SHARED"):
        return Path(os.environ["WARMREC_SHARED"])
    for d in start.parents:
        if (d / "shared").is_dir():
            return d / "shared"
    return start.parent / "shared"


SHARED = find_shared()


def _summary(s: list[float]) -> str:
    return f"{min(s):.1f}-{max(s):.1f} (mean {sum(s) / len(s):.1f}, {len(s)} samples)"


def load_range(path: str) -> str:
    """min-max (mean) of the 1-minute load averages logged in ``path`` (``/proc/loadavg`` lines)."""
    return _summary(
        [float(line.split()[0]) for line in Path(path).read_text().splitlines() if line.strip()]
    )


def load_now() -> str:
    """The 1/5/15-minute load averages now, e.g. ``"3.1 / 4.0 / 5.2"``."""
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def quiet_limit(cpus: int | None = None) -> float:
    """Highest 1-minute load at which a one-thread measurement counts as taken on a quiet
    machine: the benchmark itself (1) plus a quarter of the CPUs for background noise."""
    return 1.0 + 0.25 * (cpus or os.cpu_count() or 1)


def load_verdict(samples: list[float]) -> str:
    """``"quiet"`` when every sample is within :func:`quiet_limit`, else a warning naming the
    peak: figures taken under load are not to be quoted as the machine's speed."""
    if not samples:
        return "load unknown"
    peak = max(samples)
    if peak <= quiet_limit():
        return f"quiet (1-min load at most {peak:.1f} on {os.cpu_count()} CPUs)"
    return (
        f"LOADED (1-min load up to {peak:.1f} on {os.cpu_count()} CPUs, quiet is <= "
        f"{quiet_limit():.1f}): wall-clock figures and ratios are not the machine's speed"
    )


def machine_line(load: str | None = None) -> str:
    """``Machine: <CPU model>; caches ...; N logical CPUs; load ...`` (``load``: a summary the
    script sampled; the load averages now when None)."""
    from warmrec.training.machine import cpu_info

    desc = cpu_info().describe()
    if load is None:
        return f"Machine: {desc}; load averages (1/5/15 min) at writing: {load_now()}."
    return f"Machine: {desc}; 1-minute load during the runs: {load}."


class LoadSampler:
    """The 1-minute load average every ``every`` seconds, in a daemon thread. Prints the
    machine's description when started (``echo``)."""

    def __init__(self, every: float = 30.0, echo: bool = True) -> None:
        self.samples: list[float] = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._t.start()
        if echo:
            print(machine_line(), flush=True)

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> str:
        """Stop sampling; the samples' summary (min-max, mean)."""
        self._stop.set()
        self.samples.append(os.getloadavg()[0])
        return _summary(self.samples)

    def verdict(self) -> str:
        """:func:`load_verdict` of the samples so far."""
        return load_verdict(self.samples)


def with_machine(block: str, load: str | None = None) -> str:
    """``block`` with a :func:`machine_line` after its first heading (or after its first line,
    the begin marker, when it has no heading near the top); unchanged if it has one already."""
    lines = block.split("\n")
    if any(line.startswith("Machine: ") for line in lines):
        return block
    at = 1
    for i, line in enumerate(lines[:4]):
        if line.startswith("#"):
            at = i + 1
            break
    return "\n".join([*lines[:at], "", machine_line(load), *lines[at:]])


def write_section(
    path: Path, begin: str, end: str, block: str, title: str, load: str | None = None
) -> None:
    """Replace the ``begin``...``end`` section of the Markdown file ``path`` by ``block`` (which
    starts with ``begin`` and ends with ``end``), or append it; the file is created with
    ``title`` and written atomically. The block gets the machine's line (:func:`with_machine`;
    ``load``: the load summary the script sampled)."""
    from warmrec.io import atomic_write_text

    block = with_machine(block, load)
    text = path.read_text() if path.exists() else title
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(path, text)

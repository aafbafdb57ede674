"""The thread policy of a run: how many CPU threads torch uses when the run does not say.

torch starts one intra-op thread per core. On a machine other work shares (CI, a notebook
server, a Ray node running other trials) that oversubscribes it: OpenMP threads that spin while
waiting for a descheduled sibling turn every parallel op into a wait, and a run beside four busy
single-thread processes on 2 cores was measured 11.6x slower than on a quiet machine, where a
fair share would cost ~2.5x (issue "Speed that holds on any machine").

:func:`policy_threads` takes the CPUs this process may run on (its affinity mask, so a
container's or ``taskset``'s limit counts) less the CPUs other work keeps busy right now
(runnable tasks from ``/proc/stat`` that stay runnable over a few readings, capped by the 1-minute load average so a burst does not
count), at least 1. ``TrainerConfig.num_threads`` (``--threads``) overrides it; ``OMP_NUM_THREADS``
or an earlier ``torch.set_num_threads`` by the caller is respected (the policy then keeps
torch's setting). The choice is made when a run starts, not revised during it.
"""

from __future__ import annotations

import os

THREADS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cpus() -> int:
    """The CPUs this process may run on (affinity mask; ``os.cpu_count()`` where unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _runnable_now() -> int | None:
    """Runnable tasks right now, this one included (``procs_running`` of ``/proc/stat``)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("procs_running"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


SAMPLES, SAMPLE_GAP_S = 5, 0.004
"""``procs_running`` is read this many times, this far apart; the smallest count is kept."""


def _runnable_persistent() -> int | None:
    """Runnable tasks that stay runnable: the least of :data:`SAMPLES` readings of
    ``procs_running`` over ~20 ms. One reading also counts whatever happened to be on a CPU at
    that instant (a shell, a load sampler, a thread waking), which on a quiet machine made the
    policy pick one thread for about half the runs of ``benchmarks/busy_machine.py``."""
    import time

    counts = []
    for i in range(SAMPLES):
        if i:
            time.sleep(SAMPLE_GAP_S)
        n = _runnable_now()
        if n is None:
            return None
        counts.append(n)
    return min(counts)


def busy_cpus() -> float:
    """CPUs kept busy by other work: runnable tasks other than this one that stay runnable
    (:func:`_runnable_persistent`), at most the 1-minute load average (0 where neither can be
    read)."""
    running = _runnable_persistent()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover
        load = 0.0
    if running is None:
        return load
    return float(max(0.0, min(running - 1, load)))


def policy_threads(requested: int = 0) -> int:
    """Threads for a run: ``requested`` when > 0, else the CPUs this process may use less those
    other work keeps busy, at least 1 and at most the usable CPUs."""
    if requested > 0:
        return requested
    cpus = usable_cpus()
    return max(1, min(cpus, int(cpus - busy_cpus() + 0.5)))


def apply_threads(requested: int = 0) -> int:
    """Set torch's intra-op threads for a run (see the module docstring); returns the count in
    force. With ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set and nothing requested, torch's
    setting is kept."""
    import torch

    if requested <= 0 and any(os.environ.get(k) for k in THREADS_ENV):
        return torch.get_num_threads()
    n = policy_threads(requested)
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n

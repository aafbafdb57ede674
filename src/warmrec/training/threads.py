"""The thread policy of a run: how many CPU threads torch uses when the run does not say.

torch starts one intra-op thread per core. On a machine other work shares (CI, a notebook
server, a Ray node running other trials) that oversubscribes it: OpenMP threads that spin while
waiting for a descheduled sibling turn every parallel op into a wait, and a run beside four busy
single-thread processes on 2 cores was measured 11.6x slower than on a quiet machine, where a
fair share would cost ~2.5x (issue "Speed that holds on any machine").

:func:`policy_threads` takes the CPUs this process may run on (its affinity mask, so a
container's or ``taskset``'s limit counts) less the CPUs other work keeps busy right now
(runnable tasks from ``/proc/stat`` that stay runnable over a few readings, capped by the 1-minute load average so a burst does not
count), at least 1. ``TrainerConfig.num_threads`` (``--threads``) overrides it; with
``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` set the policy keeps torch's setting. An earlier
``torch.set_num_threads`` by the caller is *not* detected, and the policy replaces it: torch does
not say whether its count was set or is its default, and the default depends on its build
(threading backend, MKL, how it counts cores), so the two cannot be told apart reliably.
To keep a count set in the process, pass it (``num_threads=torch.get_num_threads()``). The
choice is made when a run starts, not revised during it.

Runs that share one process (``warmrec tune --n-jobs N``: Optuna runs N trials at once in
threads) are not each given the policy's count: each would measure the machine at its own start
and use every free CPU, so N of them oversubscribe it, and ``torch.set_num_threads`` is
process-wide (its count is what threads started later begin with, and MKL's is global), so
they would race on one value. Inside :func:`sharing` (``with sharing(runs):``, entered by the
search when it runs trials in threads) the count is decided once, at entry: the CPUs free then
(:func:`policy_threads`) split among the ``runs`` concurrent runs, at least 1. Every
:func:`apply_threads` with nothing requested, from any thread, sets and returns that share, so
every trial runs with, and records, the same count; ``requested > 0`` and
``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` still win as above. The share is a module-level value
under a lock, not a context variable (Optuna's worker threads, a ``ThreadPoolExecutor``'s, do
not inherit those). On exit the share and torch's count in force before are restored. Nothing
else fits in threads of one process: the Ray backends (``tune --backend ray``, ``auto
--address``) run each trial or step in a worker process of its own, whose ``OMP_NUM_THREADS``
Ray sets to the CPUs it reserved (kept, as above), and ``warmrec auto`` on one machine runs its
steps one after another.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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


_SHARE_LOCK = threading.Lock()
_share: int | None = None
"""Threads per run while runs share this process (:func:`sharing`); ``None`` outside."""


def shared_threads() -> int | None:
    """The per-run thread count fixed by the innermost active :func:`sharing`, else ``None``."""
    with _SHARE_LOCK:
        return _share


@contextmanager
def sharing(runs: int) -> Iterator[int]:
    """Fix the thread count of every run started inside, from any thread, for ``runs`` runs at
    once in this process (module docstring): ``max(1, policy_threads() // runs)``, measured
    once here (inside another ``sharing``, that one's share is split instead). Yields the share.
    Unless ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` is set, torch is set to it at entry; torch's
    count and the previous share are restored on exit."""
    import torch

    global _share
    if runs < 1:
        raise ValueError(f"sharing: expected runs >= 1, found {runs}")
    before = torch.get_num_threads()
    with _SHARE_LOCK:
        previous = _share
        free = previous if previous is not None else policy_threads()
        share = max(1, free // runs)
        _share = share
    try:
        if not any(os.environ.get(k) for k in THREADS_ENV) and share != before:
            torch.set_num_threads(share)  # threads started from here on begin with it
        yield share
    finally:
        with _SHARE_LOCK:
            _share = previous
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def apply_threads(requested: int = 0) -> int:
    """Set torch's intra-op threads for a run (see the module docstring); returns the count in
    force. With ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set and nothing requested, torch's
    setting is kept; inside :func:`sharing`, nothing requested gives the share fixed there."""
    import torch

    if requested <= 0 and any(os.environ.get(k) for k in THREADS_ENV):
        return torch.get_num_threads()
    share = shared_threads() if requested <= 0 else None
    n = share if share is not None else policy_threads(requested)
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n

"""uvicorn's worker supervisor, with dead workers noticed while a health check waits on them.

uvicorn's :class:`~uvicorn.supervisors.Multiprocess` checks each worker every half second by
sending a ping down a pipe and waiting up to ``timeout_worker_healthcheck`` for the answer.
Both ends of that pipe are made in the supervisor and the child's end stays open there, so when
a worker dies with a ping unanswered (killed by the OOM killer or ``SIGKILL``) the wait sees no
end of file and lasts the whole timeout -- 300 s in ``warmrec serve``, which gives a new worker
that long to load and warm up its model -- and no other dead worker is restarted meanwhile.
:class:`Supervisor` closes the supervisor's copy of each started worker's end, so the pipe
reports the death at once and the worker is restarted on the next check.

Needs uvicorn's supervisor with piped health checks (uvicorn >= 0.30); with an older uvicorn
whose workers have no pipe there is nothing to close.
"""

from __future__ import annotations

from typing import Any

from uvicorn.supervisors import Multiprocess


def close_child_ends(processes: list[Any]) -> int:
    """Close the supervisor's copy of the child's pipe end of every started worker in
    ``processes`` (uvicorn's ``Process`` objects); the number closed."""
    closed = 0
    for proc in processes:
        conn = getattr(proc, "child_conn", None)
        started = getattr(getattr(proc, "process", None), "pid", None) is not None
        if conn is not None and started and not conn.closed:
            conn.close()
            closed += 1
    return closed


class Supervisor(Multiprocess):
    """:class:`~uvicorn.supervisors.Multiprocess` whose health checks end when a worker dies
    (see the module's docstring); otherwise uvicorn's own."""

    def init_processes(self) -> None:
        super().init_processes()
        close_child_ends(self.processes)

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        close_child_ends(self.processes)

    def restart_all(self) -> None:
        super().restart_all()
        close_child_ends(self.processes)

    def handle_ttin(self) -> None:
        super().handle_ttin()
        close_child_ends(self.processes)

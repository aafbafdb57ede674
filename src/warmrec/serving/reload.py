"""Model reloads of ``warmrec serve``, in one worker or across all of them.

A :class:`Reloader` holds the served :class:`~warmrec.serving.bundle.ModelBundle` of one worker
process and swaps it atomically (a request takes a reference to the current bundle when it
starts, so in-flight requests finish on the old model).

With the in-process session store the worker is on its own: ``POST /admin/reload`` reloads this
worker (today's behaviour with one worker); with ``--workers N > 1`` it refuses (409), since it
would reach one worker of N: send ``SIGHUP`` to the server process instead, or use a shared store.

With a shared store (Redis, :class:`~warmrec.serving.sessions.RedisSessionStore`) the store also
holds a **model generation** and a **worker registry**. A generation is a token unique to each
reload (Redis's time and a random tag, :func:`~warmrec.serving.sessions.generation_time`), not
a counter: a counter lost with its key (a Redis restart, ``FLUSHDB``, an eviction) started
again at 1, below the workers' own, so they never reloaded yet were listed as confirmed. Every
worker reports, every ``poll_s`` seconds, that it is alive and which generation it serves; a
worker that sees a published generation other than its own (and other than one it failed to
load) reloads the model directory and reports the new one; no published generation (the key
gone) asks for nothing. ``POST /admin/reload`` on any worker reloads that worker first (a
directory that does not load is a 409 and publishes nothing), publishes a new generation, then
waits (up to ``timeout_s``) until every live worker reports it (or one published later, by a
reload that overlapped): the reply lists the workers that ``confirmed``, those whose reload
``failed`` (they keep serving the old model) and those ``missing`` (no answer in time); it is a
200 only when every live worker confirmed, else a 504 naming the others. A worker started later
(a restart) loads the directory as it is then and takes the generation published before it
loaded, so it never counts as behind. A worker unseen for ``stale_s`` seconds is taken for
gone (it died without saying so); one that shuts down leaves the registry.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warmrec.errors import WarmrecError, summary
from warmrec.serving.bundle import ModelBundle
from warmrec.serving.sessions import SessionStore, SessionStoreError, generation_time

POLL_S = 0.5
STALE_S = 10.0
RELOAD_TIMEOUT_S = 60.0


class ReloadFailed(WarmrecError):
    """This worker could not load the model directory (it keeps serving the old model)."""


@dataclass
class _Local:
    generation: str | None = None
    failed_generation: str | None = None
    error: str | None = None


def _covers(reported: Any, gen: str) -> bool:
    """Whether a worker that reports generation ``reported`` serves a model loaded after
    ``gen`` was published: ``gen`` itself, or one published later (an overlapping reload)."""
    return reported == gen or generation_time(reported) > generation_time(gen)


class Reloader:
    """The served model of one worker and its reloads (see the module docstring).

    ``load`` reads the model directory (called in a thread); ``bundle`` is an already loaded
    model (then :meth:`start` loads nothing)."""

    def __init__(
        self,
        load: Callable[[], ModelBundle] | None,
        store: SessionStore,
        *,
        bundle: ModelBundle | None = None,
        workers: int = 1,
        poll_s: float = POLL_S,
        stale_s: float = STALE_S,
        timeout_s: float = RELOAD_TIMEOUT_S,
    ) -> None:
        if load is None and bundle is None:
            raise ValueError("Reloader needs a load function or a bundle")
        self._load = load
        self.bundle: ModelBundle | None = bundle
        self.store = store
        self.shared = bool(getattr(store, "shared", False))
        self.workers = workers
        self.poll_s, self.stale_s, self.timeout_s = poll_s, stale_s, timeout_s
        self.worker_id = secrets.token_hex(4)
        self._lock = asyncio.Lock()
        self._local = _Local()
        self._task: asyncio.Task | None = None
        self._warned = False

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the model if needed (before the port opens); with a shared store, register this
        worker and start following the published generation."""
        gen = await self._store_call(self.store.generation) if self.shared else None
        if self.bundle is None:
            self.bundle = self._load()
        self._local.generation = gen
        if self.shared:
            await self._store_call(self.store.report_worker, self.worker_id, self.info())
            self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        if self.shared:
            try:
                await self._store_call(self.store.forget_worker, self.worker_id)
            except WarmrecError:
                pass

    # -- reloading -------------------------------------------------------------------------------
    async def reload_here(self) -> ModelBundle:
        """Load the directory again off the event loop, then swap (one reload at a time); raises
        :class:`ReloadFailed` and keeps the old model when it does not load."""
        async with self._lock:
            return await self._reload_locked()

    async def _reload_locked(self) -> ModelBundle:
        import anyio

        if self._load is None:
            raise ReloadFailed("the app was built from a bundle without a directory")
        try:
            new = await anyio.to_thread.run_sync(self._load)
        except WarmrecError as e:
            raise ReloadFailed(str(e)) from None
        except Exception as e:  # noqa: BLE001 - a load function's own failure: not a 500
            raise ReloadFailed(summary(e)) from None
        self.bundle = new
        return new

    async def reload(self) -> tuple[int, dict[str, Any]]:
        """``POST /admin/reload``: the status and body of the answer (raises
        :class:`~warmrec.serving.sessions.SessionStoreError` when the store cannot be reached
        before anything was swapped)."""
        if not self.shared:
            if self.workers > 1:
                return 409, {
                    "detail": f"POST /admin/reload would reach one of {self.workers} workers with "
                    "the in-process session store: send SIGHUP to the server process, or serve "
                    "with --session-store redis://..."
                }
            try:
                new = await self.reload_here()
            except ReloadFailed as e:
                return 409, {"detail": f"reload failed, still serving the old model: {e}"}
            return 200, new.metadata()
        await self._store_call(self.store.generation)  # unreachable: 503 before swapping
        async with self._lock:
            try:
                new = await self._reload_locked()
            except ReloadFailed as e:
                return 409, {"detail": f"reload failed, still serving the old model: {e}"}
            try:
                gen = await self._store_call(self.store.next_generation)
            except SessionStoreError as e:
                return 503, {
                    "detail": f"worker {self.worker_id} reloaded, the others were not told: {e}"
                }
            self._local = _Local(generation=gen)
        await self._store_call(self.store.report_worker, self.worker_id, self.info())
        deadline = time.monotonic() + self.timeout_s
        while True:
            live = await self._store_call(self.store.live_workers, self.stale_s)
            live.setdefault(self.worker_id, self.info())
            confirmed = sorted(w for w, i in live.items() if _covers(i.get("generation"), gen))
            failed = {
                w: i.get("error") or "reload failed"
                for w, i in live.items()
                if w not in confirmed and _covers(i.get("failed_generation"), gen)
            }
            missing = sorted(set(live) - set(confirmed) - set(failed))
            if not missing or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(0.05, self.poll_s))
        body: dict[str, Any] = {
            **new.metadata(),
            "generation": gen,
            "workers": {"confirmed": confirmed, "failed": failed, "missing": missing},
        }
        if failed or missing:
            body["detail"] = (
                f"reload reached {len(confirmed)} of {len(live)} workers; "
                + "; ".join(
                    [f"failed: {', '.join(sorted(failed))}"] * bool(failed)
                    + [f"no answer in {self.timeout_s:g} s: {', '.join(missing)}"] * bool(missing)
                )
            )
            return 504, body
        return 200, body

    async def _follow(self) -> None:
        """Report this worker every ``poll_s`` seconds; reload when a generation other than
        this worker's is published."""
        while True:
            try:
                await self._step()
                self._warned = False
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the store is down: say it once, keep serving, keep trying
                if not self._warned:
                    print(f"warmrec serve: worker {self.worker_id}: {e}", file=sys.stderr)
                    self._warned = True
            await asyncio.sleep(self.poll_s)

    async def _step(self) -> None:
        gen = await self._store_call(self.store.generation)
        loc = self._local
        # not "newer than": a generation is a token, and none published (the key lost) asks
        # for nothing
        if gen is not None and gen not in (loc.generation, loc.failed_generation):
            async with self._lock:
                loc = self._local
                # a reload of this worker may have published and loaded a later one meanwhile
                # (the generation was read outside the lock): never go back to the older one
                newer = loc.generation is not None and _covers(loc.generation, gen)
                if gen not in (loc.generation, loc.failed_generation) and not newer:
                    try:
                        await self._reload_locked()
                        self._local = _Local(generation=gen)
                    except ReloadFailed as e:
                        loc.failed_generation, loc.error = gen, str(e)
                        print(
                            f"warmrec serve: worker {self.worker_id}: reload to generation "
                            f"{gen} failed, still serving the old model: {e}",
                            file=sys.stderr,
                        )
        await self._store_call(self.store.report_worker, self.worker_id, self.info())

    async def _store_call(self, fn: Callable[..., Any], *a: Any) -> Any:
        import anyio

        return await anyio.to_thread.run_sync(lambda: fn(*a))

    # -- reporting -------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """What this worker reports to the registry."""
        b, loc = self.bundle, self._local
        return {
            "generation": loc.generation,
            "failed_generation": loc.failed_generation,
            "error": loc.error,
            "model": b.model.name if b is not None else None,
            "loaded_at": b.loaded_at if b is not None else None,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }

    def metadata(self) -> dict[str, Any]:
        """This worker, for ``/metadata`` (an opaque id and its model generation)."""
        out: dict[str, Any] = {"id": self.worker_id}
        if self.shared:
            out["generation"] = self._local.generation
        return out


def model_loader(source: str | Path, threads: int, engine: str) -> Callable[[], ModelBundle]:
    """A function that loads ``source`` the way the service does."""
    return lambda: ModelBundle.load(source, threads=threads, engine=engine)

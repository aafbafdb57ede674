"""Each fit's own torch generators, so that fits running at once in threads never share one.

torch's default generators (one for the CPU, one per accelerator) belong to the process. The
training loop used to seed them (``torch.manual_seed``) and let the net's initial weights, the
dropout masks and the negative samples all draw from them. Two fits in threads -- ``warmrec tune
--n-jobs 2``: Optuna runs trials in a thread pool -- then re-seeded and consumed each other's
stream, and a trial's value depended on how the threads happened to interleave.

A fit of :mod:`warmrec.training.loop` now goes in three steps:

1. :func:`seeded_global` -- holding :data:`GLOBAL_LOCK`, it seeds torch's global generators and
   builds the net. Module constructors (``nn.Linear``, ``nn.GRU``, ...) draw their default
   initial weights from the global generator and take no generator of their own, so the lock
   is what keeps another thread from drawing in between.
2. :meth:`FitGenerators.from_global` (still under the lock) copies the global state into
   generators of the fit's own, and :func:`using` makes them the current thread's (a context
   variable). The rest of the fit's setup (its training data, optimizer) runs there without the
   lock, and the training draws -- dropout (:func:`dropout`), negative samples, stochastic
   shared embeddings, ... -- pass ``generator=generator(device)``. A resume restores the
   checkpoint's states into these generators (:func:`warmrec.training.checkpoint.load_checkpoint`
   with ``generators``); the global ones are not touched.
3. At the end :func:`using` hands the final state back to the global generators (under the
   lock), where the next code of the same thread expects it.

In one thread this is the stream of before, draw for draw: the copy continues exactly where the
global generator was, and :func:`dropout` on CPU is ``F.dropout``'s own computation with the
generator made explicit. So a fit alone gives the same numbers as when it drew from the global
generators, and two fits in threads give what each gives alone. Outside a fit (a model scored, a
meta-learner driving ``training_step`` itself) :func:`generator` is ``None``, which torch reads
as its global generator.

The training code beside the loop goes the same way: Reptile pre-training
(:func:`warmrec.meta.reptile.reptile_pretrain`: its net built under :func:`seeded_global`, its
steps the loop's) and multi-source pre-training
(:func:`warmrec.transfer.multisource.pretrain_multisource`: the domains' nets built under
:func:`seeded_global`, its own steps under :func:`using`). They used to seed the global
generators without the lock and draw from them, so another fit in a thread changed their
weights.

Two draws still take the global generator, for want of a ``generator`` argument in torch: the
attention dropout of ``F.scaled_dot_product_attention`` on an accelerator (on CPU the attention
weights' mask is drawn with this module), and the dropout ``nn.GRU`` applies between its layers
(GRU4Rec with ``n_layers > 1`` and ``dropout_hidden > 0``). Fits that use them are reproducible
one at a time, not when several run in threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from warmrec.errors import ConfigError

GLOBAL_LOCK = threading.RLock()
"""Held while torch's global generators are seeded, drawn from for a net's initial weights,
copied into a fit's own generators or given their final state back (re-entrant: a fit may
build another model's net inside its own setup)."""


def _key(device: torch.device | str) -> str:
    """``"cpu"``, ``"cuda:0"``, ...: one generator per physical device."""
    d = torch.device(device)
    if d.type == "cuda" and d.index is None:
        d = torch.device("cuda", torch.cuda.current_device())
    return "cpu" if d.type == "cpu" else str(d)


def _own(key: str) -> bool:
    """Whether a fit keeps its own generator for this device (CPU and CUDA; elsewhere, e.g.
    MPS, it draws from the global one)."""
    return key == "cpu" or key.startswith("cuda")


def _global_state(key: str) -> torch.Tensor:
    return torch.get_rng_state() if key == "cpu" else torch.cuda.get_rng_state(torch.device(key))


def _set_global_state(key: str, state: torch.Tensor) -> None:
    if key == "cpu":
        torch.set_rng_state(state)
    else:
        torch.cuda.set_rng_state(state, torch.device(key))


@dataclass
class FitGenerators:
    """The torch generators of one fit, one per device it draws on (``"cpu"``, ``"cuda:0"``)."""

    by_device: dict[str, torch.Generator] = field(default_factory=dict)

    @classmethod
    def from_global(cls, *devices: torch.device | str) -> FitGenerators:
        """Generators that continue the global generators' streams from where they are now:
        the CPU's and each of ``devices``' (call under :data:`GLOBAL_LOCK`)."""
        out = cls()
        with GLOBAL_LOCK:
            for key in dict.fromkeys(["cpu", *(_key(d) for d in devices)]):
                if _own(key):
                    out._add(key)
        return out

    def _add(self, key: str) -> torch.Generator:
        g = torch.Generator(device=key)
        g.set_state(_global_state(key))
        self.by_device[key] = g
        return g

    def get(self, device: torch.device | str) -> torch.Generator | None:
        """The generator for ``device`` (one for a device first met now starts from the global
        generator's state, copied under the lock); None for a device without one of its own."""
        key = _key(device)
        g = self.by_device.get(key)
        if g is None and _own(key):
            with GLOBAL_LOCK:
                g = self._add(key)
        return g

    def states(self) -> dict[str, torch.Tensor]:
        """The generators' states by device key (what a checkpoint keeps)."""
        return {k: g.get_state() for k, g in self.by_device.items()}

    def to_global(self) -> None:
        """Give the global generators these generators' states (under :data:`GLOBAL_LOCK`)."""
        with GLOBAL_LOCK:
            for key, g in self.by_device.items():
                _set_global_state(key, g.get_state())


_CURRENT: ContextVar[FitGenerators | None] = ContextVar("warmrec_fit_generators", default=None)


@contextmanager
def seeded_global(seed: int) -> Iterator[None]:
    """Within: this thread alone uses torch's global generators, seeded with ``seed``."""
    with GLOBAL_LOCK:
        torch.manual_seed(seed)
        yield


@contextmanager
def using(gens: FitGenerators) -> Iterator[FitGenerators]:
    """Within: ``gens`` are this thread's generators (:func:`generator`); on the way out the
    global generators take their final states, as if the fit had drawn from them."""
    token = _CURRENT.set(gens)
    try:
        yield gens
    finally:
        _CURRENT.reset(token)
        gens.to_global()


@contextmanager
def isolated(seed: int, devices: list[torch.device | str] | None = None) -> Iterator[None]:
    """Within: every draw starts from ``seed`` and leaves no trace outside, as
    ``torch.random.fork_rng`` + ``torch.manual_seed`` did before fits had generators of their
    own. The global generators are forked and seeded (for module constructors, which draw from
    them) and :func:`generator` answers ``None`` (the global generator) even inside a fit, so a
    draw meant to repeat (a meta-learner adapting to one history while it is validated during
    its own training, a net built from a seed) does not take the running fit's stream instead.
    Holds :data:`GLOBAL_LOCK` throughout: no other thread seeds or copies the global generators
    meanwhile (``devices``: the accelerators to fork besides the CPU)."""
    with GLOBAL_LOCK, torch.random.fork_rng(devices=list(devices or [])):
        torch.manual_seed(seed)
        token = _CURRENT.set(None)
        try:
            yield
        finally:
            _CURRENT.reset(token)


def current() -> FitGenerators | None:
    """The running fit's generators in this thread, or None outside a fit."""
    return _CURRENT.get()


def generator(device: torch.device | str = "cpu") -> torch.Generator | None:
    """The generator a draw on ``device`` takes: the running fit's own, or ``None`` (torch's
    global generator) outside a fit. Pass it as ``generator=`` to ``torch.rand``,
    ``torch.randint``, ``Tensor.bernoulli_``, ..."""
    gens = _CURRENT.get()
    return None if gens is None else gens.get(device)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)`` drawing its mask from :func:`generator`. On CPU the same
    computation as torch's (``x * bernoulli_(1 - p) / (1 - p)``), so the same numbers for the
    same generator state."""
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"dropout: expected a probability in [0, 1], found {p}")
    g = generator(x.device)
    if g is None:
        return F.dropout(x, p, training)
    if not training or p == 0.0 or x.numel() == 0:
        return x
    if p == 1.0:
        return x * torch.zeros((), dtype=x.dtype, device=x.device)
    noise = torch.empty_like(x).bernoulli_(1.0 - p, generator=g).div_(1.0 - p)
    return x * noise

"""NeuralRecommender: the base of every model trained by :mod:`warmrec.training.loop`.

A neural model holds ``self.net`` (an ``nn.Module`` built by :meth:`build_net` from its config and
the vocabulary size) and defines

- :meth:`training_data` -- the model's training examples, built once from the compact
  :class:`~warmrec.data.sequences.SequenceData` (an object with ``n_batches(batch_size)`` and
  ``batches(batch_size, rng)`` yielding dicts of tensors);
- :meth:`training_step` -- ``batch -> scalar loss`` (the objective; the loop calls backward);
- :meth:`forward_scores` -- ``Batch -> [B, n_items]`` scores (``score`` wraps it in eval mode
  without gradients).

``fit`` hands everything to the one training loop. ``get_state``/``set_state`` are the net's
``state_dict``, so ``save``/``load`` from :class:`~warmrec.models.base.Recommender` just work.

:class:`WindowData` is the windowed "all positions are targets" form used by the transformer
models: each sequence ``x_1..x_n`` gives inputs ``x_1..x_{n-1}`` and targets ``x_2..x_n``, cut
from the end into windows of ``max_len`` positions so that every position is a target exactly
once. With ``stride < max_len`` windows overlap and each keeps as targets only the positions the
previous (later) window did not already cover, so later targets see at least
``max_len - stride`` items of context. Batches are built with :func:`pad_windows` (vectorised).
A model with a seen-item bias also gets the items just before each window (``context``), so that
the seen set of a training target is the one scoring uses: the last ``seen_len`` items of the
sequence up to and including its input, however far back the window starts.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from warmrec.config import build_config
from warmrec.data.dataset import Batch, EvalSet, SequenceDataset
from warmrec.data.sequences import SequenceData, pad_windows
from warmrec.errors import ModelError, WarmrecError
from warmrec.models.base import Recommender
from warmrec.models.layers import ItemEmbedding, SeenItemBias
from warmrec.models.losses import loss_spec_from_config, make_loss
from warmrec.models.settings import LossSettings, SeenBiasSettings, WindowSettings

if TYPE_CHECKING:
    from warmrec.training.loop import TrainerConfig


def window_layout(
    offsets: np.ndarray,
    lengths: np.ndarray,
    max_len: int,
    stride: int,
    phase: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows over sequences: ``(starts, in_ends, n_targets)``, one entry per window.

    Sequence ``i`` has ``m = lengths[i] - 1`` (input, target) pairs. Without ``phase`` its
    windows end at ``m, m - stride, m - 2 * stride, ...`` (relative pair index); window ``k``
    keeps its last ``stride`` targets, the earliest all of its targets. With ``phase[i] = o > 0``
    one more window ends at ``m`` keeping only its last ``o`` targets and the others end at
    ``m - o - k * stride`` -- the same targets, each now seen with a different context.
    """
    pairs = np.clip(np.asarray(lengths, dtype=np.int64) - 1, 0, None)
    seq_idx = np.nonzero(pairs)[0]
    m = pairs[seq_idx]
    o = np.zeros_like(m) if phase is None else np.asarray(phase, dtype=np.int64)[seq_idx]
    o = np.minimum(o, m - 1).clip(0)
    base = m - o  # pairs covered by the regular windows
    n_reg = 1 + np.maximum(0, -(-(base - max_len) // stride))
    n_win = n_reg + (o > 0)
    total = int(n_win.sum())
    owner = np.repeat(np.arange(len(seq_idx)), n_win)
    k = np.arange(total) - np.repeat(np.cumsum(n_win) - n_win, n_win)  # 0 = latest window
    extra = (o > 0)[owner]
    kr = k - extra  # index among the regular windows (-1 = the extra latest window)
    rel_end = np.where(kr < 0, m[owner], base[owner] - kr * stride)
    earliest = kr == n_reg[owner] - 1
    n_targets = np.where(kr < 0, o[owner], np.where(earliest, np.minimum(rel_end, max_len), stride))
    start = np.asarray(offsets, dtype=np.int64)[seq_idx][owner]
    return start, start + rel_end, n_targets.astype(np.int64)


class WindowData:
    """Left-padded training windows over a :class:`SequenceData`, every position a target once.

    Window ``w`` holds the inputs ``items[in_end[w] - max_len : in_end[w]]`` (clipped to its
    sequence) and the targets one step later; only its last ``n_targets[w]`` target columns count.
    With ``random_phase`` every epoch shifts the window boundaries of each sequence longer than
    ``max_len`` by a random offset (see :func:`window_layout`): each target is still trained once
    per epoch, but with a context that changes from epoch to epoch (one extra window per long
    sequence).

    With ``context > 0`` a batch also holds ``"before"`` ``[B, C]``: up to ``context`` items of
    each window's sequence just before its first input (left-padded, 0 = none), ``C`` the most
    any window of the batch has (no ``"before"`` where no window has any: a batch of sequences
    that fit in their window is what it is without ``context``). The seen-item bias takes its
    training histories from them (:meth:`NeuralRecommender.seen_for_loss`).
    """

    def __init__(
        self,
        seqs: SequenceData,
        max_len: int,
        stride: int | None = None,
        *,
        random_phase: bool = False,
        context: int = 0,
    ) -> None:
        self.stride = max_len if not stride else min(int(stride), max_len)
        self.max_len = max_len
        self.items = seqs.items
        self.random_phase = random_phase
        self.context = max(int(context), 0)
        self._offsets = seqs.offsets
        self._lengths = seqs.lengths
        self.starts, self.in_ends, self.n_targets = window_layout(
            seqs.offsets, self._lengths, max_len, self.stride
        )

    def relayout(self, rng: np.random.Generator) -> None:
        """Draw new window phases (``random_phase``)."""
        long = self._lengths - 1 > self.max_len
        phase = np.where(long, rng.integers(0, self.stride, size=len(self._lengths)), 0)
        self.starts, self.in_ends, self.n_targets = window_layout(
            self._offsets, self._lengths, self.max_len, self.stride, phase
        )

    def __len__(self) -> int:
        return len(self.in_ends)

    @property
    def n_targets_total(self) -> int:
        return int(self.n_targets.sum())

    def window(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets ``[n, max_len]`` of the windows at ``index`` (targets 0 = none)."""
        s, e, L = self.starts[index], self.in_ends[index], self.max_len
        inputs = pad_windows(self.items, s, e, L)
        targets = pad_windows(self.items, s + 1, e + 1, L)
        targets[np.arange(L)[None, :] < (L - self.n_targets[index])[:, None]] = 0
        return inputs, targets

    def before(self, index: np.ndarray) -> np.ndarray | None:
        """``[n, C]``: up to ``context`` items of each window's sequence before its first input
        (left-padded), ``C`` the most any of them has; None where none has any."""
        if not self.context:
            return None
        s, e = self.starts[index], self.in_ends[index]
        first = np.maximum(s, e - self.max_len)  # where each window's inputs start
        width = min(self.context, int((first - s).max(initial=0)))
        return pad_windows(self.items, s, first, width) if width > 0 else None

    def batch(self, index: np.ndarray) -> dict[str, Any]:
        """The batch of the windows at ``index``: ``"items"``, ``"targets"`` and, with
        ``context``, ``"before"`` where any window has items before it."""
        inputs, targets = self.window(index)
        out = {"items": torch.from_numpy(inputs), "targets": torch.from_numpy(targets)}
        before = self.before(index)
        if before is not None:
            out["before"] = torch.from_numpy(before)
        return out

    def expected_windows(self) -> float:
        """Windows an epoch has: without ``random_phase`` its fixed count; with it the mean
        over the phases (the count varies from epoch to epoch). A long sequence with
        ``r = m - max_len`` pairs beyond its first window gets one window more than with phase
        0 for the phases ``1 <= o < r mod stride`` (all ``o > 0`` where ``stride`` divides
        ``r``), one of the ``stride`` equally likely phases each; the others give as many."""
        pairs = np.clip(np.asarray(self._lengths, dtype=np.int64) - 1, 0, None)
        pairs = pairs[pairs > 0]
        n = int((1 + np.maximum(0, -(-(pairs - self.max_len) // self.stride))).sum())
        if not self.random_phase:
            return float(n)
        r = pairs[pairs > self.max_len] - self.max_len
        t = r % self.stride
        more = np.where(t == 0, self.stride - 1, np.maximum(t - 1, 0)).sum()
        return n + float(more) / self.stride

    def n_batches(self, batch_size: int) -> int:
        """Batches per epoch (the loop's learning-rate schedule and progress bar): exact
        without ``random_phase``, the mean over the phases with it (an epoch may then have a
        batch more or fewer)."""
        return -(-round(self.expected_windows()) // batch_size)

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
        if self.random_phase:
            self.relayout(rng)
        order = rng.permutation(len(self))
        for lo in range(0, len(order), batch_size):
            yield self.batch(order[lo : lo + batch_size])


class _OverBudget(BaseException):
    """A net being built registered more parameters, buffers and modules than allowed (a
    BaseException: an ``except Exception`` inside a model's ``build_net`` does not swallow it)."""


_BUDGET = threading.local()  # this thread's registration limit and count, while a build runs
_HOOKS_LOCK = threading.Lock()
_HOOKS: list[Any] = []


def _count_registration(*_: Any) -> None:
    """torch's global registration hook: counts against this thread's limit, if it has one."""
    limit = getattr(_BUDGET, "limit", None)
    if limit is None:
        return
    _BUDGET.count += 1
    if _BUDGET.count > limit:
        raise _OverBudget


def _install_hooks() -> None:
    """Register :func:`_count_registration` with torch once, never removed: torch iterates its
    global hook dicts on every registration in every thread, so adding and removing hooks per
    load could fail another thread's build ("OrderedDict mutated during iteration")."""
    with _HOOKS_LOCK:
        if _HOOKS:
            return
        from torch.nn.modules import module as torch_module

        _HOOKS.extend(
            [
                torch_module.register_module_parameter_registration_hook(_count_registration),
                torch_module.register_module_buffer_registration_hook(_count_registration),
                torch_module.register_module_module_registration_hook(_count_registration),
            ]
        )


@contextmanager
def _registration_budget(limit: int) -> Iterator[None]:
    """Raise :class:`_OverBudget` from the ``limit + 1``-th parameter, buffer or submodule this
    thread registers on any module inside the block (torch's global registration hooks,
    installed once; other threads are not counted)."""
    _install_hooks()
    outer = (getattr(_BUDGET, "limit", None), getattr(_BUDGET, "count", 0))
    _BUDGET.limit, _BUDGET.count = limit, 0
    try:
        yield
    finally:
        _BUDGET.limit, _BUDGET.count = outer


class _SizedOnMeta(TorchFunctionMode):
    """Tensors made from sizes alone (``torch.empty``, ``zeros``, ``randn``, ...) go to the
    ``meta`` device (shapes, no memory); tensors made from data (``torch.tensor``,
    ``as_tensor``, ``from_numpy``: item text vectors a net is built from) stay where they are,
    their size bounded by the data."""

    SIZED = frozenset(
        {
            torch.empty,
            torch.empty_strided,
            torch.zeros,
            torch.ones,
            torch.full,
            torch.rand,
            torch.randn,
            torch.randint,
            torch.randperm,
            torch.arange,
            torch.eye,
            torch.linspace,
        }
    )

    def __torch_function__(
        self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func in self.SIZED and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def build_on_meta(
    build: Callable[[], nn.Module], n_weights: int, what: str, config: Any = None
) -> nn.Module:
    """``build()`` with every tensor made from sizes alone on the ``meta`` device (shapes, no
    memory; tensors made from data stay where they are) and at most ``16 * n_weights + 256``
    parameters, buffers and modules registered (``n_weights``: the entries of the weights the
    result is checked against): a saved config edited to huge sizes is a :class:`ModelError`
    naming ``what`` and the config's sizes (``config``), not a hang or an allocation."""
    limit = 16 * n_weights + 256
    try:
        with _registration_budget(limit), _SizedOnMeta(), warnings.catch_warnings():
            # loading weights into the meta net checks their names and shapes, and copies
            # nothing (torch warns that the copy is a no-op: that is the point)
            warnings.filterwarnings("ignore", message=".*to a meta parameter", category=UserWarning)
            return build()
    except _OverBudget:
        raise ModelError(
            f"{what}: the config builds a network of more than {limit} parameters, buffers "
            f"and modules, far more than the {n_weights} weights hold (edited after saving? "
            f"sizes set: {_size_fields(config)})"
        ) from None
    except WarmrecError:
        raise
    except Exception as e:  # a size torch refuses (e.g. beyond 64 bits)
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(
            f"{what}: the config gives a network torch cannot build ({text}; edited after "
            f"saving? sizes set: {_size_fields(config)})"
        ) from None


def _int_fields(config: Any) -> dict[str, int]:
    return {
        k: v
        for k, v in config.model_dump().items()
        if isinstance(v, int) and not isinstance(v, bool)
    }


def _size_fields(config: Any) -> str:
    """The config's whole-number fields that differ from their defaults, largest first (the
    sizes an edited config inflates); only built for an error message."""
    if config is None:
        return "its sizes"
    default = _int_fields(type(config)())
    ints = [(k, v) for k, v in _int_fields(config).items() if default.get(k) != v]
    ints.sort(key=lambda kv: -kv[1])
    return ", ".join(f"{k} = {v}" for k, v in ints[:3]) or "its sizes"


def _fields_giving(config: Any, built: tuple[int, ...], saved: tuple[int, ...]) -> str:
    """`` (config field 'max_len' = 10**9, the weights give 6)`` where a dimension that differs
    equals a whole-number config field; empty where none does."""
    if len(built) != len(saved):
        return ""
    ints = _int_fields(config)
    for b, s in zip(built, saved):
        if b != s:
            names = [k for k, v in ints.items() if v == b]
            if names:
                which = " or ".join(f"'{n}'" for n in names)
                return f" (config field {which} = {b}, the weights give {s})"
    return ""


class NeuralRecommender(Recommender):
    """Base class of the models trained by the shared loop (see the module docstring)."""

    net: nn.Module | None = None
    default_trainer: ClassVar[dict[str, Any]] = {}
    """The model's best-known :class:`~warmrec.training.loop.TrainerConfig` settings (batch size,
    learning rate, schedule, ...), used where the caller sets nothing; document where measured."""

    @classmethod
    def trainer_config(cls, trainer: Any = None, **overrides: Any) -> TrainerConfig:
        """The :class:`~warmrec.training.loop.TrainerConfig` of a run: :attr:`default_trainer`
        under ``trainer`` (a mapping or a TrainerConfig, whose explicitly set fields count)
        under ``overrides``. Raises a one-line ConfigError on a bad key or value."""
        from warmrec.training.loop import TrainerConfig

        if isinstance(trainer, TrainerConfig):
            given = trainer.model_dump(exclude_unset=True)
        else:
            given = dict(trainer or {})
        return build_config(TrainerConfig, {**cls.default_trainer, **given}, **overrides)

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.net = None
        self.device = torch.device("cpu")
        self.train_result = None
        self.lr_scales: dict[str, float] | None = None
        """Per-parameter learning-rate scales by name (set by the ``"discriminative"`` transfer
        strategy); None: every parameter trains at the full rate."""

    # -- to implement -------------------------------------------------------------------------
    def build_net(self, n_items: int) -> nn.Module:
        raise NotImplementedError

    def prepare(self, train: SequenceDataset) -> None:
        """Set up what training needs beyond the net (losses, samplers); called by the loop.

        Default: ``self.loss_fn`` from the config's loss settings
        (:func:`~warmrec.models.losses.loss_spec_from_config`) when it has them."""
        if isinstance(self.config, LossSettings):
            spec = loss_spec_from_config(self.config)
            self.loss_fn = make_loss(spec, self.n_items, train.item_counts())

    def training_data(self, train: SequenceDataset) -> Any:
        """The training examples (default: :class:`WindowData` of the config's
        :class:`~warmrec.models.settings.WindowSettings`)."""
        c = self.config
        if not isinstance(c, WindowSettings):
            raise ModelError(
                f"model '{self.name}': {type(c).__name__} has no window settings; "
                "override training_data"
            )
        return WindowData(
            train.sequences,
            c.max_len,
            c.window_stride or None,
            random_phase=c.random_phase,
            context=self.seen_context,
        )

    def training_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward_scores(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def sparse_parameters(self) -> list[torch.Tensor]:
        """Parameters whose gradients :meth:`training_step` makes sparse (tables of which a
        mini-batch touches few rows, looked up with ``sparse=True``); the optimizer updates only
        those rows (see :func:`~warmrec.training.loop.make_optimizer`). Default: none."""
        return []

    def optimizer_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Parameter groups for the optimizer: weight decay on matrices only; with
        :attr:`lr_scales`, one group per (scale, matrix or not) carrying ``lr_scale``, highest
        scale first. The :meth:`sparse_parameters` go into groups of their own marked
        ``sparse=True``."""
        from warmrec.training.loop import decay_groups

        if self.lr_scales is None:
            groups = decay_groups(self.net, weight_decay)
        else:
            by_key: dict[tuple[float, bool], list[torch.Tensor]] = {}
            for name, p in self.net.named_parameters():
                if p.requires_grad:
                    key = (float(self.lr_scales.get(name, 1.0)), p.dim() >= 2)
                    by_key.setdefault(key, []).append(p)
            groups = [
                {
                    "params": ps,
                    "weight_decay": weight_decay if matrix else 0.0,
                    "lr_scale": scale,
                }
                for (scale, matrix), ps in sorted(
                    by_key.items(), key=lambda kv: (-kv[0][0], kv[0][1])
                )
            ]
        sparse_ids = {id(p) for p in self.sparse_parameters()}
        if not sparse_ids:
            return groups
        out = []
        for g in groups:
            dense = [p for p in g["params"] if id(p) not in sparse_ids]
            sparse = [p for p in g["params"] if id(p) in sparse_ids]
            if dense:
                out.append({**g, "params": dense})
            if sparse:
                out.append({**g, "params": sparse, "sparse": True})
        return out

    # -- shared -------------------------------------------------------------------------------
    @property
    def history_len(self) -> int:
        """``max_len``, or ``seen_len`` when longer and the model has a seen-item bias."""
        c = self.config
        n = super().history_len
        if isinstance(c, SeenBiasSettings) and c.seen_bias:
            n = max(n, c.seen_len)
        return n

    @property
    def seen_context(self) -> int:
        """How many items before a training window its batches carry (``"before"``, see
        :class:`WindowData`): ``seen_len - 1`` with a seen-item bias, so that a window's first
        target too sees its last ``seen_len`` items; 0 without one."""
        c = self.config
        if isinstance(c, SeenBiasSettings) and c.seen_bias:
            return int(c.seen_len) - 1
        return 0

    def seen_for_loss(
        self, items: torch.Tensor, keep: torch.Tensor, before: torch.Tensor | None = None
    ) -> tuple | None:
        """The losses' ``seen`` argument for windows ``items[B, L]`` (first item first, or
        left-padded) at the target positions ``keep[B, L]``; None without a seen-item bias.

        The seen set of the target after column ``t`` is what scoring offsets
        (:meth:`add_seen`): the last ``seen_len`` items of the sequence up to and including
        ``items[:, t]``, reaching into ``before[B, C]`` (the items just before each window,
        left-padded) where the window holds fewer. Without ``before`` and with ``seen_len`` at
        least the window's width, it is the window's prefix up to ``t``
        (:meth:`SeenItemBias.prefix_histories`)."""
        seen = getattr(self.net, "seen", None)
        if seen is None:
            return None
        n = getattr(self.config, "seen_len", None)
        if before is None and (n is None or n >= items.shape[1]):
            return SeenItemBias.prefix_histories(items)[keep], seen.value
        n = int(n) if n is not None else items.shape[1] + before.shape[1]
        return SeenItemBias.recent_histories(items, keep, n, before), seen.value

    def window_loss(
        self,
        hidden: torch.Tensor,
        items: torch.Tensor,
        targets: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        before: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``self.loss_fn`` over every target position of windows: queries ``hidden[B, L, D]``,
        inputs ``items[B, L]`` and ``targets[B, L]`` (0 = no target), scored against ``weight``
        / ``bias``; ``items`` and the items before each window (``before``, the batch's
        ``"before"``) feed the seen-item bias (:meth:`seen_for_loss`)."""
        keep = targets > 0
        seen = self.seen_for_loss(items, keep, before)
        return self.loss_fn(hidden[keep], targets[keep], weight, bias, seen=seen)

    def add_seen(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Offset the scores of the items among the last ``seen_len`` items of the batch's
        histories (a seen-item bias; the batch is ``history_len`` wide, which ``max_len`` sets
        where it is the longer)."""
        seen = getattr(self.net, "seen", None)
        if seen is not None:
            n = getattr(self.config, "seen_len", None)
            seen.add_(logits, batch.items if n is None else batch.items[:, -int(n) :])
        return logits

    def _output_layer(self) -> ItemEmbedding:
        item = getattr(self.net, "item", None)
        if not isinstance(item, ItemEmbedding):
            raise ModelError(
                f"model '{self.name}': a head over the backbone needs net.item (an "
                f"ItemEmbedding output layer), found {type(item).__name__}"
            )
        return item

    def sequence_representation(self, batch: Batch) -> torch.Tensor:
        """``[B, d]``: the vector of each history that the output layer scores the catalogue
        with (what :meth:`forward_scores` gives ``net.item.logits``): the backbone's sequence
        representation, for heads over any model (e.g. rating regression,
        :mod:`warmrec.meta.rating`). Differentiable; works under ``functional_call``."""
        item = self._output_layer()
        got: list[torch.Tensor] = []
        logits = item.logits

        def grab(hidden: torch.Tensor) -> torch.Tensor:
            got.append(hidden)
            return logits(hidden)

        item.logits = grab  # type: ignore[method-assign]
        try:
            self.forward_scores(batch)
        finally:
            del item.logits
        return got[-1]

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """``[..., d]``: the output-layer vectors of ``items`` (what :meth:`forward_scores`
        scores a history's representation against)."""
        return self._output_layer().output_weight[items]

    def init_net(self) -> None:
        """(Re)build the net for the bound vocabulary and move it to ``self.device``."""
        self._check_fitted()
        self.net = self.build_net(self.n_items).to(self.device)

    def setup_training(self, train: SequenceDataset) -> None:
        """Everything the training loop does before its first step on a fresh model: take
        ``train``'s vocabularies and item counts (and fit side features where the model has
        them), build a new net on ``self.device`` (seed torch first for a reproducible init)
        and :meth:`prepare` the loss. For callers that drive the steps themselves (benchmarks,
        profiling): ``training_data(train)`` and ``optimizer_groups`` come next."""
        self._bind(train)
        self.init_net()
        self.prepare(train)

    def to(self, device: torch.device | str) -> NeuralRecommender:
        self.device = torch.device(device)
        if self.net is not None:
            self.net.to(self.device)
        return self

    @property
    def training(self) -> bool:
        return bool(self.net is not None and self.net.training)

    def train(self, mode: bool = True) -> None:
        if self.net is not None:
            self.net.train(mode)

    def fit(
        self,
        train: SequenceDataset,
        valid: EvalSet | None = None,
        *,
        trainer: Any = None,
        callbacks: Sequence[Callable[[int, dict[str, Any], Any], bool | None]] = (),
        hooks: Any = None,
        **trainer_overrides: Any,
    ) -> NeuralRecommender:
        """Train with the shared loop; ``trainer`` is a ``TrainerConfig`` or a mapping, and
        keyword arguments override its fields (``epochs=5``, ``lr=1e-3``, ...). The class's
        :attr:`default_trainer` fills the fields the caller does not set. ``callbacks`` go to
        the loop: ``callback(epoch, record, model)`` after every epoch (True stops training;
        an exception, e.g. a tuner's pruning signal, ends it); ``hooks``: a
        :class:`~warmrec.training.loop.LoopHooks` (e.g. a data-parallel worker's)."""
        from warmrec.training.loop import train as run_training

        cfg = self.trainer_config(trainer, **trainer_overrides)
        self.train_result = run_training(self, train, valid, cfg, callbacks=callbacks, hooks=hooks)
        return self

    def score(self, batch: Batch) -> torch.Tensor:
        if self.net is None:
            self._check_fitted()
            raise ModelError(f"model '{self.name}' has no network: call fit() or load() first")
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.no_grad():
                out = self.forward_scores(batch.to(self.device))
        finally:
            self.net.train(was_training)
        return out.float().cpu()

    def get_state(self) -> dict[str, torch.Tensor]:
        if self.net is None:
            raise ModelError(f"model '{self.name}' has no network to save")
        return {k: v.detach() for k, v in self.net.state_dict().items()}

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        """Build the net of the config and vocabulary and load ``state`` into it. The net is
        first built on the ``meta`` device (no memory) and checked against ``state``, so that a
        config edited after saving (``n_layers = 10**30``, a huge ``d`` or ``max_len``) is one
        error naming the weight or config field, not a hang or an exhausted memory."""
        self._check_fitted()
        self._check_net_fits(state)
        self.net = self.build_net(self.n_items)
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelError(
                f"model '{self.name}': weights do not match the network "
                f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
            )
        self.net.to(self.device)

    def meta_net(self, n_weights: int, then: Callable[[nn.Module], Any] | None = None) -> nn.Module:
        """The net of the config and vocabulary built on the ``meta`` device (shapes, no
        memory; tensors made from data, such as item text vectors, stay on the CPU), and
        ``then(net)`` applied to it (e.g. injecting the adapters a file records), for checking
        a model file before anything is allocated. The build may register at most
        ``16 * n_weights + 256`` parameters, buffers and modules (``n_weights``: the entries of
        the weights it is checked against): a config asking for far more (an edited
        ``n_layers``) stops there instead of looping. Raises :class:`ModelError`."""

        def build() -> nn.Module:
            net = self.build_net(self.n_items)
            if then is not None:
                then(net)
            return net

        return build_on_meta(build, n_weights, f"model '{self.name}'", self.config)

    def _check_net_fits(self, state: Mapping[str, torch.Tensor]) -> None:
        """Refuse ``state`` where the net of the config and vocabulary would hold other weights
        (names or shapes), finding out on the ``meta`` device (:meth:`meta_net`)."""
        own = self.meta_net(len(state)).state_dict()
        for k, v in state.items():
            if k in own and tuple(own[k].shape) != tuple(v.shape):
                fields = _fields_giving(self.config, tuple(own[k].shape), tuple(v.shape))
                raise ModelError(
                    f"model '{self.name}': weight {k!r} has shape {tuple(v.shape)}, the config "
                    f"and vocabulary give {tuple(own[k].shape)}{fields}"
                )

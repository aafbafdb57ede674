"""What SSE-PT and BST share: user-aware training windows and side features bound at fit time.

:class:`UserWindowData` gives :class:`~warmrec.models.neural.WindowData` batches a ``"users"``
column. :class:`FeatureSequenceModel` is the base of the neural models that read users and side
features (:mod:`warmrec.models.features`): its ``_bind`` fits :class:`SideFeatures` on the
training set (item columns ``config.item_features``, user columns ``config.user_features`` when
the config has them) and keeps them in ``meta.features`` so a saved model rebuilds the same
embedders; :meth:`FeatureSequenceModel.attach_features` hands the fitted code matrices to a
freshly built net.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from warmrec.data.dataset import Batch, SequenceDataset
from warmrec.data.sequences import SequenceData
from warmrec.errors import ModelError
from warmrec.models.features import FeatureSpec, SideFeatures
from warmrec.models.neural import NeuralRecommender, WindowData
from warmrec.models.settings import FeatureSettings, UserFeatureSettings, WindowSettings


class UserWindowData(WindowData):
    """:class:`WindowData` whose batches also carry each window's user index (``"users"``).

    ``users`` holds one user index per sequence (``None``: all 0, unknown). Batching is
    :meth:`WindowData.batches`; the user of a window is looked up from its start at batch time,
    so it stays right when ``random_phase`` moves the windows.
    """

    def __init__(
        self,
        seqs: SequenceData,
        users: np.ndarray | None,
        max_len: int,
        stride: int | None = None,
        *,
        random_phase: bool = False,
        context: int = 0,
    ) -> None:
        super().__init__(seqs, max_len, stride, random_phase=random_phase, context=context)
        self.seq_offsets = np.asarray(seqs.offsets, dtype=np.int64)
        self.seq_users = (
            np.zeros(len(seqs), dtype=np.int64)
            if users is None
            else np.asarray(users, dtype=np.int64)
        )

    def window_users(self, index: np.ndarray) -> np.ndarray:
        seq = np.searchsorted(self.seq_offsets, self.starts[index], side="right") - 1
        return self.seq_users[seq]

    def batch(self, index: np.ndarray) -> dict[str, Any]:
        return {**super().batch(index), "users": torch.from_numpy(self.window_users(index))}


def n_users_of(model: NeuralRecommender) -> int:
    """Rows of a user table: the user vocabulary (with index 0), or 1 when there is none."""
    return len(model.user_vocab) if model.user_vocab is not None else 1


def known_users(users: torch.Tensor, n_users: int) -> torch.Tensor:
    """Training users as ``long``, 0 (unknown) where outside a table of ``n_users`` rows."""
    users = users.long()
    return torch.where(users < n_users, users, torch.zeros_like(users))


def batch_users(batch: Batch, n_users: int) -> torch.Tensor:
    """``Batch.users`` (0 where unknown or out of range), zeros when the batch has none."""
    if batch.users is None:
        return torch.zeros(len(batch), dtype=torch.long, device=batch.items.device)
    u = batch.users.to(batch.items.device).long()
    return torch.where((u > 0) & (u < n_users), u, torch.zeros_like(u))


class FeatureSequenceModel(NeuralRecommender):
    """A neural sequence model with users and side features (SSE-PT, BST).

    Its config is a :class:`~warmrec.models.settings.FeatureSettings` (item columns; a
    :class:`~warmrec.models.settings.UserFeatureSettings` adds user columns) and a
    :class:`~warmrec.models.settings.WindowSettings`.
    """

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._features: SideFeatures | None = None

    def _bind(self, train: SequenceDataset) -> None:
        super()._bind(train)
        c = self.config
        if not isinstance(c, FeatureSettings):
            raise ModelError(f"model '{self.name}': {type(c).__name__} has no feature settings")
        self._features = SideFeatures.fit(
            train,
            c.item_features,
            c.user_features if isinstance(c, UserFeatureSettings) else (),
            kinds={n: "numeric" for n in c.numeric_features},
            n_bins=c.n_bins,
        )
        self.meta.features = self._features.to_meta()

    def feature_specs(self) -> tuple[list[FeatureSpec], list[FeatureSpec]]:
        """Item and user feature specs, as fitted (or as saved in ``meta``)."""
        return SideFeatures.specs_from_meta(self.meta.features)

    def attach_features(self, net: nn.Module) -> nn.Module:
        """Give a freshly built net the fitted code matrices (its ``item_feat`` / ``user_feat``;
        a loaded model gets them from its saved state instead)."""
        f = self._features
        if f is not None:
            for name, side in (("item_feat", f.item), ("user_feat", f.user)):
                embedder = getattr(net, name, None)
                if embedder is not None and side is not None:
                    embedder.set_codes(side.codes)
        return net

    def training_data(self, train: SequenceDataset) -> UserWindowData:
        c = self.config
        assert isinstance(c, WindowSettings)
        return UserWindowData(
            train.sequences,
            train.users,
            c.max_len,
            c.window_stride or None,
            random_phase=c.random_phase,
            context=self.seen_context,
        )

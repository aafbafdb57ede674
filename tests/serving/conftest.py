"""Fixtures of the serving tests: small fitted models saved as directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cyclic_log, tiny_net
from warmrec import get_model
from warmrec.data.dataset import SequenceDataset


def save_model(name: str, path: Path, n_items: int = 20, **config) -> Path:
    """Fit ``name`` on ``cyclic_log`` (raw ids 1..n_items) and save it to ``path``."""
    train = SequenceDataset.from_frame(cyclic_log(n_items=n_items))
    model = get_model(name, config)
    if hasattr(model, "training_step"):
        model.fit(train, trainer={"epochs": 1, "seed": 0})
    else:
        model.fit(train)
    return model.save(path)


@pytest.fixture(scope="session")
def pop_dir(tmp_path_factory) -> Path:
    return save_model("pop", tmp_path_factory.mktemp("models") / "pop")


@pytest.fixture(scope="session")
def sasrec_dir(tmp_path_factory) -> Path:
    return save_model("sasrec", tmp_path_factory.mktemp("models") / "sasrec", **tiny_net("sasrec"))

"""Each fit's own torch generators (warmrec.rng): fits in threads do not draw from each other's
stream, and a fit alone draws exactly what it drew from torch's global generators."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import split_cyclic, tiny_net
from warmrec import get_model
from warmrec.rng import (
    FitGenerators,
    current,
    dropout,
    generator,
    isolated,
    seeded_global,
    using,
)


def test_outside_a_fit_draws_take_the_global_generator() -> None:
    assert current() is None and generator("cpu") is None
    torch.manual_seed(3)
    x = torch.ones(1000)
    mine = dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(mine, F.dropout(x, 0.5, True))


def test_fit_dropout_draws_what_torch_dropout_draws_from_the_same_state() -> None:
    x = torch.randn(64, 50)
    with seeded_global(11):
        gens = FitGenerators.from_global()
    with using(gens):
        mine = dropout(x, 0.3)
        assert not torch.equal(mine, x) and bool((mine == 0).any())
    torch.manual_seed(11)
    assert torch.equal(mine, F.dropout(x, 0.3, True))
    # the global generator takes the fit's final state back: the next draw continues its stream
    after = torch.rand(5)
    torch.manual_seed(11)
    F.dropout(x, 0.3, True)
    assert torch.equal(after, torch.rand(5))


def test_fit_draws_ignore_another_thread_reseeding_the_global_generator() -> None:
    with seeded_global(5):
        gens = FitGenerators.from_global()
    with using(gens):
        first = torch.rand(4, generator=generator("cpu"))
        other = threading.Thread(target=lambda: (torch.manual_seed(99), torch.rand(100)))
        other.start()
        other.join()
        second = torch.rand(4, generator=generator("cpu"))
    torch.manual_seed(5)
    assert torch.equal(torch.cat([first, second]), torch.rand(8))


def test_dropout_rejects_a_rate_outside_0_1() -> None:
    from warmrec.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"dropout: expected a probability in \[0, 1\], found 1.5"
    ):
        dropout(torch.ones(3), 1.5)


def _weights(name: str, cfg: dict[str, Any], meddle: bool) -> dict[str, torch.Tensor]:
    """Fit ``name`` for 3 epochs; with ``meddle`` another thread re-seeds torch's global
    generator and draws from it after epoch 1 (what a concurrent trial's fit does)."""
    train, valid = split_cyclic()

    def other_fit(epoch: int, record: dict[str, Any], model: Any) -> None:
        if meddle and epoch == 1:
            t = threading.Thread(target=lambda: (torch.manual_seed(123), torch.rand(1000)))
            t.start()
            t.join()

    model = get_model(name, cfg)
    model.fit(train, valid, epochs=3, seed=5, callbacks=[other_fit], progress=False)
    return {k: v.clone() for k, v in model.net.state_dict().items()}


@pytest.mark.parametrize(
    ("name", "cfg"),
    [
        ("sasrec", {**tiny_net("sasrec", dropout_all=0.3), "loss": "sampled_ce", "n_negatives": 5}),
        ("gru4rec", tiny_net("gru4rec", dropout_all=0.3)),
        ("ssept", tiny_net("ssept", dropout_all=0.3)),
    ],
)
def test_a_fit_gives_the_same_weights_whatever_another_thread_draws(
    name: str, cfg: dict[str, Any]
) -> None:
    # dropout (FastDropout, Dropout), negative sampling and SSE all draw in these fits; before
    # the fit had generators of its own, the other thread's seed changed every weight after
    # epoch 1
    alone = _weights(name, cfg, meddle=False)
    beside = _weights(name, cfg, meddle=True)
    assert alone.keys() == beside.keys()
    changed = [k for k in alone if not torch.equal(alone[k], beside[k])]
    assert changed == []


def test_isolated_draws_repeat_inside_a_fit_and_leave_its_stream_alone() -> None:
    """A seeded block inside a running fit (MetaModel scoring a history while its training
    validates it) draws the same numbers every time, and the fit's own stream continues as if
    the block had not run: the block had taken the fit's stream, so validation scores of a
    meta-learner changed from epoch to epoch on unchanged weights."""
    x = torch.ones(2000)
    with seeded_global(5):
        gens = FitGenerators.from_global()
    with seeded_global(5):
        ref = FitGenerators.from_global()
    with using(gens):
        with isolated(9):
            first = dropout(x, 0.5)
        gens_after_one = generator("cpu").get_state()
        with isolated(9):
            second = dropout(x, 0.5)
        assert torch.equal(first, second)
        assert torch.equal(gens_after_one, ref.get("cpu").get_state())
        assert current() is gens
    torch.manual_seed(9)
    assert torch.equal(first, F.dropout(x, 0.5, True))

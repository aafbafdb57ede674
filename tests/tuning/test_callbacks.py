"""The per-epoch hooks tuning prunes through: Item2Vec's and the neural models' ``fit(callbacks=)``."""

from __future__ import annotations

import pytest

from warmrec.registry import get_model


class Stop(Exception):
    pass


def test_item2vec_calls_back_every_epoch_with_that_epochs_vectors(cyclic_split) -> None:
    train, valid = cyclic_split
    seen = []

    def cb(epoch, record, model):
        seen.append((epoch, record["recall@20"], model.vectors.clone()))

    model = get_model("item2vec", {"vector_size": 8, "epochs": 3, "sample": 0.0})
    model.fit(train, valid, callbacks=[cb])
    assert [e for e, _, _ in seen] == [1, 2, 3]
    assert not (seen[0][2] == seen[2][2]).all()  # the vectors of each epoch, not the final ones


def test_item2vec_callback_exception_ends_training(cyclic_split) -> None:
    train, valid = cyclic_split
    calls = []

    def cb(epoch, record, model):
        calls.append(epoch)
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        get_model("item2vec", {"vector_size": 8, "epochs": 6}).fit(train, valid, callbacks=[cb])
    assert calls == [1, 2]


def test_item2vec_callbacks_without_validation(cyclic_split) -> None:
    train, _ = cyclic_split
    calls = []
    m = get_model("item2vec", {"vector_size": 8, "epochs": 2})
    m.fit(train, callbacks=[lambda e, r, model: calls.append((e, model.vectors is not None))])
    assert calls == [(1, True), (2, True)]


def test_neural_fit_passes_callbacks_to_the_loop(cyclic_split) -> None:
    train, valid = cyclic_split
    calls = []

    def cb(epoch, record, model):
        calls.append((epoch, "valid_ndcg@10" in record))
        if epoch == 2:
            raise Stop

    model = get_model("gru4rec", {"hidden_size": 8, "n_negatives": 0})
    with pytest.raises(Stop):
        model.fit(train, valid, trainer={"epochs": 5, "progress": False}, callbacks=[cb])
    assert calls == [(1, True), (2, True)]

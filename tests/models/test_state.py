"""Checked reading of saved state (:mod:`warmrec.models.state`): a CSR whose arrays are out of
range, and counts of the wrong length, are one ModelError (scipy's products and the kNN kernels
read them without bounds checks: a tampered model directory crashed the process loading it)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import cyclic_log
from warmrec import SequenceDataset, get_model
from warmrec.errors import ModelError
from warmrec.models.base import Recommender
from warmrec.models.state import counts_from_state, csr_from_state, csr_state


def _state(m: sp.csr_matrix) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in csr_state("w", m).items()}


def test_a_csr_round_trips_and_a_damaged_one_is_refused():
    m = sp.random(5, 5, density=0.4, format="csr", dtype=np.float32, random_state=0)
    got = csr_from_state("w", _state(m), (5, 5))
    assert (got != m).nnz == 0
    for key, edit in (
        ("w_indices", lambda a: a.fill_(10**6)),  # a column far outside the matrix
        ("w_indices", lambda a: a.fill_(-1)),
        ("w_indptr", lambda a: a.flip(0)),  # pointers that go back
    ):
        bad = _state(m)
        bad[key] = edit(bad[key].clone())
        with pytest.raises(ModelError, match="CSR"):
            csr_from_state("w", bad, (5, 5))
    bad = _state(m)
    bad["w_data"][0] = float("nan")
    with pytest.raises(ModelError, match="non-finite"):
        csr_from_state("w", bad, (5, 5))
    assert counts_from_state({"counts": torch.ones(5)}, 5).shape == (5,)
    with pytest.raises(ModelError, match="counts"):
        counts_from_state({"counts": torch.ones(3)}, 5)


@pytest.mark.parametrize("name", ["markov", "vsknn", "pop"])
def test_a_tampered_model_directory_with_its_checksum_rewritten_is_one_error(tmp_path, name):
    """The weights' checksum sits beside them: rewritten, only the values can tell."""
    data = SequenceDataset.from_frame(cyclic_log(n_sessions=40, n_items=12, length=6))
    path = get_model(name).fit(data).save(tmp_path / name)
    weights = path / "model.safetensors"
    state = load_file(weights)
    if name == "pop":
        state["counts"] = state["counts"][:5].clone()
    else:
        key = "w_indices" if name == "markov" else "sessions_indices"
        state[key] = torch.full_like(state[key], 2_000_000_000)
    save_file(state, weights)
    info = json.loads((path / "config.json").read_text())
    info["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (path / "config.json").write_text(json.dumps(info))
    with pytest.raises(ModelError, match="weights"):
        Recommender.load(path)

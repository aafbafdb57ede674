"""Checked reading of saved model state: a sparse matrix saved as its CSR arrays, per-item
counts. A model directory is untrusted input: an index out of range in a CSR, which scipy's
products and the kNN kernels read without bounds checks, was a crash of the process that
loaded it (a server, on reload too); here it is one :class:`~warmrec.errors.ModelError`."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from warmrec.errors import ModelError


def csr_state(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    """A CSR matrix as three named arrays (``{prefix}_indptr``, ``_indices``, ``_data``)."""
    return {
        f"{prefix}_indptr": np.asarray(m.indptr, dtype=np.int64),
        f"{prefix}_indices": np.asarray(m.indices, dtype=np.int64),
        f"{prefix}_data": np.asarray(m.data, dtype=np.float32),
    }


def csr_from_state(
    prefix: str, state: dict[str, torch.Tensor], shape: tuple[int, int]
) -> sp.csr_matrix:
    """Inverse of :func:`csr_state`; a matrix whose arrays do not describe a ``shape`` CSR
    matrix (an index out of range, pointers that go back: a damaged or tampered file, which
    scipy's products would read out of bounds) is a :class:`ModelError`."""
    try:
        m = sp.csr_matrix(
            (
                state[f"{prefix}_data"].numpy().astype(np.float32),
                state[f"{prefix}_indices"].numpy().astype(np.int64),
                state[f"{prefix}_indptr"].numpy().astype(np.int64),
            ),
            shape=shape,
        )
        m.check_format(full_check=True)
    except (ValueError, TypeError, IndexError) as e:
        raise ModelError(
            f"weights {prefix}_*: not a {shape[0]} x {shape[1]} CSR matrix ({e})"
        ) from None
    if not bool(np.isfinite(m.data).all()):
        raise ModelError(f"weights {prefix}_data: non-finite values")
    return m


def counts_from_state(state: dict[str, torch.Tensor], n_items: int | None) -> torch.Tensor:
    """The saved per-item training counts, one per vocabulary index (else a ModelError;
    ``n_items`` None: not checked)."""
    counts = state["counts"].float()
    if n_items is not None and counts.shape != (n_items,):
        raise ModelError(
            f"weights counts: shape {tuple(counts.shape)}, the vocabulary gives ({n_items},)"
        )
    return counts

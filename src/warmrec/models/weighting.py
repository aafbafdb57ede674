"""Weights by distance and by position, shared by the rule and neighbour models.

One set of weighting kinds (:data:`WEIGHTINGS`), after Ludewig & Jannach, "Evaluation of
session-based recommendation algorithms" (UMUAI 2018): sequential rules weight a rule by how far
apart its two events are, V-SKNN decays a neighbour by how far back its most recent shared item
lies (:func:`distance_weight`), and V-SKNN weights the items of the current session by their
position (:func:`position_weight`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from warmrec.errors import ConfigError

Weighting = Literal["div", "linear", "same", "quadratic", "log"]
WEIGHTINGS: tuple[str, ...] = ("div", "linear", "same", "quadratic", "log")


def _unknown(kind: str, key: str) -> ConfigError:
    return ConfigError(f"unknown {key} '{kind}'; expected one of {', '.join(WEIGHTINGS)}")


def distance_weight(d: np.ndarray | int, kind: str, *, key: str = "weighting") -> np.ndarray:
    """Weight of something ``d >= 1`` positions away: ``div`` 1/d, ``linear`` max(1 - 0.1 d, 0),
    ``same`` 1, ``quadratic`` 1/d^2, ``log`` 1/log10(d + 1.7). ``key`` names the config key in the
    error for an unknown ``kind``."""
    d = np.asarray(d, dtype=np.float64)
    if kind == "div":
        return 1.0 / d
    if kind == "linear":
        return np.clip(1.0 - 0.1 * d, 0.0, None)
    if kind == "same":
        return np.ones_like(d)
    if kind == "quadratic":
        return 1.0 / (d * d)
    if kind == "log":
        return 1.0 / np.log10(d + 1.7)
    raise _unknown(kind, key)


def position_weight(
    p: np.ndarray, m: np.ndarray, kind: str, *, key: str = "weighting"
) -> np.ndarray:
    """Weight of the item at position ``p`` (1-based) of a current session of length ``m``:
    ``div`` p/m, ``linear`` max(1 - 0.1 (m - p), 0), ``same`` 1, ``quadratic`` (p/m)^2,
    ``log`` 1/log10(m - p + 1.7). The most recent item weighs 1 (``log``: about 4.3)."""
    p = np.asarray(p, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    if kind == "div":
        return p / m
    if kind == "quadratic":
        return (p / m) ** 2
    if kind in ("linear", "same", "log"):  # these depend on the distance from the end only
        return distance_weight(m - p, kind)
    raise _unknown(kind, key)

"""The one set of distance and position weights of the rule and neighbour models."""

from __future__ import annotations

import numpy as np
import pytest

from warmrec.errors import ConfigError
from warmrec.models import knn, rules
from warmrec.models.weighting import WEIGHTINGS, distance_weight, position_weight


def test_distance_weight_by_hand():
    d = np.array([1, 2, 4, 20])
    np.testing.assert_allclose(distance_weight(d, "div"), [1, 0.5, 0.25, 0.05])
    np.testing.assert_allclose(distance_weight(d, "linear"), [0.9, 0.8, 0.6, 0.0])
    np.testing.assert_allclose(distance_weight(d, "quadratic"), [1, 0.25, 1 / 16, 1 / 400])
    np.testing.assert_allclose(distance_weight(d, "same"), [1, 1, 1, 1])
    np.testing.assert_allclose(distance_weight(d, "log"), 1 / np.log10(d + 1.7))
    assert distance_weight(3, "div") == pytest.approx(1 / 3)


def test_position_weight_by_hand():
    p, m = np.array([1, 2, 3, 4]), np.full(4, 4)
    np.testing.assert_allclose(position_weight(p, m, "div"), [0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(position_weight(p, m, "linear"), [0.7, 0.8, 0.9, 1])
    np.testing.assert_allclose(position_weight(p, m, "quadratic"), [1 / 16, 0.25, 9 / 16, 1])
    np.testing.assert_allclose(position_weight(p, m, "same"), [1, 1, 1, 1])
    np.testing.assert_allclose(position_weight(p, m, "log"), 1 / np.log10([4.7, 3.7, 2.7, 1.7]))
    assert position_weight(np.array([1]), np.array([15]), "linear")[0] == 0.0


def test_unknown_kind_names_the_key_and_the_choices():
    with pytest.raises(ConfigError, match="unknown decay 'exp'; expected one of div, linear"):
        distance_weight(2, "exp", key="decay")
    with pytest.raises(ConfigError, match="unknown weighting 'exp'"):
        position_weight(np.array([1]), np.array([2]), "exp")


def test_rules_and_knn_share_one_weighting():
    """SR's rule weights and V-SKNN's neighbour decay are one function with one set of kinds."""
    assert rules.distance_weight is knn.distance_weight is distance_weight
    assert rules.SR_WEIGHTS == knn.NEIGHBOUR_DECAYS == knn.POSITION_WEIGHTS == WEIGHTINGS
    assert not hasattr(rules, "sr_weight") and not hasattr(knn, "neighbour_decay")

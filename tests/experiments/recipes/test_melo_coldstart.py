"""melo-coldstart: every backbone's settings, quick and full, are valid configs of its model
(the full run once passed SASRec's ``d`` to GRU4Rec and NARM, which refuse it)."""

from __future__ import annotations

import pytest

from warmrec.errors import ConfigError
from warmrec.experiments.recipes.melo_coldstart import BACKBONES, RECIPE
from warmrec.registry import get_model

PATHS = {"movielens": "ml-100k", "ratings": "mars/ratings.csv"}


@pytest.mark.parametrize("quick", [True, False])
def test_every_backbone_config_is_valid(quick):
    steps = RECIPE.runs(quick, PATHS)
    seen = set()
    for step in steps:
        model, config = step.params["model"], step.params["model_config"]
        get_model(model, config)  # raises ConfigError on a key the model does not have
        seen.add(model)
    assert seen == ({"sasrec"} if quick else set(BACKBONES))


def test_a_foreign_key_is_refused():
    with pytest.raises(ConfigError, match="unknown key 'd'"):
        get_model("gru4rec", {"d": 32})

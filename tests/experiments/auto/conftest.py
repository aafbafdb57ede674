"""Shared fixtures of the ``warmrec auto`` tests: two synthetic logs with a known answer (baskets,
repeats) and their prepared runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from warmrec.data.synthetic import generate_baskets, generate_repeats
from warmrec.experiments.spec import prepare_run, spec_from_config


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("logs")
    out = {"baskets": d / "baskets.csv", "repeats": d / "repeats.csv"}
    generate_baskets().write_csv(out["baskets"])
    generate_repeats().write_csv(out["repeats"])
    return out


def prepare_log(path: Path):
    return prepare_run(spec_from_config({"data": {"path": str(path)}}))

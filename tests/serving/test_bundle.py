"""The model bundle: raw ids that are not ids, damaged models refused at load, no leak per load."""

from __future__ import annotations

import gc
import os

import pytest
import torch

from tests.conftest import cyclic_log, tiny_net
from tests.serving.conftest import save_model
from warmrec import get_model
from warmrec.data.dataset import SequenceDataset
from warmrec.errors import ModelError
from warmrec.models import Recommender
from warmrec.serving.bundle import ModelBundle


@pytest.fixture(scope="module")
def pop(pop_dir):
    return ModelBundle.load(pop_dir)


@pytest.mark.parametrize(
    ("raw", "index"),
    [
        ("5", 5),
        (5, 5),
        ("--5", 0),  # passed a digit check once and crashed int()
        ("²", 0),  # a superscript digit: isdigit() but no int
        ("٣", 0),  # an Arabic-Indic 3: int() reads it as 3; not an id of this vocabulary
        ("007", 0),  # not the canonical text of 7
        (" 5", 0),
        ("5\n", 0),
        ("-0", 0),
        ("+5", 0),
        ("9" * 40, 0),
        ("\ud800", 0),
        (True, 0),
        (5.5, 0),
        (float("nan"), 0),
    ],
)
def test_only_canonical_decimal_text_is_an_integer_id(pop, raw, index):
    assert pop.index_of(5) > 0
    assert pop.index_of(raw) == (pop.index_of(5) if index else 0)


def test_odd_digit_strings_are_reported_unknown_not_mis_parsed(pop):
    r = pop.recommend(["--5", "²", "٣", 3], 3)
    assert r.unknown == ["--5", "²", "٣"] and len(r.items) == 3


def _damaged(tmp_path, value: float):
    """A SASRec directory whose weights are all ``value``, saved consistently (checksum)."""
    d = save_model("sasrec", tmp_path / "ok", **tiny_net("sasrec"))
    m = Recommender.load(d)
    with torch.no_grad():
        for p in m.net.parameters():
            p.fill_(value)
    return m.save(tmp_path / "damaged")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_model_whose_scores_are_not_finite_is_refused_at_load(tmp_path, value):
    d = _damaged(tmp_path, value)
    for engine in ("auto", "eager"):
        with pytest.raises(ModelError, match="not finite|NaN or \\+inf|no finite") as e:
            ModelBundle.load(d, engine=engine)
        assert "damaged" in str(e.value) and "\n" not in str(e.value)


def test_minus_inf_scores_alone_are_not_damage():
    """-inf marks items never recommended (item2vec's unknown items); only NaN, +inf or no
    finite score at all refuse."""

    m = get_model("pop")
    m.fit(SequenceDataset.from_frame(cyclic_log(n_items=20)))
    b = ModelBundle(m)
    scores = torch.zeros(1, 21)
    scores[0, 3] = -torch.inf
    b._check_finite(scores[:, 1:], 1)  # no error
    with pytest.raises(ModelError):
        b._check_finite(torch.full((1, 20), -torch.inf), 1)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_fifty_loads_of_a_traced_model_do_not_grow_memory(sasrec_dir):
    """Each load of the TorchScript engine leaked its traced function (with the weights as
    constants) into torch's global compilation unit: ~1.1 MB per load of this tiny SASRec,
    57 MB over 50 loads. Now bounded (measured ~0.1 MB over 50)."""
    cu = torch.jit._state._python_cu
    for _ in range(3):
        assert ModelBundle.load(sasrec_dir).engine == "torchscript"
    gc.collect()
    n_functions, before = len(cu.get_functions()), _rss()
    for _ in range(50):
        b = ModelBundle.load(sasrec_dir, warm_up=False)
        assert b.engine == "torchscript"
        del b
    gc.collect()
    grown = _rss() - before
    assert len(cu.get_functions()) == n_functions
    assert grown < 8 * 2**20, f"RSS grew {grown / 2**20:.1f} MiB over 50 loads"


def test_the_raw_id_table_is_built_at_load_and_reload(tmp_path, monkeypatch):
    """The table of ItemVocab.index_of was built by the first request (138 ms on a 500K-item
    vocabulary), again after every reload; a bundle builds it when it is made."""
    from fastapi.testclient import TestClient

    from warmrec.data.vocab import ItemVocab
    from warmrec.serving.app import create_app

    built: list[str] = []
    lookup = ItemVocab._lookup

    def spy(self):
        if getattr(self, "_table", None) is None:
            built.append("built")
        return lookup(self)

    monkeypatch.setattr(ItemVocab, "_lookup", spy)
    d = save_model("pop", tmp_path / "m")
    token = "t0ken-for-the-tests-0123456789"
    with TestClient(create_app(d, admin_token=token)) as c:
        assert built == ["built"]  # at load
        assert c.post("/recommend", json={"items": [1, "2"]}).status_code == 200
        assert built == ["built"]  # not by the first request
        r = c.post("/admin/reload", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and built == ["built"] * 2  # by the reload
        assert c.post("/recommend", json={"items": [3]}).status_code == 200
        assert built == ["built"] * 2

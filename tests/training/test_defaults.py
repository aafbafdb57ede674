"""Defaults are the best settings we know: each neural model's benchmarked settings are its
defaults (model config and ``default_trainer``), merged under the caller's trainer settings;
early stopping is on; progress shows on a terminal; the key of every trainer default
(``warmrec.training.defaults``) follows them."""

from __future__ import annotations

import importlib.util
import io
import re
import sys
from pathlib import Path

import pytest

from warmrec.models.neural import NeuralRecommender
from warmrec.models.sasrec import SASRec
from warmrec.registry import available_models, get_model, model_class
from warmrec.training.loop import TrainerConfig

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "neural_ml100k.py"


def _bench_runs() -> dict:
    spec = importlib.util.spec_from_file_location("neural_ml100k_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.RUNS


def test_sasrec_defaults_are_the_benchmarked_settings():
    model_cfg, trainer = _bench_runs()["sasrec"]
    cfg = SASRec().config
    for k, v in model_cfg.items():
        assert getattr(cfg, k) == v, k
    t = SASRec.trainer_config()
    for k in ("batch_size", "lr", "schedule", "warmup_steps"):
        assert getattr(t, k) == trainer[k], k
    assert t.max_epochs(validated=True) == trainer["epochs"]


def test_sasrec_patience_is_the_one_chosen_on_validation():
    # benchmarks/results/sasrec_patience.md lists the patience validation chose per dataset
    # (every value at the best validation where they tie): the default is among each choice
    text = (BENCH.parent / "results" / "sasrec_patience.md").read_text()
    lines = re.findall(r"^- [\w%-]+: patience ([\d or]+) \(valid", text, re.M)
    assert len(lines) == 3
    for line in lines:
        assert SASRec.trainer_config().patience in {int(p) for p in line.split(" or ")}


def test_the_trainer_defaults_key_follows_every_models_default_trainer(monkeypatch):
    from warmrec.training.defaults import trainer_defaults, trainer_defaults_key

    d = trainer_defaults()
    assert d["models"]["sasrec"]["patience"] == SASRec.trainer_config().patience
    assert d["loop"]["patience"] == TrainerConfig().patience
    key = trainer_defaults_key()
    assert key == trainer_defaults_key() and len(key) == 16
    gru = model_class("gru4rec")
    monkeypatch.setattr(gru, "default_trainer", {**gru.default_trainer, "lr": 0.5})
    assert trainer_defaults_key() != key
    monkeypatch.undo()
    assert trainer_defaults_key() == key


@pytest.mark.parametrize(
    "name", [n for n in available_models() if issubclass(model_class(n), NeuralRecommender)]
)
def test_every_neural_model_trains_with_its_benchmark_batch_size(name):
    runs = _bench_runs()
    if name in runs:
        assert model_class(name).trainer_config().batch_size == runs[name][1]["batch_size"]


def test_default_trainer_sits_under_the_callers_settings():
    t = SASRec.trainer_config({"lr": 1e-2}, epochs=3)
    assert (t.lr, t.epochs, t.batch_size, t.schedule) == (1e-2, 3, 32, "cosine")
    explicit = TrainerConfig(batch_size=64)  # only explicitly set fields override
    t = SASRec.trainer_config(explicit)
    assert (t.batch_size, t.lr) == (64, 2e-3)
    model = get_model("sasrec")
    assert model.trainer_config().batch_size == 32


def test_early_stopping_is_on_and_the_epoch_cap_generous():
    t = TrainerConfig()
    assert t.patience > 0
    assert t.max_epochs(validated=True) >= 50
    assert t.max_epochs(validated=False) <= 20  # nothing can stop it early
    assert TrainerConfig(epochs=7).max_epochs(validated=True) == 7


def test_progress_defaults_to_whether_stderr_is_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert TrainerConfig().show_progress() is False
    monkeypatch.setattr("sys.stderr", Tty())
    assert TrainerConfig().show_progress() is True
    assert TrainerConfig(progress=False).show_progress() is False


def test_progress_shows_in_a_notebook(monkeypatch):
    import types

    class ZMQInteractiveShell:  # what a Jupyter kernel's get_ipython() returns
        pass

    class TerminalInteractiveShell:
        pass

    monkeypatch.setattr("sys.stderr", io.StringIO())  # a kernel's stderr is not a terminal
    fake = types.ModuleType("IPython")
    monkeypatch.setitem(sys.modules, "IPython", fake)
    for shell, shows in ((ZMQInteractiveShell, True), (TerminalInteractiveShell, False)):
        fake.get_ipython = lambda shell=shell: shell()
        assert TrainerConfig().show_progress() is shows
        assert TrainerConfig(progress=False).show_progress() is False
    fake.get_ipython = lambda: None  # IPython imported, not running
    assert TrainerConfig().show_progress() is False


def test_progress_shows_epoch_loss_validation_metric_and_time(capsys):
    import polars as pl

    from tests.conftest import cyclic_log
    from warmrec import EvalSet, SequenceDataset
    from warmrec.data.vocab import ItemVocab

    df = cyclic_log(n_sessions=40, n_items=10, length=6, seed=1)
    vocab = ItemVocab.from_ids(df["item_id"])
    train = SequenceDataset.from_frame(df.filter(pl.col("session_id") < 30), vocab)
    valid = EvalSet.from_sessions(df.filter(pl.col("session_id") >= 30), vocab, last_only=True)
    tiny = {"d": 8, "n_layers": 1, "n_heads": 1, "ffn_dim": 8, "max_len": 6}
    get_model("sasrec", tiny).fit(train, valid, epochs=2, batch_size=16, progress=True)
    err = capsys.readouterr().err
    assert "2/2" in err and "epoch" in err  # epoch counter and unit
    assert "loss=" in err and "ndcg@10=" in err and "best=" in err
    assert re.search(r"\d\d:\d\d", err)  # elapsed time


def test_epoch_lines_where_no_bar_can_show(capsys, monkeypatch):
    import polars as pl

    from tests.conftest import cyclic_log
    from warmrec import EvalSet, SequenceDataset
    from warmrec.data.vocab import ItemVocab
    from warmrec.training.loop import epoch_lines

    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)  # not a terminal: no bar
    df = cyclic_log(n_sessions=40, n_items=10, length=6, seed=1)
    vocab = ItemVocab.from_ids(df["item_id"])
    train = SequenceDataset.from_frame(df.filter(pl.col("session_id") < 30), vocab)
    valid = EvalSet.from_sessions(df.filter(pl.col("session_id") >= 30), vocab, last_only=True)
    tiny = {"d": 8, "n_layers": 1, "n_heads": 1, "ffn_dim": 8, "max_len": 6}
    get_model("sasrec", tiny).fit(train, valid, epochs=2, batch_size=16)
    assert "epoch" not in err.getvalue()  # the library stays quiet
    with epoch_lines():
        get_model("sasrec", tiny).fit(train, valid, epochs=2, batch_size=16)
        get_model("sasrec", tiny).fit(train, valid, epochs=2, batch_size=16, progress=False)
    lines = [x for x in err.getvalue().splitlines() if x.strip()]
    assert len(lines) == 2, lines  # one per epoch of the first fit; progress=False is silent
    assert lines[0].startswith("train sasrec: epoch 1/2, loss ")
    assert re.search(r", ndcg@10 \d\.\d{4}, best \d\.\d{4} \(epoch \d\), \d+\.\d s$", lines[1])

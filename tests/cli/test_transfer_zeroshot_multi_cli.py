"""`warmrec transfer --strategy zeroshot` and `warmrec pretrain-multi` on tiny synthetic data.

Zero-shot (known answer, as in ``tests/transfer/test_zeroshot.py``): the source catalogue holds
``"unit<t> part<s>"``, sequences walk the units in order; the target (RecBole atomic files with
an item table) has other ids and the same tokens plus ``video``; the zero-shot model, trained on
no target event, ranks the next unit's items first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from warmrec.cli.main import cli
from warmrec.models.base import Recommender

N_UNITS, N_PARTS = 8, 4


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def write_atomic(folder, name, offset, suffix, n_users, length, seed):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    inter = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(n_users):
        t = int(rng.integers(N_UNITS))
        for step in range(length):
            inter.append(f"u{u}\t{offset + t * N_PARTS + int(rng.integers(N_PARTS))}\t{step}")
            t = (t + 1) % N_UNITS
    item = ["item_id:token\ttitle:token"]
    for t in range(N_UNITS):
        for s in range(N_PARTS):
            item.append(f"{offset + t * N_PARTS + s}\tunit{t} part{s}{suffix}")
    (folder / f"{name}.inter").write_text("\n".join(inter) + "\n")
    (folder / f"{name}.item").write_text("\n".join(item) + "\n")
    return folder


TEXT_SETS = {
    "model.item_repr": "text", "model.text_encoder": "hashing", "model.d": 32,
    "model.n_layers": 1, "model.n_heads": 2, "model.ffn_dim": 32, "model.max_len": 10,
    "model.dropout": 0.0, "model.attn_dropout": 0.0, "model.text_dropout": 0.0,
    "train.epochs": 30, "train.lr": 0.01, "train.patience": 0,
}  # fmt: skip


def sets(d):
    return [a for k, v in d.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    d = tmp_path_factory.mktemp("atomic")
    src = write_atomic(d / "src", "src", 1, "", 300, 6, 0)
    tgt = write_atomic(d / "tgt", "tgt", 1001, " video", 60, 5, 1)
    return src, tgt


def test_zeroshot_from_the_cli(folders, tmp_path, monkeypatch):
    monkeypatch.setenv("WARMREC_CACHE_DIR", str(tmp_path / "cache"))
    src, tgt = folders
    res = run(["pretrain", "--model", "sasrec", "--data", src, "--split", "loo",
               *sets(TEXT_SETS), "--out", tmp_path / "s", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    args = ["transfer", "--from", tmp_path / "s", "--data", tgt, "--split", "loo"]
    args += ["--strategy", "zeroshot", "--set", "transfer.reset_domain=true"]
    res = run([*args, "--out", tmp_path / "t", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["strategy"] == "zeroshot" and info["n_trainable"] == 0
    model = Recommender.load(tmp_path / "t")
    assert model.meta.transfer.reset_domain and float(model.net.seen.value.detach()) == 0.0
    assert model.meta.transfer.refit_whitening == "diag"  # the zero-shot default, saved folded
    bad = run([*args, "--set", "transfer.refit_whitening=zca", "--out", tmp_path / "x"])
    assert bad.exit_code == 2 and "refit_whitening" in bad.output
    # the next unit's 4 parts: 4 of 32 videos; chance HR@4 = 0.125
    res = run(["evaluate", tmp_path / "t", "--metrics", "hr@4", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["metrics"]["hr@4"] >= 0.8


def test_zeroshot_of_an_id_model_is_one_line(folders, tmp_path):
    src, tgt = folders
    ids = {**TEXT_SETS, "model.item_repr": "id", "train.epochs": 1}
    res = run(["pretrain", "--model", "sasrec", "--data", src, "--split", "loo", *sets(ids),
               "--out", tmp_path / "s"])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["transfer", "--from", str(tmp_path / "s"), "--data", str(tgt),
                                   "--split", "loo", "--strategy", "zeroshot", "--out",
                                   str(tmp_path / "t")])  # fmt: skip
    assert res.exit_code == 2
    assert "zero-shot transfer needs a text item representation" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_pretrain_multi_saves_one_source_per_domain(folders, tmp_path):
    src, tgt = folders
    small = {k: v for k, v in TEXT_SETS.items() if k.startswith("model.")}
    small["model.item_repr"] = "id"
    args = ["pretrain-multi", "--source", f"a={src}", "--source", f"b={tgt}", "--steps", 30]
    args += ["--sampling", "uniform", *sets(small), "--out", tmp_path / "m", "--json"]
    res = run(args)
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["domains"] == ["a", "b"] and sum(info["steps"].values()) == 30
    assert info["probabilities"] == {"a": 0.5, "b": 0.5}
    a, b = Recommender.load(tmp_path / "m" / "a"), Recommender.load(tmp_path / "m" / "b")
    sa, sb = a.net.state_dict(), b.net.state_dict()
    shared = [k for k in sa if k.startswith("encoder.")]
    assert shared and all(np.array_equal(sa[k].numpy(), sb[k].numpy()) for k in shared)
    assert len(a.vocab) != len(b.vocab) or not np.array_equal(
        sa["item.embed.weight"].numpy(), sb["item.embed.weight"].numpy()
    )
    assert json.loads((tmp_path / "m" / "multisource.json").read_text())["domains"] == ["a", "b"]
    # without --json, written to a log (no terminal): a line per tenth of the steps
    res = run([a for a in args if a != "--json"][:-2] + ["--out", tmp_path / "m2"])
    assert res.exit_code == 0, res.output
    lines = [x for x in res.stderr.splitlines() if x.startswith("pretrain-multi: step")]
    assert [x.split(",")[0] for x in lines] == [
        f"pretrain-multi: step {3 * k}/30" for k in range(1, 11)
    ]
    assert "saved 2 source models (a, b)" in res.stdout


def test_pretrain_multi_domain_token_flag(folders, tmp_path):
    src, tgt = folders
    small = {k: v for k, v in TEXT_SETS.items() if k.startswith("model.")}
    small["model.item_repr"] = "id"
    args = ["pretrain-multi", "--source", f"a={src}", "--source", f"b={tgt}", "--steps", 20]
    args += ["--domain-token", *sets(small), "--out", tmp_path / "m", "--json"]
    res = run(args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["config"]["domain_token"] is True
    a, b = Recommender.load(tmp_path / "m" / "a"), Recommender.load(tmp_path / "m" / "b")
    va, vb = a.net.domain.value.detach().numpy(), b.net.domain.value.detach().numpy()
    assert va.any() and vb.any() and not np.array_equal(va, vb)  # one vector each, trained


def test_pretrain_multi_needs_sources(tmp_path):
    res = CliRunner().invoke(cli, ["pretrain-multi", "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "expected [sources.<label>] tables" in res.output


def test_pretrain_multi_refuses_a_label_given_twice(tmp_path):
    """The second --source movies=... replaced the first without a word."""
    args = ["pretrain-multi", "--source", f"m={tmp_path}/a.csv", "--source", f"m={tmp_path}/b.csv"]
    res = run([*args, "--out", tmp_path / "out"])
    assert res.exit_code == 2 and "label 'm' given twice" in res.output


def test_pretrain_multi_refuses_to_replace_a_folder_before_training(folders, tmp_path):
    """The refusal came after the whole pre-training."""
    src, tgt = folders
    (tmp_path / "out" / "a").mkdir(parents=True)
    (tmp_path / "out" / "a" / "notes.txt").write_text("mine")
    res = run(["pretrain-multi", "--source", f"a={src}", "--source", f"b={tgt}", "--steps", 5,
               "--out", tmp_path / "out"])  # fmt: skip
    assert res.exit_code == 2 and "refusing to replace it" in res.output
    assert "pretrain-multi: step" not in res.stderr


def test_pretrain_multi_gru4rec(folders, tmp_path):
    """``--model gru4rec`` stopped with an AttributeError (session-parallel data had no target
    count); each domain keeps its own untied input table."""
    src, tgt = folders
    args = ["pretrain-multi", "--model", "gru4rec", "--source", f"a={src}", "--source", f"b={tgt}"]
    args += ["--steps", 6, *sets({"model.hidden_size": 8, "model.tied": "false"})]
    res = run([*args, "--out", tmp_path / "m", "--json"])
    assert res.exit_code == 0, res.output
    a, b = Recommender.load(tmp_path / "m" / "a"), Recommender.load(tmp_path / "m" / "b")
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert all(np.array_equal(sa[k].numpy(), sb[k].numpy()) for k in sa if k.startswith("gru."))
    assert not np.array_equal(sa["input.weight"].numpy(), sb["input.weight"].numpy())
    bad = run([*args, "--set", "model.loss=sampled_ce", "--out", tmp_path / "x"])
    assert bad.exit_code == 2 and "model.sparse_items = false" in bad.output


def test_pretrain_multi_output_is_one_unit(folders, tmp_path, monkeypatch):
    """A run that fails while saving leaves the earlier output whole: each domain folder was
    renamed into place on its own, so a failure after the first left domains of two runs
    (whose "shared" encoders differ) beside the earlier run's summary."""
    from warmrec.models.neural import NeuralRecommender

    src, tgt = folders
    small = {k: v for k, v in TEXT_SETS.items() if k.startswith("model.")}
    small["model.item_repr"] = "id"
    args = ["pretrain-multi", "--source", f"a={src}", "--source", f"b={tgt}", "--steps", 4]
    args += [*sets(small), "--out", tmp_path / "m"]
    assert run(args).exit_code == 0
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "m").rglob("*.*")}
    save = NeuralRecommender.save

    def fail_on_b(self, path, *a, **k):
        if Path(path).name == "b":
            raise OSError("disk full")
        return save(self, path, *a, **k)

    monkeypatch.setattr(NeuralRecommender, "save", fail_on_b)
    with pytest.raises(OSError, match="disk full"):
        run([*args, "--set", "multi.seed=1"])
    after = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "m").rglob("*.*")}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folder left


def test_pretrain_multi_refuses_an_out_it_would_wrongly_replace(folders, tmp_path):
    """The output replaces --out as a whole: a folder holding other files is refused before
    training (a file beside the domain folders was kept, now it would be removed), and so is
    a label that does not name a folder under --out (``..`` wrote beside it)."""
    src, tgt = folders
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    res = run(["pretrain-multi", "--source", f"a={src}", "--source", f"b={tgt}", "--steps", 2,
               "--out", tmp_path / "out"])  # fmt: skip
    assert res.exit_code == 2 and "refusing to replace it" in res.output
    assert "found 'notes.txt', a file" in res.output
    assert "pretrain-multi: step" not in res.stderr
    res = run(["pretrain-multi", "--source", f"..={src}", "--source", f"b={tgt}", "--steps", 2,
               "--out", tmp_path / "new" / "out"])  # fmt: skip
    assert res.exit_code == 2 and "expected a label that names a folder" in res.output
    assert not (tmp_path / "new").exists()

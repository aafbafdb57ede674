"""Checkpoints: no pickle, atomic layout, exact resume (in process and after SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import cyclic_log, split_cyclic, tiny_net
from warmrec import get_model
from warmrec.errors import ConfigError
from warmrec.models import Recommender
from warmrec.rng import FitGenerators
from warmrec.training.checkpoint import (
    LATEST,
    cuda_rng_states,
    find_checkpoint,
    flatten_optimizer,
    load_checkpoint,
    unflatten_optimizer,
)
from warmrec.training.loop import (
    ResumeWarning,
    TrainerConfig,
    make_optimizer,
    replanned_schedule,
    train,
)

TINY = tiny_net("sasrec", ffn_dim=32, dropout=0.2, attn_dropout=0.1)


@pytest.fixture(scope="module")
def data():
    return split_cyclic(120, n_items=30, length=10, seed=2, n_train=100, last_only=True)


def test_optimizer_state_roundtrip_without_pickle():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(4, 3)).square().sum().backward()
        opt.step()
    tensors, info = flatten_optimizer(opt.state_dict())
    json.dumps(info)  # the structure is plain JSON
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    opt2.load_state_dict(unflatten_optimizer(tensors, json.loads(json.dumps(info))))
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for pid in a["state"]:
        for key, value in a["state"][pid].items():
            assert torch.equal(value, b["state"][pid][key])


def test_checkpoint_is_a_model_directory_with_json_and_safetensors(data, tmp_path):
    train_ds, valid = data
    model = get_model("sasrec", TINY)
    train(model, train_ds, valid, epochs=2, batch_size=32, checkpoint_dir=str(tmp_path))
    ckpt = tmp_path / LATEST
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == [
        "config.json",
        "model.safetensors",
        "trainer_state.json",
        "trainer_state.safetensors",
        "vocab.json",
    ]
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert state["trainer_config"]["epochs"] == 2 and "bit_generator" in state["numpy_rng"]
    tensors = load_file(str(ckpt / "trainer_state.safetensors"))
    assert "rng/torch" in tensors and any(k.startswith("optimizer/") for k in tensors)
    assert any(k.startswith("best/") for k in tensors)
    assert json.loads((ckpt / "config.json").read_text())["kind"] == "checkpoint"
    loaded = Recommender.load(ckpt)  # the checkpoint is itself a loadable model
    batch = valid.batch(range(5), loaded.history_len)
    assert loaded.score(batch).shape == (5, train_ds.n_items)


def _cuda_states(n: int) -> dict[str, torch.Tensor]:
    """``rng/cuda/<i>`` entries of a checkpoint of ``n`` devices (device ``i``'s state: ``[i]``),
    in the order the names sort as text."""
    return {
        k: torch.tensor([int(k.rsplit("/", 1)[1])])
        for k in sorted(f"rng/cuda/{i}" for i in range(n))
    }


def test_cuda_rng_states_are_in_device_order():
    # from 11 devices the names sort otherwise as text: rng/cuda/10 before rng/cuda/2
    tensors = {"rng/torch": torch.tensor([-1]), **_cuda_states(12), "best/w": torch.zeros(1)}
    assert [int(t) for t in cuda_rng_states(tensors)] == list(range(12))
    assert cuda_rng_states({"rng/torch": torch.tensor([-1])}) == []


def test_resume_gives_each_device_its_own_generator_state(data, tmp_path, monkeypatch):
    """A checkpoint of 12 devices' generator states (faked: no GPU needed) gives device ``i`` the
    state saved as ``rng/cuda/<i>``; sorted as text, device 2 got device 10's state."""
    train_ds, valid = data
    model = get_model("sasrec", TINY)
    train(model, train_ds, valid, epochs=1, batch_size=32, checkpoint_dir=str(tmp_path))
    state = tmp_path / LATEST / "trainer_state.safetensors"
    save_file({**load_file(str(state)), **_cuda_states(12)}, str(state))
    given: list[list[torch.Tensor]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", given.append)
    cfg = TrainerConfig()
    optimizer = make_optimizer(model.optimizer_groups(cfg.weight_decay), cfg)
    load_checkpoint(tmp_path, model, optimizer, None, np.random.default_rng(0))
    assert [[int(t) for t in states] for states in given] == [list(range(12))]


def test_resume_restores_the_fits_generators_and_leaves_the_global_ones(data, tmp_path):
    """The training loop passes its fit's own generators: the checkpoint's state goes into them
    and torch's global generator, which other fits in other threads seed and copy, is left as
    it was (a resume used to route the state through it, under the lock)."""
    train_ds, valid = data
    model = get_model("sasrec", TINY)
    train(model, train_ds, valid, epochs=1, batch_size=32, checkpoint_dir=str(tmp_path))
    saved = load_file(str(tmp_path / LATEST / "trainer_state.safetensors"))["rng/torch"]
    torch.manual_seed(123)
    gens = FitGenerators.from_global()
    before = torch.get_rng_state().clone()
    assert not torch.equal(gens.by_device["cpu"].get_state(), saved)
    cfg = TrainerConfig()
    optimizer = make_optimizer(model.optimizer_groups(cfg.weight_decay), cfg)
    load_checkpoint(tmp_path, model, optimizer, None, np.random.default_rng(0), generators=gens)
    assert torch.equal(gens.by_device["cpu"].get_state(), saved)
    assert torch.equal(torch.get_rng_state(), before)


def test_resume_in_process_matches_an_uninterrupted_run(data, tmp_path):
    train_ds, valid = data
    kw = dict(batch_size=16, lr=5e-3, seed=7)
    full = get_model("sasrec", TINY)
    res_full = train(full, train_ds, valid, epochs=4, **kw)
    first = get_model("sasrec", TINY)
    train(first, train_ds, valid, epochs=2, checkpoint_dir=str(tmp_path), **kw)
    second = get_model("sasrec", TINY)
    res = train(second, train_ds, valid, epochs=4, checkpoint_dir=str(tmp_path), resume=True, **kw)
    assert res.resumed_from == 2
    strip = [{k: v for k, v in h.items() if "seconds" not in k} for h in res.history]
    want = [{k: v for k, v in h.items() if "seconds" not in k} for h in res_full.history]
    assert strip == want
    a, b = full.net.state_dict(), second.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_another_model_config(data, tmp_path):
    train_ds, valid = data
    train(
        get_model("sasrec", TINY),
        train_ds,
        valid,
        epochs=1,
        batch_size=32,
        checkpoint_dir=str(tmp_path),
    )
    with pytest.raises(ConfigError, match="cannot resume"):
        train(
            get_model("sasrec", dict(TINY, d=8, ffn_dim=16)),
            train_ds,
            valid,
            epochs=2,
            batch_size=32,
            checkpoint_dir=str(tmp_path),
            resume=True,
        )


def _finished(data, tmp_path, **kw):
    train_ds, valid = data
    model = get_model("sasrec", TINY)
    train(model, train_ds, valid, epochs=2, batch_size=32, checkpoint_dir=str(tmp_path), **kw)
    return model


def test_rerun_into_a_finished_checkpoint_with_another_seed_is_refused(data, tmp_path):
    """Issue 9: ``--set train.seed=5`` into a finished checkpoint returned the old model."""
    train_ds, valid = data
    _finished(data, tmp_path, seed=0)
    with pytest.raises(ConfigError, match=r"train\.seed=0 in the checkpoint, 5 now"):
        train(
            get_model("sasrec", TINY),
            train_ds,
            valid,
            epochs=2,
            batch_size=32,
            seed=5,
            checkpoint_dir=str(tmp_path),
            resume=True,
        )


def test_resume_names_every_differing_key(data, tmp_path):
    train_ds, valid = data
    _finished(data, tmp_path)
    with pytest.raises(ConfigError) as e:
        train(
            get_model("sasrec", dict(TINY, dropout=0.1)),
            train_ds,
            valid,
            epochs=2,
            batch_size=16,
            lr=0.01,
            checkpoint_dir=str(tmp_path),
            resume=True,
        )
    msg = str(e.value)
    assert "\n" not in msg
    for key in ("model.dropout", "train.batch_size", "train.lr"):
        assert key in msg


def test_a_run_its_time_budget_ended_resumes_under_a_larger_budget_and_says_so(data, tmp_path):
    """``time_budget_s`` counts the run's training time, a resumed run's earlier epochs
    included (it ends where the uninterrupted run would): resumed under the same budget, a run
    that its budget ended has no epoch to run. The warning only said "resumed ... at epoch 1"
    and the run stopped at once; it now says that the budget is spent and what to do."""
    train_ds, valid = data
    kw = dict(epochs=4, batch_size=32, checkpoint_dir=str(tmp_path), progress=False)
    first = train(get_model("sasrec", TINY), train_ds, valid, time_budget_s=1e-9, **kw)
    assert first.epochs_run == 1
    with pytest.warns(ResumeWarning) as rec:
        res = train(get_model("sasrec", TINY), train_ds, valid, time_budget_s=1e-9, resume=True,
                    **kw)  # fmt: skip
    assert res.epochs_run == 1  # nothing more: the same run's budget
    (msg,) = [str(w.message) for w in rec]
    assert msg.startswith("resumed sasrec from checkpoint") and "at epoch 1 (its time budget" in msg
    assert "time_budget_s 1e-09 counts the training of every run" in msg
    assert "raise it to train on" in msg
    with pytest.warns(ResumeWarning, match="at epoch 1$"):  # a larger budget: it goes on
        res = train(get_model("sasrec", TINY), train_ds, valid, time_budget_s=600, resume=True,
                    **kw)  # fmt: skip
    assert res.epochs_run == 4 and res.resumed_from == 1


def test_resume_says_that_it_resumed_and_from_which_epoch(data, tmp_path):
    train_ds, valid = data
    first = _finished(data, tmp_path)
    model = get_model("sasrec", TINY)
    with pytest.warns(ResumeWarning, match="at epoch 2 .already finished"):
        res = train(
            model,
            train_ds,
            valid,
            epochs=2,
            batch_size=32,
            checkpoint_dir=str(tmp_path),
            resume=True,
            progress=False,  # settings of where/how to run may differ
            valid_batch_size=7,
        )
    assert res.resumed_from == 2
    a, b = first.net.state_dict(), model.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.warns(ResumeWarning, match="at epoch 2$"):
        res = train(
            get_model("sasrec", TINY),
            train_ds,
            valid,
            epochs=3,
            batch_size=32,
            checkpoint_dir=str(tmp_path),
            resume=True,
        )
    assert res.resumed_from == 2 and len(res.history) == 3


def _schedule_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "learning-rate schedule" in str(w.message)]


def test_resume_with_other_epochs_says_that_the_decay_is_planned_again(data, tmp_path):
    """A cosine schedule is planned over the run's epochs: resumed with more epochs the rate
    jumped from 0 (the end of the first plan) to half the base rate, without a word."""
    import warnings

    train_ds, valid = data
    kw = dict(batch_size=16, lr=5e-3, seed=7, schedule="cosine")
    first = train(get_model("sasrec", TINY), train_ds, valid, epochs=2,
                  checkpoint_dir=str(tmp_path), **kw)  # fmt: skip
    steps = 2 * -(-200 // 16)  # 2 epochs of 200 windows (100 sessions of 9 pairs, max_len 8)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = train(get_model("sasrec", TINY), train_ds, valid, epochs=4,
                    checkpoint_dir=str(tmp_path), resume=True, **kw)  # fmt: skip
    (msg,) = _schedule_warnings(rec)
    assert all(issubclass(w.category, ResumeWarning) for w in rec)
    assert (
        f"the learning-rate schedule (cosine decay) was planned over {steps} optimizer steps "
        f"and is now planned over {2 * steps}: at step {steps + 1} the rate is 50.0% of the "
        "base rate instead of 0.0%; this run differs from an uninterrupted run of 4 epochs"
    ) in msg
    assert first.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the first plan's end
    assert res.resumed_from == 2 and res.history[2]["lr"] > 0
    # a checkpoint of an older warmrec (no planned steps): planned from its epochs setting
    state = tmp_path / LATEST / "trainer_state.json"
    info = json.loads(state.read_text())
    info.pop("schedule_steps")
    info["epoch"], info["stopped"] = 2, False
    state.write_text(json.dumps(info))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        train(get_model("sasrec", TINY), train_ds, valid, epochs=3,
              checkpoint_dir=str(tmp_path), resume=True, **kw)  # fmt: skip
    (msg,) = _schedule_warnings(rec)
    assert f"was planned over {2 * steps} optimizer steps and is now planned over" in msg


def test_resume_with_the_same_plan_or_no_schedule_does_not_warn_about_it(data, tmp_path):
    import warnings

    train_ds, valid = data
    for schedule in ("cosine", "none"):
        kw = dict(batch_size=16, seed=7, schedule=schedule, checkpoint_dir=str(tmp_path / schedule))
        stop = [lambda epoch, record, model: "pause" if epoch == 1 else None]
        train(get_model("sasrec", TINY), train_ds, valid, epochs=3, callbacks=stop, **kw)
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            epochs = 3 if schedule == "cosine" else 5  # no decay: other epochs change nothing
            res = train(get_model("sasrec", TINY), train_ds, valid, epochs=epochs, resume=True,
                        **kw)  # fmt: skip
        assert res.resumed_from == 1 and not _schedule_warnings(rec)


def test_resume_of_an_older_random_phase_checkpoint_says_its_plan_is_guessed(data, tmp_path):
    """A checkpoint of an older warmrec does not record the steps its schedule was planned over;
    the plan is taken again from its epochs at today's batch count, which with random_phase
    windows was counted otherwise then (93 batches where 83: one window more per long
    sequence). Resuming one re-planned the decay without a word."""
    import warnings

    train_ds, valid = data
    for phase in (True, False):
        ckpt = tmp_path / str(phase)
        kw = dict(batch_size=16, seed=7, schedule="cosine", checkpoint_dir=str(ckpt))
        cfg = {**TINY, "random_phase": phase}
        stop = [lambda epoch, record, model: "pause" if epoch == 1 else None]
        train(get_model("sasrec", cfg), train_ds, valid, epochs=3, callbacks=stop, **kw)
        state = ckpt / LATEST / "trainer_state.json"
        info = json.loads(state.read_text())
        info.pop("schedule_steps")  # as an older warmrec wrote it
        state.write_text(json.dumps(info))
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            res = train(get_model("sasrec", cfg), train_ds, valid, epochs=3, resume=True, **kw)
        assert res.resumed_from == 1
        said = [str(w.message) for w in rec if "random_phase" in str(w.message)]
        if not phase:  # windows fixed: the count is what it was, the plan is known
            assert not said and not _schedule_warnings(rec)
            continue
        (msg,) = said
        assert msg.startswith(f"{ckpt}: the checkpoint, of an older warmrec, does not record")
        assert "planned again from its epochs" in msg and "may differ from an uninterrupted" in msg
        assert all(issubclass(w.category, ResumeWarning) for w in rec)


def test_a_warm_up_that_both_plans_share_is_no_replanned_schedule():
    """Without decay the rate depends on the plan's length only through the warm-up (its
    steps, capped at a tenth of the plan): a resume during a warm-up of the same length in
    both plans follows the same rates, and warned 'the rate is 11.0% of the base rate instead
    of 11.0%' (this run differs from an uninterrupted run: it did not)."""
    cfg = TrainerConfig(schedule="none", warmup_steps=100)
    assert replanned_schedule(cfg, 2000, 4000, 10) is None  # 100 steps in both
    # a warm-up the shorter plan caps (20 of 200 steps, 100 of 4000): the rates differ
    msg = replanned_schedule(cfg, 200, 4000, 10)
    assert msg is not None and "the rate is 11.0% of the base rate instead of 55.0%" in msg
    # with a decay, another length is another schedule, in the warm-up too
    cos = TrainerConfig(schedule="cosine", warmup_steps=100)
    assert replanned_schedule(cos, 2000, 4000, 10) is not None


def test_find_checkpoint_renames_back_the_copy_moved_aside(tmp_path):
    """A kill between atomic_dir's two renames leaves only the previous checkpoint, aside: it
    is renamed back (:func:`warmrec.io.recover_dir`, shared with the model and split readers)."""
    assert find_checkpoint(tmp_path) is None
    aside = tmp_path / f".{LATEST}.old"
    aside.mkdir()
    (aside / "trainer_state.json").write_text("{}")
    (aside / "trainer_state.safetensors").write_bytes(b"")
    assert find_checkpoint(tmp_path) == tmp_path / LATEST
    assert (tmp_path / LATEST / "trainer_state.json").is_file() and not aside.exists()


WORKER = r"""
import json, sys
import polars as pl
import torch
from safetensors.torch import save_file
from warmrec import EvalSet, SequenceDataset, get_model
from warmrec.data.vocab import ItemVocab

data, ckpt, out, resume = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
df = pl.read_parquet(data)
vocab = ItemVocab.from_ids(df["item_id"])
train = SequenceDataset.from_frame(df.filter(pl.col("session_id") < 500), vocab)
valid = EvalSet.from_sessions(df.filter(pl.col("session_id") >= 500), vocab, last_only=True)
model = get_model("sasrec", {"d": 32, "n_layers": 2, "n_heads": 2, "ffn_dim": 64, "max_len": 20,
                             "dropout": 0.3, "attn_dropout": 0.1})
model.fit(train, valid, epochs=6, batch_size=32, lr=3e-3, seed=11, num_threads=1,
          schedule="cosine", warmup_steps=20, checkpoint_dir=ckpt, checkpoint_every=1,
          resume=resume)
r = model.train_result
hist = [{k: v for k, v in h.items() if "seconds" not in k} for h in r.history]
save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, out + ".safetensors")
with open(out + ".json", "w") as f:
    json.dump({"history": hist, "best_epoch": r.best_epoch, "best_metric": r.best_metric,
               "resumed_from": r.resumed_from}, f)
"""


def _run(args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, *map(str, args)],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        **kw,
    )


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    df = cyclic_log(n_sessions=560, n_items=100, length=20, seed=5)
    data = tmp_path / "data.parquet"
    df.write_parquet(data)
    # the run that gets killed
    ckpt = tmp_path / "ckpt"
    proc = _run([data, ckpt, tmp_path / "killed", 0])
    state = ckpt / LATEST / "trainer_state.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if state.is_file():
            try:
                if json.loads(state.read_text())["epoch"] >= 2:
                    break
            except ValueError:
                pass
        time.sleep(0.02)
    assert proc.poll() is None, "the worker ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = json.loads(state.read_text())["epoch"]
    assert 2 <= killed_at < 6
    # resume in a new process, and an uninterrupted run with the same seed
    resumed = _run([data, ckpt, tmp_path / "resumed", 1])
    assert resumed.wait(timeout=600) == 0
    full = _run([data, tmp_path / "ckpt_full", tmp_path / "full", 0])
    assert full.wait(timeout=600) == 0
    r = json.loads((tmp_path / "resumed.json").read_text())
    f = json.loads((tmp_path / "full.json").read_text())
    assert r["resumed_from"] == killed_at and f["resumed_from"] == 0
    assert r["history"] == f["history"]
    assert (r["best_epoch"], r["best_metric"]) == (f["best_epoch"], f["best_metric"])
    wr = load_file(str(tmp_path / "resumed.safetensors"))
    wf = load_file(str(tmp_path / "full.safetensors"))
    assert wr.keys() == wf.keys() and all(torch.equal(wr[k], wf[k]) for k in wr)


def test_cli_rerun_with_another_seed_is_one_line_exit_2(tmp_path):
    from click.testing import CliRunner

    from warmrec.cli.main import cli

    log = tmp_path / "log.csv"
    cyclic_log(n_sessions=40, n_items=12, length=6).write_csv(log)
    args = ["train", "--model", "sasrec", "--data", str(log), "--out", str(tmp_path / "m")]
    for k, v in {**TINY, "d": 8, "ffn_dim": 16}.items():
        args += ["--set", f"model.{k}={v}"]
    ckpt = ["--set", f"train.checkpoint_dir={tmp_path / 'c'}", "--set", "train.resume=true"]
    args += ["--set", "train.epochs=1", "--set", "train.device=cpu", *ckpt]
    runner = CliRunner()
    assert runner.invoke(cli, args).exit_code == 0
    res = runner.invoke(cli, [*args, "--set", "train.seed=5"])
    # a warning of warmrec's own (one line each: a small split) may come before the error
    lines = [ln for ln in res.output.splitlines() if ln.strip() and "warmrec: warning:" not in ln]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "train.seed=0 in the checkpoint, 5 now" in lines[0]


@pytest.mark.parametrize("optimizer", ["adamw", "adagrad"])
def test_resume_with_row_wise_item_updates_matches(data, tmp_path, optimizer):
    # GRU4Rec with BPR-max: a sparse item table (RowAdam / RowAdagrad) beside a dense optimizer
    train_ds, _ = data
    cfg = {"hidden_size": 16, "max_len": 8, "loss": "bpr-max", "n_negatives": 8}
    kw = dict(batch_size=16, lr=5e-3, seed=7, optimizer=optimizer)
    full = get_model("gru4rec", cfg)
    train(full, train_ds, None, epochs=2, **kw)
    first = get_model("gru4rec", cfg)
    train(first, train_ds, None, epochs=1, checkpoint_dir=str(tmp_path), **kw)
    second = get_model("gru4rec", cfg)
    res = train(second, train_ds, None, epochs=2, checkpoint_dir=str(tmp_path), resume=True, **kw)
    assert res.resumed_from == 1
    a, b = full.net.state_dict(), second.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pause_resumes_to_the_uninterrupted_run_and_true_stops_for_good(data, tmp_path):
    """A callback answering PAUSE ends the fit resumably (``warmrec auto``'s rungs); the
    resumed run ends where an uninterrupted one does. Answering True is final."""
    from warmrec.training.loop import PAUSE

    train_ds, valid = data
    kw = dict(batch_size=16, lr=5e-3, seed=7, epochs=4, patience=0)
    full = get_model("sasrec", TINY)
    res_full = train(full, train_ds, valid, **kw)
    first = get_model("sasrec", TINY)
    ckpt = str(tmp_path / "pause")
    res1 = train(
        first,
        train_ds,
        valid,
        checkpoint_dir=ckpt,
        checkpoint_every=100,  # the pause itself writes the checkpoint
        callbacks=[lambda epoch, rec, m: PAUSE if epoch == 2 else None],
        **kw,
    )
    assert res1.paused and not res1.stopped_early and res1.epochs_run == 2
    second = get_model("sasrec", TINY)
    res2 = train(second, train_ds, valid, checkpoint_dir=ckpt, resume=True, **kw)
    assert res2.resumed_from == 2 and not res2.paused and res2.epochs_run == 4
    a, b = full.net.state_dict(), second.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert res2.best_metric == res_full.best_metric

    stop = str(tmp_path / "stop")
    train(
        get_model("sasrec", TINY),
        train_ds,
        valid,
        checkpoint_dir=stop,
        callbacks=[lambda epoch, rec, m: epoch == 2],
        **kw,
    )
    with pytest.warns(ResumeWarning, match="already finished"):
        res3 = train(
            get_model("sasrec", TINY), train_ds, valid, checkpoint_dir=stop, resume=True, **kw
        )
    assert res3.resumed_from == 2 and res3.epochs_run == 2


@pytest.mark.parametrize("name", ["trainer_state.json", "trainer_state.safetensors"])
def test_a_checkpoint_file_linked_to_outside_is_refused(data, tmp_path, name):
    """The trainer state was read through a link leading outside the checkpoint directory."""
    from warmrec.errors import ModelError

    _finished(data, tmp_path / "ck")
    latest = tmp_path / "ck" / LATEST
    (latest / name).rename(tmp_path / name)
    (latest / name).symlink_to(tmp_path / name)
    train_ds, valid = data
    with pytest.raises(ModelError, match="leads outside the model directory") as e:
        train(get_model("sasrec", TINY), train_ds, valid, epochs=3, batch_size=32,
              checkpoint_dir=str(tmp_path / "ck"), resume=True)  # fmt: skip
    assert name in str(e.value)

"""The CLI end to end: every command on small files, JSON output, one-line errors."""

from __future__ import annotations

import json
import os

import polars as pl
import pytest
from click.testing import CliRunner

from tests.conftest import cyclic_log
from warmrec.cli.main import cli

BASELINES = "pop,markov,sr,sknn"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def log_csv(tmp_path):
    p = tmp_path / "log.csv"
    df = cyclic_log(n_sessions=60, n_items=12, length=6).with_columns(
        (pl.col("session_id") % 15).alias("user_id")
    )
    df.write_csv(p)
    return p


def run(runner, args):
    res = runner.invoke(cli, args, catch_exceptions=False)
    return res


def test_models_lists_registered(runner):
    res = run(runner, ["models", "--json"])
    names = json.loads(res.stdout)
    assert {"pop", "sknn", "vsknn", "markov"} <= set(names)


def test_data_stats_json_and_plots(runner, log_csv, tmp_path):
    res = run(runner, ["data", "stats", str(log_csv), "--json", "--plots", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["events"] == 360 and d["items"] == 12 and d["sessions"] == 60
    assert (tmp_path / "p" / "lengths.png").read_bytes()[:4] == b"\x89PNG"


def test_gaps_sessionize_split(runner, log_csv, tmp_path):
    res = run(runner, ["data", "gaps", str(log_csv), "--json"])
    assert res.exit_code == 0 and "suggested_threshold" in json.loads(res.stdout)
    out = tmp_path / "s.parquet"
    res = run(
        runner, ["data", "sessionize", str(log_csv), "--gap", "1800", "--out", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    s = pl.read_parquet(out)
    # cyclic sessions are 10,000 s apart per session id, so every user's gap splits them
    assert s["session_id"].n_unique() == 60
    res = run(
        runner,
        [
            "data",
            "split",
            str(log_csv),
            "--method",
            "user",
            "--set",
            "seed=1",
            "--out",
            str(tmp_path / "sp"),
        ],
    )
    assert res.exit_code == 0, res.output
    parts = {p: pl.read_parquet(tmp_path / "sp" / f"{p}.parquet") for p in ("train", "test")}
    assert set(parts["train"]["user_id"]).isdisjoint(set(parts["test"]["user_id"]))


def test_train_evaluate_recommend(runner, log_csv, tmp_path):
    mdir = tmp_path / "model"
    res = run(
        runner,
        [
            "train",
            "--model",
            "markov",
            "--data",
            str(log_csv),
            "--split",
            "user",
            "--out",
            str(mdir),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["valid"]["hr@10"] > 0.9
    assert (mdir / "model.safetensors").exists() and (mdir / "vocab.json").exists()
    res = run(runner, ["evaluate", str(mdir), "--metrics", "hr@1,mrr@10", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["metrics"]["hr@1"] > 0.9 and d["part"] == "test"
    res = run(runner, ["recommend", str(mdir), "--items", "3,4", "-k", "2", "--json"])
    assert json.loads(res.stdout)["items"][0] == 5


def test_train_with_toml_config_and_set(runner, log_csv, tmp_path):
    cfg = tmp_path / "exp.toml"
    cfg.write_text(f'[data]\npath = "{log_csv}"\n[split]\nmethod = "user"\n[model]\nname = "sr"\n')
    res = run(
        runner,
        [
            "train",
            "--config",
            str(cfg),
            "--set",
            "model.steps=3",
            "--out",
            str(tmp_path / "m"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    conf = json.loads((tmp_path / "m" / "config.json").read_text())
    assert conf["model"] == "sr" and conf["config"]["steps"] == 3


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "--model", "nope", "--data", "LOG", "--out", "X"], "unknown model 'nope'"),
        (
            ["train", "--model", "sr", "--data", "LOG", "--set", "model.bogus=1", "--out", "X"],
            "'bogus'",
        ),
        (["data", "stats", "/does/not/exist.csv"], "/does/not/exist.csv"),
        (["evaluate", "/does/not/exist"], "not a warmrec model directory"),
        (["train", "--model", "sr", "--data", "LOG", "--split", "nope", "--out", "X"], "nope"),
    ],
)
def test_errors_are_one_line_and_exit_2(runner, log_csv, tmp_path, args, needle):
    args = [str(log_csv) if a == "LOG" else (str(tmp_path / "o") if a == "X" else a) for a in args]
    res = runner.invoke(cli, args)
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warmrec: error:") and needle in lines[0]


def test_demo_writes_table(runner, tmp_path):
    out = tmp_path / "demo"
    res = run(runner, ["demo", "--models", BASELINES, "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    models = [r["model"] for r in d["results"]]
    assert sorted(models) == sorted(BASELINES.split(","))
    by = {r["model"]: r for r in d["results"]}
    assert by["sr"]["ndcg@10"] > 2 * by["pop"]["ndcg@10"]
    assert (out / "results.md").read_text().startswith("# warmrec demo")
    assert pl.read_csv(out / "results.csv").height == 4


def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "warmrec", "--version"], capture_output=True, text=True, check=True
    )
    assert "warmrec" in res.stdout


@pytest.mark.filterwarnings("ignore::warmrec.errors.DataWarning")  # a tiny test part, on purpose
def test_data_split_prints_one_row_per_part_with_dates(runner, tmp_path):
    # two users, one event a day from 2020-01-01; the test part starts on 2020-01-05
    day = 86_400
    rows = [(u, i, 1_577_836_800 + d * day) for u in (1, 2) for d, i in enumerate([1, 2, 3, 1, 2])]
    log = tmp_path / "log.csv"
    pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row").write_csv(log)
    args = ["data", "split", str(log), "--method", "temporal", "--out", str(tmp_path / "sp")]
    args += ["--set", "valid_start=2020-01-04", "--set", "test_start=2020-01-05"]
    res = run(runner, args)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    train = next(line for line in lines if line.startswith("| train"))
    test = next(line for line in lines if line.startswith("| test"))
    assert "| 6 " in train and "2020-01-01T00:00:00Z" in train and "2020-01-03T00:00:00Z" in train
    assert "| - " in train  # no targets in training: a dash, not "null"
    assert "2020-01-05T00:00:00Z" in test and "| 2 " in test
    assert "null" not in res.output and "1577836800" not in res.output
    assert any(line.split() == ["test_start", "2020-01-05T00:00:00Z"] for line in lines)
    assert any(line.split() == ["method", "temporal"] for line in lines)


def test_train_prints_a_line_per_epoch_to_a_log_and_none_with_json(runner, log_csv, tmp_path):
    args = ["train", "--model", "gru4rec", "--data", str(log_csv), "--set", "train.epochs=2"]
    args += ["--set", "model.hidden_size=8"]
    res = run(runner, [*args, "--out", str(tmp_path / "m1")])
    assert res.exit_code == 0, res.output
    lines = [x for x in res.stderr.splitlines() if x.startswith("train gru4rec: epoch")]
    assert [x.split(",")[0] for x in lines] == [
        "train gru4rec: epoch 1/2",
        "train gru4rec: epoch 2/2",
    ]
    res = run(runner, [*args, "--out", str(tmp_path / "m2"), "--json"])
    assert res.exit_code == 0, res.output
    assert "epoch 1/2" not in res.output
    json.loads(res.stdout)


def _user_log(path, n_users=30, length=6, rename_every=0):
    """``user_id,item_id,timestamp``: user u's items u, u+1, ... (mod 12), a day apart; with
    ``rename_every`` every such item id becomes one the model never saw."""
    rows = []
    for u in range(n_users):
        for t in range(length):
            item = (u + t) % 12
            name = f"new{item}" if rename_every and item % rename_every == 0 else f"i{item}"
            rows.append((f"u{u}", name, 1_600_000_000 + 86_400 * (t + 10 * u)))
    pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row").write_csv(path)
    return path


def test_an_empty_validation_or_test_part_is_refused_not_scored_as_zero(runner, tmp_path):
    """A split that leaves validation empty trained on nothing to select on (the loop reported
    NDCG 0.0000 and kept epoch 1); a test part with no example was scored as 0.0000."""
    log = _user_log(tmp_path / "log.csv")
    args = ["train", "--model", "markov", "--data", str(log), "--split", "temporal"]
    res = runner.invoke(
        cli, [*args, "--set", "split.test_start=2030-01-01", "--out", str(tmp_path / "m")]
    )
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines()[-1] == (
        "warmrec: error: temporal split: test_start 2030-01-01 is after the last event "
        "(2021-07-05 12:26:40 UTC, 1625488000), so the test part would be empty; expected a time "
        "after 2020-09-13 12:26:40 UTC, 1600000000 and at or before 2021-07-05 12:26:40 UTC, "
        "1625488000"
    )
    assert not (tmp_path / "m").exists()
    # day 290 of 295: six test events; validation switched off
    late = ["--set", f"split.test_start={1_600_000_000 + 86_400 * 290}"]
    res = runner.invoke(
        cli, [*args, *late, "--set", "split.valid_share=0", "--out", str(tmp_path / "m")]
    )
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines()[-1] == (
        "warmrec: error: the temporal split leaves the validation part empty (give --set "
        "split.valid_start=DATE before test_start); models are selected and stopped on validation"
    )
    # the split's own warning: one line of warmrec's, no Python source path or code line
    warning = [x for x in res.stderr.splitlines() if "test events" in x]
    assert warning == [
        "warmrec: warning: temporal split: only 6 test events (of 180; fewer than 100); metrics "
        "on so few examples are noisy: hold out a larger share or period"
    ]
    assert "split.py" not in res.stderr and "return fn(" not in res.stderr
    assert not (tmp_path / "m").exists()
    one = tmp_path / "one.csv"
    one.write_text("user_id,item_id,timestamp\nu1,i1,1600000000\n")
    res = runner.invoke(
        cli, ["train", "--model", "pop", "--data", str(one), "--out", str(tmp_path / "p")]
    )
    assert res.exit_code == 2 and "leaves the validation part empty" in res.stderr


def test_a_user_split_holding_out_no_valid_user_says_why(runner, tmp_path):
    """4 users: valid_frac 0.1 of them rounds to 0; the error named no reason."""
    log = tmp_path / "u.csv"
    rows = [
        f"u{u},i{(u + j) % 5},{1_600_000_000 + 60 * (4 * u + j)}"
        for u in range(4)
        for j in range(4)
    ]
    log.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    split_args = ["--method", "user", "--set", "test_frac=0.3", "--set", "valid_frac=0.1"]
    res = runner.invoke(cli, ["data", "split", str(log), *split_args, "--out", str(tmp_path / "s")])
    assert res.exit_code == 2
    assert "valid_frac=0.1 of 4 users rounds to 0; expected valid_frac above 0.125" in res.stderr
    train = ["train", "--model", "pop", "--data", str(log), "--split", "user"]
    sets = ["--set", "split.test_frac=0.3", "--set", "split.valid_frac=0.1"]
    res = runner.invoke(cli, [*train, *sets, "--out", str(tmp_path / "m")])
    assert res.exit_code == 2
    assert (
        "valid_frac=0.1 of 4 users rounds to 0" in res.stderr and "split.valid_frac" in res.stderr
    )


def test_a_temporal_split_without_valid_start_validates_on_the_latest_tenth(runner, tmp_path):
    """Only test_start given: the latest 10 % of the events before it validate (the split used
    to leave validation empty, and training then refused to run)."""
    log = _user_log(tmp_path / "log.csv")
    ts = 1_600_000_000 + 86_400 * 290
    res = run(
        runner,
        ["train", "--model", "markov", "--data", str(log), "--split", "temporal"]
        + ["--set", f"split.test_start={ts}", "--out", str(tmp_path / "m"), "--json"],
    )
    assert res.exit_code == 0, res.output
    run_meta = json.loads((tmp_path / "m" / "config.json").read_text())["meta"]["run"]
    # 174 events before the cut; the latest round(17.4) = 17 validate
    assert run_meta["n_valid"] == 17
    res = run(
        runner,
        ["data", "split", str(log), "--method", "temporal"]
        + ["--set", f"test_start={ts}", "--out", str(tmp_path / "sp"), "--json"],
    )
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)["info"]
    # days 10u + t: the last 5 of u26 (days 261-265), all of u27 and u28
    assert info["valid_share"] == 0.1
    assert info["valid_start"] == 1_600_000_000 + 86_400 * 261


def _trained_markov(runner, tmp_path):
    """``_user_log`` at ``tmp_path/log.csv`` and Markov trained on it into ``tmp_path/m``."""
    log = _user_log(tmp_path / "log.csv")
    res = run(
        runner, ["train", "--model", "markov", "--data", str(log), "--out", str(tmp_path / "m")]
    )
    assert res.exit_code == 0, res.output
    return log


def test_evaluate_says_how_many_targets_on_unknown_items_it_left_out(runner, tmp_path):
    _trained_markov(runner, tmp_path)
    res = run(runner, ["evaluate", str(tmp_path / "m")])
    assert res.exit_code == 0 and "left out" not in res.stdout
    assert "markov on 30 test examples" in res.stdout
    new = _user_log(tmp_path / "new.csv", rename_every=3)  # items 0, 3, 6, 9 unknown
    res = run(runner, ["evaluate", str(tmp_path / "m"), "--data", str(new)])
    assert res.exit_code == 0, res.output
    # the last item of user u is (u + 5) % 12: a multiple of 3 for 10 of the 30 users
    assert "markov on 20 test examples" in res.stdout
    assert "10 test targets on items the model does not know left out" in res.stdout
    res = run(runner, ["evaluate", str(tmp_path / "m"), "--data", str(new), "--json"])
    info = json.loads(res.stdout)
    assert info["n"] == 20 and info["n_dropped"] == 10
    only_new = tmp_path / "only_new.csv"
    only_new.write_text(
        "user_id,item_id,timestamp\n"
        + "".join(f"u{u},x{t},{1600000000 + t}\n" for u in range(3) for t in range(4))
    )
    res = run(runner, ["evaluate", str(tmp_path / "m"), "--data", str(only_new)])
    assert res.exit_code == 2
    assert (
        "no test examples to score" in res.stderr
        and "3 on items the model does not know" in res.stderr
    )


def test_drop_duplicates_reaches_the_run_and_its_saved_record(runner, tmp_path):
    """A log written twice: each learner's held-out last event is a copy of the history's last
    one, which Markov "predicts" perfectly; --drop-duplicates reads it once, and the model
    directory records it, so `evaluate` reads the log the same way again."""
    log = _user_log(tmp_path / "log.csv")
    twice = tmp_path / "twice.csv"
    text = log.read_text()
    twice.write_text(text + "".join(text.splitlines(keepends=True)[1:]))
    res = run(runner, ["data", "stats", str(twice), "--json"])
    assert json.loads(res.stdout)["duplicate_events"] == 180
    assert "warmrec: warning:" in res.stderr and "--drop-duplicates" in res.stderr
    args = ["train", "--model", "markov", "--data", str(twice)]
    res = run(runner, [*args, "--drop-duplicates", "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert "warmrec: warning:" not in res.stderr
    assert "warmrec: note: " in res.stderr and "dropped 180 of 360 events" in res.stderr
    res = run(runner, ["evaluate", str(tmp_path / "m"), "--json"])
    once = json.loads(res.stdout)
    res = run(
        runner, ["train", "--model", "markov", "--data", str(log), "--out", str(tmp_path / "o")]
    )
    res = run(runner, ["evaluate", str(tmp_path / "o"), "--json"])
    assert once["metrics"] == json.loads(res.stdout)["metrics"]  # as if read once
    res = run(runner, [*args, "--out", str(tmp_path / "k")])
    res = run(runner, ["evaluate", str(tmp_path / "k"), "--json"])
    assert json.loads(res.stdout)["metrics"]["hr@10"] == 1.0  # kept: every target a copy


def test_sessionize_writes_the_format_its_out_suffix_names(runner, tmp_path):
    log = _user_log(tmp_path / "log.csv")
    for name in ("s.csv", "s.tsv", "s.parquet"):
        res = run(
            runner, ["data", "sessionize", str(log), "--gap", "3600", "--out", str(tmp_path / name)]
        )
        assert res.exit_code == 0, res.output
    csv = pl.read_csv(tmp_path / "s.csv")
    assert csv.equals(pl.read_csv(tmp_path / "s.tsv", separator="\t"))
    # whole seconds are written back as they were read, not as 1600000000.0
    assert (tmp_path / "s.csv").read_text().splitlines()[1] == "u0,0,i0,1600000000"
    assert csv["timestamp"].equals(pl.read_csv(log).sort("user_id", "timestamp")["timestamp"])
    assert (
        csv["session_id"].n_unique()
        == pl.read_parquet(tmp_path / "s.parquet")["session_id"].n_unique()
        == 180
    )
    res = run(runner, ["data", "stats", str(tmp_path / "s.csv"), "--json"])
    assert json.loads(res.stdout)["sessions"] == 180  # read back as a session log
    res = run(runner, ["data", "sessionize", str(log), "--out", str(tmp_path / "s.txt")])
    assert res.exit_code == 2 and "expected a .parquet, .csv or .tsv file" in res.stderr
    assert not (tmp_path / "s.txt").exists()


def test_evaluate_warns_when_the_recorded_log_changed_since_training(runner, tmp_path):
    log = _trained_markov(runner, tmp_path)
    res = run(runner, ["evaluate", str(tmp_path / "m")])
    assert res.exit_code == 0 and "warning" not in res.stderr
    st = log.stat()  # touched (a new time, the same bytes): the same log
    os.utime(log, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    res = run(runner, ["evaluate", str(tmp_path / "m")])
    assert res.exit_code == 0 and "warning" not in res.stderr
    _user_log(log, n_users=25)  # the same file, rewritten with fewer learners
    res = run(runner, ["evaluate", str(tmp_path / "m")])
    assert res.exit_code == 0 and "markov on 25 test examples" in res.stdout
    assert res.stderr.count("warmrec: warning:") == 1
    assert "the log has changed since" in res.stderr and str(log) in res.stderr
    # another log named on the command line is the user's choice: nothing to warn about
    res = run(runner, ["evaluate", str(tmp_path / "m"), "--data", str(log)])
    assert "warning" not in res.stderr


def test_names_reads_a_headerless_log_and_the_model_reads_it_again(runner, tmp_path):
    log = _user_log(tmp_path / "log.csv")
    plain = tmp_path / "plain.tsv"  # the same events, tab-separated, without the header line
    plain.write_text("".join(x.replace(",", "\t") + "\n" for x in log.read_text().splitlines()[1:]))
    res = run(runner, ["data", "stats", str(plain)])
    assert res.exit_code == 2 and "--names user_id,item_id,..." in res.stderr
    names = ["--names", "user_id,item_id,timestamp"]
    res = run(runner, ["train", "--model", "markov", "--data", str(plain), *names]
              + ["--out", str(tmp_path / "m")])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = run(runner, ["evaluate", str(tmp_path / "m"), "--json"])  # the recorded --names
    assert res.exit_code == 0, res.output
    with_header = run(runner, ["train", "--model", "markov", "--data", str(log)]
                      + ["--out", str(tmp_path / "h")])  # fmt: skip
    assert with_header.exit_code == 0
    again = run(runner, ["evaluate", str(tmp_path / "h"), "--json"])
    assert json.loads(res.stdout)["metrics"] == json.loads(again.stdout)["metrics"]
    res = run(runner, ["data", "stats", str(plain), "--names", "user_id,,timestamp"])
    assert (
        res.exit_code == 2
        and "--names" in res.stderr
        and "found 'user_id,,timestamp'" in res.stderr
    )


def test_evaluate_refuses_a_split_whose_test_part_the_model_trained_on(runner, tmp_path):
    """A model trained under leave-one-out, scored on a temporal split of the same log, was
    scored on its own training events (HR@10 1.0 against an honest 0.10), exit status 0."""
    log = _trained_markov(runner, tmp_path)  # loo: each user's last two events held out
    cut = ["--split", "temporal", "--set", f"split.test_start={1_600_000_000 + 86_400 * 150}"]
    res = run(runner, ["evaluate", str(tmp_path / "m"), *cut])
    assert res.exit_code == 2
    # users 15..29 (6 events each) are the test part; 4 of each user's events trained
    assert "60 of the 90 events of the test part were training events of the model" in res.stderr
    assert f"trained with the loo split of {log}" in res.stderr
    res = run(runner, ["evaluate", str(tmp_path / "m"), "--split", "loo", "--json"])
    assert res.exit_code == 0, res.output  # its own split, named: apart by construction
    res = run(runner, ["evaluate", str(tmp_path / "m"), "--split", "user", "--json"])
    assert res.exit_code == 2 and "were training events of the model" in res.stderr
    # the recorded log gone: nothing to compare with, a new log is scored as asked
    new = _user_log(tmp_path / "new.csv", n_users=12)
    log.unlink()
    res = run(runner, ["evaluate", str(tmp_path / "m"), "--data", str(new), "--json"])
    assert res.exit_code == 0, res.output


def test_evaluate_does_not_skip_the_training_event_check_in_silence(runner, tmp_path):
    """The check read the model's recorded log again; where that failed it returned, so a
    copy of the log scored under a temporal split read HR@10 0.97 (its training events)
    with exit status 0. A log there but unreadable is now an error naming it; a log that
    is gone (a model moved to another machine) is scored with a warning that says so."""
    log = _trained_markov(runner, tmp_path)
    copy = tmp_path / "copy.csv"
    copy.write_bytes(log.read_bytes())
    cut = ["--data", str(copy), "--split", "temporal"]
    cut += ["--set", f"split.test_start={1_600_000_000 + 86_400 * 150}", "--json"]
    log.write_text("this is not,a log\n")
    res = run(runner, ["evaluate", str(tmp_path / "m"), *cut])
    assert res.exit_code == 2, res.output
    assert f"its recorded training log {log} is there but cannot be read" in res.stderr
    log.unlink()
    res = run(runner, ["evaluate", str(tmp_path / "m"), *cut])
    assert res.exit_code == 0, res.output
    assert f"its recorded training log {log} is not there, so the test part was not " in (
        " ".join(res.stderr.split())
    )


def test_refit_all_trains_the_saved_model_on_every_event(runner, tmp_path):
    """User u walks x_u -> y_u -> z_u: leave-one-out trains on x_u alone, so only a model
    fitted again on the whole log knows that z_u follows y_u (a deployed model must)."""
    rows = [
        (f"u{u}", f"{c}{u}", 1_600_000_000 + 60 * t) for u in range(20) for t, c in enumerate("xyz")
    ]
    log = tmp_path / "xyz.csv"
    pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row").write_csv(log)
    base = ["train", "--model", "markov", "--data", str(log)]
    res = run(runner, [*base, "--out", str(tmp_path / "v")])
    assert res.exit_code == 0, res.output
    res = run(runner, [*base, "--refit-all", "--out", str(tmp_path / "r"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["refit"]["events"] == 60 and out["refit"]["sequences"] == 20
    top = {}
    for name in ("v", "r"):
        res = run(runner, ["recommend", str(tmp_path / name), "--items", "y3", "-k", "1", "--json"])
        assert res.exit_code == 0, res.output
        top[name] = json.loads(res.stdout)["items"][0]
    assert top["r"] == "z3" and top["v"] != "z3"
    # its test part is training data now: evaluating it is refused, the validated one is not
    res = run(runner, ["evaluate", str(tmp_path / "r")])
    assert res.exit_code == 2 and "fitted again on the whole log (60 events" in res.stderr
    assert run(runner, ["evaluate", str(tmp_path / "v")]).exit_code == 0


def test_recommend_says_how_many_items_popularity_filled(runner, tmp_path):
    """Markov knows 1 -> 2 only: after item 2 every item comes from its popularity fill."""
    from warmrec.data.dataset import SequenceDataset
    from warmrec.models.rules import Markov

    rows = [(s, i, float(10 * s + i)) for s in range(5) for i in (1, 2)] + [(9, 3, 99.0)]
    log = pl.DataFrame(rows, schema=["session_id", "item_id", "timestamp"], orient="row")
    Markov().fit(SequenceDataset.from_frame(log)).save(tmp_path / "m")
    res = run(runner, ["recommend", str(tmp_path / "m"), "--items", "1", "-k", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["items"][0] == 2
    assert json.loads(res.stdout)["popularity_filled"] == 1
    res = run(runner, ["recommend", str(tmp_path / "m"), "--items", "2", "-k", "2"])
    assert res.exit_code == 0, res.output
    assert "2 of the 2 items are ranked by training popularity alone" in res.stderr


def test_recommend_json_gives_ids_beyond_two_to_the_53_as_strings(runner, tmp_path):
    """As the service answers them: a JSON number that large reads as another id in
    JavaScript (and jq); ``--json`` printed them as numbers."""
    from tests.conftest import cyclic_log
    from warmrec.data.dataset import SequenceDataset
    from warmrec.models.rules import Markov

    big = 2**60
    df = cyclic_log(n_items=5).with_columns(pl.col("item_id") + big)
    Markov().fit(SequenceDataset.from_frame(df)).save(tmp_path / "m")
    res = run(runner, ["recommend", str(tmp_path / "m"), "--items", str(big + 1), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["history"] == [str(big + 1)] and out["items"][0] == str(big + 2)
    assert all(isinstance(i, str) for i in out["items"])


def test_evaluate_on_a_log_with_other_id_types_answers_not_a_traceback(runner, tmp_path):
    """The training-events check joined integer ids to text ids: polars' SchemaError."""
    df = cyclic_log(n_sessions=40, n_items=12, length=6).drop("session_id")
    df = df.with_columns(user_id=pl.int_range(pl.len()) // 6)
    df.write_csv(tmp_path / "int.csv")
    res = run(runner, ["train", "--model", "markov", "--data", str(tmp_path / "int.csv"),
                       "--out", str(tmp_path / "m")])  # fmt: skip
    assert res.exit_code == 0, res.output
    users = df.with_columns(pl.format("u{}", "user_id").alias("user_id"))
    users.write_csv(tmp_path / "users.csv")
    res = run(runner, ["evaluate", str(tmp_path / "m"), "--data", str(tmp_path / "users.csv"),
                       "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["metrics"]["hr@10"] > 0.9  # the cycle, on text user ids
    padded = df.with_columns(pl.format("0{}", "item_id").alias("item_id"))
    padded.write_csv(tmp_path / "padded.csv")
    res = run(runner, ["evaluate", str(tmp_path / "m"), "--data", str(tmp_path / "padded.csv")])
    assert res.exit_code == 2 and "no test examples" in res.output  # "012" is no item 12


def test_data_sessionize_and_gaps_refuse_a_key_that_is_no_sequence(runner, tmp_path):
    """--key item_id wrote sessions of an item's events, a file warmrec then refused."""
    p = tmp_path / "g.csv"
    p.write_text("user_id,item_id,timestamp\nu1,a,1600000000\nu1,b,1600000100\nu2,a,1600000000\n")
    for cmd in (["sessionize", str(p), "--out", str(tmp_path / "o.csv")], ["gaps", str(p)]):
        res = run(runner, ["data", *cmd, "--key", "item_id"])
        assert res.exit_code == 2 and "--key: expected user_id" in res.output
    assert not (tmp_path / "o.csv").exists()

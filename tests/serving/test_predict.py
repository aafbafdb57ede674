"""Batch prediction: the top-k of every sequence to CSV/Parquet, chunked, atomic; the CLI."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from tests.conftest import cyclic_log, session_frame
from warmrec.cli.main import cli
from warmrec.errors import ConfigError
from warmrec.models.base import Recommender
from warmrec.serving.predict import Histories, histories_from_frame, predict


@pytest.fixture(scope="module")
def model(pop_dir):
    return Recommender.load(pop_dir)


FRAME = session_frame(
    [
        ("s1", "3", 1),
        ("s1", "4", 2),
        ("s2", "7", 1),
        ("s3", "zz", 1),
        ("s2", "8", 3),
        ("s2", "9", 2),
    ]
)


def test_histories_are_time_ordered_without_unknown_items(model):
    frame = FRAME.with_columns(pl.col("item_id").cast(pl.Int64, strict=False))
    h = histories_from_frame(frame, model.vocab)
    assert h.keys.to_list() == ["s1", "s2", "s3"]  # s3 has only an unknown id: empty
    got = [model.vocab.decode(h.items[a:b]) for a, b in zip(h.starts, h.ends)]
    assert got == [[3, 4], [7, 9, 8], []]


def test_a_sequence_of_unknown_items_gets_the_fallback_from_a_log(model, tmp_path):
    """It was dropped while reading the log, so ``fallback="popular"`` never reached it."""
    frame = FRAME.with_columns(pl.col("item_id").cast(pl.Int64, strict=False))
    h = histories_from_frame(frame, model.vocab)
    res = predict(model, h, tmp_path / "p.csv", k=2, progress=False)
    assert (res.n_sequences, res.n_skipped, res.n_fallback) == (2, 1, 0)
    res = predict(model, h, tmp_path / "p.csv", k=2, fallback="popular", progress=False)
    assert (res.n_sequences, res.n_skipped, res.n_fallback) == (3, 0, 1)
    rows = pl.read_csv(tmp_path / "p.csv").filter(pl.col("session_id") == "s3")
    counts = np.asarray(model.meta.item_counts)  # index 0: padding
    got = counts[model.vocab.encode(rows["item_id"])]
    assert rows.height == 2 and list(got) == sorted(counts[1:], reverse=True)[:2]


def test_rows_match_recommend(model, tmp_path):
    df = cyclic_log(n_sessions=30)
    h = histories_from_frame(df, model.vocab)
    res = predict(model, h, tmp_path / "p.csv", k=4, exclude_seen=True, progress=False)
    out = pl.read_csv(tmp_path / "p.csv")
    assert out.columns == ["session_id", "rank", "item_id", "score"]
    assert res.n_sequences == 30 and res.n_rows == out.height == 30 * 4
    for key in (0, 7, 29):
        hist = df.filter(pl.col("session_id") == key).sort("timestamp")["item_id"].to_list()
        rows = out.filter(pl.col("session_id") == key).sort("rank")
        assert rows["rank"].to_list() == [1, 2, 3, 4]
        assert rows["item_id"].to_list() == model.recommend([hist], 4, exclude_seen=True)[0]


def test_chunking_and_formats_give_the_same_rows(model, tmp_path):
    h = histories_from_frame(cyclic_log(n_sessions=50), model.vocab)
    predict(model, h, tmp_path / "one.csv", k=3, progress=False)
    predict(model, h, tmp_path / "many.parquet", k=3, max_cells=21 * 7, progress=False)
    a, b = pl.read_csv(tmp_path / "one.csv"), pl.read_parquet(tmp_path / "many.parquet")
    assert a.height == b.height == 150
    assert a["item_id"].to_list() == b["item_id"].to_list()
    np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy())


def test_empty_histories_skipped_or_fallback(model, tmp_path):
    h = Histories(
        pl.Series("session_id", ["a", "b"]),
        np.array([3], dtype=np.int64),
        np.array([0, 1]),
        np.array([1, 1]),
    )
    res = predict(model, h, tmp_path / "p.csv", k=2, progress=False)
    assert res.n_sequences == 1 and res.n_skipped == 1
    res = predict(model, h, tmp_path / "p.csv", k=2, fallback="popular", progress=False)
    assert res.n_sequences == 2 and res.n_fallback == 1
    assert pl.read_csv(tmp_path / "p.csv")["session_id"].to_list() == ["a", "a", "b", "b"]


def test_a_failed_run_leaves_the_old_file_and_no_temporary(model, tmp_path, monkeypatch):
    out = tmp_path / "p.csv"
    out.write_text("old\n")
    h = histories_from_frame(cyclic_log(n_sessions=20), model.vocab)
    calls = []

    def failing_score(batch):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("boom")
        return type(model).score(model, batch)

    monkeypatch.setattr(model, "score", failing_score)
    with pytest.raises(RuntimeError):
        predict(model, h, out, k=2, max_cells=21 * 5, progress=False)
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["p.csv"]


def test_a_writer_that_fails_to_open_leaves_no_temporary_and_no_output(
    model, tmp_path, monkeypatch
):
    """The temporary file is created when the writer is built, before predict() can abort it:
    opening it failing (too many open files, a umask that leaves it read-only, a signal) left
    the hidden ``.p.csv.warmrec-tmp-*`` behind."""
    import errno

    from warmrec.serving import predict as P

    real_open = open

    def failing_open(file, *args, **kwargs):
        if "warmrec-tmp" in str(file):
            raise OSError(errno.EMFILE, "Too many open files", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(P, "open", failing_open, raising=False)
    h = histories_from_frame(cyclic_log(n_sessions=5), model.vocab)
    with pytest.raises(OSError, match="Too many open files"):
        predict(model, h, tmp_path / "p.csv", k=2, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("k", "out"), [(0, "p.csv"), (2, "p.txt")])
def test_bad_arguments(model, tmp_path, k, out):
    h = histories_from_frame(cyclic_log(n_sessions=5), model.vocab)
    with pytest.raises(ConfigError):
        predict(model, h, tmp_path / out, k=k, progress=False)


@pytest.fixture
def trained(tmp_path):
    log = tmp_path / "log.csv"
    cyclic_log(n_sessions=40, n_items=12, length=6).write_csv(log)
    res = CliRunner().invoke(
        cli, ["train", "--model", "pop", "--data", str(log), "--out", str(tmp_path / "m")]
    )
    assert res.exit_code == 0, res.output
    return tmp_path / "m", log


def test_cli_predict_from_recorded_data(trained, tmp_path):
    model_dir, _ = trained
    out = tmp_path / "pred.parquet"
    res = CliRunner().invoke(
        cli, ["predict", str(model_dir), "-k", "3", "--out", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["n_sequences"] == 40 and info["n_rows"] == 120
    assert pl.read_parquet(out).height == 120
    # stderr not a terminal (a log file): a line per tenth of the sequences, no tqdm \r
    args = ["predict", str(model_dir), "-k", "3", "--out", str(out), "--batch-size", "4"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0 and "\r" not in res.stderr
    lines = [x for x in res.stderr.splitlines() if x.startswith("predict: ")]
    assert [x.split()[1] for x in lines] == [f"{4 * i}/40" for i in range(1, 11)]


@pytest.mark.parametrize("flags", [["--part", "test"], ["--split", "test"]])
def test_cli_predict_last_prefix_of_test(trained, tmp_path, flags):
    model_dir, log = trained
    out = tmp_path / "pred.csv"
    args = ["predict", str(model_dir), "--data", str(log), *flags, "-k", "2", "--out", str(out)]
    res = CliRunner().invoke(cli, [*args, "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and pl.read_csv(out)["rank"].max() == 2


def test_cli_predict_errors_in_one_line(trained, tmp_path):
    model_dir, _ = trained
    res = CliRunner().invoke(cli, ["predict", str(model_dir), "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and ".csv or .parquet" in res.output
    res = CliRunner().invoke(
        cli, ["predict", str(tmp_path / "none"), "--out", str(tmp_path / "x.csv")]
    )
    assert res.exit_code == 2 and "not a warmrec model directory" in res.output


@pytest.fixture
def big_model(tmp_path):
    """A popularity model over a log long enough that ``--batch-size 1`` runs for seconds."""
    log = tmp_path / "big.csv"
    cyclic_log(n_sessions=20000, n_items=20, length=3).write_csv(log)
    res = CliRunner().invoke(
        cli, ["train", "--model", "pop", "--data", str(log), "--out", str(tmp_path / "m")]
    )
    assert res.exit_code == 0, res.output
    return tmp_path / "m"


def _predict_until_writing(model_dir, out):
    """Start ``warmrec predict`` in a process; return it once its temporary file exists."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "warmrec", "predict", str(model_dir), "--out", str(out),
           "--batch-size", "1", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if list(out.parent.glob(f".{out.name}.warmrec-tmp-*")):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"predict ended before writing: {proc.stderr.read().decode()[-2000:]}")


@pytest.mark.slow  # two predict processes on 20,000 sequences: ~15 s on a loaded 2-core machine
def test_predict_killed_mid_run_leaves_no_temporary_file(big_model, tmp_path):
    """Issue 19: ``warmrec predict`` killed by SIGTERM/SIGKILL left hidden ``.tmp`` files that
    later runs never removed. SIGTERM: removed on the way out; SIGKILL: by the next run."""
    import signal

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "pred.csv"
    out.write_text("old\n")
    proc = _predict_until_writing(big_model, out)
    proc.send_signal(signal.SIGTERM)
    status, err = proc.wait(timeout=60), proc.stderr.read().decode()
    assert status == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["pred.csv"]
    assert out.read_text() == "old\n"

    proc = _predict_until_writing(big_model, out)
    proc.kill()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    left = [p.name for p in out_dir.iterdir() if p.name != "pred.csv"]
    assert len(left) == 1 and f"warmrec-tmp-{proc.pid}@" in left[0]
    res = CliRunner().invoke(
        cli, ["predict", str(big_model), "-k", "2", "--out", str(out), "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out_dir.iterdir()) == ["pred.csv"]
    assert pl.read_csv(out).height == 20000 * 2


def test_cli_predict_checks_out_before_any_work(tmp_path):
    """Issue 19: an --out naming a folder failed at the final rename, after all the work, with a
    traceback. It is refused first (here, before the missing model is even looked at)."""
    (tmp_path / "x.csv").mkdir()
    (tmp_path / "f").write_text("")
    for out, message in (
        ("x.csv", "found a folder, expected a file name"),
        ("f/p.csv", "/f' is a file, expected a folder"),
    ):
        res = CliRunner().invoke(
            cli, ["predict", str(tmp_path / "no-model"), "--out", str(tmp_path / out)]
        )
        assert res.exit_code == 2, res.output
        assert message in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1


def test_cli_predict_says_when_k_is_above_the_catalogue(trained, tmp_path):
    model_dir, _ = trained
    out = tmp_path / "p.csv"
    res = CliRunner().invoke(
        cli, ["predict", str(model_dir), "-k", "10000000", "--out", str(out), "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    assert "warmrec: warning: -k 10000000 is more than the 12 items of the catalogue" in res.output
    assert pl.read_csv(out).group_by("session_id").len()["len"].max() == 12
    res = CliRunner().invoke(cli, ["predict", str(model_dir), "-k", "12", "--out", str(out)])
    assert res.exit_code == 0 and "warning" not in res.output


def test_predict_takes_the_split_options_its_error_asks_for(tmp_path):
    """'--split temporal' said "--set split.test_start=..." and predict had no --set."""
    rows = [(f"u{u}", (u + j) % 9, 1_500_000_000 + u * 259_200 + j * 3_600)
            for u in range(40) for j in range(6)]  # fmt: skip
    log = tmp_path / "tl.csv"
    pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row").write_csv(log)
    split = ["--set", "split.test_start=2017-10-01", "--set", "split.valid_start=2017-09-01"]
    r = CliRunner().invoke(cli, ["train", "--model", "markov", "--data", str(log), "--split",
                                 "temporal", *split, "--out", str(tmp_path / "m")])  # fmt: skip
    assert r.exit_code == 0, r.output
    args = ["predict", str(tmp_path / "m"), "--part", "valid", "-k", "2", "--out"]
    r = CliRunner().invoke(cli, [*args, str(tmp_path / "a.csv"), "--split", "temporal", *split])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, [*args, str(tmp_path / "b.csv")])  # the recorded split
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    r = CliRunner().invoke(cli, [*args, str(tmp_path / "c.csv"), "--set", "model.x=1"])
    assert r.exit_code == 2 and "predict takes split.KEY=VALUE only" in r.output

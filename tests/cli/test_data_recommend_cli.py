"""`data gaps --plot`, `data stats` dates, non-ASCII JSON, `recommend` argument checks and the
popularity fallback, a CUDA device on a machine without one."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner

from tests.conftest import cyclic_log
from warmrec.cli.main import cli


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line(res) -> str:
    assert res.exit_code == 2, res.output
    # a warning of warmrec's own (one line each: a small split) may come before the error
    lines = [ln for ln in res.output.splitlines() if ln.strip() and "warmrec: warning:" not in ln]
    assert len(lines) == 1 and lines[0].startswith("warmrec: error:"), res.output
    return lines[0]


@pytest.fixture
def log_csv(tmp_path):
    p = tmp_path / "log.csv"
    df = cyclic_log(n_sessions=40, n_items=10, length=5)
    df.with_columns(pl.col("timestamp") + 1.6e9).write_csv(p)
    return p


def test_gaps_plot_and_quantiles_in_text(log_csv, tmp_path):
    png = tmp_path / "gaps.png"
    res = run(["data", "gaps", log_csv, "--plot", png])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    for q in ("50%", "90%", "99%"):
        assert f"gap {q}" in res.output
    d = json.loads(run(["data", "gaps", log_csv, "--json"]).output)
    assert d["quantiles"]["50%"] == 60.0


def test_stats_prints_dates(log_csv, tmp_path):
    res = run(["data", "stats", log_csv])
    assert res.exit_code == 0, res.output
    assert "e+09" not in res.output
    assert "2020-09-13T12:26:40Z" in res.output  # 1.6e9 s
    d = json.loads(run(["data", "stats", log_csv, "--json"]).output)
    assert d["time_min"] == 1.6e9 and d["time_min_utc"] == "2020-09-13T12:26:40Z"
    p = tmp_path / "nots.csv"
    pl.DataFrame({"session_id": [1, 1, 2], "item_id": [1, 2, 3]}).write_csv(p)
    text = run(["data", "stats", p, "--no-timestamp"]).output
    assert "1970" not in text  # file positions are not dates


@pytest.fixture
def text_model(tmp_path):
    """A Markov model over non-ASCII string ids."""
    p = tmp_path / "log.csv"
    names = ["café", "naïve", "東京", "zoë"]
    rows = [(s, names[(s + j) % 4], s * 1000 + j) for s in range(30) for j in range(4)]
    pl.DataFrame(rows, schema=["session_id", "item_id", "timestamp"], orient="row").write_csv(p)
    out = tmp_path / "m"
    res = run(["train", "--model", "markov", "--data", p, "--out", out])
    assert res.exit_code == 0, res.output
    return out


def test_json_keeps_non_ascii(text_model):
    res = run(["recommend", text_model, "--items", "café", "-k", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert "naïve" in res.output and "\\u" not in res.output
    assert json.loads(res.stdout)["items"][0] == "naïve"


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--items", "café", "-k", "-5"], "-k: expected a whole number >= 1, found -5"),
        (["--items", "café", "-k", "0"], "found 0"),
        (["--items", ""], "--fallback popular"),
        (["--items", " , "], "--fallback popular"),
        (["--items", "nosuch,other"], "--fallback popular"),
    ],
)
def test_recommend_refuses_bad_arguments(text_model, extra, needle):
    line = one_line(run(["recommend", text_model, *extra]))
    assert needle in line and "fallback=" not in line


def test_recommend_popular_fallback(text_model):
    for items in ("", "nosuch"):
        res = run(["recommend", text_model, "--items", items, "--fallback", "popular", "--json"])
        assert res.exit_code == 0, res.output
        assert len(json.loads(res.stdout)["items"]) == 4


def test_sasrec_recommend_unknown_history_is_an_error(log_csv, tmp_path):
    out = tmp_path / "sas"
    sets = ["model.d=8", "model.n_heads=1", "model.n_layers=1", "model.max_len=5"]
    args = ["train", "--model", "sasrec", "--data", log_csv, "--epochs", "1", "--out", out]
    res = run(args + [x for s in sets for x in ("--set", s)])
    assert res.exit_code == 0, res.output
    assert "no item the model knows" in one_line(run(["recommend", out, "--items", "99999"]))
    ok = run(["recommend", out, "--items", "99999", "--fallback", "popular", "--json"])
    assert ok.exit_code == 0, ok.output
    items = json.loads(ok.stdout)["items"]
    assert len(items) == 10 and items != list(range(1, 11))


def test_cuda_device_without_cuda_is_a_config_error(monkeypatch, log_csv, tmp_path):
    import torch

    from warmrec.errors import ConfigError
    from warmrec.training.loop import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ConfigError, match="TrainerConfig.device.*'cuda'"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
    args = ["train", "--model", "sasrec", "--data", log_csv, "--set", "train.device=cuda:0"]
    line = one_line(run(args + ["--out", tmp_path / "m"]))
    assert "'cuda:0'" in line


def test_recommend_says_when_k_is_above_the_catalogue(text_model):
    res = run(["recommend", text_model, "--items", "café", "-k", "10000000", "--json"])
    assert res.exit_code == 0, res.output
    assert "-k 10000000 is more than the 4 items of the catalogue" in res.stderr
    assert len(json.loads(res.stdout)["items"]) == 4
    for k in (["-k", "4"], []):  # a k that fits, and the default -k (10) nobody typed
        res = run(["recommend", text_model, "--items", "café", *k])
        assert res.exit_code == 0 and "warning" not in res.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["data", "sessionize", "{missing}", "--out", "{folder}"],
        ["data", "split", "{missing}", "--out", "{file}"],
        ["data", "split", "{missing}", "--out", "{file}/sub"],
        ["train", "--model", "pop", "--data", "{missing}", "--out", "{file}"],
        ["train", "--model", "pop", "--data", "{missing}", "--out", "{folder}"],  # not a model
        ["pretrain", "--data", "{missing}", "--out", "{folder}"],
        ["pretrain", "--data", "{missing}", "--out", "{file}/m"],
        ["transfer", "--from", "{missing}", "--data", "{missing}", "--out", "{file}"],
        ["predict", "{missing}", "--out", "{folder}"],
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, args):
    """Issue 19: an --out naming a folder (or under a file) failed after all the work, with a
    traceback and exit 1. It fails first, in one line, exit 2: the data path given here does not
    exist, and the message is about --out, not the data."""
    folder = tmp_path / "taken.parquet"
    folder.mkdir()
    (folder / "keep").write_text("")
    file = tmp_path / "file"
    file.write_text("")
    names = {"missing": tmp_path / "missing.csv", "folder": folder, "file": file}
    line = one_line(run([a.format(**names) for a in args]))
    assert "--out" in line or "refusing to replace" in line, line
    assert "missing.csv" not in line
    assert (folder / "keep").exists() and file.read_text() == ""


@pytest.mark.parametrize("plot", ["{file}/g.png", "{file}/sub/g.png", "/sys/warmrec-test.png"])
def test_an_os_error_on_a_named_path_is_one_line(log_csv, tmp_path, plot):
    """A path that cannot be written where no command checks it first still ends in one line
    naming the path (not a temporary name), exit 2, not a traceback."""
    import os

    if plot.startswith("/sys") and not os.path.isdir("/sys"):
        pytest.skip("no /sys")
    file = tmp_path / "file"
    file.write_text("")
    line = one_line(run(["data", "gaps", log_csv, "--plot", plot.format(file=file)]))
    assert "warmrec-tmp" not in line
    assert str(file) in line or "/sys/warmrec-test.png" in line


def test_data_commands_read_a_mars_folder_without_options(tmp_path):
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "fixtures" / "datasets" / "mars"
    d = json.loads(run(["data", "stats", folder, "--json"]).stdout)
    assert (d["events"], d["sequences"], d["items"]) == (5, 2, 3)
    g = json.loads(run(["data", "gaps", folder, "--json"]).stdout)
    assert g["n_gaps"] == 3 and g["n_zero"] == 1  # the duplicated row
    res = run(["data", "sessionize", folder, "--out", tmp_path / "s.parquet", "--json"])
    assert json.loads(res.stdout)["sessions"] == 2
    d = json.loads(run(["data", "stats", folder, "--format", "mars-explicit", "--json"]).stdout)
    assert d["events"] == 2


def test_recommend_reads_quoted_ids_with_commas_and_spaces(tmp_path):
    """'--items 7,"a, b"' was split at every comma: '"a' and 'b"' unknown."""
    p = tmp_path / "log.csv"
    names = ["a, b", " lead", "c"]
    rows = [(s, names[(s + j) % 3], s * 1000 + j) for s in range(30) for j in range(3)]
    pl.DataFrame(rows, schema=["session_id", "item_id", "timestamp"], orient="row").write_csv(p)
    assert run(["train", "--model", "markov", "--data", p, "--out", tmp_path / "m"]).exit_code == 0
    res = run(["recommend", tmp_path / "m", "--items", '"a, b"', "-k", "1", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["unknown"] == [] and json.loads(res.stdout)["items"] == [" lead"]
    res = run(["recommend", tmp_path / "m", "--items", 'c , " lead"', "-k", "1", "--json"])
    assert json.loads(res.stdout)["history"] == ["c", " lead"]
    assert json.loads(res.stdout)["items"] == ["c"]

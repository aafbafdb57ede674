"""``warmrec tune`` refuses, in one line and before reading data, what it cannot use: a binary
space file, a damaged ``study.db``, an unwritable ``--out``, ``--address`` without Ray, a Ray
address where nothing answers, ``--set`` keys the model does not have; ``--set`` values reach the
trials; ``best.toml`` names the data path as typed."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import cyclic_log
from warmrec.cli.main import cli
from warmrec.config import load_toml

SPACE = """
[search]
metric = "recall@5"
[model]
vector_size = 8
window = 3
epochs = 4
sample = 0.0
n_recent = 1
alpha = { type = "log", low = 1e-3, high = 0.1 }
"""


@pytest.fixture
def space(tmp_path: Path) -> Path:
    p = tmp_path / "space.toml"
    p.write_text(SPACE)
    return p


def tune(tmp_path: Path, space: Path, *extra: str, data: str | None = None):
    args = ["tune", "--model", "item2vec", "--data", data or str(tmp_path / "missing.csv"),
            "--space", str(space), "--trials", "2", "--no-progress", *extra]  # fmt: skip
    if "--out" not in extra:
        args += ["--out", str(tmp_path / "out")]
    return CliRunner().invoke(cli, args)


def one_line(res) -> str:
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warmrec: error:"), res.output
    assert "missing.csv" not in lines[0]  # refused before the (missing) data was read
    return lines[0]


def test_a_binary_space_file(tmp_path: Path) -> None:
    p = tmp_path / "space.toml"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert "expected a TOML text file" in one_line(tune(tmp_path, p))


@pytest.mark.parametrize(
    ("damage", "found"),
    [
        (lambda db: db.write_bytes(db.read_bytes()[:5000]), "malformed"),  # truncated
        (lambda db: db.write_bytes(b"not a database at all" * 300), "not a database"),
    ],
)
def test_a_damaged_study_db(tmp_path: Path, space: Path, damage, found) -> None:
    import optuna

    out = tmp_path / "out"
    out.mkdir()
    db = out / "study.db"
    study = optuna.create_study(study_name="warmrec", storage=f"sqlite:///{db}")
    study.enqueue_trial({"x": 1})  # some rows, so that a truncation cuts through them
    del study
    assert db.stat().st_size > 5000
    damage(db)
    line = one_line(tune(tmp_path, space))
    assert "study.db" in line and found in line and "another --out" in line


@pytest.mark.parametrize(
    ("out", "message"),
    [("file", "found a file, expected a folder"), ("file/sub", "is a file, expected a folder")],
)
def test_an_output_that_cannot_be_written(tmp_path: Path, space: Path, out, message) -> None:
    (tmp_path / "file").write_text("")
    assert message in one_line(tune(tmp_path, space, "--out", str(tmp_path / out)))


def test_address_needs_the_ray_backend(tmp_path: Path, space: Path) -> None:
    line = one_line(tune(tmp_path, space, "--address", "127.0.0.1:6379"))
    assert "--address: only with --backend ray" in line


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.xdist_group("ray")  # one Ray at a time under --dist loadgroup
def test_an_unreachable_ray_address_fails_fast(tmp_path: Path, space: Path) -> None:
    """Issue 18: with --backend ray an unreachable --address hung for minutes in Ray's retries."""
    t0 = time.monotonic()
    port = _closed_port()
    line = one_line(tune(tmp_path, space, "--backend", "ray", "--address", f"127.0.0.1:{port}"))
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in line
    assert time.monotonic() - t0 < 10
    line = one_line(tune(tmp_path, space, "--backend", "ray", "--address", "nowhere"))
    assert "expected HOST:PORT" in line


def test_set_keys_the_model_does_not_have_or_searches(tmp_path: Path, space: Path) -> None:
    line = one_line(tune(tmp_path, space, "--set", "model.bogus=1"))
    assert "model.bogus (from --set or --config): unknown key for model 'item2vec'" in line
    line = one_line(tune(tmp_path, space, "--set", "model.alpha=0.01"))
    assert "searches it" in line


def test_set_values_reach_the_trials_and_best_toml_names_the_path_typed(
    tmp_path: Path, space: Path
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    cyclic_log(n_sessions=60, n_items=12, length=6).write_csv(real / "log.csv")
    (tmp_path / "link").symlink_to(real)
    typed = str(tmp_path / "link" / "log.csv")
    out = tmp_path / "out"
    res = tune(tmp_path, space, "--set", "model.epochs=1", "--pruner", "none", "--json",
               data=typed)  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["rows"]
    assert len(rows) == 2 and all(r["epochs"] == 1 and len(r["curve"]) == 1 for r in rows)
    best = load_toml(out / "best.toml", resolve=False)
    assert best["model"]["epochs"] == 1
    assert best["data"]["path"] == typed  # not .../real/log.csv


def test_without_space_the_models_builtin_space_is_searched(tmp_path: Path) -> None:
    cyclic_log(n_sessions=60, n_items=12, length=6).write_csv(tmp_path / "log.csv")
    out = tmp_path / "out"
    args = ["tune", "--model", "markov", "--data", str(tmp_path / "log.csv"), "--trials", "3",
            "--no-progress", "--json", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    # the searched parameters are those of the built-in markov space
    study = json.loads((out / "study.json").read_text())
    assert sorted(p["key"] for p in study["params"]) == ["pop_fallback", "topk"]
    best = load_toml(out / "best.toml", resolve=False)
    assert best["model"]["name"] == "markov" and best["model"]["topk"] in (0, 20, 100, 500)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "pop"], "'pop' has no built-in search space; give --space FILE"),
        ([], "no model: give --model (its built-in space is searched) or --space"),
    ],
)
def test_without_space_a_model_is_needed_that_has_one(tmp_path: Path, args, message) -> None:
    res = CliRunner().invoke(
        cli,
        [
            "tune",
            *args,
            "--data",
            str(tmp_path / "missing.csv"),
            "--trials",
            "2",
            "--out",
            str(tmp_path / "out"),
        ],  # fmt: skip
    )
    assert message in one_line(res)


def test_a_search_folder_of_other_settings_is_refused_before_reading_data(
    tmp_path: Path, space: Path
) -> None:
    # resuming adds trials to the search found in --out: trials of another space (or model, or
    # data) must not be mixed into it
    cyclic_log(n_sessions=60, n_items=12, length=6).write_csv(tmp_path / "log.csv")
    data = str(tmp_path / "log.csv")
    res = tune(tmp_path, space, "--set", "model.epochs=1", "--pruner", "none", data=data)
    assert res.exit_code == 0, res.output
    res = tune(tmp_path, space, "--set", "model.epochs=1", "--pruner", "none", data=data)
    assert res.exit_code == 0, res.output  # the same settings resume
    space.write_text(SPACE.replace("window = 3", "window = 2"))
    line = one_line(tune(tmp_path, space, "--set", "model.epochs=1", "--pruner", "none"))
    assert "holds a search with other settings (fixed, run)" in line


def test_a_search_over_a_log_overwritten_under_its_name_does_not_resume(
    tmp_path: Path, space: Path
) -> None:
    """The folder's record held the data's path only: trials scored on the old log were
    resumed, and one of them won, on the new one."""
    log = tmp_path / "log.csv"
    cyclic_log(n_sessions=60, n_items=12, length=6).write_csv(log)
    args = ("--set", "model.epochs=1", "--pruner", "none")
    assert tune(tmp_path, space, *args, data=str(log)).exit_code == 0
    cyclic_log(n_sessions=60, n_items=12, length=6, seed=1).write_csv(log)
    res = tune(tmp_path, space, *args, data=str(log))
    assert res.exit_code == 2 and "other settings (data_fingerprint)" in res.output


def test_a_search_over_an_edited_feature_file_does_not_resume(tmp_path: Path, space: Path) -> None:
    """The record's data fingerprint hashed the log's events only: a search run again with an
    --items file edited under its name resumed, mixing trials trained on the old features."""
    log = tmp_path / "log.csv"
    cyclic_log(n_sessions=60, n_items=12, length=6).write_csv(log)
    items = tmp_path / "items.csv"
    items.write_text("item_id,genre\n" + "".join(f"{i},g{i % 3}\n" for i in range(1, 13)))
    args = ("--set", "model.epochs=1", "--pruner", "none", "--items", str(items))
    assert tune(tmp_path, space, *args, data=str(log)).exit_code == 0
    assert tune(tmp_path, space, *args, data=str(log)).exit_code == 0  # unchanged: resumes
    items.write_text("item_id,genre\n" + "".join(f"{i},g{i % 2}\n" for i in range(1, 13)))
    res = tune(tmp_path, space, *args, data=str(log))
    assert res.exit_code == 2 and "other settings (data_fingerprint)" in res.output


def test_a_start_whose_data_fails_leaves_the_folder_free(tmp_path: Path, space: Path) -> None:
    res = tune(tmp_path, space, "--pruner", "none")  # missing.csv
    assert res.exit_code == 2 and not (tmp_path / "out" / "study.json").exists()


def test_the_trials_are_chosen_under_the_evaluation_protocol_that_is_reported(
    tmp_path: Path,
) -> None:
    """Trials had been scored with full ranking whatever ``[eval] protocol`` said, and the
    refit and test with it: the winner was chosen under another evaluation."""
    from warmrec.data.synthetic import generate_repeats

    generate_repeats(n_users=60, n_items=80, length=15.0).write_csv(tmp_path / "log.csv")
    res = CliRunner().invoke(cli, [
        "tune", "--model", "markov", "--data", str(tmp_path / "log.csv"), "--trials", "3",
        "--out", str(tmp_path / "o"), "--no-progress", "--json",
        "--set", "eval.protocol=sampled-uniform-20",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    best = json.loads((tmp_path / "o" / "summary.json").read_text())["best"]
    assert best["valid"] == best["refit_valid"]


def test_a_search_metric_that_is_not_a_rank_metric_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text(
        '[search]\nmetric = "popularity@10"\n[model]\ntopk = { type = "int", low = 1, high = 5 }\n'
    )
    res = CliRunner().invoke(cli, ["tune", "--model", "markov", "--data", str(tmp_path / "missing.csv"),
                                   "--space", str(p), "--out", str(tmp_path / "o"), "--trials", "1"])  # fmt: skip
    assert res.exit_code == 2 and "expected a rank metric" in res.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--timeout", "0"), "--timeout: expected seconds > 0, found 0.0"),
        (("--timeout", "-5"), "--timeout: expected seconds > 0, found -5.0"),
        (("--timeout", "nan"), "--timeout: expected seconds > 0, found nan"),
        (("--backend", "ray", "--cpus-per-trial", "0"), "a trial must reserve a CPU or a GPU"),
        (("--backend", "ray", "--cpus-per-trial", "-1"), "--cpus-per-trial: expected a number"),
        (("--backend", "ray", "--gpus-per-trial", "-1"), "--gpus-per-trial: expected a number"),
        (("--backend", "ray", "--max-failures", "-1"), "--max-failures: expected an integer >= 0"),
        (("--seed", "-1"), "--seed: expected an integer in [0, 4294967295], found -1"),
        (("--seed", str(2**32)), "--seed: expected an integer in [0, 4294967295]"),
    ],
)
def test_bad_timeout_and_trial_resources_are_refused_before_reading_data(
    tmp_path: Path, space: Path, extra, message
) -> None:
    """``--timeout 0`` (or negative) read and split the log, ran no trial and ended with "no
    trial completed"; ``nan`` meant no timeout; ``--cpus-per-trial 0`` with Ray was a raw
    ValueError traceback from Ray after the data was read; ``--max-failures -1`` is Ray Tune's
    "retry for ever" (a trial that crashed every time was tried 5 times in a 45 s search, and
    without ``--timeout`` the search never ended); ``--seed -1`` (or one of 2**32 or more) was
    numpy's ValueError traceback from Optuna's sampler after the data was read."""
    assert message in one_line(tune(tmp_path, space, *extra))

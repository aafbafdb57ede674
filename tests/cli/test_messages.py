"""Errors speak the CLI's language (flags, not Python keyword arguments); `train --help` shows
the common training options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from warmrec.cli.main import cli, cli_language

ROOT = Path(__file__).resolve().parents[2]


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line(res) -> str:
    assert res.exit_code == 2, res.output
    # a warning of warmrec's own (one line each: a small split) may come before the error
    lines = [ln for ln in res.output.splitlines() if ln.strip() and "warmrec: warning:" not in ln]
    assert len(lines) == 1 and lines[0].startswith("warmrec: error:"), res.output
    return lines[0]


PY_KWARGS = ("columns=", "no_timestamp=", "order='", "sep=", "format='")


@pytest.mark.parametrize(
    "text, header, needles",
    [
        ("s,x,t\n1,2,3\n", "no item column", ["--col item_id=<name>"]),
        ("item_id,t\n1,3\n", "no session or user column", ["--col session_id=<name>"]),
        (
            "session_id,item_id\n1,2\n",
            "no timestamp column",
            ["--col timestamp=<name>", "--order <column>", "--no-timestamp"],
        ),
        ("session_id;item_id;timestamp\n1;2;3\n", "no item column", ["--sep ';'"]),
    ],
)
def test_data_errors_name_cli_flags(tmp_path, text, header, needles):
    p = tmp_path / ("log.tsv" if ";" in text else "log.csv")
    p.write_text(text)
    line = one_line(run(["data", "stats", p]))
    assert header in line
    for n in needles:
        assert n in line
    assert not any(k in line for k in PY_KWARGS), line


def test_sep_flag_reads_what_the_hint_suggests(tmp_path):
    p = tmp_path / "log.tsv"
    p.write_text("session_id;item_id;timestamp\n1;2;3\n1;3;4\n")
    res = run(["data", "stats", p, "--sep", ";", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["events"] == 2


def test_order_and_no_timestamp_together(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("session_id,item_id,pos\n1,2,0\n")
    line = one_line(run(["data", "stats", p, "--order", "pos", "--no-timestamp"]))
    assert "--order COLUMN or --no-timestamp" in line


def test_cli_language_rewrites_keyword_arguments():
    assert cli_language("or columns={'item_id': '<name>'}") == "or --col item_id=<name>"
    assert cli_language("pass sep=';')") == "pass --sep ';')"
    assert cli_language("a suffix .csv or format='...'") == "a suffix .csv or --format ..."
    assert cli_language("time_order='recbole' stays") == "time_order='recbole' stays"


def test_a_config_typo_names_the_section_and_the_close_key(tmp_path):
    """A model config class (``SASRecConfig``) means nothing to a user of the CLI: the error
    names the model and its section, and the valid key the typo is closest to."""
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,timestamp\n" + "".join(f"1,{i},{i}\n" for i in range(5)))
    base = ["train", "--model", "sasrec", "--data", log, "--out", tmp_path / "m"]
    line = one_line(run([*base, "--set", "model.maxlen=3"]))
    assert line.startswith(
        "warmrec: error: unknown key 'maxlen' for model 'sasrec' ([model], --set model.KEY) "
        "(did you mean 'max_len'?); valid keys: "
    )
    line = one_line(run([*base, "--set", "train.epoch=3"]))
    assert "unknown key 'epoch' for [train] (--set train.KEY) (did you mean 'epochs'?)" in line
    assert cli_language("unknown key 'x' for NoSuchConfig") == "unknown key 'x' for NoSuchConfig"
    assert cli_language("field 'gap_seconds': no session gap") == "--gap: no session gap"


def test_a_trainer_field_is_named_by_a_flag_only_where_the_command_has_it(tmp_path):
    """``pretrain`` has no --seed and ``study transfer`` no --epochs: their errors named those
    flags; they name the config key instead, where the command has no such flag."""
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,timestamp\n" + "".join(f"1,{i},{i}\n" for i in range(5)))
    line = one_line(
        run(["pretrain", "--data", log, "--set", "train.seed=abc", "--out", tmp_path / "p"])
    )
    assert line == (
        "warmrec: error: train.seed: expected an integer >= 0 and < 9223372036854775808, "
        "found 'abc'"
    )
    study = ["study", "transfer", "--source", log, "--target", log, "--seeds", "1"]
    line = one_line(run([*study, "--set", "train.epochs=0", "--out", tmp_path / "s"]))
    assert line == "warmrec: error: train.epochs: expected an integer >= 1, found 0"
    train = ["train", "--model", "sasrec", "--data", log, "--out", tmp_path / "m"]
    line = one_line(run([*train, "--set", "train.epochs=0"]))
    assert line == "warmrec: error: --epochs: expected an integer >= 1, found 0"  # train has it
    assert cli_language("TrainerConfig.seed: bad", {"--epochs"}) == "train.seed: bad"
    assert cli_language("TrainerConfig.seed: bad") == "--seed: bad"


def test_train_help_lists_training_options():
    res = run(["train", "--help"])
    assert res.exit_code == 0
    for flag in ("--epochs", "--seed", "--patience", "--device", "--checkpoint-dir", "--resume"):
        assert flag in res.output
    assert "--set train.KEY=VALUE" in res.output


def test_train_flags_reach_the_trainer(tmp_path):
    from tests.conftest import cyclic_log

    p = tmp_path / "log.csv"
    cyclic_log(n_sessions=30, n_items=8, length=5).write_csv(p)
    base = ["train", "--model", "sasrec", "--data", p, "--out", tmp_path / "m"]
    assert "resume needs checkpoint_dir" in one_line(run([*base, "--resume"]))
    assert "device" in one_line(run([*base, "--device", "nosuchdevice"]))
    bad = run(["train", "--model", "pop", "--data", p, "--epochs", "2", "--out", tmp_path / "x"])
    assert "takes no training settings" in one_line(bad)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["study", "transfer", "--source", "a", "--target", "b", "--seeds", "0"],
            "warmrec: error: Invalid value for --seeds: expected >= 1, found 0 "
            "(see warmrec study transfer -h)",
        ),
        (
            ["train", "--data", "x", "--out", "y", "--bogus"],
            "warmrec: error: No such option '--bogus'. Did you mean '--out'? (see warmrec train -h)",
        ),
        (
            ["trian"],
            "warmrec: error: No such command 'trian'. (Did you mean one of: 'pretrain', 'train', "
            "'transfer'?) (see warmrec -h)",
        ),
        (["data", "stats"], "warmrec: error: Missing argument 'PATH' (see warmrec data stats -h)"),
    ],
)
def test_usage_errors_are_one_line_too(args, line):
    """Click printed a usage block, a blank line and 'Error: ...' for these."""
    res = CliRunner().invoke(cli, args, prog_name="warmrec")
    assert one_line(res) == line
    assert run(["--version"]).exit_code == 0 and run(["train", "--help"]).exit_code == 0


def test_a_bad_key_or_value_of_the_config_file_names_the_file(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,timestamp\n" + "".join(f"1,{i},{i}\n" for i in range(5)))
    cfg = tmp_path / "run.toml"
    cfg.write_text('[model]\nname = "sasrec"\ndd = 3\n[train]\nepochs = "two"\n')
    base = ["train", "--config", cfg, "--data", log, "--out", tmp_path / "m"]
    line = one_line(run(base))
    assert line.startswith(f"warmrec: error: {cfg}: unknown key 'dd' for model 'sasrec'")
    cfg.write_text('[model]\nname = "sasrec"\n[train]\nepochs = "two"\n')
    line = one_line(run(base))
    assert line == f"warmrec: error: {cfg}: train.epochs: expected an integer >= 1, found 'two'"
    # given again on the command line, the value is not the file's
    line = one_line(run([*base, "--set", "train.epochs=0"]))
    assert line == "warmrec: error: --epochs: expected an integer >= 1, found 0"


def test_a_format_hint_names_what_the_command_takes():
    """pretrain-multi has no --format: the hint named it anyway."""
    from warmrec.cli.main import cli_language

    msg = "a headerless 'user item' file: read it with --format sasrec)"
    assert "--set sources.LABEL.data.format=sasrec" in cli_language(msg, {"--source", "--out"})
    assert "--format sasrec" in cli_language(msg, {"--format", "--data"})
    assert "--set data.format=sasrec" in cli_language(msg, {"--data"})


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("[eval]", "[evaluation]", "unknown config section(s) evaluation"),
        ('method = "loo"', 'method = "lo"', "split method: expected one of"),
        ('"ndcg@10"', '"ndgc@10"', "eval.metrics: unknown metric 'ndgc'"),
        ('name = "sasrec"', 'name = "sasrek"', "unknown model 'sasrek'"),
    ],
)
def test_config_errors_name_the_file(tmp_path, old, new, needle):
    """These four named the key but not the --config file it was in."""
    from click.testing import CliRunner

    from warmrec.cli.main import cli

    text = (ROOT / "configs" / "sasrec_ml100k.toml").read_text()
    assert old in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(old, new))
    res = CliRunner().invoke(cli, ["train", "--config", str(bad), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and res.output.startswith(f"warmrec: error: {bad}: ")
    assert needle in res.output


def test_a_path_too_long_is_one_line(tmp_path):
    from click.testing import CliRunner

    from warmrec.cli.main import cli

    name = str(tmp_path / ("a" * 300 + ".csv"))
    r = CliRunner().invoke(cli, ["data", "stats", name])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "file name too long" in lines[0] and "characters" in lines[0]

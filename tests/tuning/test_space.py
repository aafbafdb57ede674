"""Search spaces: TOML data checked against the model's typed config before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from warmrec.errors import ConfigError
from warmrec.registry import get_model
from warmrec.tuning.space import (
    builtin_space_path,
    builtin_spaces,
    builtin_spaces_dir,
    load_space,
    parse_space,
)

SPACES = builtin_spaces_dir()


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "space.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("model", ["item2vec", "sasrec", "gru4rec"])
def test_shipped_spaces_fit_their_models(model: str) -> None:
    space = load_space(SPACES / f"{model}.toml")
    assert space.model == model and space.params


def test_every_builtin_space_is_listed_named_for_its_model_and_fits_it() -> None:
    spaces = builtin_spaces()
    # the 14 families `warmrec auto` samples; each file is the space of the model it is named for
    assert sorted(spaces) == sorted(p.stem for p in SPACES.glob("*.toml"))
    assert {"sasrec", "gru4rec", "vsknn", "markov", "item2vec"} <= set(spaces)
    for name, path in spaces.items():
        space = load_space(path)
        assert space.model == name and space.params, name
        get_model(name)  # a registered model
    # the checkout's configs/spaces is the same folder (a link), so committed commands still work
    checkout = Path(__file__).resolve().parents[2] / "configs" / "spaces"
    if checkout.exists():
        assert checkout.resolve() == SPACES.resolve()


def test_a_model_without_a_builtin_space_is_refused_with_the_list() -> None:
    assert builtin_space_path("sasrec") == SPACES / "sasrec.toml"
    with pytest.raises(ConfigError, match=r"'pop' has no built-in search space.*sasrec"):
        builtin_space_path("pop")


def test_every_kind_and_condition(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        """
[model]
vector_size = 8
window = { type = "int", low = 1, high = 9, step = 2 }
alpha = { type = "log", low = 1e-4, high = 0.1 }
ns_exponent = { type = "float", low = -1.0, high = 1.0 }
sg = { type = "categorical", choices = [true, false] }
negative = { type = "int", low = 2, high = 10, when = { "model.sg" = true } }
""",
    )
    space = load_space(p, "item2vec")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_sg = set()
    for _ in range(20):
        t = study.ask()
        v = space.suggest(t)
        study.tell(t, 0.0)
        seen_sg.add(v["model.sg"])
        assert ("model.negative" in v) == v["model.sg"]  # conditional
        assert v["model.window"] in (1, 3, 5, 7, 9)
        assert 1e-4 <= v["model.alpha"] <= 0.1
        cfg = space.configs(v)
        assert cfg["model"]["vector_size"] == 8
    assert seen_sg == {True, False}


@pytest.mark.parametrize(
    "text, needle",
    [
        ('[model]\nwindw = { type = "int", low = 1, high = 5 }', "unknown key 'windw'"),
        ('[model]\nwindow = { type = "int", low = 0, high = 5 }', "model.window = 0"),
        ('[model]\nalpha = { type = "float", low = -1.0, high = 0.1 }', "model.alpha = -1.0"),
        ('[model]\nsg = { type = "categorical", choices = [true, "x"] }', "model.sg = 'x'"),
        ('[model]\nwindow = 0\nalpha = { type = "log", low = 0.01, high = 0.1 }', "fixed values"),
        ('[train]\nlr = { type = "log", low = 1e-4, high = 1e-2 }', "takes no training settings"),
        ('[model]\nwindow = { type = "normal", low = 1, high = 5 }', "expected type one of"),
        ('[model]\nwindow = { type = "int", low = 5, high = 1 }', "low <= high"),
        ('[model]\nalpha = { type = "log", low = 0.0, high = 0.1 }', "log scale needs low > 0"),
        (
            '[model]\nnegative = { type = "int", low = 2, high = 5, when = { "model.sg" = true } }',
            "is not a parameter",
        ),
        (  # an empty list of values: the parameter was never sampled, silently
            '[model]\nsg = { type = "categorical", choices = [true, false] }\n'
            'negative = { type = "int", low = 2, high = 5, when = { "model.sg" = [] } }',
            "parameter model.negative: expected when model.sg = a value or a non-empty list",
        ),
        ("[model]\nwindow = 3", "no parameter to search"),
        ('[modle]\nwindow = { type = "int", low = 1, high = 5 }', "unknown table [modle]"),
    ],
)
def test_bad_spaces_are_refused_before_anything_runs(
    tmp_path: Path, text: str, needle: str
) -> None:
    with pytest.raises(ConfigError) as e:
        load_space(_write(tmp_path, text), "item2vec")
    assert needle in str(e.value)
    assert str(tmp_path / "space.toml") in str(e.value)  # names the file
    assert "\n" not in str(e.value)


def test_trainer_params_checked_for_neural_models(tmp_path: Path) -> None:
    ok = '[train]\nlr = { type = "log", low = 1e-4, high = 1e-2 }\n'
    assert load_space(_write(tmp_path, ok), "sasrec").names == ["train.lr"]
    bad = '[train]\nlr = { type = "float", low = 0.0, high = 1e-2 }\n'
    with pytest.raises(ConfigError, match="train.lr = 0.0"):
        load_space(_write(tmp_path, bad), "sasrec")


def test_space_for_another_model_is_refused(tmp_path: Path) -> None:
    p = _write(
        tmp_path, '[search]\nmodel = "sasrec"\n[model]\nd = { type = "int", low = 8, high = 16 }'
    )
    with pytest.raises(ConfigError, match="for model 'sasrec'"):
        load_space(p, "item2vec")


def test_bad_metric() -> None:
    with pytest.raises(ConfigError, match="metric"):
        parse_space(
            {
                "search": {"metric": "bogus@x"},
                "model": {"window": {"type": "int", "low": 1, "high": 2}},
            }
        )


def test_command_line_values_replace_the_fixed_ones(tmp_path: Path) -> None:
    """Issue 18: ``tune --set train.epochs=1`` was ignored (the trials ran the space's 40 epochs)
    and ``--set model.bogus=1`` was accepted."""
    space = load_space(SPACES / "gru4rec.toml", overrides={"train": {"epochs": 1}, "model": {}})
    assert space.fixed["train"]["epochs"] == 1 and space.fixed["train"]["patience"] == 5
    assert space.configs({"train.lr": 0.01})["train"]["epochs"] == 1
    with pytest.raises(ConfigError, match=r"^model.bogus \(from --set or --config\): unknown key"):
        load_space(SPACES / "gru4rec.toml", overrides={"model": {"bogus": 1}})
    with pytest.raises(ConfigError, match=r"^train.lr \(from --set or --config\): .* searches it"):
        load_space(SPACES / "gru4rec.toml", overrides={"train": {"lr": 0.1}})
    with pytest.raises(ConfigError, match="with train.epochs from --set or --config"):
        load_space(SPACES / "item2vec.toml", overrides={"train": {"epochs": 1}})  # no trainer


def test_a_binary_space_file_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "space.toml"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="expected a TOML text file"):
        load_space(p, "item2vec")


def test_an_integer_log_scale_with_a_step_is_refused_before_the_search(tmp_path):
    """Optuna refused it mid-run with a raw ValueError."""
    p = tmp_path / "s.toml"
    p.write_text('[model]\nsteps = { type = "int", low = 1, high = 20, log = true, step = 2 }\n')
    with pytest.raises(ConfigError, match="steps: step and log cannot be combined"):
        load_space(p)


@pytest.mark.parametrize(
    ("text", "table"),
    [
        ("model = 3\n", "model"),
        ('search = "x"\n[model]\nwindow = { type = "int", low = 1, high = 5 }\n', "search"),
        ('train = [1, 2]\n[model]\nwindow = { type = "int", low = 1, high = 5 }\n', "train"),
    ],
)
def test_a_table_given_as_a_plain_value_is_one_line(tmp_path: Path, text: str, table: str) -> None:
    """``model = 3`` at the top of a space file raised a raw TypeError (``search = "x"`` a
    ValueError) out of ``dict(...)``: a traceback from ``warmrec tune --space``."""
    with pytest.raises(ConfigError, match=rf"expected \[{table}\] to be a table"):
        load_space(_write(tmp_path, text), "item2vec")


@pytest.mark.parametrize("step", ["0.5", "2.5"])
def test_an_integer_parameter_with_a_fractional_step_is_refused(tmp_path: Path, step: str) -> None:
    """``step = 0.5`` on an int parameter became ``int(0.5) == 0`` and Optuna raised a raw
    ValueError in the first trial, after the data was read; ``step = 2.5`` was searched as 2."""
    p = _write(
        tmp_path, f'[model]\nwindow = {{ type = "int", low = 1, high = 9, step = {step} }}\n'
    )
    with pytest.raises(ConfigError, match=rf"model.window: expected an integer step, found {step}"):
        load_space(p, "item2vec")


@pytest.mark.parametrize("value", ['"false"', "0", '"yes"'])
def test_a_log_flag_that_is_not_a_boolean_is_refused(tmp_path: Path, value: str) -> None:
    """``log = "false"`` was read as ``bool("false")``: the parameter was quietly sampled on
    a log scale."""
    p = _write(
        tmp_path, f'[model]\nwindow = {{ type = "int", low = 1, high = 9, log = {value} }}\n'
    )
    with pytest.raises(ConfigError, match=r"model.window: expected log = true or false"):
        load_space(p, "item2vec")

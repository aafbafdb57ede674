"""The one artifact format: typed meta, same file modes, one-line errors for tampered directories,
format-1 directories still load, and a model records how its data was read."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from tests.conftest import cyclic_log
from warmrec import SequenceDataset, get_model
from warmrec.artifacts import (
    FORMAT_VERSION,
    DataSource,
    ModelMeta,
    RunInfo,
    read_info,
)
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ModelError
from warmrec.models import Recommender

TINY = {"d": 8, "n_layers": 1, "n_heads": 1, "ffn_dim": 16, "max_len": 6}


def sasrec_train() -> SequenceDataset:
    df = cyclic_log(n_sessions=40, n_items=30, length=6, seed=1)
    return SequenceDataset.from_frame(df, ItemVocab.from_ids(df["item_id"]))


@pytest.fixture(scope="module")
def train_ds():
    return sasrec_train()


@pytest.fixture(scope="module")
def sasrec(train_ds):
    model = get_model("sasrec", TINY)
    model.fit(train_ds, None, epochs=1, batch_size=32, device="cpu")
    return model


@pytest.fixture
def saved(sasrec, tmp_path):
    sasrec.meta = ModelMeta(role="source", item_counts=[0] * len(sasrec.vocab))
    return sasrec.save(tmp_path / "m")


def _error(path) -> str:
    with pytest.raises(ModelError) as e:
        Recommender.load(path)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# -- the format ----------------------------------------------------------------------------------
def test_config_json_records_format_meta_and_vocabulary(saved, sasrec):
    info = json.loads((saved / "config.json").read_text())
    assert info["format"] == FORMAT_VERSION == 2 and info["kind"] == "model"
    assert info["model"] == "sasrec" and info["meta"]["role"] == "source"
    assert info["vocab"]["n_ids"] == sasrec.vocab.n_ids == 30
    assert len(info["vocab"]["sha256"]) == 64 and info["users"] is None
    assert "frozen" not in info  # nothing frozen: the file an earlier warmrec wrote and reads
    loaded = Recommender.load(saved)
    assert isinstance(loaded.meta, ModelMeta) and loaded.meta.role == "source"
    assert loaded.meta == sasrec.meta


def test_meta_is_a_typed_record():
    meta = ModelMeta()
    with pytest.raises(ValueError):
        meta.no_such_field = 1
    with pytest.raises(ValueError):
        meta.pretrain_seconds = "soon"
    meta.run = {"data": {"path": "/x/log.csv", "columns": {"item_id": "IID"}}, "valid": {"hr": 1}}
    assert isinstance(meta.run, RunInfo) and isinstance(meta.run.data, DataSource)
    assert meta.run.data.columns == {"item_id": "IID"} and meta.run.valid == {"hr": 1.0}


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_every_file_of_a_model_directory_gets_the_same_mode(sasrec, tmp_path, umask):
    old = os.umask(umask)
    try:
        path = sasrec.save(tmp_path / f"m{umask:o}")
    finally:
        os.umask(old)
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in path.iterdir()}
    assert set(modes) == {"config.json", "model.safetensors", "vocab.json"}
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_checkpoint_files_get_the_same_mode_too(train_ds, tmp_path):
    model = get_model("sasrec", TINY)
    model.fit(train_ds, None, epochs=1, batch_size=32, checkpoint_dir=str(tmp_path / "c"))
    modes = {stat.S_IMODE(f.stat().st_mode) for f in (tmp_path / "c" / "latest").iterdir()}
    assert len(modes) == 1


# -- tampered directories: one line naming the file and the problem ----------------------------
def test_wrong_model_name(saved):
    info = json.loads((saved / "config.json").read_text())
    info["model"] = "nosuchmodel"
    (saved / "config.json").write_text(json.dumps(info))
    msg = _error(saved)
    assert "config.json" in msg and "unknown model 'nosuchmodel'" in msg


def test_weights_that_do_not_fit_the_config(saved):
    info = json.loads((saved / "config.json").read_text())
    info["config"]["d"] = 16
    info["config"]["ffn_dim"] = 32
    (saved / "config.json").write_text(json.dumps(info))
    msg = _error(saved)
    assert "model.safetensors" in msg and "has shape" in msg and "config and vocabulary" in msg


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("n_layers", 10**30, "n_layers = 10000000000000000000000000000"),
        ("n_layers", 50, "n_layers = 50"),
        ("max_len", 10**5, "config field 'max_len' = 100000, the weights give 6"),
        ("ffn_dim", 10**5, "config field 'ffn_dim' = 100000, the weights give 16"),
        ("d", 10**15, "d = 1000000000000000"),
    ],
)
def test_a_config_edited_to_huge_sizes_is_refused_before_anything_is_allocated(
    saved, monkeypatch, field, value, needle
):
    # the net is first built where nothing is allocated (the meta device), and stops building
    # once it holds far more than the weights: no hang, no exhausted memory
    from warmrec.models.sasrec import SASRec

    built = []
    real = SASRec.build_net

    def spy(self, n_items):
        net = real(self, n_items)
        built.append({p.device.type for p in net.parameters()})
        return net

    monkeypatch.setattr(SASRec, "build_net", spy)
    info = json.loads((saved / "config.json").read_text())
    info["config"][field] = value
    (saved / "config.json").write_text(json.dumps(info))
    msg = _error(saved)
    assert "model.safetensors" in msg and "config" in msg and needle in msg, msg
    assert all(devices == {"meta"} for devices in built), built


@pytest.mark.parametrize("field", ["max_len", "seen_len"])
def test_a_history_width_the_weights_do_not_pin_is_bounded(tmp_path, field):
    """GRU4Rec's weights say nothing of ``max_len`` or ``seen_len``: an edited width loaded
    and then padded every history to it at the first recommendation (``10**12``: a
    MemoryError at the service's warm-up). Widths above MAX_HISTORY are refused as the file is
    read, naming config.json and the field."""
    from warmrec.models.settings import MAX_HISTORY

    train = SequenceDataset.from_frame(
        pl.DataFrame({"session_id": [0, 0, 0], "item_id": [1, 2, 3], "timestamp": [0.0, 1, 2]}),
        ItemVocab.from_ids([1, 2, 3]),
    )
    path = get_model("gru4rec", hidden_size=4).fit(train, epochs=1).save(tmp_path / "g")
    info = json.loads((path / "config.json").read_text())
    info["config"][field] = MAX_HISTORY
    (path / "config.json").write_text(json.dumps(info))
    assert Recommender.load(path).config.model_dump()[field] == MAX_HISTORY  # the bound loads
    info["config"][field] = 10**12
    (path / "config.json").write_text(json.dumps(info))
    msg = _error(path)
    assert "config.json" in msg and f"{field}" in msg and "<= 100000" in msg, msg


def test_loads_in_threads_share_one_set_of_torch_hooks(saved):
    """The load check counts registrations through torch's global hooks. Added and removed per
    load, they mutated dicts torch iterates on every registration in every thread (another
    thread's build could fail: "OrderedDict mutated during iteration"); now installed once and
    kept, counting only for the thread whose build runs under a limit."""
    import threading

    from torch.nn.modules import module as torch_module

    Recommender.load(saved)
    hooks = dict(torch_module._global_parameter_registration_hooks)
    errors: list[BaseException] = []

    def load() -> None:
        try:
            for _ in range(3):
                Recommender.load(saved)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(20):  # builds in this thread, under no limit, while the others load
        torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(20)])
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(hooks) >= 1 and dict(torch_module._global_parameter_registration_hooks) == hooks


def test_invalid_json(saved):
    text = (saved / "config.json").read_text()
    (saved / "config.json").write_text(text[: len(text) // 2])
    msg = _error(saved)
    assert "config.json" in msg and "invalid JSON" in msg


@pytest.mark.parametrize("name", ["config.json", "vocab.json", "meta.json"])
def test_json_nested_deeper_than_the_parser_allows_is_one_error(saved, name):
    """A model file of ``[[[[...`` raised a RecursionError (a traceback from ``warmrec
    evaluate``), not the one-line error naming the file."""
    from warmrec.artifacts import read_meta_files, write_meta_files

    if name == "meta.json":
        write_meta_files(saved, {"inner_steps": 1}, {"lr": torch.ones(2)})
    (saved / name).write_text("[" * 100_000)
    with pytest.raises(ModelError) as e:
        read_meta_files(saved) if name == "meta.json" else Recommender.load(saved)
    msg = str(e.value)
    assert "\n" not in msg and name in msg and "nests deeper" in msg, msg


def test_config_json_with_a_bad_field(saved):
    info = json.loads((saved / "config.json").read_text())
    info["meta"]["item_counts"] = "many"
    (saved / "config.json").write_text(json.dumps(info))
    msg = _error(saved)
    assert "config.json" in msg and "meta.item_counts" in msg


def test_truncated_weights(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    msg = _error(saved)
    assert "model.safetensors" in msg and "truncated" in msg


def test_missing_vocabulary(saved):
    (saved / "vocab.json").unlink()
    msg = _error(saved)
    assert "vocab.json" in msg and "missing" in msg


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_pickle_in_place_of_the_weights(saved, sasrec, how):
    state = sasrec.net.state_dict()
    if how == "torch.save":
        torch.save(state, saved / "model.safetensors")
    else:
        data = pickle.dumps({k: v.tolist() for k, v in state.items()}, protocol=4)
        (saved / "model.safetensors").write_bytes(data)
    msg = _error(saved)
    assert "model.safetensors" in msg and "pickle" in msg


def test_a_vocabulary_with_ten_ids_cut_out(saved):
    vocab = json.loads((saved / "vocab.json").read_text())
    vocab["ids"] = vocab["ids"][:-10]
    (saved / "vocab.json").write_text(json.dumps(vocab))
    msg = _error(saved)
    assert "vocab.json" in msg and "20 ids" in msg and "records 30" in msg


def test_a_vocabulary_with_ids_swapped(saved):
    vocab = json.loads((saved / "vocab.json").read_text())
    vocab["ids"][0], vocab["ids"][1] = vocab["ids"][1], vocab["ids"][0]
    (saved / "vocab.json").write_text(json.dumps(vocab))
    msg = _error(saved)
    assert "vocab.json" in msg and "checksum" in msg


def test_not_a_directory_and_an_adapter_directory(tmp_path, saved):
    assert "no such directory" in _error(tmp_path / "nothing")
    info = json.loads((saved / "config.json").read_text())
    info["kind"] = "adapter"
    (saved / "config.json").write_text(json.dumps(info))
    assert "load_adapters" in _error(saved)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_a_file_of_the_directory_in_place_of_it_is_named_as_a_file(saved, name):
    """``warmrec serve m/model.safetensors`` said "(no such directory)" of a file that is
    there, as if the path were mistyped: it now says it found a file."""
    msg = _error(saved / name)
    assert "no such directory" not in msg, msg
    assert f"{name}: not a warmrec model directory (found a file;" in msg, msg


def _edit_info(saved, **fields) -> None:
    info = json.loads((saved / "config.json").read_text())
    for k, v in fields.items():
        if v is None:
            info.pop(k, None)
        else:
            info[k] = v
    (saved / "config.json").write_text(json.dumps(info))


@pytest.mark.parametrize("weights", ["../outside.safetensors", "/etc/passwd", "..", "a/b"])
def test_a_weights_name_outside_the_directory_is_refused(saved, weights):
    (saved.parent / "outside.safetensors").write_bytes((saved / "model.safetensors").read_bytes())
    _edit_info(saved, weights=weights)
    msg = _error(saved)
    assert "config.json" in msg and "field 'weights'" in msg and "inside the model directory" in msg
    assert "bytes" not in msg  # nothing was read: no size of a foreign file


def test_a_weights_file_linked_to_outside_is_refused(saved, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    (saved / "model.safetensors").rename(outside)
    (saved / "model.safetensors").symlink_to(outside)
    msg = _error(saved)
    assert "model.safetensors" in msg and "leads outside the model directory" in msg


def test_the_weights_checksum_is_recorded_and_checked(saved, sasrec):
    info = json.loads((saved / "config.json").read_text())
    data = (saved / "model.safetensors").read_bytes()
    assert info["weights_sha256"] == hashlib.sha256(data).hexdigest()
    # valid safetensors with other values: only the checksum tells
    state = {k: v.detach().clone() for k, v in sasrec.net.state_dict().items()}
    next(iter(state.values())).add_(1.0)
    save_file({k: v.contiguous() for k, v in state.items()}, saved / "model.safetensors")
    msg = _error(saved)
    assert "model.safetensors" in msg and "checksum" in msg and "changed after saving" in msg


def test_a_damaged_file_is_named_as_such_before_the_checksum(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    msg = _error(saved)
    assert "truncated or damaged" in msg and "checksum" not in msg


def test_a_directory_saved_without_the_weights_checksum_still_loads(saved):
    _edit_info(saved, weights_sha256=None)
    assert Recommender.load(saved).name == "sasrec"


@pytest.mark.parametrize(
    ("edit", "needle"),
    [(lambda c: c[:-1], "counts, expected"), (lambda c: [-1] + c[1:], "negative")],
)
def test_edited_item_counts_are_refused(saved, edit, needle):
    info = json.loads((saved / "config.json").read_text())
    info["meta"]["item_counts"] = edit(info["meta"]["item_counts"])
    (saved / "config.json").write_text(json.dumps(info))
    msg = _error(saved)
    assert "config.json" in msg and "meta.item_counts" in msg and needle in msg


def test_a_directory_replaced_while_it_is_read_is_read_again(saved, sasrec, tmp_path, monkeypatch):
    # another save swapped in a new folder after config.json was read: the weights' checksum
    # then differed, reported as an edit; the directory is read again from the one save
    import warmrec.artifacts as artifacts

    other = get_model("sasrec", TINY)
    other.fit(sasrec_train(), None, epochs=1, batch_size=32, seed=5)
    read_weights, saves = artifacts.read_weights, []

    def saved_meanwhile(path, sha256=None):
        if not saves:
            saves.append(other.save(saved))
        return read_weights(path, sha256)

    monkeypatch.setattr(artifacts, "read_weights", saved_meanwhile)
    loaded = Recommender.load(saved)
    batch = other.encode_histories([[1, 2, 3]])
    assert saves and torch.equal(loaded.score(batch), other.score(batch))


def test_a_directory_replaced_at_every_read_is_one_clear_error(saved, sasrec, monkeypatch):
    import warmrec.artifacts as artifacts

    read_weights, n = artifacts.read_weights, []

    def saved_meanwhile(path, sha256=None):
        n.append(1)
        sasrec.save(saved)  # a new folder each time (another inode)
        return read_weights(path, sha256)

    monkeypatch.setattr(artifacts, "read_weights", saved_meanwhile)
    monkeypatch.setattr("time.sleep", lambda s: None)
    msg = _error(saved)
    assert "replaced while it was read" in msg and "checksum" not in msg, msg
    assert len(n) == artifacts.LOAD_TRIES


def test_a_read_failing_while_the_directory_changes_keeps_its_reason(saved, sasrec, monkeypatch):
    """A read that fails for a reason of its own while the folder also keeps changing: the
    final error said only "replaced while it was read" and lost that reason."""
    import warmrec.artifacts as artifacts

    def failing(path, sha256=None):
        sasrec.save(saved)
        raise ModelError(f"{path}: weights are truncated (the real reason)")

    monkeypatch.setattr(artifacts, "read_weights", failing)
    monkeypatch.setattr("time.sleep", lambda s: None)
    msg = _error(saved)
    assert "replaced while it was read" in msg and "the real reason" in msg, msg


# -- format 1 ------------------------------------------------------------------------------------
def test_a_format_1_directory_still_loads(sasrec, tmp_path, monkeypatch):
    d = tmp_path / "old"
    d.mkdir()
    save_file(
        {k: v.contiguous() for k, v in sasrec.net.state_dict().items()}, d / "model.safetensors"
    )
    sasrec.vocab.save(d / "vocab.json")
    meta = {
        "run": {
            "data": {"path": "logs/x.csv"},
            "split": {"method": "loo"},
            "valid": {"hr@10": 0.5},
        },
        "role": "source",
        "something_else": 3,
    }
    info = {"format": 1, "model": "sasrec", "config": TINY, "warmrec_version": "0", "meta": meta}
    (d / "config.json").write_text(json.dumps(info))
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="something_else"):
        loaded = Recommender.load(d)
    assert loaded.meta.role == "source"
    assert loaded.meta.run.data.path == str(tmp_path / "logs" / "x.csv")
    with pytest.warns(UserWarning):
        assert read_info(d).legacy


@pytest.mark.parametrize(
    "meta, needle",
    [
        ([1, 2], "field 'meta': expected an object, found list"),
        ("abc", "field 'meta': expected an object, found str"),
        (5, "field 'meta': expected an object, found int"),
        ({"run": 5}, "field 'meta.run'"),
        ({"run": {"data": []}}, "field 'meta.run.data'"),
    ],
)
def test_a_format_1_directory_with_a_bad_meta_is_one_error(saved, meta, needle):
    """A format-1 config.json's meta is converted before it is checked: one that is not an
    object raised TypeError or ValueError, a bad field pydantic's multi-line ValidationError,
    where every other bad field is the one line naming config.json."""
    _edit_info(saved, format=1, meta=meta)
    msg = _error(saved)
    assert "config.json" in msg and needle in msg, msg


# -- the data source travels with the model --------------------------------------------------
@pytest.fixture
def mapped_log(tmp_path):
    """A log whose columns need ``--col`` (as tests/fixtures/sessions.csv: SessionId, ...)."""
    df = cyclic_log(n_sessions=30, n_items=10, length=5, seed=3)
    work = tmp_path / "work"
    work.mkdir()
    df.rename({"session_id": "SessionId", "item_id": "ItemId", "timestamp": "Time"}).write_csv(
        work / "log.csv"
    )
    return work


COLS = ["--col", "session_id=SessionId", "--col", "item_id=ItemId", "--col", "timestamp=Time"]


def _cli(args):
    from warmrec.cli.main import cli

    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    return res


def test_a_model_trained_with_a_column_mapping_evaluates_from_another_directory(
    mapped_log, tmp_path, monkeypatch
):
    monkeypatch.chdir(mapped_log)
    _cli(["train", "--model", "pop", "--data", "log.csv", *COLS, "--out", "m"])
    meta = Recommender.load(mapped_log / "m").meta
    assert meta.run.data.path == str(mapped_log / "log.csv")
    assert meta.run.data.columns == {
        "session_id": "SessionId",
        "item_id": "ItemId",
        "timestamp": "Time",
    }
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = _cli(["evaluate", str(mapped_log / "m"), "--json"])
    out = json.loads(res.stdout)
    # one default-split policy: a session log is split by last sessions, in train as everywhere
    assert meta.run.split["method"] == "last_session"
    assert out["n"] == 12 and out["part"] == "test"


def test_a_pretrained_model_with_a_column_mapping_can_be_evaluated(
    mapped_log, tmp_path, monkeypatch
):
    monkeypatch.chdir(mapped_log)
    sets = ["--set", "model.d=8", "--set", "model.n_heads=1", "--set", "model.n_layers=1"]
    sets += ["--set", "model.ffn_dim=16", "--set", "train.epochs=1", "--set", "train.device=cpu"]
    _cli(["pretrain", "--data", "log.csv", *COLS, "--split", "loo", *sets, "--out", "p"])
    monkeypatch.chdir(tmp_path)
    res = _cli(["evaluate", str(mapped_log / "p"), "--json"])
    assert json.loads(res.stdout)["n"] == 30


def test_data_source_of_makes_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("a\n")
    src = DataSource.of("x.csv", columns={"item_id": "a"})
    assert src.path == str(tmp_path / "x.csv")
    assert src.read_options() == {
        "path": src.path,
        "columns": {"item_id": "a"},
        "no_timestamp": False,
        "duplicates": "keep",
    }
    assert DataSource.of("ml-100k").path == "ml-100k"  # a dataset name stays a name
    (tmp_path / "items.csv").write_text("item_id\n")
    with_items = DataSource.of("x.csv", items="items.csv")
    assert with_items.items == str(tmp_path / "items.csv") and with_items.users is None
    assert with_items.read_options()["items"] == str(tmp_path / "items.csv")


def test_data_source_keeps_the_path_as_typed(tmp_path, monkeypatch):
    """Issue 18: messages and best.toml showed symlink-resolved paths, not the path typed."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "x.csv").write_text("a\n")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    assert DataSource.of("link/x.csv").path == str(tmp_path / "link" / "x.csv")
    assert DataSource.of(tmp_path / "link" / ".." / "link" / "x.csv").path == str(
        tmp_path / "link" / "x.csv"
    )


def test_saving_never_replaces_a_folder_that_is_not_a_model_directory(tmp_path):
    """``train --out ~`` replaced the whole folder by the model directory, deleting its files."""
    from tests.conftest import split_cyclic
    from warmrec.errors import ConfigError
    from warmrec.models.popularity import Pop

    model = Pop().fit(split_cyclic()[0])
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.txt").write_text("years of work")
    with pytest.raises(ConfigError, match="refusing to replace it with a model directory"):
        model.save(home)
    assert [p.name for p in home.iterdir()] == ["thesis.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    model.save(empty)
    model.save(empty)  # an earlier model directory is replaced
    assert (empty / "config.json").is_file()


def test_saving_never_replaces_a_file(tmp_path):
    """``model.save("results.csv")`` over an existing file deleted the file: the check before
    writing looked at folders only (the CLI's ``--out`` refused it; the Python API did not)."""
    from tests.conftest import split_cyclic
    from warmrec.errors import ConfigError
    from warmrec.models.popularity import Pop

    model = Pop().fit(split_cyclic()[0])
    f = tmp_path / "results.csv"
    f.write_text("precious")
    with pytest.raises(ConfigError, match="refusing to replace it with a model directory.*a file"):
        model.save(f)
    assert f.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_a_loaded_model_survives_its_weights_file_being_truncated(tmp_path):
    """The weights were memory-mapped: truncating the file under a loaded kNN model (what
    ``cp new.safetensors`` does first) killed the process with SIGBUS at its next request."""
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from pathlib import Path
from tests.serving.conftest import save_model
from warmrec.models.base import Recommender
d = save_model("itemknn", Path({str(tmp_path / "knn")!r}))
m = Recommender.load(d)
before = m.recommend([[3, 4]], 3)
open(d / "model.safetensors", "w").close()
assert m.recommend([[3, 4]], 3) == before
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", (res.returncode, res.stderr[-500:])


@pytest.mark.parametrize("field", ["adapter", "lora"])
def test_adapters_recorded_for_a_model_without_a_network_are_one_error(tmp_path, field):
    """``"adapter": {}`` in the config.json of a Pop (a valid, empty adapter config) raised
    AttributeError: 'Pop' object has no attribute 'net'."""
    from tests.conftest import split_cyclic
    from warmrec.models.popularity import Pop

    d = Pop().fit(split_cyclic()[0]).save(tmp_path / "pop")
    _edit_info(d, **{field: {}})
    msg = _error(d)
    assert "config.json" in msg and f"field '{field}'" in msg and "no network" in msg, msg


def _link_outside(folder: Path, name: str, outside: Path) -> None:
    """Move ``folder/name`` to ``outside`` and leave a symbolic link to it in its place."""
    (folder / name).rename(outside)
    (folder / name).symlink_to(outside)


def test_a_config_file_linked_to_outside_is_refused(saved, tmp_path):
    """config.json was read through a link leading outside (only the weights and the
    vocabularies went through the inside-the-directory check)."""
    _link_outside(saved, "config.json", tmp_path / "elsewhere.json")
    msg = _error(saved)
    assert "config.json" in msg and "leads outside the model directory" in msg
    with pytest.raises(ModelError, match="leads outside the model directory"):
        read_info(saved)


@pytest.mark.parametrize("name", ["meta.json", "meta.safetensors"])
def test_a_meta_file_linked_to_outside_is_refused(saved, tmp_path, name):
    from warmrec.artifacts import read_meta_files, write_meta_files

    write_meta_files(saved, {"inner_steps": 1}, {"lr": torch.ones(2)})
    assert read_meta_files(saved)[0] == {"inner_steps": 1}
    _link_outside(saved, name, tmp_path / f"elsewhere-{name}")
    with pytest.raises(ModelError, match="leads outside the model directory") as e:
        read_meta_files(saved)
    assert name in str(e.value)


# -- a save killed mid-way, a save over a symbolic link ----------------------------------------
KILLED_SAVE = (
    "import os, sys\n"
    "import warmrec.io as wio\n"
    "from warmrec.models import Recommender\n"
    "target = os.path.abspath(sys.argv[1])\n"
    "model = Recommender.load(target)\n"
    "wio._renameat2 = lambda src, dst, flags: False  # no one-step swap: two renames\n"
    "def killed_after(real):\n"
    "    def rename(src, dst, *a, **kw):\n"
    "        real(src, dst, *a, **kw)\n"
    "        if os.path.abspath(src) == target:  # the previous model moved aside: killed\n"
    "            os._exit(9)\n"
    "    return rename\n"
    "os.rename, os.replace = killed_after(os.rename), killed_after(os.replace)\n"
    "model.save(target)\n"
)


def test_a_save_killed_between_its_two_renames_leaves_a_model_that_loads(tmp_path):
    """A kill between moving the previous model aside (``.NAME.old``) and renaming the new one
    into place left no ``NAME``: 'not a warmrec model directory' (only the checkpoint reader
    looked aside). Loading now renames the aside model back."""
    from tests.conftest import split_cyclic
    from warmrec.models.popularity import Pop

    m = tmp_path / "m_crash"
    Pop().fit(split_cyclic()[0]).save(m)
    res = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(m)], check=False)
    assert res.returncode == 9
    model = Recommender.load(m)
    assert model.name == "pop" and (m / "config.json").is_file()
    # nothing aside any more; the killed writer's temporary folder goes with the next write
    assert all(p.name.endswith(".tmp") for p in tmp_path.iterdir() if p != m)


def test_evaluate_reads_a_model_a_killed_older_save_left_aside(mapped_log, monkeypatch):
    """The state an older warmrec left after a kill between its renames: ``.m.old`` and no
    ``m``; ``warmrec evaluate m`` said 'not a warmrec model directory'."""
    monkeypatch.chdir(mapped_log)
    _cli(["train", "--model", "pop", "--data", "log.csv", *COLS, "--out", "m"])
    os.rename(mapped_log / "m", mapped_log / ".m.old")
    res = _cli(["evaluate", "m", "--json"])
    assert json.loads(res.stdout)["n"] == 12
    assert (mapped_log / "m" / "config.json").is_file()
    assert not (mapped_log / ".m.old").exists()


def test_training_again_over_a_symlinked_output(mapped_log, monkeypatch):
    """``--out link_m`` (a symbolic link): the second run failed ('.link_m.old: not a
    directory') and left its complete temporary folder behind. The link itself is replaced by
    the model directory; the folder it pointed to is left as it was."""
    monkeypatch.chdir(mapped_log)
    _cli(["train", "--model", "pop", "--data", "log.csv", *COLS, "--out", "real_m"])
    before = (mapped_log / "real_m" / "config.json").read_bytes()
    (mapped_log / "link_m").symlink_to("real_m")
    for _ in range(3):
        _cli(["train", "--model", "pop", "--data", "log.csv", *COLS, "--out", "link_m"])
    link = mapped_log / "link_m"
    assert link.is_dir() and not link.is_symlink()
    assert Recommender.load(link).name == "pop"
    assert (mapped_log / "real_m" / "config.json").read_bytes() == before
    assert sorted(p.name for p in mapped_log.iterdir()) == ["link_m", "log.csv", "real_m"]


def test_a_bce_model_saved_with_in_batch_true_still_loads(train_ds, tmp_path):
    """``in_batch = true`` with ``loss = "bce"`` is refused for new configs (it was ignored),
    but a model an earlier warmrec trained and saved with it loads, as the model it was
    (in_batch false), scoring the same: refused, evaluate/predict/serve of it failed."""
    model = get_model("sasrec", {**TINY, "loss": "bce"}).fit(train_ds, epochs=1, batch_size=16)
    d = model.save(tmp_path / "m")
    cfg_path = d / "config.json"
    raw = json.loads(cfg_path.read_text())
    raw["config"]["in_batch"] = True  # as the earlier warmrec saved it
    cfg_path.write_text(json.dumps(raw))
    loaded = Recommender.load(d)
    assert loaded.config.loss == "bce" and loaded.config.in_batch is False
    batch = [[1, 2, 3], [4, 5]]
    assert loaded.recommend(batch, k=5) == model.recommend(batch, k=5)

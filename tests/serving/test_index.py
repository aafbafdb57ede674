"""The session-kNN serving index (:mod:`warmrec.serving.index`): bit-identical candidate scores to
the model's ``candidate_scores`` on several logs and configurations (ties, recency samples,
every weighting and decay, IDF, long histories), saved with the model as memory-mapped ``.npy``
arrays, served by default, and refused (rebuilt in memory) when stale or damaged."""

from __future__ import annotations

import json
import warnings

import numpy as np
import polars as pl
import pytest

from tests.conftest import padded_batch
from tests.models.test_knn_fast import _log
from warmrec import SequenceDataset
from warmrec.errors import ModelError
from warmrec.models.knn import SKNN, VSKNN
from warmrec.models.weighting import WEIGHTINGS
from warmrec.serving import index as ix
from warmrec.serving.bundle import ModelBundle
from warmrec.serving.index import INDEX_DIR, IndexScorer, SessionIndex, add_index

pytest.importorskip("numba")


def _walk_log(seed: int, n_sessions: int = 400, n_items: int = 60) -> pl.DataFrame:
    """Sessions that walk the catalogue by small steps (neighbours share runs of items), with
    repeats and equal timestamps across sessions (ties in recency order are by session id)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sessions):
        n = int(rng.integers(2, 15))
        it = int(rng.integers(1, n_items + 1))
        t = float(rng.integers(0, 50))
        for _ in range(n):
            rows.append((s, it, t))
            it = (it + int(rng.integers(-2, 4)) - 1) % n_items + 1
            t += float(rng.integers(0, 3))
    return pl.DataFrame(rows, schema=["session_id", "item_id", "timestamp"], orient="row")


LOGS = {
    "random": lambda: _log(0),
    "random-2": lambda: _log(7, 500, 40),
    "walk": lambda: _walk_log(3),
}

CONFIGS = [
    (SKNN, {"k": 5, "sample_size": 20}),
    (SKNN, {"k": 100, "sample_size": 0, "max_len": 8}),
    (SKNN, {"k": 1, "sample_size": 3}),
    *[
        (VSKNN, {"k": 4, "sample_size": 15, "weighting": w, "decay": d, "max_len": 12})
        for w in WEIGHTINGS
        for d in WEIGHTINGS
    ],
    (VSKNN, {"k": 50, "sample_size": 0, "idf_weighting": 1.5}),
    (VSKNN, {"k": 2, "sample_size": 5, "idf_weighting": 0.3, "pop_fallback": False}),
    (VSKNN, {"k": 100, "sample_size": 500, "max_len": 3}),
]


def _histories(seed: int, n_items: int, n: int = 40) -> list[list[int]]:
    """Histories of 1-30 item indices (longer than some ``max_len``), repeats included."""
    rng = np.random.default_rng(seed)
    return [rng.integers(1, n_items + 1, size=int(rng.integers(1, 31))).tolist() for _ in range(n)]


@pytest.fixture(scope="module", params=list(LOGS), ids=list(LOGS))
def data(request) -> SequenceDataset:
    return SequenceDataset.from_frame(LOGS[request.param]())


@pytest.mark.parametrize(
    ("cls", "cfg"), CONFIGS, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(CONFIGS)]
)
def test_index_scores_equal_model(data, cls, cfg):
    model = cls(**cfg).fit(data)
    scorer = IndexScorer(model, SessionIndex.build(model))
    n_items = len(model.vocab) - 1
    nonempty = 0
    for h in _histories(len(cfg), n_items):
        indptr, want_i, want_s = model.candidate_scores(padded_batch([h]))
        got_i, got_s = scorer.scores(np.asarray(h))
        assert got_i.tolist() == want_i.tolist()
        assert got_s.tobytes() == want_s.tobytes()  # bit for bit
        nonempty += len(got_i) > 0
    assert nonempty > 10  # the comparison saw real answers


def test_index_arrays_are_the_recent_sessions():
    """A hand-made log: per item the ``sample_size`` most recent sessions, oldest first."""
    frame = pl.DataFrame(
        {
            "session_id": [0, 0, 1, 1, 2, 2, 3],
            "item_id": [10, 20, 10, 30, 10, 20, 10],
            "timestamp": [5.0, 6.0, 1.0, 2.0, 9.0, 10.0, 3.0],
        }
    )
    model = VSKNN(k=10, sample_size=2).fit(SequenceDataset.from_frame(frame))
    idx = SessionIndex.build(model)
    # sessions by last time: 1 (t=2) -> row 0, 3 (t=3) -> 1, 0 (t=6) -> 2, 2 (t=10) -> 3
    item10 = int(model.vocab.encode([10])[0])
    lo, hi = idx.item_ptr[item10], idx.item_ptr[item10 + 1]
    assert idx.item_sess[lo:hi].tolist() == [2, 3]  # the 2 most recent of rows 0, 1, 2, 3
    assert idx.n_sessions == 4 and idx.sess_ptr.tolist() == [0, 2, 3, 5, 7]
    assert idx.item_sess.dtype == np.int32 and idx.sess_items.dtype == np.int32
    np.testing.assert_array_equal(idx.idf, model._idf)


@pytest.fixture
def saved(tmp_path):
    data = SequenceDataset.from_frame(_walk_log(5))
    model = VSKNN(k=8, sample_size=30, idf_weighting=0.5).fit(data)
    return model, model.save(tmp_path / "vsknn")


def test_saved_with_the_model_and_memory_mapped(saved):
    model, path = saved
    folder = path / INDEX_DIR
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{a}.npy" for a in ix.ARRAYS] + ["index.json"]
    )
    idx = SessionIndex.load(folder)
    assert all(isinstance(getattr(idx, a), np.memmap) for a in ix.ARRAYS)
    assert idx.source == ix.fingerprint(model)
    b = ModelBundle.load(path)
    assert b.engine == "index"
    assert isinstance(b._knn.index.item_sess, np.memmap)
    assert b.metadata()["engine"] == "index"
    eager = ModelBundle.load(path, engine="eager")
    for h in ([1, 2, 3], [5], [9, 9, 8, 7, 30, 31]):
        raw = model.vocab.decode(np.asarray(h))
        got, want = (
            b.recommend(raw, 10, exclude_seen=True),
            eager.recommend(raw, 10, exclude_seen=True),
        )
        assert got.scores == want.scores and len(got.items) == 10


def _answers(b: ModelBundle, model) -> list:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(20):
        raw = model.vocab.decode(rng.integers(1, len(model.vocab), size=6))
        r = b.recommend(raw, 10)
        out.append((r.items, r.scores))
    return out


def test_stale_index_is_refused_and_rebuilt(saved, tmp_path):
    model, path = saved
    want = _answers(ModelBundle.load(path, engine="sparse"), model)
    other = VSKNN(k=8, sample_size=30).fit(SequenceDataset.from_frame(_walk_log(6)))
    other.save(tmp_path / "other")
    (path / INDEX_DIR / "item_sess.npy").unlink()  # swap in the other model's index
    for f in (tmp_path / "other" / INDEX_DIR).iterdir():
        (path / INDEX_DIR / f.name).write_bytes(f.read_bytes())
    with pytest.warns(UserWarning, match="stale"):
        b = ModelBundle.load(path)
    assert b.engine == "index" and not isinstance(b._knn.index.item_sess, np.memmap)
    assert _answers(b, model) == want


def test_damaged_index_is_refused_and_rebuilt(saved):
    model, path = saved
    want = _answers(ModelBundle.load(path, engine="sparse"), model)
    f = path / INDEX_DIR / "sess_items.npy"
    f.write_bytes(f.read_bytes()[:-7])
    with pytest.raises(ModelError, match="sess_items.npy"):
        SessionIndex.load(path / INDEX_DIR)
    with pytest.warns(UserWarning, match="sess_items.npy"):
        b = ModelBundle.load(path)
    assert _answers(b, model) == want


def test_an_index_json_nested_too_deep_is_refused_and_rebuilt(saved):
    """``[[[[...`` as index.json raised a RecursionError through the load (the model did not
    load at all), where any other unreadable index.json is refused and rebuilt."""
    model, path = saved
    want = _answers(ModelBundle.load(path, engine="sparse"), model)
    (path / INDEX_DIR / "index.json").write_text("[" * 100_000)
    with pytest.raises(ModelError, match="index.json: .*nests deeper"):
        SessionIndex.load(path / INDEX_DIR)
    with pytest.warns(UserWarning, match="index.json"):
        b = ModelBundle.load(path)
    assert _answers(b, model) == want


@pytest.mark.parametrize("name", ["item_sess", "sess_items"])
def test_ids_out_of_range_are_refused_and_rebuilt(saved, name):
    """Same dtype and length, ids far outside the index (refused before any checksum is
    read): the scoring kernel wrote out of bounds with them and the server died (a segfault)."""
    model, path = saved
    want = _answers(ModelBundle.load(path, engine="sparse"), model)
    f = path / INDEX_DIR / f"{name}.npy"
    a = np.load(f)
    np.save(f, np.full_like(a, 2_000_000_000))
    with pytest.raises(ModelError, match=f"{name}.npy holds ids outside"):
        SessionIndex.load(path / INDEX_DIR)
    with pytest.warns(UserWarning, match=name):
        b = ModelBundle.load(path)
    assert _answers(b, model) == want


@pytest.mark.parametrize("name", ix.ARRAYS)
def test_an_edited_index_array_is_refused_and_rebuilt(saved, name):
    """Values edited within range (same dtype, length and bounds) passed every check: the
    service answered from the edited index, other items than the model's, without a word.
    index.json records each array's SHA-256, as config.json does the weights'."""
    model, path = saved
    want = _answers(ModelBundle.load(path, engine="sparse"), model)
    f = path / INDEX_DIR / f"{name}.npy"
    a = np.load(f)
    if name == "idf":
        a = a[::-1].copy()
    elif name.endswith("_ptr"):  # still a running offset from 0 to the same end
        a[1:-1] = np.minimum(a[1:-1] + 1, a[-1])
    else:  # ids mirrored inside their range
        a = (a.max() - a).astype(a.dtype)
    np.save(f, a)
    with pytest.raises(ModelError, match=f"{name}.npy: checksum"):
        SessionIndex.load(path / INDEX_DIR)
    with pytest.warns(UserWarning, match=f"{name}.npy"):
        b = ModelBundle.load(path)
    assert _answers(b, model) == want


def test_an_index_saved_without_checksums_still_loads(saved):
    model, path = saved
    info_path = path / INDEX_DIR / ix.INDEX_FILE
    info = json.loads(info_path.read_text())
    del info["sha256"]
    info_path.write_text(json.dumps(info))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = ModelBundle.load(path)
    assert isinstance(b._knn.index.item_sess, np.memmap)


def test_directory_without_index_builds_it_in_memory_and_add_index_writes_it(saved):
    model, path = saved
    import shutil

    shutil.rmtree(path / INDEX_DIR)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an older directory is not an error
        b = ModelBundle.load(path)
    assert b.engine == "index" and not (path / INDEX_DIR).exists()
    want = _answers(b, model)
    add_index(path)
    b2 = ModelBundle.load(path)
    assert isinstance(b2._knn.index.sess_items, np.memmap)
    assert _answers(b2, model) == want


def test_an_index_a_killed_add_index_left_aside_is_used_again(saved):
    """``add_index`` moved ``knn_index`` aside as ``.knn_index.old`` before renaming the new one
    into place; a kill in between left the model without its index (built in memory at every
    load). Loading now renames it back; ``add_index`` again leaves nothing beside it."""
    import os

    model, path = saved
    want = _answers(ModelBundle.load(path), model)
    os.rename(path / INDEX_DIR, path / f".{INDEX_DIR}.old")
    b = ModelBundle.load(path)
    assert isinstance(b._knn.index.sess_items, np.memmap)  # read from disk, not rebuilt
    assert (path / INDEX_DIR).is_dir() and not (path / f".{INDEX_DIR}.old").exists()
    assert _answers(b, model) == want
    add_index(path)
    add_index(path)
    assert not [p.name for p in path.iterdir() if p.name.startswith(f".{INDEX_DIR}")]


def test_add_index_refuses_other_models(tmp_path):
    from tests.serving.conftest import save_model

    save_model("pop", tmp_path / "pop")
    with pytest.raises(ModelError, match="not sknn or vsknn"):
        add_index(tmp_path / "pop")


def test_without_numba_the_model_path_serves(saved, monkeypatch):
    model, path = saved
    want = _answers(ModelBundle.load(path), model)
    monkeypatch.setattr(ix, "has_numba", lambda: False)
    b = ModelBundle.load(path)
    assert b.engine == "sparse"
    assert _answers(b, model) == want

"""Recipes: steps as TOML, resumable runs (state.json), the report, and data inputs; on a tiny
log with a known next item (``i -> i + 1``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cyclic_log
from warmrec.config import tomllib
from warmrec.errors import ConfigError, DataError
from warmrec.experiments.recipes import get_recipe, list_recipes
from warmrec.experiments.recipes.base import (
    CallStep,
    Claim,
    Context,
    DataInput,
    Recipe,
    RunStep,
    fill_out,
    parse_data_args,
    run_recipe,
    steps_toml,
)
from warmrec.experiments.spec import spec_from_config

CALLS: list[str] = []


def flaky(ctx: Context, name: str, *, fail: bool = False) -> dict[str, Any]:
    """A step that fails while ``FAIL`` holds (a killed run), and counts its calls."""
    CALLS.append(name)
    if fail and FAIL["on"]:
        raise RuntimeError("killed")
    return {"n_records_before": len(ctx.records), "quick": ctx.quick}


FAIL = {"on": True}


class Toy(Recipe):
    name = "toy"
    title = "a toy recipe"
    description = "Markov chain and popularity on a cyclic log."
    source = "A made-up project that reported HR@1 = 1.0 for its Markov chain."
    inputs = (DataInput("log", "toy/log.csv", "cyclic log"),)

    def runs(self, quick: bool, data_paths: Mapping[str, str]) -> list[Any]:
        base = {
            "data": {"path": data_paths["log"]},
            "split": {
                "method": "last_session",
                "test_share": 0.2,
                "valid_share": 0.2,
                "min_test_sessions": 10,
            },
            "eval": {"metrics": ["hr@1", "hr@10"]},
        }
        return [
            CallStep(
                "eda",
                kind="eda",
                call="warmrec.experiments.recipes.steps:eda",
                params={"data": {"log": base["data"]}},
            ),
            RunStep("markov", run_config={**base, "model": {"name": "markov"}}),
            CallStep(
                "flaky", call="tests.experiments.recipes.test_base:flaky", params={"fail": True}
            ),
            RunStep(
                "pop",
                run_config={**base, "model": {"name": "pop"}},
                test_protocols=("full", "sampled-uniform-5"),
            ),
        ]

    def claims(self, records: Mapping[str, Any]) -> list[Claim]:
        return [Claim("HR@1 of the Markov chain", "1.0", ("markov", "test", "full", "hr@1"), "p")]


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    p = tmp_path / "log.csv"
    cyclic_log(n_sessions=120, n_items=12, length=6).write_csv(p)
    return p


def test_a_killed_recipe_resumes_from_its_last_finished_step(tmp_path, log_path):
    out = tmp_path / "out"
    CALLS.clear()
    FAIL["on"] = True
    with pytest.raises(RuntimeError, match="killed"):
        run_recipe(Toy(), out, data={"log": str(log_path)})
    state = json.loads((out / "state.json").read_text())
    assert list(state["steps"]) == ["eda", "markov"]  # written after each finished step
    markov = state["steps"]["markov"]["record"]
    assert markov["test"]["full"]["hr@1"] == 1.0  # the chain knows i -> i + 1
    assert (out / "models" / "markov" / "config.json").is_file()
    FAIL["on"] = False
    res = run_recipe(Toy(), out, data={"log": str(log_path)})
    assert res.skipped == ["eda", "markov"] and res.ran == ["flaky", "pop"]
    assert CALLS == ["flaky", "flaky"]
    assert res.records["flaky"]["n_records_before"] == 2  # earlier records were read back
    pop = res.records["pop"]["test"]
    assert set(pop) == {"full", "sampled-uniform-5"}
    assert pop["sampled-uniform-5"]["hr@10"] == 1.0  # 6 candidates: always in the top 10
    assert pop["full"]["hr@1"] < 0.5  # popularity cannot know what comes next
    # the report sets the project's figure beside ours and lists every step
    md = (out / "report.md").read_text()
    assert "| HR@1 of the Markov chain | 1.0 | 1.0000 | p |" in md
    assert "resumed (finished earlier)" in md and "sampled-uniform-5" in md
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    # nothing left to do: a third run computes nothing
    again = run_recipe(Toy(), out, data={"log": str(log_path)})
    assert again.ran == [] and len(CALLS) == 2
    state = json.loads((out / "state.json").read_text())
    ran = [(len(i["ran"]), len(i["skipped"])) for i in state["invocations"]]
    assert ran == [(2, 2), (0, 4)]  # the killed invocation recorded nothing: it never finished


def test_a_step_whose_settings_changed_runs_again(tmp_path, log_path):
    FAIL["on"] = False
    out = tmp_path / "out"
    run_recipe(Toy(), out, data={"log": str(log_path)})

    class Changed(Toy):
        def runs(self, quick, data_paths):
            steps = super().runs(quick, data_paths)
            steps[1].run_config["model"] = {"name": "markov", "topk": 3}
            steps[1].about = "a new description changes nothing"
            steps[0].about = "so is this"
            return steps

    stale = out / "steps" / "markov" / "runs"
    stale.mkdir(parents=True)  # what the step wrote under its old settings
    res = run_recipe(Changed(), out, data={"log": str(log_path)})
    # it runs again, and so does every step after it (one may read what it wrote: a step's
    # fingerprint is its own settings, not what it reads)
    assert res.skipped == ["eda"] and res.ran == ["markov", "flaky", "pop"]
    assert not stale.exists()  # cleared, not resumed


def test_a_data_file_changed_under_its_name_runs_every_step_again(tmp_path, log_path):
    """The steps' fingerprints hold the data's path: a log rewritten under it had resumed
    every step, its figures those of the old log."""
    FAIL["on"] = False
    out = tmp_path / "out"
    run_recipe(Toy(), out, data={"log": str(log_path)})
    assert run_recipe(Toy(), out, data={"log": str(log_path)}).ran == []
    cyclic_log(n_sessions=80, n_items=12, length=6, seed=4).write_csv(log_path)
    res = run_recipe(Toy(), out, data={"log": str(log_path)})
    assert res.ran == ["eda", "markov", "flaky", "pop"]


def test_steps_after_a_rerun_step_are_not_resumed_when_the_rerun_is_killed(tmp_path, log_path):
    """A changed log (or changed settings) reruns a step and every step after it; killed
    midway, the state already held the new data's fingerprints and the later steps' old
    records, and the next run resumed those: figures of the old log in the new report."""
    FAIL["on"] = False
    out = tmp_path / "out"
    run_recipe(Toy(), out, data={"log": str(log_path)})
    cyclic_log(n_sessions=80, n_items=12, length=6, seed=4).write_csv(log_path)
    FAIL["on"] = True
    with pytest.raises(RuntimeError, match="killed"):
        run_recipe(Toy(), out, data={"log": str(log_path)})
    FAIL["on"] = False
    res = run_recipe(Toy(), out, data={"log": str(log_path)})
    assert res.skipped == ["eda", "markov"] and res.ran == ["flaky", "pop"]


def test_data_fingerprints_of_an_older_warmrec_or_a_touched_file_resume_every_step(
    tmp_path, log_path
):
    """The same log under a record of the former head-and-tail hash (same size and time), or
    touched (same bytes, a new time): nothing runs again. Compared exactly, the whole-file hash
    of a warmrec upgrade re-ran every finished step of a recipe over an unchanged log."""
    import os

    FAIL["on"] = False
    # over 2 MiB: the former sample (the first and the last MiB) was not the whole file's hash
    # (of a smaller file it was: a record with another hash there is another log)
    cyclic_log(n_sessions=12_000, n_items=12, length=10).write_csv(log_path)
    assert log_path.stat().st_size > 2 << 20
    out = tmp_path / "out"
    run_recipe(Toy(), out, data={"log": str(log_path)})
    state = json.loads((out / "state.json").read_text())
    quick, _, digest = state["data_fingerprints"]["log"].partition("#")
    state["data_fingerprints"]["log"] = f"{quick}#{'0' * len(digest)}"  # the former sample
    (out / "state.json").write_text(json.dumps(state))
    assert run_recipe(Toy(), out, data={"log": str(log_path)}).ran == []
    st = log_path.stat()
    os.utime(log_path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes
    assert run_recipe(Toy(), out, data={"log": str(log_path)}).ran == []


def test_transfer_steps_made_under_the_older_trainer_resolution_run_again(log_path):
    # transfer once trained with the loop's defaults instead of the model's trainer: a step that
    # transfers must not match a fingerprint recorded before (its settings alone), other steps do
    import hashlib

    def older(step) -> str:
        d = {k: v for k, v in step.settings().items() if k != "about"}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    data = {"path": str(log_path)}
    plain = RunStep("pop", run_config={"data": data, "model": {"name": "pop"}})
    moved = RunStep("ft", run_config={"data": data, "model": {"name": "sasrec"},
                                      "transfer": {"source": "{out}/models/src"}})  # fmt: skip
    study = CallStep("s", call="warmrec.experiments.recipes.steps:transfer_study")
    other = CallStep("c", call="tests.experiments.recipes.test_base:flaky")
    assert plain.fingerprint() == older(plain)
    assert moved.fingerprint() != older(moved) and study.fingerprint() != older(study)
    assert other.fingerprint() != older(other)  # a call may train: it keys the trainer defaults


def test_training_steps_run_again_when_a_default_trainer_changes(log_path, monkeypatch):
    # SASRec's default patience went from 5 to 30: a step that leaves it open computes something
    # else now, so its fingerprint must change; a loop-free step's must not
    from warmrec.models.sasrec import SASRec

    data = {"path": str(log_path)}
    net = RunStep("net", run_config={"data": data, "model": {"name": "sasrec"}})
    pinned = RunStep("pinned", run_config={"data": data, "model": {"name": "sasrec"},
                                           "train": {"patience": 5}})  # fmt: skip
    plain = RunStep("pop", run_config={"data": data, "model": {"name": "pop"}})
    call = CallStep("c", call="tests.experiments.recipes.test_base:flaky")
    before = [s.fingerprint() for s in (net, pinned, plain, call)]
    monkeypatch.setattr(SASRec, "default_trainer", {**SASRec.default_trainer, "patience": 7})
    after = [s.fingerprint() for s in (net, pinned, plain, call)]
    assert after[0] != before[0] and after[3] != before[3]
    assert after[2] == before[2]
    # (a pinned setting changes nothing it computes, but the key covers every default: coarse)
    assert after[1] != before[1]


def test_an_output_folder_of_another_recipe_is_refused(tmp_path, log_path):
    FAIL["on"] = False
    out = tmp_path / "out"
    run_recipe(Toy(), out, data={"log": str(log_path)})

    class Other(Toy):
        name = "other"

    with pytest.raises(ConfigError, match="holds the state of recipe 'toy'"):
        run_recipe(Other(), out, data={"log": str(log_path)})


def test_steps_as_toml_round_trip_to_the_same_run_specs(log_path):
    r = Toy()
    steps = r.steps(False, {"log": str(log_path)})
    text = steps_toml(r, steps, False, r.data_paths({"log": str(log_path)}))
    parsed = tomllib.loads(text)["step"]
    assert [s["name"] for s in parsed] == ["eda", "markov", "flaky", "pop"]
    assert parsed[2]["call"] == "tests.experiments.recipes.test_base:flaky"
    assert parsed[3]["test_protocols"] == ["full", "sampled-uniform-5"]
    for i in (1, 3):
        assert spec_from_config(parsed[i]["run"]) == spec_from_config(steps[i].run_config)


def test_data_inputs_defaults_overrides_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("WARMREC_DATA", str(tmp_path))
    r = Toy()
    assert r.data_paths() == {"log": str(tmp_path / "toy" / "log.csv")}
    assert r.data_paths({"log": "x.csv"}) == {"log": "x.csv"}
    with pytest.raises(ConfigError, match="reads log, not bogus"):
        r.data_paths({"bogus": "y"})
    with pytest.raises(DataError, match="--data log=PATH"):
        run_recipe(r, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything is written
    assert parse_data_args(["a=b", " c = d/e "]) == {"a": "b", "c": "d/e"}
    for bad in ("a", "=b", "a="):
        with pytest.raises(ConfigError, match="KEY=PATH"):
            parse_data_args([bad])


def test_bad_run_configs_name_the_step(log_path):
    class Bad(Toy):
        def runs(self, quick, data_paths):
            return [RunStep("bad", run_config={"data": {"path": "x"}, "model": {"name": "nope"}})]

    with pytest.raises(ConfigError, match="recipe step 'bad'"):
        steps_toml(Bad(), Bad().steps(False, {"log": str(log_path)}), False, {})


def test_fill_out_and_the_registry():
    assert fill_out({"a": ["{out}/m", 3], "b": "{out}"}, "/o") == {"a": ["/o/m", 3], "b": "/o"}
    assert list_recipes() == [
        "mooc-transfer",
        "ssept-wiki",
        "bst-courses",
        "cloudera-w2v",
        "melo-coldstart",
    ]
    with pytest.raises(ConfigError, match="unknown recipe 'nope'"):
        get_recipe("nope")
    for name in list_recipes():
        r = get_recipe(name)
        assert r.name == name
        for quick in (True, False):  # every plan builds and validates without any data
            steps = r.steps(quick, {i.key: f"/nowhere/{i.key}" for i in r.inputs})
            tomllib.loads(steps_toml(r, steps, quick, r.data_paths()))


def test_subgroup_scores_rank_subgroups_by_their_best_item():
    import numpy as np
    import polars as pl
    import torch

    from warmrec.data.dataset import EvalSet
    from warmrec.experiments.recipes.base import subgroup_scores

    class Fixed:
        history_len = 3

        def score(self, batch):
            row = torch.tensor([0.0, 0.1, 0.9, 0.5, 0.3, 0.2])
            return row.repeat(len(batch.items), 1)

    # subgroups A, B, C: item 1 -> A, 2 -> B, 3 -> A and B, 4 -> C, 5 -> none
    cats = np.zeros((6, 3), dtype=bool)
    cats[1, 0] = cats[2, 1] = cats[3, 0] = cats[3, 1] = cats[4, 2] = True
    targets = np.array([1, 3, 4, 5])
    es = EvalSet(
        np.array([2, 2, 2, 2]),
        np.arange(4),
        np.arange(1, 5),
        targets,
        6,
        pl.Series("session_id", np.arange(4)),
    )
    # subgroups ranked B (item 2: 0.9), A (item 3: 0.5), C (item 4: 0.3)
    got = subgroup_scores(Fixed(), es, cats, (1, 50))
    assert got["n"] == 3  # item 5 has no subgroup: left out
    assert got["subgroup_map@50"] == pytest.approx((1 / 2 + (1 + 1) / 2 + 1 / 3) / 3)
    assert got["subgroup_hr@1"] == pytest.approx(1 / 3)  # only item 3's B is first
    assert got["subgroup_map@1"] == pytest.approx((0 + 1 + 0) / 3)
    assert got["subgroup_hr@50"] == 1.0

    class Constant:  # every item, so every subgroup, alike: no hit in the top 1 or 2
        history_len = 3

        def score(self, batch):
            return torch.zeros(len(batch.items), 6)

    mine = np.zeros((6, 5), dtype=bool)
    mine[np.arange(1, 6), np.arange(5)] = True  # each item its own subgroup
    got = subgroup_scores(Constant(), es, mine, (1, 2, 5))
    assert got["subgroup_hr@1"] == got["subgroup_hr@2"] == 0.0  # ties against the model
    assert got["subgroup_hr@5"] == 1.0 and got["subgroup_map@5"] == pytest.approx(1 / 5)


def test_cloudera_ours_tuned_on_valid_sessions_says_so():
    """w2v-prior-tuned's setting was tuned on nowplaying-1m's valid.csv sessions, some of whose
    last pairs are test pairs of last_pair: its claims had read "no difference of protocol or
    data"."""
    from warmrec.experiments.recipes.cloudera_w2v import ClouderaW2V

    rec = {"w2v-prior-tuned": {"valid": {"recall@10": 0.5}},
           "w2v-tuned": {"valid": {"recall@10": 0.4}}}  # fmt: skip
    claims = {c.what: c.why for c in ClouderaW2V().claims(rec)}
    ours = [why for what, why in claims.items() if "ours (w2v-prior-tuned" in what]
    assert len(ours) == 2 and all("not wholly out of sample" in w for w in ours)
    rec["w2v-tuned"]["valid"]["recall@10"] = 0.6  # the clean search wins: no caveat
    claims = {c.what: c.why for c in ClouderaW2V().claims(rec)}
    assert not any("out of sample" in w for w in claims.values())


def test_the_report_keeps_the_digits_of_a_small_figure():
    """A figure of 3e-05 showed as 0.0000 beside the source project's, as if it were zero;
    the report now writes it as the other reports do (``format_value``)."""
    from warmrec.experiments.recipes.report import claims_frame, fmt

    class Tiny(Toy):
        def claims(self, records: Mapping[str, Any]) -> list[Claim]:
            return [
                Claim("MRR of a rare item", "0.00003", None, "p", value=3e-5),
                Claim("HR@1", "1.0", ("markov", "test", "full", "hr@1"), "p"),
                Claim("missing", "0.1", ("nothing",), "p"),
            ]

    records = {"markov": {"test": {"full": {"hr@1": 0.25}}}}
    assert claims_frame(Tiny(), records)["warmrec"].to_list() == ["3.00e-05", "0.2500", "-"]
    assert fmt(0.0) == "0.0000" and fmt(0.04, 1) == "4.0e-02" and fmt(12.34, 1) == "12.3"


def test_mooc_transfer_names_the_unit_of_its_study_test():
    """The protocol said the study's paired test was on per-example NDCG@10; the study pairs
    per-user values (each test user's mean over its examples), over the seeds both arms ran."""
    text = " ".join(get_recipe("mooc-transfer").protocols())
    assert "per-example" not in text
    assert "over the seeds both ran, on per-user NDCG@10" in text


def test_cloudera_w2v_writes_a_small_figure_with_its_digits(tmp_path):
    """Its goal line wrote 4 decimals: an MRR@10 of 3e-05 read 0.0000, as if zero."""
    from warmrec.reports.report import Text

    full = {"recall@10": 0.125, "mrr@10": 3e-5}
    records = {
        "w2v-source-best": {"test": {"full": full}, "fit_s": 10.0},
        "w2v-tuned": {"test": {"full": {**full, "mrr@10": 4e-5}}, "fit_s": 5.0, "valid": {}},
    }
    blocks = get_recipe("cloudera-w2v").report_blocks(records, tmp_path)
    text = " ".join(b.text for b in blocks if isinstance(b, Text))
    assert "MRR@10 4.00e-05 vs 3.00e-05" in text and "Recall@10 0.1250 vs 0.1250" in text

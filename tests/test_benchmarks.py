"""The shared benchmark helpers (``benchmarks/_bench.py``) and the busy-machine benchmark's
rendering: every written section names the machine and the load, a section is replaced in place,
and the busy/quiet ratio is the one the runs give."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import _bench

    return _bench


def test_sections_carry_the_machine_and_are_replaced_in_place(bench, tmp_path):
    from warmrec.training.machine import cpu_info

    path = tmp_path / "r.md"
    path.write_text("# T\n\nbefore\n\n<!-- a:begin -->\nold\n<!-- a:end -->\n\nafter\n")
    block = "<!-- a:begin -->\n## Run\n\n| x |\n<!-- a:end -->"
    bench.write_section(path, "<!-- a:begin -->", "<!-- a:end -->", block, "# T\n", load="1.0-2.0")
    text = path.read_text()
    assert text.startswith("# T\n\nbefore\n\n<!-- a:begin -->\n## Run\n\nMachine: ")
    assert cpu_info().model in text and "L2 " in text and "load during the runs: 1.0-2.0" in text
    assert "old" not in text and text.endswith("<!-- a:end -->\n\nafter\n")
    # a second write replaces the section again; a block with its own Machine line is kept as is
    bench.write_section(path, "<!-- a:begin -->", "<!-- a:end -->", block, "# T\n")
    assert path.read_text().count("Machine: ") == 1 and "at writing" in path.read_text()
    own = "<!-- a:begin -->\nMachine: mine\n<!-- a:end -->"
    assert bench.with_machine(own) == own


def test_load_verdict_names_a_loaded_machine(bench, monkeypatch):
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    assert bench.load_verdict([0.3, 1.4]).startswith("quiet")
    assert bench.load_verdict([0.3, 5.2]).startswith("LOADED (1-min load up to 5.2 on 2 CPUs")


def test_shared_folder_is_found_from_a_worktree(bench, tmp_path, monkeypatch):
    monkeypatch.delenv("WARMREC_SHARED", raising=False)
    (tmp_path / "shared").mkdir()
    repo = tmp_path / "wt" / "x"
    repo.mkdir(parents=True)
    assert bench.find_shared(repo) == tmp_path / "shared"
    monkeypatch.setenv("WARMREC_SHARED", "/elsewhere")
    assert bench.find_shared(repo) == Path("/elsewhere")


def test_busy_machine_ratio_is_busy_over_quiet_median(bench, monkeypatch):
    import busy_machine as bm

    def run(state, setting, wall):
        return {"state": state, "setting": setting, "threads": 1, "wall_s": wall, "cpu_s": wall,
                "load": [0.5, 0.5], "policy_sees": 1}  # fmt: skip

    res = {
        "command": "c", "run": "r", "when": "w", "epochs": 1, "busy": 4,
        "torch_default_threads": 2, "verdict": "quiet", "load": "0.5",
        "runs": [run("quiet", "policy", 10.0), run("quiet", "torch default", 8.0),
                 run("4 busy", "policy", 25.0), run("4 busy", "torch default", 80.0)],
    }  # fmt: skip
    text = bm.render(res)
    assert "- policy: **2.50x** (meets the goal)" in text
    assert "- torch default: **10.00x** (misses the goal)" in text
    assert text.startswith(bm.BEGIN) and text.endswith(bm.END)
    res["runs"][3]["stopped"] = True  # a stopped run: its time is a lower bound
    assert "- torch default: **> 10.00x** (misses the goal)" in bm.render(res)
    assert "> 80 (stopped)" in bm.render(res)
    assert "Fair-share floor" not in text  # no one-thread run, no CPU count
    res["cpus"] = 2
    res["runs"].append(run("quiet", "one thread", 14.0))
    # 14 s on one thread; beside 4 busy processes it gets 2 / 5 = 0.40 CPU: 35 s = 3.5x 10 s
    assert "- one thread:" not in bm.render(res)  # quiet only: no ratio of its own
    assert "gets 0.40 of a CPU" in bm.render(res) and "**3.50x** the quiet" in bm.render(res)
    sys.modules.pop("busy_machine", None)


def test_gru4rec_ratios_per_clock_only_where_both_are_timed(bench):
    import gru4rec_speed as g

    off = {"pairs": 1000, "epochs": [{"cpu_s": 10.0, "printed_eps": 1}]}
    mine = {"pairs": 1000, "epochs": [{"wall_s": 4.0, "cpu_s": 5.0}]}
    rows = [("official GRU4Rec", off), ("warmrec GRU4Rec", mine)]
    assert g.rate(mine, "wall") == 250.0 and g.rate(off, "wall") is None
    assert g.ratios(rows) == {"cpu": {"official GRU4Rec": 1.0, "warmrec GRU4Rec": 2.0}}
    off["epochs"][0]["wall_s"] = 8.0
    assert g.ratios(rows)["wall"]["warmrec GRU4Rec"] == 2.0
    assert g.ratios(rows[1:]) == {}
    sys.modules.pop("gru4rec_speed", None)


def _cold_record(seed, method, per_user):
    """A cold-start run at k = 1, 2, 3 with the same per-user NDCG@10 at every k."""
    metrics = {"hr@10": 0.5, "ndcg@10": float(np.mean(per_user)), "mrr@10": 0.1}
    return {
        "seed": seed,
        "method": method,
        "metrics": {str(k): metrics for k in (1, 2, 3)},
        "per_user": {str(k): list(per_user) for k in (1, 2, 3)},
    }


def test_coldstart_driver_pools_the_goal_over_the_shots_it_ran(bench, tmp_path):
    import json
    from types import SimpleNamespace

    import coldstart as cs

    runs = tmp_path / "runs"
    runs.mkdir()
    recs = [
        _cold_record(0, "finetune", [0.2, 0.4]),
        _cold_record(0, "fomaml", [0.3, 0.6]),
        _cold_record(0, "global", [0.2, 0.4]),
    ]
    for r in recs:
        (runs / f"0-{r['method']}.json").write_text(json.dumps(r))
    (runs / "0-lr.json").write_text(json.dumps({"inner_lr": 0.01}))
    args = SimpleNamespace(out=str(tmp_path), protocol="ranking", shots=[1, 2, 3])
    res = cs.from_runs(args)
    assert sorted(set(res["summary"]["shots"].to_list())) == [1, 2, 3]
    lines = cs.goal_lines(res["records"], (1, 2, 3))
    assert lines[0] == "## The goal, pooled over k in {1, 2, 3}"
    row = next(line for line in lines if line.startswith("| fomaml |"))
    # users pooled: 0.45 against 0.30 = 1.5x fine-tuning, 1.5x the global model
    assert "| 2 | 0.4500 | 0.3000 | 1.500 |" in row and row.endswith("| 1.500 |")
    ns = SimpleNamespace(model="sasrec", model_config='{"d": 16, "max_len": 20}')
    assert cs.model_config(ns) == {**cs.MODELS["sasrec"], "d": 16, "max_len": 20}


def test_bench_quick_keeps_one_summary_section_per_machine(bench, tmp_path):
    import bench_quick as bq

    assert bq.machine_slug("Intel(R) Xeon(R) Processor") == "intel-xeon-processor"
    assert bq.machine_slug("AMD EPYC 7B13 64-Core Processor") == "amd-epyc-7b13-64-core-processor"
    path = tmp_path / "speed.md"
    lines = ["Machine: X; load", "quiet", "GRU4Rec ... **1.93x**", "SASRec ... **2.69x**"]
    for model, ratio in (("Intel(R) Xeon(R) Processor", "1.93x"), ("AMD EPYC", "2.12x")):
        rows = [line.replace("1.93x", ratio) for line in lines]
        begin, end, block = bq.machine_block(model, rows, "python benchmarks/bench_quick.py", "w")
        bench.write_section(path, begin, end, block, "# Training speed\n\n")
    # a second run on the first machine replaces its own section only
    begin, end, block = bq.machine_block(
        "Intel(R) Xeon(R) Processor", [x.replace("1.93x", "1.80x") for x in lines], "c", "w"
    )
    bench.write_section(path, begin, end, block, "# Training speed\n\n")
    text = path.read_text()
    assert text.count("<!-- bench_quick:intel-xeon-processor:begin -->") == 1
    assert "1.80x" in text and "1.93x" not in text and "2.12x" in text
    assert "- GRU4Rec ... **1.80x**" in text and text.count("Machine: X; load") == 2


def test_mars_baseline_arms_are_the_curve_grammar(bench):
    """``--baselines``: ``NAME`` and ``LABEL=NAME:key=value,key=value`` (the commands in
    ``mars.md``) read by the library's ``parse_arm``; a key the model lacks names the arm."""
    import mars_transfer

    from warmrec.errors import ConfigError
    from warmrec.experiments.studies.curve import Arm

    arm = mars_transfer.baseline_arm
    assert arm("pop") == Arm("pop", model="pop")
    assert arm("featrank-train=featrank:fit_valid=false") == Arm(
        "featrank-train", model="featrank", config=(("fit_valid", False),)
    )
    assert arm("fr=featrank:fit_valid=false,l2=0.5") == arm(
        "fr=model:featrank:fit_valid=false:l2=0.5"
    )
    with pytest.raises(
        ConfigError, match=r"arm 'fr=model:featrank:nosuch=1': unknown key 'nosuch'"
    ):
        arm("fr=featrank:nosuch=1")

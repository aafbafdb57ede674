"""The side-by-side speed checks in one command (``make bench-quick``), so that any review can
verify the speed claims on its own machine: warmrec's GRU4Rec against the official one, and
warmrec's SASRec against RecTools', one torch thread each, then the ratios printed.

- GRU4Rec: ``benchmarks/gru4rec_speed.py --epochs 1 --test`` (nowplaying-1m, the official
  settings; goal: warmrec >= 1.5x the official's pairs/s with Recall@20 / MRR@20 not below).
  The official's epochs are timed in CPU seconds (its default ``--peer-clock cpu``), so the
  ratio printed is per CPU second (steadier beside other work; equal to the wall-clock ratio on a
  quiet machine with one thread); ``--peer-clock wall`` is passed through with ``--wall``.
- SASRec: ``benchmarks/sasrec_speed.py --epochs 3 --label quick`` (ml-100k, RecTools' size and
  warmrec's defaults; goal: >= 2x RecTools' targets per CPU second).

A peer that cannot run here (no ``.peers/rectools`` venv: ``make peers`` builds it; the official
GRU4Rec failing to start) is reported in one line and warmrec's side still runs. The machine
(CPU model, caches) and the load sampled over the whole run are printed with the ratios, and the
run is marked LOADED when the load says the wall-clock figures are not the machine's speed.

Sections are written to ``benchmarks/_work/bench_quick/`` (not tracked) unless ``--record``,
which writes them into ``benchmarks/results/gru4rec_speed.md`` and ``speed.md``. The printed
summary (the ratios, the machine, the load) is a section of its own per CPU model in
``speed.md`` (``bench_quick:<cpu>`` markers), written by ``--record`` and, alone, by
``--record-machine``: a check on another machine adds its summary beside the others' instead of
replacing the detailed sections. About 5-6 minutes on a quiet 2-core AMD EPYC, 5 on an Intel
Xeon (more under load).

    python benchmarks/bench_quick.py [--record | --record-machine]
        [--rectools-python .peers/rectools/bin/python]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from _bench import LoadSampler, machine_line, write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "_work" / "bench_quick"


def run(cmd: list[str]) -> bool:
    """Run a benchmark script, its output streamed; False (and one line) when it failed."""
    print("$ " + " ".join(cmd[1:]), flush=True)
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    if rc:
        print(f"bench-quick: {Path(cmd[1]).name} failed (exit {rc}); see its output above")
    return rc == 0


def peer_ok(python: Path, module: str) -> bool:
    """Whether ``python`` exists and imports ``module``."""
    if not python.exists():
        return False
    res = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True)
    return res.returncode == 0


def gru4rec_summary() -> list[str]:
    path = HERE / "_work" / "gru4rec_speed" / "last.json"
    if not path.exists():
        return ["GRU4Rec: no result"]
    sys.path.insert(0, str(HERE))
    from gru4rec_speed import rate

    res = json.loads(path.read_text())
    rows = dict((n, r) for n, r in res["rows"])
    mine = rows.get("warmrec GRU4Rec")
    off = next((r for n, r in rows.items() if n.startswith("official")), None)
    if mine is None:
        return ["GRU4Rec: warmrec's run has no result"]
    line = (
        f"GRU4Rec, nowplaying-1m, 1 thread: warmrec {rate(mine, 'wall'):,.0f} pairs/s, "
        f"{rate(mine, 'cpu'):,.0f} pairs/CPU s"
    )
    if off is None:
        return [line + " (the official did not run: no ratio)"]
    parts = [
        f"per {clock} second **{rate(mine, clock) / rate(off, clock):.2f}x** (official "
        f"{rate(off, clock):,.0f})"
        for clock in ("wall", "cpu")
        if rate(off, clock) and rate(mine, clock)
    ]
    out = [line, "GRU4Rec warmrec / official pairs " + "; ".join(parts) + " (goal >= 1.5x)"]
    if "recall" in mine and "recall" in off:
        out.append(
            f"GRU4Rec accuracy after 1 epoch: Recall@20 {mine['recall']:.4f} vs "
            f"{off['recall']:.4f}, MRR@20 {mine['mrr']:.4f} vs {off['mrr']:.4f} (warmrec vs "
            "official; goal: not below)"
        )
    return out


def sasrec_summary() -> list[str]:
    path = HERE / "_work" / "sasrec_speed" / "quick.json"
    if not path.exists():
        return ["SASRec: no result"]
    sys.path.insert(0, str(HERE))
    from sasrec_speed import _rate

    by = {r["label"]: r for r in json.loads(path.read_text())["runs"]}
    if "rectools" not in by:
        return [
            "SASRec, ml-100k, 1 thread: warmrec "
            + ", ".join(f"{k} {_rate(r, 'cpu'):,.0f} targets/CPU s" for k, r in by.items())
            + " (RecTools did not run: no ratio)"
        ]
    peer = _rate(by["rectools"], "cpu")
    parts = [
        f"{lab} **{_rate(by[lab], 'cpu') / peer:.2f}x**"
        for lab in ("matched", "default")
        if lab in by
    ]
    return [
        f"SASRec, ml-100k, 1 thread: warmrec / RecTools targets per CPU second: "
        f"{', '.join(parts)} (goal >= 2x; RecTools {peer:,.0f}/s)"
    ]


def machine_slug(model: str) -> str:
    """A marker-safe name for a CPU model: ``"Intel(R) Xeon(R) Processor"`` ->
    ``"intel-xeon-processor"``."""
    slug = re.sub(r"\((r|tm)\)", "", model.lower())
    return re.sub(r"[^a-z0-9]+", "-", slug).strip("-") or "unknown-cpu"


def machine_block(model: str, lines: list[str], command: str, when: str) -> tuple[str, str, str]:
    """The per-machine summary section (begin marker, end marker, block) of ``speed.md``:
    ``lines`` are the printed summary's (the machine line first, then one bullet each)."""
    slug = machine_slug(model)
    begin, end = f"<!-- bench_quick:{slug}:begin -->", f"<!-- bench_quick:{slug}:end -->"
    body = [
        begin,
        f"## `make bench-quick` on {model} ({when}; written by the script)",
        "",
        f"Command: `{command}`",
        "",
        lines[0],
        "",
        *(f"- {line}" for line in lines[1:]),
        end,
    ]
    return begin, end, "\n".join(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rectools-python", default=".peers/rectools/bin/python")
    ap.add_argument("--official-python", default=None)
    ap.add_argument("--record", action="store_true", help="write the results files' sections")
    ap.add_argument(
        "--record-machine",
        action="store_true",
        help="write only this machine's summary section of speed.md (details stay in _work)",
    )
    ap.add_argument("--skip-gru4rec", action="store_true")
    ap.add_argument("--wall", action="store_true", help="time the official GRU4Rec in wall s")
    ap.add_argument("--skip-sasrec", action="store_true")
    a = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    results = HERE / "results"
    sampler = LoadSampler(every=10.0)
    t0 = time.perf_counter()
    py = sys.executable
    if not a.skip_gru4rec:
        for stale in (HERE / "_work" / "gru4rec_speed" / "last.json",):
            stale.unlink(missing_ok=True)
        out = results / "gru4rec_speed.md" if a.record else WORK / "gru4rec_speed.md"
        out = out.relative_to(ROOT)  # the scripts run in ROOT: their recorded commands stay short
        cmd = [py, "benchmarks/gru4rec_speed.py", "--epochs", "1", "--test", "--out", str(out)]
        if a.official_python:
            cmd += ["--official-python", a.official_python]
        if a.wall:
            cmd += ["--peer-clock", "wall"]
        run(cmd)
    if not a.skip_sasrec:
        (HERE / "_work" / "sasrec_speed" / "quick.json").unlink(missing_ok=True)
        out = results / "speed.md" if a.record else WORK / "speed.md"
        cmd = [py, "benchmarks/sasrec_speed.py", "--epochs", "3", "--label", "quick"]
        cmd += ["--out", str(out.relative_to(ROOT))]
        rt = Path(a.rectools_python)
        rt = rt if rt.is_absolute() else ROOT / rt
        if peer_ok(rt, "rectools"):
            cmd += ["--rectools-python", a.rectools_python]
        else:
            print(
                f"bench-quick: no working RecTools venv at {rt} (`make peers` builds it): "
                "RecTools side skipped, warmrec's side only"
            )
            cmd += ["--no-rectools"]
        run(cmd)
    load = sampler.stop()
    lines = [
        "",
        f"== bench-quick ({(time.perf_counter() - t0) / 60:.1f} min) ==",
        machine_line(load),
        sampler.verdict(),
    ]
    if not a.skip_gru4rec:
        lines += gru4rec_summary()
    if not a.skip_sasrec:
        lines += sasrec_summary()
    print("\n".join(lines))
    (WORK / "summary.txt").write_text("\n".join(lines[1:]) + "\n")
    if a.record or a.record_machine:
        from warmrec.training.machine import cpu_info

        command = " ".join(["python benchmarks/bench_quick.py", *sys.argv[1:]])
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        when += f", {(time.perf_counter() - t0) / 60:.1f} min"
        begin, end, block = machine_block(cpu_info().model, lines[2:], command, when)
        write_section(results / "speed.md", begin, end, block, "# Training speed\n\n")


if __name__ == "__main__":
    main()

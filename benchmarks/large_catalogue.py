"""SASRec on synthetic catalogues of 10K-150K items: full softmax against ``loss = "auto"``.

Issue 13: full-softmax training must stay fast on large catalogues. For each catalogue size the
same synthetic log (same number of sessions and targets) trains SASRec with the full softmax
(``loss = "ce"``, chunked, never ``[N, n_items]`` at once) and with ``loss = "auto"`` (full
softmax up to 20,000 items, sampled softmax with logQ correction and 1,024 negatives above),
for the same number of epochs (the vocabulary is the whole catalogue, every item a candidate,
whether or not the log reaches it); it reports CPU seconds per epoch and test NDCG@10 / HR@10
(leave-one-out, full ranking).

The log: items form clusters of 20 consecutive ids with Zipf popularity over the clusters; a
session stays in its cluster (next item uniform in the cluster) with probability 0.8 and jumps
to a popularity-drawn cluster otherwise, so the next item is learnable but not trivial.

    python benchmarks/large_catalogue.py --sizes 10000,50000,150000 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import polars as pl
from _bench import write_section

WORK = Path(__file__).resolve().parent / "_work" / "large_catalogue"
BEGIN, END = "<!-- catalogue:begin -->", "<!-- catalogue:end -->"
CONFIG = {"d": 64, "n_layers": 2, "n_heads": 2, "ffn_dim": 64, "max_len": 50, "dropout": 0.2}
CONFIG |= {"attn_dropout": 0.2}


def synthetic_log(n_items: int, n_sessions: int, length: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    cluster = 20
    n_clusters = n_items // cluster
    pop = 1.0 / np.arange(1, n_clusters + 1) ** 0.8
    pop /= pop.sum()
    perm = rng.permutation(n_clusters)  # popular clusters spread over the ids
    c = perm[rng.choice(n_clusters, size=n_sessions, p=pop)]
    items = np.empty((n_sessions, length), dtype=np.int64)
    for t in range(length):
        jump = rng.random(n_sessions) >= 0.8
        if t:
            c = np.where(jump, perm[rng.choice(n_clusters, size=n_sessions, p=pop)], c)
        items[:, t] = c * cluster + rng.integers(0, cluster, size=n_sessions) + 1
    sess = np.repeat(np.arange(n_sessions), length)
    ts = np.tile(np.arange(length, dtype=np.float64), n_sessions) + sess * 1e4
    return pl.DataFrame({"session_id": sess, "item_id": items.ravel(), "timestamp": ts})


def run(n_items: int, loss: str, epochs: int, n_sessions: int, length: int) -> dict:
    import torch

    from warmrec.data.prepared import prepare
    from warmrec.data.vocab import ItemVocab
    from warmrec.experiments.spec import evaluate_model
    from warmrec.registry import get_model

    torch.set_num_threads(1)
    log = synthetic_log(n_items, n_sessions, length)
    vocab = ItemVocab.from_ids(pl.Series("id", np.arange(1, n_items + 1)))  # the whole catalogue
    prep = prepare(log, split="loo", vocab=vocab)
    m = get_model("sasrec", {**CONFIG, "loss": loss})
    c0, t0 = time.process_time(), time.perf_counter()
    m.fit(prep.train, epochs=epochs, batch_size=128, lr=1e-3, seed=0)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    res = evaluate_model(m, prep.test, prep, metrics=("ndcg@10", "hr@10"))
    h = m.train_result.history
    return {
        "n_items": n_items,
        "catalogue": m.n_items,
        "loss": loss,
        "resolved": m.train_result.extra.get("loss"),
        "epochs": epochs,
        "cpu_s_per_epoch": float(np.median([x["train_cpu_seconds"] for x in h])),
        "wall_s_per_epoch": float(np.median([x["train_seconds"] for x in h])),
        "fit_cpu_s": cpu,
        "fit_wall_s": wall,
        "test": res.summary,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,50000,150000")
    ap.add_argument("--losses", default="ce,auto")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=4000)
    ap.add_argument("--length", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results/speed.md")
    a = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    load = [Path("/proc/loadavg").read_text().split()[0]]
    for size in map(int, a.sizes.split(",")):
        for loss in a.losses.split(","):
            r = run(size, loss, a.epochs, a.sessions, a.length)
            print(json.dumps(r), flush=True)
            rows.append(r)
        load.append(Path("/proc/loadavg").read_text().split()[0])
    cmd = (
        f"python benchmarks/large_catalogue.py --sizes {a.sizes} --losses {a.losses} "
        f"--epochs {a.epochs} --sessions {a.sessions} --length {a.length}"
    )
    (WORK / "last.json").write_text(json.dumps({"command": cmd, "load": load, "rows": rows}))
    lines = [
        BEGIN,
        '## Large catalogues: full softmax against `loss = "auto"` (`benchmarks/large_catalogue.py`)',
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {platform.machine()}, one torch thread, 1-minute load average during the runs "
        f"{', '.join(load)} (2 cores shared with other jobs; CPU seconds are the steadier figure). "
        f"SASRec {CONFIG}, batch 128, lr 1e-3, {a.epochs} epochs, {a.sessions:,} synthetic "
        f"sessions of {a.length} items ({a.sessions * (a.length - 3):,} training targets); "
        "leave-one-out test, full ranking over the catalogue.",
        "",
        "| items | loss | resolved to | CPU s / epoch | wall s / epoch | test NDCG@10 | test HR@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n_items']:,} | {r['loss']} | {r['resolved']} | {r['cpu_s_per_epoch']:.2f} | "
            f"{r['wall_s_per_epoch']:.2f} | {r['test']['ndcg@10']:.4f} | {r['test']['hr@10']:.4f} |"
        )
    lines += ["", END]
    block = "\n".join(lines)
    write_section(Path(a.out), BEGIN, END, block, "# Training speed (issue 13)\n\n")
    print(block)


if __name__ == "__main__":
    main()

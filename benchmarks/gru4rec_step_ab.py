"""CPU time per GRU4Rec training step: the BPR-max path of an earlier commit against the working
tree's, alternating on the same mini-batches in one process (a ratio that survives a shared
machine better than two epochs timed apart).

The earlier ``warmrec/models/losses.py`` is read with ``git show COMMIT:...`` and loaded as a
module of its own; its ``BPRMax.forward`` and ``SampledLoss.logits`` are swapped onto the model's
loss for the "old" rounds. Everything else (GRU, row-wise optimizer, data) is the working tree's.
Settings are those of ``benchmarks/gru4rec_speed.py`` (nowplaying-1m ``train.csv``, 256 lanes,
BPR-max with 2,048 shared negatives, Adagrad), one torch thread, the first ``--steps``
mini-batches of an epoch (every lane active) after 10 warm-up steps.

    python benchmarks/gru4rec_step_ab.py --commit 57231bf --steps 150 --rounds 3

With ``--chunks`` it compares instead the fused BPR-max's row-chunk sizes (bytes per score
buffer, e.g. ``--chunks 131072,524288,4194304``) of the working tree, alternating the same way;
the size the machine would choose (:func:`warmrec.models.bpr_max_linear.chunk_bytes`) is shown.
Both modes run with the training loop's allocator settings (``keep_freed_memory``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commit", default="57231bf", help="the commit whose BPR-max path is 'old'")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunks", default="", help="compare these chunk sizes (bytes), not commits")
    a = ap.parse_args()
    if a.chunks:
        compare_chunks([int(x) for x in a.chunks.split(",")], a.steps, a.rounds)
        return

    import numpy as np
    import polars as pl
    import torch
    from gru4rec_speed import DATA, TRAINER, WARMREC_CONFIG

    from warmrec.data.dataset import SequenceDataset
    from warmrec.models.gru4rec import GRU4Rec
    from warmrec.training.loop import make_optimizer, optimizer_step
    from warmrec.training.memory import keep_freed_memory

    torch.set_num_threads(1)
    keep_freed_memory()  # as the training loop does (TrainerConfig.reuse_memory)
    src = subprocess.run(
        ["git", "show", f"{a.commit}:src/warmrec/models/losses.py"],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "old_losses.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location("old_losses", path)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)

    schema = {"session_id": pl.Utf8, "item_id": pl.Utf8, "timestamp": pl.Int64}
    train = pl.read_csv(DATA / "train.csv", separator="\t", schema_overrides=schema)
    ds = SequenceDataset.from_frame(train)
    model = GRU4Rec(**WARMREC_CONFIG)
    tc = model.trainer_config(TRAINER)
    torch.manual_seed(0)
    model.setup_training(ds)
    opt = make_optimizer(model.optimizer_groups(0.0), tc)
    model.net.train()
    it = model.training_data(ds).batches(tc.batch_size, np.random.default_rng(0))
    batches = [next(it) for _ in range(a.steps + 10)]
    loss = model.loss_fn
    new_forward = loss.forward

    def use(which: str) -> None:
        if which == "old":
            loss.forward = types.MethodType(old.BPRMax.forward, loss)
            loss.logits = types.MethodType(old.SampledLoss.logits, loss)
        else:
            loss.forward = new_forward
            loss.__dict__.pop("logits", None)

    for b in batches[:10]:
        optimizer_step(model, b, opt)
    res: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(a.rounds):
        for which in ("old", "new"):
            use(which)
            c = time.process_time()
            for b in batches[10:]:
                optimizer_step(model, b, opt)
            res[which].append((time.process_time() - c) / a.steps * 1e3)
    print(f"load {os.getloadavg()[0]:.1f}; CPU ms per step over {a.steps} steps, each round:")
    for k, v in res.items():
        print(
            f"  {k} ({a.commit if k == 'old' else 'working tree'}): "
            + ", ".join(f"{x:.2f}" for x in v)
            + f"; best {min(v):.2f}"
        )
    print(f"new / old (best rounds): {min(res['new']) / min(res['old']):.3f}")


def compare_chunks(sizes: list[int], steps: int, rounds: int) -> None:
    """CPU ms per full GRU4Rec step with each fused BPR-max chunk size, alternating."""
    import numpy as np
    import polars as pl
    import torch
    from gru4rec_speed import DATA, TRAINER, WARMREC_CONFIG

    from warmrec.data.dataset import SequenceDataset
    from warmrec.models import bpr_max_linear as B
    from warmrec.models.gru4rec import GRU4Rec
    from warmrec.training.loop import make_optimizer, optimizer_step
    from warmrec.training.machine import cpu_info
    from warmrec.training.memory import keep_freed_memory

    torch.set_num_threads(1)
    keep_freed_memory()
    schema = {"session_id": pl.Utf8, "item_id": pl.Utf8, "timestamp": pl.Int64}
    train = pl.read_csv(DATA / "train.csv", separator="\t", schema_overrides=schema)
    ds = SequenceDataset.from_frame(train)
    model = GRU4Rec(**WARMREC_CONFIG)
    tc = model.trainer_config(TRAINER)
    torch.manual_seed(0)
    model.setup_training(ds)
    opt = make_optimizer(model.optimizer_groups(0.0), tc)
    model.net.train()
    it = model.training_data(ds).batches(tc.batch_size, np.random.default_rng(0))
    batches = [next(it) for _ in range(steps + 10)]
    for b in batches[:10]:
        optimizer_step(model, b, opt)
    res: dict[int, list[float]] = {s: [] for s in sizes}
    for _ in range(rounds):
        for size in sizes:
            B.CHUNK_ELEMENTS = max(1, size // 4)
            c = time.process_time()
            for b in batches[10:]:
                optimizer_step(model, b, opt)
            res[size].append((time.process_time() - c) / steps * 1e3)
    B.CHUNK_ELEMENTS = None
    print(cpu_info().describe())
    print(f"machine's choice: {B.chunk_bytes()}; load {os.getloadavg()[0]:.1f}")
    print(f"CPU ms per step over {steps} steps, each round:")
    for size, v in res.items():
        print(f"  {size:>9,} B: " + ", ".join(f"{x:.2f}" for x in v) + f"; best {min(v):.2f}")


if __name__ == "__main__":
    main()

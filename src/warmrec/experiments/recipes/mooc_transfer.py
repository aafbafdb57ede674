"""``mooc-transfer``: pre-train on large logs, transfer to a small MOOC.

The source project studied transfer learning for a MOOC (the MARS target): EDA of the sources
and the target, a session-gap analysis, sessionising, prefix/target pairs, SASRec pre-trained on
large sources (YOOCHOOSE and Amazon Books), transfer to the MOOC by fine-tuning, adapters, a grid
of item-embedding re-initialisations and Reptile, and baselines. It published no figures: this
recipe's table is the reference.

Here the sources are the logs present (nowplying-1m, ml-100k, Wiki1000: stand-ins for YOOCHOOSE
and Amazon Books, which ``warmrec.data.datasets`` can download where a network exists), the
target is MARS, sessionised at the gap the gap analysis suggests (30 minutes when it finds no
valley), split by the project's default policy (each learner's last session is the test part).
Prefix/target pairs are what the training loop and the evaluation make of every session (every
next item given its prefix).

Steps: statistics of every log and the target's gaps; sessionise the target; pre-train SASRec on
each source; per source, fine-tuning and adapters (new item table started by popularity); for
ml-100k, the item-table re-initialisation grid (random, mean, popularity); SASRec from scratch,
popularity and session-kNN on the target; and the transfer study for ml-100k (scratch,
fine-tuning and Reptile over fractions of the target's training sessions and seeds, with
confidence intervals). Every run is selected on the target's validation part and tested once.

Items are matched across domains only where both catalogues have text ids
(``[transfer] match_items = "auto"``): MARS's ids and the sources' are unrelated integers, so no
item copies a source row (``n_shared_items`` 0 in each transfer run's record; before the option,
every shared integer id copied the unrelated source item's row).

The full run's sizes (``FULL_NOTE``: nowplaying-1m as one file of its split folder, few
epochs, two fractions in the study) are chosen so that it finishes in under an hour on a shared
2-core CPU machine; the source project's own settings were not published.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from warmrec.experiments.recipes.base import CallStep, Claim, DataInput, Recipe, RunStep, Step

SOURCES = ("nowplaying", "movielens", "wikipedia")
SASREC = {"d": 64, "n_layers": 2, "n_heads": 2, "max_len": 50}
SASREC_QUICK = {"d": 16, "n_layers": 1, "n_heads": 1, "ffn_dim": 32, "max_len": 20}
METRICS = ["ndcg@10", "hr@10", "mrr@10"]
FULL_NOTE = (
    "The full run is sized for a shared 2-core CPU machine (under an hour): nowplaying-1m "
    "enters as one file of its split folder (valid.csv, about 58k of its 605k events); "
    "pre-training runs at most 5 epochs (patience 2), every target training at most 20 "
    "(patience 3); the transfer study uses fractions 0.25 and 1 of the target's training "
    "sessions, one seed (intervals: the paired bootstrap over learners), and 100 Reptile "
    "meta-iterations. The source project pre-trained on "
    "YOOCHOOSE and Amazon Books on a GPU; its own settings are not published."
)


class MoocTransfer(Recipe):
    name = "mooc-transfer"
    title = "Transfer from large logs to a small MOOC (MARS)"
    description = (
        "EDA and session gaps, sessionising, SASRec pre-trained on large sources and carried "
        "to the MOOC by fine-tuning, adapters, item-table re-initialisation and Reptile, "
        "against baselines."
    )
    source = (
        "The MOOC transfer project: EDA of sources (YOOCHOOSE, Amazon Books) and target (the "
        "MARS MOOC); session-gap analysis; sessionising; prefix/target pairs; SASRec "
        "pre-trained on the large sources; transfer by fine-tuning, adapters, an embedding "
        "re-initialisation grid and Reptile; baselines. No figures published: this recipe's "
        "table is the reference."
    )
    inputs = (
        DataInput("target", "mars", "MARS folder (the MOOC target)"),
        DataInput("nowplaying", "nowplaying-1m", "large session source (nowplaying-1m)"),
        DataInput("movielens", "ml-100k", "rating-history source (ml-100k)"),
        DataInput("wikipedia", "wikipedia/wikipedia.txt", "Wiki1000 source (SASRec format)"),
    )

    def reads(self, quick: bool, paths: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        now = Path(paths["nowplaying"])
        nowplaying = {"path": str(now)}
        part = "test.csv" if quick else "valid.csv"
        if now.is_dir() and (now / part).is_file():
            # one file of the split folder (about 58k of its 605k events): SASRec on all of
            # nowplaying-1m takes longer per epoch than the whole recipe may on 2 shared cores
            nowplaying = {"path": str(now / part)}
        return {
            "target": {"path": paths["target"], "format": "mars"},
            "nowplaying": nowplaying,
            "movielens": {"path": paths["movielens"]},
            "wikipedia": {"path": paths["wikipedia"], "format": "sasrec"},
        }

    def runs(self, quick: bool, data_paths: Mapping[str, str]) -> list[Step]:
        reads = self.reads(quick, data_paths)
        sessions = "{out}/data/target-sessions.parquet"
        target = {"path": sessions}
        net = SASREC_QUICK if quick else SASREC
        src_train = {"epochs": 1, "patience": 1} if quick else {"epochs": 5, "patience": 2}
        tgt_train = {"epochs": 2, "patience": 2} if quick else {"epochs": 20, "patience": 3}
        ev = {"metrics": METRICS}
        steps: list[Step] = [
            CallStep(
                "eda",
                kind="eda",
                about="sizes, lengths, popularity of every log; the target's inactivity gaps",
                call="warmrec.experiments.recipes.steps:eda",
                params={"data": reads, "gaps": ["target"]},
            ),
            CallStep(
                "sessionize",
                kind="sessionize",
                about="the target cut into sessions at the suggested gap",
                call="warmrec.experiments.recipes.steps:sessionize_log",
                params={"read": reads["target"], "gap": "suggested", "out": sessions},
            ),
        ]
        for src in SOURCES:
            steps.append(
                RunStep(
                    f"pretrain-{src}",
                    kind="pretrain",
                    about=f"SASRec pre-trained on {src}",
                    run_config={
                        "data": reads[src],
                        "split": {"method": "auto", "resplit": src == "nowplaying"},
                        "model": {"name": "sasrec", **net},
                        "train": src_train,
                        "eval": ev,
                        "pretrain": True,
                    },
                )
            )
        transfers = [(src, "finetune", "popularity") for src in SOURCES]
        transfers += [(src, "adapters", "popularity") for src in SOURCES]
        transfers += [("movielens", "finetune", init) for init in ("random", "mean")]
        for src, strategy, init in transfers:
            steps.append(
                RunStep(
                    f"transfer-{src}-{strategy}-{init}",
                    kind="transfer",
                    about=f"{src} -> target: {strategy}, item table by {init}",
                    run_config={
                        "data": target,
                        "transfer": {
                            "source": f"{{out}}/models/pretrain-{src}",
                            "strategy": strategy,
                            "init": init,
                        },
                        "train": tgt_train,
                        "eval": ev,
                    },
                )
            )
        steps += [
            RunStep(
                "scratch-sasrec",
                about="SASRec trained on the target alone",
                run_config={
                    "data": target,
                    "model": {"name": "sasrec", **net},
                    "train": tgt_train,
                    "eval": ev,
                },
            ),
            RunStep(
                "pop",
                about="most popular videos",
                run_config={"data": target, "model": {"name": "pop"}, "eval": ev},
            ),
            RunStep(
                "sknn",
                about="session-kNN",
                run_config={"data": target, "model": {"name": "sknn"}, "eval": ev},
            ),
        ]
        study: dict[str, Any] = {
            "model": "sasrec",
            "strategies": ["scratch", "finetune", "reptile"],
            "inits": ["popularity"],
            "fractions": [1.0] if quick else [0.25, 1.0],
            "seeds": [0],
            "model_config": net,
            "trainer": tgt_train,
            "source_trainer": src_train,
            "baselines": ["pop", "sknn"],
        }
        if quick:
            study["reptile_config"] = {"meta_iterations": 10}
            study["n_boot"] = 200
        else:
            study["reptile_config"] = {"meta_iterations": 100}
        steps.append(
            CallStep(
                "study-movielens",
                kind="study",
                about="ml-100k -> target over fractions of target data and seeds (with Reptile)",
                call="warmrec.experiments.recipes.steps:transfer_study",
                params={"source": reads["movielens"], "target": target, **study},
            )
        )
        return steps

    def best_transfer(self, records: Mapping[str, Any]) -> str | None:
        """The transfer run with the best validation NDCG@10."""
        runs = [
            k for k, v in records.items() if k.startswith("transfer-") and (v or {}).get("valid")
        ]
        return max(runs, key=lambda k: records[k]["valid"].get("ndcg@10", -1.0), default=None)

    def claims(self, records: Mapping[str, Any]) -> list[Claim]:
        best = self.best_transfer(records) or "transfer-movielens-finetune-popularity"
        p = "target's last session per learner, every next item, full ranking"
        return [
            Claim(
                f"test NDCG@10, best transfer on validation ({best})",
                "none published",
                (best, "test", "full", "ndcg@10"),
                p,
            ),
            Claim(
                "test NDCG@10, SASRec from scratch",
                "none published",
                ("scratch-sasrec", "test", "full", "ndcg@10"),
                p,
            ),
            Claim(
                "test NDCG@10, session-kNN",
                "none published",
                ("sknn", "test", "full", "ndcg@10"),
                p,
            ),
        ]

    def protocols(self) -> list[str]:
        return [
            "Target: MARS sessionised at the suggested inactivity gap (30 minutes when the gap "
            "histogram has no valley); the default split for a sessionised log with short "
            "user histories: each learner's last session is test, the one before validation "
            "(learners with fewer than 3 sessions train only); every next item of a held-out "
            "session given its prefix; full ranking; unseen held-out items removed.",
            "Sources: each split by the default policy for selecting the pre-training epoch "
            "(nowplaying-1m's given split folder merged and split again).",
            FULL_NOTE,
            "Transfer study: nested subsamples of the target's training sessions per seed; "
            "valid and test are the full held-out parts; mean and 95 % CI over seeds; ratio "
            "to scratch and paired test against it over the seeds both ran, on per-user "
            "NDCG@10 (each test user's mean over its examples, then over the seeds).",
        ]

    def report_blocks(self, records: Mapping[str, Any], out: Any) -> list[Any]:
        import polars as pl

        from warmrec.reports.report import Heading, Image, Table, Text

        blocks: list[Any] = []
        ses = records.get("sessionize")
        if ses:
            blocks += [
                Heading("Sessions"),
                Text(
                    f"Gap {ses['gap_s']:.0f} s ({ses['rule']}): {ses['sessions']} sessions of "
                    f"{ses['users']} learners, median length {ses['session_length_median']}, "
                    f"{ses['sessions_of_one_event']} of one event."
                ),
            ]
        shared = [
            {"step": k, "n_shared_items": (v.get("transfer") or {}).get("n_shared_items")}
            for k, v in records.items()
            if k.startswith("transfer-") and v
        ]
        if shared:
            blocks += [
                Heading("Raw ids shared with the source (spurious across these domains)"),
                Table(pl.DataFrame(shared)),
            ]
        study = records.get("study-movielens")
        if study and study.get("summary"):
            df = pl.DataFrame(study["summary"], infer_schema_length=None)
            keep = [c for c in df.columns if not c.endswith(("_lo", "_hi"))]
            blocks += [Heading("Transfer study (ml-100k source)"), Table(df.select(keep))]
            for p in study.get("plots", []):
                blocks.append(Image(p, alt="study", caption=Path(p).name))
        return blocks


RECIPE = MoocTransfer()

"""``melo-coldstart``: meta-learning with a learned adaptive loss for users with few interactions.

The source project (MELO) meta-trained sequential recommenders -- BERT4Rec, SASRec, NARM,
GRU4Rec -- with MAML and a learned adaptive loss (and FO-MAML), for users with few
interactions, in a MovieLens mode (rating prediction of new users, RMSE) and an Amazon ratings
mode (``min_sub_window_size=2``, ``max_seq_len=30``, ``num_samples=25``, ``num_query_set=1``).
It published no figure that can be retrieved: this recipe's table is the reference.

Here (:mod:`warmrec.experiments.studies.coldstart`, the user cold-start scenario: meta-train,
meta-valid and meta-test users are disjoint; a held-out user reveals ``k`` events):

- **ranking, ml-100k**: for each backbone (SASRec, GRU4Rec, NARM, BERT4Rec), the global model,
  per-user fine-tuning, MAML, FO-MAML and MAML++ with the learned adaptive loss
  (``mamlpp_loss``: MELO's idea on warmrec's MAML), the next item ranked over the full
  catalogue (HR/NDCG/MRR@10) for ``k`` = 1, 3, 5, 10;
- **MELO's MovieLens mode** (``protocol = "melo"``): rating regression of new users (MSE on
  rating / 5; RMSE, MAE in stars) with SASRec;
- **Amazon ratings mode on MARS**: MARS's explicit ratings file (user, video, rating, time) as
  the Amazon-style ratings log, next-item ranking with the meta settings of MELO's Amazon mode
  (support windows of at least 2 events, sequences cut to 30, one query item per task).
  ``num_samples=25`` (MELO samples 25 items to rank against) is not reproduced: warmrec ranks
  the full catalogue. This recipe does not run the rating regression on MARS; the study does
  (its 1-10 scale is read from the data, ``melo_rating_scale``): see
  ``benchmarks/results/coldstart-melo-mars-sasrec.md``.

Inner learning rates are chosen for fine-tuning on meta-valid users and shared; meta-epochs are
chosen on meta-valid users; nothing is chosen on meta-test users.

What differs from MELO besides the data: the full run's sizes (``FULL_NOTE``: small backbones,
few epochs, one seed, 60 meta-test users), chosen so that it finishes in about half an hour on
a shared 2-core CPU machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from warmrec.experiments.recipes.base import CallStep, Claim, DataInput, Recipe, Step

BACKBONES = ("sasrec", "gru4rec", "narm", "bert4rec")
METHODS = ("pop", "global", "finetune", "maml", "fomaml", "mamlpp_loss")
MELO_METHODS = ("global", "finetune", "fomaml", "mamlpp_loss")
AMAZON_META = {"min_window": 2, "max_seq_len": 30, "n_query": 1}
"""MELO's Amazon mode: ``min_sub_window_size=2``, ``max_seq_len=30``, ``num_query_set=1``."""

TINY = {
    "sasrec": {"d": 16, "n_layers": 1, "n_heads": 1, "ffn_dim": 32, "max_len": 20},
    "gru4rec": {"hidden_size": 16, "max_len": 20},
    "narm": {"embedding_dim": 16, "hidden_size": 16, "max_len": 20},
    "bert4rec": {"d": 16, "n_layers": 1, "n_heads": 1, "ffn_dim": 32, "max_len": 20},
}

FULL_NETS = {
    "sasrec": {"d": 32, "n_layers": 1, "n_heads": 1, "ffn_dim": 64, "max_len": 30},
    "gru4rec": {"hidden_size": 32, "max_len": 30},
    "narm": {"embedding_dim": 32, "hidden_size": 32, "max_len": 30},
    "bert4rec": {"d": 32, "n_layers": 1, "n_heads": 1, "ffn_dim": 64, "max_len": 30},
}
"""The full run's backbones: one block of width 32, sequences cut to 30 (MELO's
``max_seq_len``); MELO used its backbones' paper sizes (two blocks of 64 and more)."""

FULL_SETTINGS: dict[str, Any] = {
    "shots": [1, 3, 5],
    "lr_grid": [0.01, 0.05],
    "max_test_users": 60,
    "max_valid_users": 20,
    "pretrain": {"epochs": 5, "patience": 2},
    "meta": {"meta_epochs": 2, "first_order_epochs": 1},  # a learned loss needs second order
}
FULL_SEEDS = [0]
FULL_NOTE = (
    "The full run is sized for a shared 2-core CPU machine (about half an hour under load): "
    "backbones of one block of width 32 with sequences of 30, pre-training for at most 5 "
    "epochs, 2 meta-epochs (the first first-order), inner learning rates from {0.01, 0.05}, k = 1, 3, 5 (MARS: 1, 2, "
    "3, 5), 60 meta-test and 20 meta-valid users, one seed (intervals are the paired "
    "bootstrap over users, not over seeds). MELO trained larger backbones for longer on a GPU "
    "over every held-out user; benchmarks/results/coldstart.md has 3-seed runs of SASRec and "
    "GRU4Rec at larger settings. The ranking between methods, not the absolute figures, is "
    "what carries over."
)


class MeloColdStart(Recipe):
    name = "melo-coldstart"
    title = "MAML with a learned adaptive loss for new users (MELO)"
    description = (
        "Meta-learning (MAML, FO-MAML, MAML++ with a learned adaptive loss) over four "
        "sequential backbones for users with few interactions: ranking on ml-100k, MELO's "
        "rating mode, and MARS's explicit ratings as the Amazon-style mode."
    )
    source = (
        "MELO: MAML with a learned adaptive loss (and FO-MAML) over BERT4Rec, SASRec, NARM and "
        "GRU4Rec for users with few interactions; a MovieLens mode and an Amazon ratings mode "
        "(min_sub_window_size=2, max_seq_len=30, num_samples=25, num_query_set=1). No figure "
        "could be retrieved: this recipe's table is the reference."
    )
    inputs = (
        DataInput("movielens", "ml-100k", "MovieLens log with ratings (ml-100k)"),
        DataInput(
            "ratings",
            "mars/explicit_ratings_en.csv",
            "Amazon-style ratings file (MARS's explicit ratings here)",
        ),
    )

    def runs(self, quick: bool, data_paths: Mapping[str, str]) -> list[Step]:
        ml = {"path": data_paths["movielens"]}
        ratings = {"path": data_paths["ratings"], "columns": {"timestamp": "created_at"}}
        seeds = [0] if quick else FULL_SEEDS
        backbones = ("sasrec",) if quick else BACKBONES
        if quick:
            methods = ("pop", "global", "finetune", "fomaml", "mamlpp_loss")
            settings: dict[str, Any] = {
                "shots": [1, 3],
                "lr_grid": [0.01],
                "max_test_users": 40,
                "max_valid_users": 20,
                "pretrain": {"epochs": 1},
                "meta": {
                    "meta_epochs": 1,
                    "first_order_epochs": 0,
                    "inner_steps": 1,
                    "train_shots": [2, 3],
                },  # fmt: skip
            }
        else:
            # fitted to a shared 2-core machine (FULL_NOTE): MELO's own runs are GPU-sized
            methods = METHODS
            settings = dict(FULL_SETTINGS)
        steps: list[Step] = []
        for b in backbones:
            steps.append(
                CallStep(
                    f"ranking-{b}",
                    kind="study",
                    about=f"cold-start users of ml-100k, {b}: global, fine-tuning, meta-methods",
                    call="warmrec.experiments.recipes.steps:coldstart_study",
                    params={
                        "data": ml,
                        "model": b,
                        "model_config": TINY[b] if quick else FULL_NETS[b],
                        "methods": list(methods),
                        "seeds": seeds,
                        "settings": settings,
                    },
                )
            )
        melo = {
            **settings,
            "protocol": "melo",
            "melo_min_item": 50,
            "melo_min_user": 20,
            "melo_test_users": 100 if quick else 200,
            "melo_max_len": 30,
        }
        if quick:
            melo["rating_trainer"] = {"epochs": 1}
        steps.append(
            CallStep(
                "melo-ratings-sasrec",
                kind="study",
                about="MELO's MovieLens mode: new users' ratings (RMSE, MAE), SASRec",
                call="warmrec.experiments.recipes.steps:coldstart_study",
                params={
                    "data": ml,
                    "model": "sasrec",
                    "model_config": TINY["sasrec"] if quick else FULL_NETS["sasrec"],
                    "methods": list(MELO_METHODS),
                    "seeds": seeds,
                    "settings": melo,
                },
            )
        )
        amazon = {
            **settings,
            "shots": [1, 2, 3] if quick else [1, 2, 3, 5],
            "meta": {**settings["meta"], **AMAZON_META},
        }
        amazon.pop("max_test_users", None)
        amazon.pop("max_valid_users", None)
        steps.append(
            CallStep(
                "amazon-mode-sasrec",
                kind="study",
                about="MARS explicit ratings as the Amazon ratings mode (ranking), SASRec",
                call="warmrec.experiments.recipes.steps:coldstart_study",
                params={
                    "data": ratings,
                    "model": "sasrec",
                    "model_config": TINY["sasrec"] if quick else FULL_NETS["sasrec"],
                    "methods": list(methods),
                    "seeds": seeds,
                    "settings": amazon,
                },
            )
        )
        return steps

    @staticmethod
    def _value(records: Mapping[str, Any], step: str, method: str, col: str) -> Any:
        rows = (records.get(step) or {}).get("summary") or []
        vals = [r.get(col) for r in rows if r.get("method") == method]
        return vals[0] if vals else None

    def claims(self, records: Mapping[str, Any]) -> list[Claim]:
        out = []
        for step in [k for k in records if k.startswith("ranking-")]:
            for method in ("finetune", "mamlpp_loss"):
                out.append(
                    Claim(
                        f"{step}: NDCG@10 of {method}, k = 3 revealed events",
                        "none retrievable",
                        None,
                        "cold-start users, full ranking",
                        value=self._shot(records, step, method, 3, "ndcg@10"),
                    )
                )
        out.append(
            Claim(
                "MovieLens mode: RMSE of mamlpp_loss, k = 3 revealed ratings",
                "none retrievable",
                None,
                "MELO's rating regression (RMSE in stars)",
                value=self._shot(records, "melo-ratings-sasrec", "mamlpp_loss", 3, "rmse"),
            )
        )
        return out

    @staticmethod
    def _shot(records: Mapping[str, Any], step: str, method: str, k: int, col: str) -> Any:
        for r in (records.get(step) or {}).get("summary") or []:
            if r.get("method") == method and int(r.get("shots", r.get("k", -1))) == k:
                return r.get(col)
        return None

    def protocols(self) -> list[str]:
        return [
            "Cold-start users: users (not events) are split into meta-train, meta-valid and "
            "meta-test; a held-out user reveals the first k events; the model (adapted on "
            "them, for the adapting methods) ranks event k + 1 over the full catalogue. "
            "Inner learning rates and meta-epochs are chosen on meta-valid users.",
            "MELO's MovieLens mode: items with >= 50 ratings, users with >= 20; each user's "
            "first 30 ratings; predict the ratings of a new user's later events after k "
            "revealed (item, rating) pairs; RMSE and MAE in stars.",
            "Amazon ratings mode: MARS's explicit ratings as the ratings log; support windows "
            "of at least 2 events, sequences cut to 30, one query item per meta-training task; "
            "ranking over the full catalogue instead of MELO's 25 sampled items.",
            FULL_NOTE,
        ]

    def report_blocks(self, records: Mapping[str, Any], out: Any) -> list[Any]:
        import polars as pl

        from warmrec.reports.report import Heading, Image, Table

        blocks: list[Any] = []
        for step, rec in records.items():
            if not isinstance(rec, Mapping) or "summary" not in rec:
                continue
            df = pl.DataFrame(rec["summary"], infer_schema_length=None)
            keep = [
                c
                for c in df.columns
                if not c.endswith(("_lo", "_hi")) and c not in ("diff_lo", "diff_hi")
            ]
            blocks += [Heading(step, level=3), Table(df.select(keep))]
            for p in rec.get("plots", []):
                blocks.append(Image(p, alt=step, caption=f"{step}: {p.rsplit('/', 1)[-1]}"))
        return [Heading("The studies"), *blocks] if blocks else []


RECIPE = MeloColdStart()

"""``warmrec auto``'s plan: the log's description and the round-0 trials it steers."""

from __future__ import annotations

from tests.conftest import cyclic_log
from tests.experiments.auto.conftest import prepare_log
from warmrec.experiments.auto import (
    describe_log,
    find_spaces,
    plan_portfolio,
)
from warmrec.experiments.spec import (
    prepare_run,
    spec_from_config,
)


def test_the_log_steers_the_plan(logs):
    spaces = find_spaces()
    basket = describe_log(prepare_log(logs["baskets"]))
    assert basket.basket and basket.tied_time_share > 0.7 and basket.events_per_time > 4
    plan = plan_portfolio(basket, spaces=spaces)
    origins = {t.id: t.origin for t in plan.trials}
    assert "defaults, n_last=5" in origins.values()  # AR queried by a whole basket
    assert any("basket log" in n for n in plan.notes)
    assert plan.exclude_seen["vsknn"] is None  # some targets repeat: decided on validation
    assert "ssept" in plan.families and "bst" not in plan.families  # users, no features

    rep = describe_log(prepare_log(logs["repeats"]))
    assert not rep.basket and rep.valid_target_seen_share > 0.5
    plan = plan_portfolio(rep, spaces=spaces)
    assert "sessionpop" in plan.families
    assert any("repeat-heavy" in n for n in plan.notes)
    windows = [t.model.get("max_len") for t in plan.trials if t.family == "sessionpop"]
    assert windows == [None, 3, 10]  # the defaults (50), then last-N

    # no repeats at all: seen items excluded everywhere, SessionPop left out
    prep = prepare_run(spec_from_config({}), data=cyclic_log(n_sessions=150, length=6))
    clean = describe_log(prep)
    assert clean.valid_target_seen_share == 0.0 and not clean.has_user_ids
    plan = plan_portfolio(clean, ["pop", "sessionpop", "ssept", "sr"], spaces=spaces)
    assert plan.families == ["pop", "sr"]
    assert plan.exclude_seen == {"pop": True, "sr": True}
    assert set(plan.left_out) == {"sessionpop", "ssept"}


def test_a_large_catalogue_gets_sampled_losses_only(logs):
    """nowplaying-1m's 121K items: no full-softmax SASRec variant, GRU4Rec's defaults on BPR-max
    (its full softmax takes most of a 10-minute budget per epoch); 30K items: the full softmax
    is still tried beside SASRec's sampled default."""
    import dataclasses

    spaces = find_spaces()
    base = describe_log(prepare_log(logs["repeats"]))

    def plan(items: int) -> dict[str, list]:
        p = plan_portfolio(dataclasses.replace(base, items=items), spaces=spaces)
        out: dict[str, list] = {}
        for t in p.trials:
            out.setdefault(t.family, []).append(t.model.get("loss"))
        return out

    big = plan(121_206)
    assert "ce" not in big["sasrec"] and big["gru4rec"] == ["bpr-max"]
    mid = plan(30_000)
    assert mid["sasrec"].count("ce") == 1 and mid["gru4rec"] == ["bpr-max"]
    small = plan(369)
    assert "ce" not in small["sasrec"] and small["gru4rec"] == [None]


def test_tfidf_joins_where_the_items_have_text(logs, tmp_path):
    """A log read with an item file of titles gets the TF-IDF content family (its defaults in
    round 0, its built-in space); a log without item text leaves it out with the reason."""
    import polars as pl

    spaces = find_spaces()
    assert "tfidf" in spaces
    plain = plan_portfolio(describe_log(prepare_log(logs["repeats"])), spaces=spaces)
    assert "tfidf" not in plain.families
    assert plain.left_out["tfidf"].startswith("the log has no item text")
    items = tmp_path / "items.csv"
    ids = pl.read_csv(logs["repeats"])["item_id"].unique().sort()
    pl.DataFrame(
        {
            "item_id": ids,
            "title": [f"video number {i}" for i in ids],  # one per item: text, not a category
            "level": ["easy" if i % 2 else "hard" for i in ids],
            "views": [float(i) for i in ids],  # a number: never a category
        }
    ).write_csv(items)
    prep = prepare_run(
        spec_from_config({"data": {"path": str(logs["repeats"]), "items": str(items)}})
    )
    profile = describe_log(prep)
    assert profile.item_text == ["title"]
    assert any("item text: title" in line for line in profile.lines())
    plan = plan_portfolio(profile, spaces=spaces)
    assert "tfidf" in plan.families and "tfidf" not in plan.left_out
    assert [t.origin for t in plan.trials if t.family == "tfidf"] == ["defaults"]
    # BST's defaults name ml-100k's genres; here it is also tried with the log's categories
    assert profile.item_categories == ["level"]
    bst = [t for t in plan.trials if t.family == "bst"]
    assert [t.model for t in bst] == [{}, {"item_features": ["level"]}]
    assert any("BST is also tried with them" in n for n in plan.notes)


def test_the_log_profile_reads_no_test_event(logs):
    """The profile steers the plan (variants, max_len, sampled losses): it had been computed
    on the whole log, test events included."""
    prep = prepare_log(logs["repeats"])
    p = describe_log(prep)
    sp = prep.split
    assert p.events == sp.train.height + sp.valid.height < prep.frame.height

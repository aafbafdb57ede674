"""Synthetic generators: determinism, schema, the structure they promise, cross-domain sharing."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from warmrec.data.schema import validate_interactions
from warmrec.data.synthetic import (
    SyntheticConfig,
    generate,
    generate_cross_domain,
    generate_items,
    generate_sessions,
)
from warmrec.errors import ConfigError


def _transitions(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.col("item_id").shift(1).over("session_id").alias("prev")).drop_nulls(
        "prev"
    )


def test_same_seed_same_data_different_seed_different():
    a = generate_sessions(500, 200, 5, seed=3)
    b = generate_sessions(500, 200, 5, seed=3)
    c = generate_sessions(500, 200, 5, seed=4)
    assert a.equals(b)
    assert not a.equals(c)
    ia = generate_items(SyntheticConfig(n_sessions=500, n_items=200, n_topics=5, seed=3))
    assert ia.equals(
        generate_items(SyntheticConfig(n_sessions=500, n_items=200, n_topics=5, seed=3))
    )


def test_schema_sizes_and_lengths():
    cfg = SyntheticConfig(
        n_sessions=4000, n_items=300, n_topics=6, seed=1, mean_length=6.0, max_length=30
    )
    df = generate(cfg)
    assert df.columns == ["user_id", "session_id", "item_id", "timestamp"]
    assert df.schema["item_id"] == pl.Int64 and df.schema["timestamp"] == pl.Float64
    validate_interactions(df)
    assert df["session_id"].n_unique() == 4000
    assert df["session_id"].to_list() == sorted(df["session_id"].to_list())
    assert df["item_id"].min() >= 1 and df["item_id"].max() <= 300
    lens = df.group_by("session_id").len()["len"]
    assert lens.min() >= 2 and lens.max() <= 30
    assert lens.mean() == pytest.approx(6.0, rel=0.05)
    # one user per session; timestamps whole seconds and non-decreasing within a session
    assert (df.group_by("session_id").agg(pl.col("user_id").n_unique())["user_id"] == 1).all()
    assert (df["timestamp"] == df["timestamp"].round(0)).all()
    gaps = df.select(pl.col("timestamp").diff().over("session_id"))["timestamp"].drop_nulls()
    assert (gaps >= 1).all()


def test_gaps_within_and_between_sessions():
    df = generate(SyntheticConfig(n_sessions=3000, seed=2))
    within = df.select(pl.col("timestamp").diff().over("session_id"))["timestamp"].drop_nulls()
    assert within.max() <= 1200
    starts = df.group_by("session_id", maintain_order=True).agg(
        pl.col("user_id").first(),
        pl.col("timestamp").first().alias("t0"),
        pl.col("timestamp").last().alias("t1"),
    )
    gaps = starts.with_columns((pl.col("t0") - pl.col("t1").shift(1)).over("user_id").alias("g"))[
        "g"
    ].drop_nulls()
    assert gaps.min() >= 7200 and gaps.max() <= 30 * 86400


def test_next_item_is_predictable_from_successors():
    cfg = SyntheticConfig(n_sessions=3000, seed=6, successor_prob=0.8)
    df, items = generate(cfg), generate_items(cfg)
    assert items.height == cfg.n_items and items["item_id"].n_unique() == cfg.n_items
    t = _transitions(df).join(
        items.select(pl.col("item_id").alias("prev"), "successors"), on="prev"
    )
    hit = t.select(pl.col("successors").list.contains(pl.col("item_id")).mean()).item()
    assert 0.78 <= hit <= 0.9
    # with no sequential structure the successors are hit about as often as chance
    flat = SyntheticConfig(n_sessions=3000, seed=6, successor_prob=0.0)
    t0 = _transitions(generate(flat)).join(
        generate_items(flat).select(pl.col("item_id").alias("prev"), "successors"), on="prev"
    )
    assert t0.select(pl.col("successors").list.contains(pl.col("item_id")).mean()).item() < 0.2


def test_popularity_is_skewed_within_topics():
    cfg = SyntheticConfig(n_sessions=5000, seed=8, successor_prob=0.0, zipf_exponent=1.2)
    df, items = generate(cfg), generate_items(cfg)
    by_rank = (
        df.join(items.select("item_id", "rank"), on="item_id")
        .group_by("rank")
        .len()
        .sort("rank")["len"]
        .to_numpy()
    )
    assert by_rank[0] > 3 * by_rank[9] > 0
    assert by_rank[0] == by_rank.max()


def test_titles_use_topic_vocabularies():
    items = generate_items(SyntheticConfig(seed=0, n_items=200, n_topics=4))
    words = items.select("topic", pl.col("title").str.split(" ").alias("w")).explode("w")
    per_topic = words.group_by("w").agg(pl.col("topic").n_unique())
    assert (per_topic["topic"] == 1).all()  # each word belongs to one topic
    assert (items["title"].str.split(" ").list.len() == 3).all()
    assert (items["title"].str.split(" ").list.unique().list.len() == 3).all()


def test_cross_domain_shares_dynamics_not_items():
    cd = generate_cross_domain(3000, 400, 600, 120, seed=5, n_topics=6)
    s_items, t_items = cd.source_items, cd.target_items
    assert s_items["item_id"].str.starts_with("s").all()
    assert t_items["item_id"].str.starts_with("t").all()
    assert set(cd.source["item_id"].unique()) <= set(s_items["item_id"])
    assert set(cd.target["item_id"].unique()) <= set(t_items["item_id"])
    assert s_items.height == 600 and t_items.height == 120
    assert not set(cd.source["session_id"]) & set(cd.target["session_id"])
    assert not set(cd.source["user_id"]) & set(cd.target["user_id"])
    np.testing.assert_allclose(cd.transitions.sum(axis=1), 1.0)
    assert cd.transitions.shape == (6, 6)

    # the successor rule is shared: successor j of an item of topic t lies in the same topic
    # in both domains
    def succ_topics(items: pl.DataFrame) -> pl.DataFrame:
        topic = dict(zip(items["item_id"], items["topic"]))
        ex = (
            items.select("topic", "successors")
            .with_columns(pl.int_ranges(pl.col("successors").list.len()).alias("j"))
            .explode(["successors", "j"])
        )
        ex = ex.with_columns(pl.col("successors").replace_strict(topic).alias("st"))
        return ex.group_by("topic", "j").agg(pl.col("st").unique()).sort("topic", "j")

    a, b = succ_topics(s_items), succ_topics(t_items)
    assert (a["st"].list.len() == 1).all() and (b["st"].list.len() == 1).all()
    assert a["st"].to_list() == b["st"].to_list()

    # titles: the same topic draws on the same vocabulary in both domains
    def vocab(items: pl.DataFrame) -> dict[int, set]:
        w = items.select("topic", pl.col("title").str.split(" ").alias("w")).explode("w")
        return {t: set(g["w"]) for (t,), g in w.group_by("topic")}

    vs, vt = vocab(s_items), vocab(t_items)
    for t in vs:
        assert vt[t] & vs[t]
        assert not any(vt[t] & vs[u] for u in vs if u != t)

    # the target follows its own successor table as strongly as the source
    tr = _transitions(cd.target).join(
        t_items.select(pl.col("item_id").alias("prev"), "successors"), on="prev"
    )
    assert tr.select(pl.col("successors").list.contains(pl.col("item_id")).mean()).item() > 0.75

    again = generate_cross_domain(3000, 400, 600, 120, seed=5, n_topics=6)
    assert again.source.equals(cd.source) and again.target.equals(cd.target)
    assert again.target_items.equals(cd.target_items)
    other = generate_cross_domain(3000, 400, 600, 120, seed=6, n_topics=6)
    assert not other.target.equals(cd.target)


def test_yoochoose_preset_scaled_down():
    cfg = SyntheticConfig.yoochoose(
        seed=0, n_sessions=200_000, n_users=60_000, n_items=5000, n_topics=50
    )
    df = generate(cfg)
    lens = df.group_by("session_id").len()["len"]
    assert lens.min() == 1
    assert lens.mean() == pytest.approx(3.568, rel=0.03)
    span = df["timestamp"].max() - df["timestamp"].min()
    assert 170 * 86400 < span < 190 * 86400
    small = generate_sessions(large=True, scale=0.002, seed=1, n_items=2000, n_topics=20)
    assert small["session_id"].n_unique() == round(9_249_729 * 0.002)
    assert small["user_id"].n_unique() <= round(9_249_729 * 0.002) // 3
    with pytest.raises(ConfigError):
        SyntheticConfig.yoochoose(scale=0)


@pytest.mark.slow
def test_yoochoose_size():
    df = generate_sessions(large=True, seed=0)
    assert df["session_id"].n_unique() == 9_249_729
    assert 32_000_000 < df.height < 34_000_000
    assert df["item_id"].n_unique() > 50_000


def test_config_is_checked():
    with pytest.raises(ConfigError):
        SyntheticConfig(n_items=3, n_topics=5)
    with pytest.raises(ConfigError):
        SyntheticConfig(mean_length=1.0, min_length=2)
    with pytest.raises(TypeError):
        generate_sessions(10, 10, 2, seed=0, no_such_knob=1)


# -- logs for ``warmrec auto``: baskets and repeats ---------------------------------------------
def test_basket_log_has_tied_baskets_of_distinct_items_in_no_fixed_order():
    from warmrec.data.stats import repeats_and_ties
    from warmrec.data.synthetic import generate_baskets

    df = generate_baskets(n_users=120, n_items=400, n_groups=20, seed=5)
    assert df.equals(generate_baskets(n_users=120, n_items=400, n_groups=20, seed=5))
    assert not df.equals(generate_baskets(n_users=120, n_items=400, n_groups=20, seed=6))
    validate_interactions(df)
    assert df.columns == ["user_id", "item_id", "timestamp"]
    baskets = df.group_by("user_id", "timestamp").agg(
        pl.len().alias("n"), pl.col("item_id").n_unique().alias("distinct")
    )
    assert (baskets["n"] == baskets["distinct"]).all()  # no item twice in a basket
    assert baskets["n"].mean() > 3.0 and baskets["n"].min() >= 1
    stats = repeats_and_ties(df)
    assert stats["tied_time_share"] > 0.7 and stats["events_per_time"] > 3.5
    # no order inside a basket: the first-written item is not the smallest id more than by chance
    first = df.group_by("user_id", "timestamp", maintain_order=True).agg(
        pl.col("item_id").first().alias("first"), pl.col("item_id").min().alias("min")
    )
    assert 0.05 < (first["first"] == first["min"]).mean() < 0.5
    with pytest.raises(ConfigError, match="basket_size"):
        generate_baskets(basket_size=1)


def test_repeat_log_comes_back_to_recent_items_without_ties():
    from warmrec.data.stats import repeats_and_ties
    from warmrec.data.synthetic import generate_repeats

    df = generate_repeats(n_users=80, n_items=300, seed=2, repeat_prob=0.75, recent=8)
    assert df.equals(generate_repeats(n_users=80, n_items=300, seed=2, repeat_prob=0.75, recent=8))
    validate_interactions(df)
    stats = repeats_and_ties(df)
    assert stats["tied_time_share"] == 0.0 and stats["events_per_time"] == 1.0
    assert stats["repeat_share"] > 0.6  # 0.75 repeats, fewer for the first events
    # repeats come back to one of the last 8 distinct items (a new pick may hit an older one)
    near = far = 0
    for _, g in df.group_by("user_id"):
        items = g.sort("timestamp")["item_id"].to_list()
        for i in range(1, len(items)):
            if items[i] in items[:i]:
                recent = list(dict.fromkeys(reversed(items[:i])))[:8]
                near += items[i] in recent
                far += items[i] not in recent
    assert near / (near + far) > 0.95
    with pytest.raises(ConfigError, match="length"):
        generate_repeats(length=2)

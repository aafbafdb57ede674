"""Deterministic synthetic session logs with a known, learnable structure.

The generative story (every knob is a field of :class:`SyntheticConfig`):

1. **Latent dynamics** (shared by every domain drawn from the same seed): ``n_topics`` topics; a
   topic-transition matrix (stay in the topic with ``topic_stay``, otherwise move to one of
   ``topic_neighbours`` other topics with Dirichlet weights); a vocabulary of pseudo-words per
   topic; and a *successor rule* written in latent coordinates: successor ``j`` of the item at
   popularity quantile ``q`` of topic ``t`` is the item at quantile ``(q + shift[t, j]) mod 1``
   of topic ``succ_topic[t, j]``.
2. **A domain** instantiates the latent space with its own items: ``n_items`` items spread evenly
   over the topics, ranked within each topic (rank 0 is the most popular; Zipf popularity
   ``1 / (rank + 1) ** zipf_exponent``). Each item gets ``n_successors`` successors by the rule
   above and a title of ``title_words`` consecutive words of its topic's vocabulary, starting
   near its quantile's position in that vocabulary (so titles are similar for items in similar
   latent positions, across domains too). Raw ids are a seeded permutation: ints ``1..n_items``
   for a single domain, strings ``"s17"`` / ``"t4"`` for the source / target of
   :func:`generate_cross_domain`.
3. **Sessions**: a user (``n_users``) has a favourite topic; a session starts there with
   ``user_topic_prob`` (else in a topic drawn by topic popularity) at a Zipf-popular item. Each
   next item is one of the current item's successors with ``successor_prob`` (successor ``j``
   with weight ``successor_decay ** j``), otherwise a popular item of the next topic drawn from
   the transition matrix. Lengths are ``min_length - 1 + Geometric(p)`` with mean
   ``mean_length``, capped at ``max_length``.
4. **Time**: within a session, gaps are log-normal (median ``within_gap_median`` s) clipped to
   ``[1, within_gap_max]``; a user's consecutive sessions are separated by log-normal gaps
   (median ``between_gap_median`` s) clipped to ``[between_gap_min, between_gap_max]``; each
   user's activity is placed uniformly at random inside ``span_days`` from ``start_time`` (a user
   whose activity is longer than that starts at ``start_time`` and runs past the end), so
   sessions are spread evenly over the span. Timestamps are whole seconds. With the defaults
   every within-session gap is below 20 minutes and every between-session gap above 2 hours, so
   sessionising at 30 minutes recovers the sessions exactly.

Rows are sorted by user, then time; session ids are ``0..n_sessions-1`` in that order, which is
exactly the numbering :func:`~warmrec.data.sessionize.sessionize` gives a user log.
The same config (seed included) gives identical data. Everything is vectorised NumPy (one loop
over positions within a session, never over events): :meth:`SyntheticConfig.yoochoose` -- a
YOOCHOOSE-sized log of ~33M events, 9.25M sessions and ~53K items -- generates in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl

from warmrec.data.schema import ITEM, SESSION, TIME, USER
from warmrec.errors import ConfigError

_CONSONANTS = list("bdfghklmnprstvz") + ["ch", "sh", "th", "tr", "br"]
_VOWELS = ["a", "e", "i", "o", "u"]


@dataclass
class SyntheticConfig:
    """Every knob of the generator (see the module docstring for the story).

    Sizes: ``n_sessions``, ``n_items`` (>= ``n_topics``), ``n_topics``, ``n_users`` (None:
    ``max(1, n_sessions // 4)``), ``seed``.
    Popularity: ``zipf_exponent`` (within-topic Zipf skew; 0 = uniform), ``topic_skew`` (Zipf
    skew of topic popularity for session starts).
    Topic dynamics: ``topic_stay`` (probability a topic move stays in the topic),
    ``topic_neighbours`` (topics reachable from a topic), ``topic_concentration`` (Dirichlet
    concentration of the neighbour weights; small = peaked).
    Sequential structure: ``n_successors`` (likely successors per item), ``successor_prob``
    (probability the next item is one of them), ``successor_decay`` (successor ``j`` has weight
    ``decay ** j``).
    Users: ``user_topic_prob`` (a session starts in its user's favourite topic).
    Lengths: ``mean_length``, ``min_length``, ``max_length``.
    Time (seconds): ``start_time``, ``span_days`` (days the log covers),
    ``within_gap_median``, ``within_gap_sigma`` (log-normal sigma), ``within_gap_max``,
    ``between_gap_median``, ``between_gap_sigma``, ``between_gap_min``, ``between_gap_max``.
    Titles: ``topic_vocab_size`` (words per topic), ``title_words`` (words per title),
    ``title_spread`` (std, in vocabulary positions, of where a title's run of consecutive
    topic words starts around the item's quantile).
    """

    n_sessions: int = 1000
    n_items: int = 500
    n_topics: int = 10
    seed: int = 0
    n_users: int | None = None
    zipf_exponent: float = 1.0
    topic_skew: float = 0.5
    topic_stay: float = 0.7
    topic_neighbours: int = 3
    topic_concentration: float = 1.0
    n_successors: int = 3
    successor_prob: float = 0.8
    successor_decay: float = 0.5
    user_topic_prob: float = 0.7
    mean_length: float = 5.0
    min_length: int = 2
    max_length: int = 50
    start_time: float = 1_400_000_000.0
    span_days: float = 90.0
    within_gap_median: float = 45.0
    within_gap_sigma: float = 1.0
    within_gap_max: float = 1200.0
    between_gap_median: float = 2 * 86400.0
    between_gap_sigma: float = 1.5
    between_gap_min: float = 7200.0
    between_gap_max: float = 30 * 86400.0
    topic_vocab_size: int = 24
    title_words: int = 3
    title_spread: float = 1.5

    def __post_init__(self) -> None:
        checks = [
            (self.n_sessions >= 1, "n_sessions >= 1"),
            (self.n_topics >= 1, "n_topics >= 1"),
            (self.n_items >= self.n_topics, "n_items >= n_topics"),
            (self.n_users is None or self.n_users >= 1, "n_users >= 1"),
            (0 <= self.topic_stay <= 1, "0 <= topic_stay <= 1"),
            (0 <= self.successor_prob <= 1, "0 <= successor_prob <= 1"),
            (0 <= self.user_topic_prob <= 1, "0 <= user_topic_prob <= 1"),
            (self.n_successors >= 1, "n_successors >= 1"),
            (self.topic_neighbours >= 0, "topic_neighbours >= 0"),
            (1 <= self.min_length <= self.max_length, "1 <= min_length <= max_length"),
            (self.min_length <= self.mean_length, "mean_length >= min_length"),
            (self.within_gap_max >= 1, "within_gap_max >= 1"),
            (self.between_gap_max >= self.between_gap_min, "between_gap_max >= between_gap_min"),
            (
                1 <= self.title_words <= self.topic_vocab_size,
                "1 <= title_words <= topic_vocab_size",
            ),
        ]
        for ok, what in checks:
            if not ok:
                raise ConfigError(f"SyntheticConfig: expected {what}")

    @property
    def users(self) -> int:
        return self.n_users if self.n_users is not None else max(1, self.n_sessions // 4)

    @classmethod
    def yoochoose(cls, seed: int = 0, scale: float = 1.0, **kw) -> SyntheticConfig:
        """A YOOCHOOSE-clicks-sized log: 9,249,729 sessions, ~33.0M events, 52,739 items.

        Sessions may have one event (as in the raw YOOCHOOSE log) and there are no real users
        (``n_users`` = sessions / 3 only spaces the sessions in time); 182 days of data.
        ``scale`` multiplies the number of sessions (the catalogue stays 52,739 items, like
        GRU4Rec's 1/64 and 1/4 subsets of the same log); ``kw`` overrides any field.
        """
        if scale <= 0:
            raise ConfigError(f"SyntheticConfig.yoochoose: scale must be > 0, found {scale}")
        base = dict(
            n_sessions=max(1, round(9_249_729 * scale)),
            n_items=52_739,
            n_topics=500,
            seed=seed,
            n_users=max(1, round(9_249_729 * scale) // 3),
            mean_length=3.568,
            min_length=1,
            max_length=200,
            span_days=182.0,
        )
        if "n_sessions" in kw and "n_users" not in kw:
            base["n_users"] = max(1, kw["n_sessions"] // 3)
        base.update(kw)
        return cls(**base)


@dataclass
class CrossDomain:
    """Source and target logs drawn from the same latent dynamics, and their item tables.

    Item tables have ``item_id``, ``topic``, ``rank`` (0 = most popular in its topic),
    ``quantile`` (latent position in the topic), ``title`` and ``successors`` (list of item ids).
    Source item ids are ``"s1".."sN"``, target ``"t1".."tM"`` (strings, never overlapping); user
    and session ids are integers, the target's offset past the source's so that the two logs
    can be concatenated. ``transitions`` is the shared topic-transition matrix.
    """

    source: pl.DataFrame
    target: pl.DataFrame
    source_items: pl.DataFrame
    target_items: pl.DataFrame
    transitions: np.ndarray | None = field(default=None, repr=False)


# ---------------------------------------------------------------------------------------------
# latent dynamics and domains


@dataclass
class _Latent:
    transitions: np.ndarray  # [T, T] row-stochastic topic-transition matrix
    neighbours: np.ndarray  # [T, m] the other topics a topic moves to
    neigh_cum: np.ndarray  # [T, m] cumulative weights over those (last = 1)
    topic_pop: np.ndarray  # [T]
    succ_topic: np.ndarray  # [T, k]
    succ_shift: np.ndarray  # [T, k] in [0, 1)
    vocab: np.ndarray  # [T, V] pseudo-words


def _pseudo_words(n: int, rng: np.random.Generator) -> np.ndarray:
    syl = np.array([c + v for c in _CONSONANTS for v in _VOWELS])
    n_syl = len(syl)
    n3 = n_syl**3
    if n > n3:
        raise ConfigError(f"too many topic words requested ({n}); at most {n3}")
    codes = rng.choice(n3, size=n, replace=False)
    a, b, c = codes // (n_syl * n_syl), (codes // n_syl) % n_syl, codes % n_syl
    return np.char.add(np.char.add(syl[a], syl[b]), syl[c])


def _latent(cfg: SyntheticConfig, rng: np.random.Generator) -> _Latent:
    t = cfg.n_topics
    m = min(cfg.topic_neighbours, t - 1)
    trans = np.zeros((t, t))
    diag = np.arange(t)
    if m > 0:
        # each topic reaches m other topics (a random choice per row) with Dirichlet weights
        neighbours = np.argsort(rng.random((t, t)) + np.eye(t) * 2.0, axis=1)[:, :m]
        w = rng.dirichlet(np.full(m, cfg.topic_concentration), size=t)
        np.put_along_axis(trans, neighbours, w * (1.0 - cfg.topic_stay), axis=1)
        trans[diag, diag] = cfg.topic_stay
        neigh_cum = np.cumsum(w, axis=1)
        neigh_cum[:, -1] = 1.0
    else:
        neighbours = np.zeros((t, 0), dtype=np.int64)
        neigh_cum = np.zeros((t, 0))
        trans[diag, diag] = 1.0
    cum = np.cumsum(trans, axis=1)
    cum[:, -1] = 1.0
    topic_pop = 1.0 / np.arange(1, t + 1) ** cfg.topic_skew
    topic_pop = topic_pop[rng.permutation(t)]
    topic_pop /= topic_pop.sum()
    k = cfg.n_successors
    # successor 0 stays in the topic; the others follow the transition matrix
    succ_topic = np.minimum((rng.random((t, k))[:, :, None] > cum[:, None, :]).sum(axis=2), t - 1)
    succ_topic[:, 0] = diag
    succ_shift = rng.random((t, k))
    vocab = _pseudo_words(t * cfg.topic_vocab_size, rng).reshape(t, cfg.topic_vocab_size)
    return _Latent(trans, neighbours, neigh_cum, topic_pop, succ_topic, succ_shift, vocab)


@dataclass
class _Domain:
    topic: np.ndarray  # [n] topic of internal item g (topic-major order)
    rank: np.ndarray  # [n] rank within topic
    quantile: np.ndarray  # [n]
    sizes: np.ndarray  # [T] items per topic
    offsets: np.ndarray  # [T + 1] first internal index of each topic
    rank_cdf: dict[int, np.ndarray]  # topic size -> cumulative Zipf probabilities of the ranks
    successors: np.ndarray  # [n, k] internal indices
    ids: pl.Series  # raw id of internal index g
    titles: pl.Series


def _domain(
    cfg: SyntheticConfig, lat: _Latent, rng: np.random.Generator, prefix: str | None
) -> _Domain:
    t, n = cfg.n_topics, cfg.n_items
    sizes = np.full(t, n // t, dtype=np.int64)
    sizes[: n % t] += 1
    offsets = np.zeros(t + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    topic = np.repeat(np.arange(t), sizes)
    rank = np.arange(n) - offsets[topic]
    quantile = (rank + 0.5) / sizes[topic]
    rank_cdf = {}
    for size in np.unique(sizes).tolist():  # at most two sizes
        cdf = np.cumsum(1.0 / np.arange(1, size + 1) ** cfg.zipf_exponent)
        rank_cdf[size] = cdf / cdf[-1]
    st = lat.succ_topic[topic]  # [n, k]
    q2 = (quantile[:, None] + lat.succ_shift[topic]) % 1.0
    r2 = np.minimum((q2 * sizes[st]).astype(np.int64), sizes[st] - 1)
    succ = offsets[st] + r2
    g = np.arange(n)
    same = succ == g[:, None]
    if same.any():  # never succeed oneself: take the next item of the topic
        nxt = offsets[topic] + (rank + 1) % sizes[topic]
        succ = np.where(same, nxt[:, None], succ)
    perm = rng.permutation(n) + 1
    if prefix is None:
        ids = pl.Series(ITEM, perm, dtype=pl.Int64)
    else:
        ids = pl.Series(ITEM, np.char.add(prefix, perm.astype(str)), dtype=pl.Utf8)
    v = cfg.topic_vocab_size
    nw = cfg.title_words
    first = quantile * (v - nw) + rng.normal(0.0, cfg.title_spread, n)
    first = np.clip(np.rint(first), 0, v - nw).astype(np.int64)
    words = lat.vocab[topic[:, None], first[:, None] + np.arange(nw)]  # [n, L] distinct words
    titles = pl.DataFrame({f"w{j}": words[:, j] for j in range(words.shape[1])}).select(
        pl.concat_str(pl.all(), separator=" ").alias("title")
    )["title"]
    return _Domain(topic, rank, quantile, sizes, offsets, rank_cdf, succ, ids, titles)


def _sample_popular(dom: _Domain, topics: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A Zipf-popular item of each given topic (internal indices)."""
    u = rng.random(len(topics))
    if len(dom.rank_cdf) == 1:
        (cdf,) = dom.rank_cdf.values()
        rank = np.searchsorted(cdf, u, side="right")
    else:
        size = dom.sizes[topics]
        rank = np.empty(len(topics), dtype=np.int64)
        for sz, cdf in dom.rank_cdf.items():
            m = size == sz
            rank[m] = np.searchsorted(cdf, u[m], side="right")
    return dom.offsets[topics] + np.minimum(rank, dom.sizes[topics] - 1)


def _next_topic(
    lat: _Latent, topics: np.ndarray, stay: float, rng: np.random.Generator
) -> np.ndarray:
    """One step of the topic-transition matrix from each given topic."""
    if lat.neighbours.shape[1] == 0:
        return topics
    moves = rng.random(len(topics)) >= stay
    idx = np.nonzero(moves)[0]
    t = topics[idx]
    j = (rng.random(len(idx))[:, None] > lat.neigh_cum[t]).sum(axis=1)
    out = topics.copy()
    out[idx] = lat.neighbours[t, np.minimum(j, lat.neighbours.shape[1] - 1)]
    return out


def _sessions(
    cfg: SyntheticConfig,
    lat: _Latent,
    dom: _Domain,
    rng: np.random.Generator,
    session_offset: int = 0,
    user_offset: int = 0,
) -> pl.DataFrame:
    ns, nu, k = cfg.n_sessions, cfg.users, cfg.n_successors
    # sessions are laid out user after user, each user's sessions in time order
    per_user = np.bincount(rng.integers(0, nu, ns), minlength=nu)
    user = np.repeat(np.arange(nu, dtype=np.int64), per_user)
    # lengths: min_length - 1 + Geometric(p), mean = mean_length
    p = 1.0 / (cfg.mean_length - cfg.min_length + 1.0)
    lengths = np.minimum(cfg.min_length - 1 + rng.geometric(p, ns), cfg.max_length)
    offsets = np.zeros(ns + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    n_ev = int(offsets[-1])
    topic_cum = np.cumsum(lat.topic_pop)
    topic_cum[-1] = 1.0
    fav = np.searchsorted(topic_cum, rng.random(nu), side="right")
    start_topic = np.where(
        rng.random(ns) < cfg.user_topic_prob,
        fav[user],
        np.searchsorted(topic_cum, rng.random(ns), side="right"),
    )
    # items, position by position over the sessions still running (longest first)
    order = np.argsort(
        -lengths.astype(np.int16 if cfg.max_length < 2**15 else np.int64), kind="stable"
    )
    neg_sorted = -lengths[order]
    items = np.empty(n_ev, dtype=np.int64)
    cur = _sample_popular(dom, start_topic[order], rng)
    items[offsets[order]] = cur
    sw = cfg.successor_decay ** np.arange(k)
    sw_cum = np.cumsum(sw / sw.sum())
    for step in range(1, int(-neg_sorted[0]) if ns else 0):
        n_act = int(np.searchsorted(neg_sorted, -step, side="left"))  # sessions longer than step
        cur = cur[:n_act]
        u = rng.random(n_act)  # u < successor_prob: follow successor j (from u rescaled)
        follow = u < cfg.successor_prob
        j = np.searchsorted(sw_cum, u / max(cfg.successor_prob, 1e-300), side="right")
        np.minimum(j, k - 1, out=j)
        jump = np.nonzero(~follow)[0]
        nxt = dom.successors[cur, j]
        new_t = _next_topic(lat, dom.topic[cur[jump]], cfg.topic_stay, rng)
        nxt[jump] = _sample_popular(dom, new_t, rng)
        cur = nxt
        items[offsets[order[:n_act]] + step] = cur
    # time: within-session offsets, then each user's sessions one after another
    sess = np.repeat(np.arange(ns, dtype=np.int64), lengths)
    gaps = rng.standard_normal(n_ev, dtype=np.float32)
    gaps *= np.float32(cfg.within_gap_sigma)
    gaps += np.float32(np.log(cfg.within_gap_median))
    np.exp(gaps, out=gaps)
    np.rint(gaps, out=gaps)
    np.clip(gaps, 1.0, np.floor(cfg.within_gap_max), out=gaps)
    gaps[offsets[:-1]] = 0.0
    within = np.cumsum(gaps, dtype=np.float64)
    del gaps
    within -= within[offsets[:-1]][sess]
    duration = within[offsets[1:] - 1]
    between = np.exp(
        np.log(cfg.between_gap_median) + cfg.between_gap_sigma * rng.standard_normal(ns)
    )
    between = np.rint(np.clip(between, cfg.between_gap_min, cfg.between_gap_max))
    first = np.r_[True, user[1:] != user[:-1]] if ns else np.zeros(0, dtype=bool)
    incr = np.where(first, 0.0, between + np.r_[0.0, duration[:-1]])
    cs = np.cumsum(incr)
    head = np.maximum.accumulate(np.where(first, np.arange(ns), 0))
    rel = cs - cs[head]  # start of each session relative to its user's first
    last = np.nonzero(np.r_[user[1:] != user[:-1], True])[0] if ns else np.zeros(0, np.int64)
    active = np.zeros(nu)
    active[user[last]] = rel[last] + duration[last]  # how long each user is active
    slack = np.maximum(cfg.span_days * 86400.0 - active, 0.0)
    user_start = np.rint(cfg.start_time + rng.random(nu) * slack)
    start = user_start[user] + rel
    within += start[sess]
    return pl.DataFrame(
        {
            USER: user[sess] + user_offset,
            SESSION: sess + session_offset,
            ITEM: dom.ids.gather(items) if dom.ids.dtype == pl.Utf8 else dom.ids.to_numpy()[items],
            TIME: within,
        }
    )


def _items_frame(dom: _Domain) -> pl.DataFrame:
    k = dom.successors.shape[1]
    succ_ids = dom.ids.gather(dom.successors.ravel())
    succ = (
        pl.DataFrame({"s": succ_ids, "row": np.repeat(np.arange(len(dom.topic)), k)})
        .group_by("row", maintain_order=True)
        .agg(pl.col("s"))["s"]
    )
    return pl.DataFrame(
        {
            ITEM: dom.ids,
            "topic": dom.topic.astype(np.int64),
            "rank": dom.rank.astype(np.int64),
            "quantile": dom.quantile,
            "title": dom.titles,
            "successors": succ,
        }
    ).sort(ITEM)


def _streams(seed: int, n: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def generate(cfg: SyntheticConfig) -> pl.DataFrame:
    """The canonical event table (``user_id``, ``session_id``, ``item_id``, ``timestamp``)."""
    r_lat, r_items, r_sess = _streams(cfg.seed, 3)
    lat = _latent(cfg, r_lat)
    return _sessions(cfg, lat, _domain(cfg, lat, r_items, None), r_sess)


def generate_items(cfg: SyntheticConfig) -> pl.DataFrame:
    """The item table behind :func:`generate` with the same config (see :class:`CrossDomain`)."""
    r_lat, r_items, _ = _streams(cfg.seed, 3)
    lat = _latent(cfg, r_lat)
    return _items_frame(_domain(cfg, lat, r_items, None))


def generate_sessions(
    n_sessions: int | None = None,
    n_items: int | None = None,
    n_topics: int | None = None,
    seed: int = 0,
    *,
    large: bool = False,
    scale: float = 1.0,
    **knobs,
) -> pl.DataFrame:
    """A synthetic session log; ``knobs`` are any other :class:`SyntheticConfig` fields.

    Defaults: 1,000 sessions over 500 items in 10 topics, or with ``large=True`` the
    YOOCHOOSE-sized preset :meth:`SyntheticConfig.yoochoose` times ``scale`` (explicit sizes
    still win).
    """
    given = {
        k: v
        for k, v in (("n_sessions", n_sessions), ("n_items", n_items), ("n_topics", n_topics))
        if v is not None
    }
    cfg = (
        SyntheticConfig.yoochoose(seed, scale, **given, **knobs)
        if large
        else SyntheticConfig(seed=seed, **given, **knobs)
    )
    return generate(cfg)


def generate_cross_domain(
    source_sessions: int = 5000,
    target_sessions: int = 500,
    n_source_items: int = 1000,
    n_target_items: int = 200,
    seed: int = 0,
    *,
    n_topics: int = 10,
    target_zipf_exponent: float | None = None,
    **knobs,
) -> CrossDomain:
    """A source and a target domain that share latent dynamics but no items.

    Both domains use the same topics, topic-transition matrix, topic vocabularies and successor
    rule (in topic/quantile coordinates), so sequential patterns learned on the source carry over
    to the target through topics and popularity ranks, and title similarity across domains
    reflects latent position. Items, users and sessions are disjoint (see :class:`CrossDomain`).
    ``knobs`` are shared :class:`SyntheticConfig` fields; ``target_zipf_exponent`` lets the
    target's popularity skew differ.
    """
    base = SyntheticConfig(
        n_sessions=source_sessions, n_items=n_source_items, n_topics=n_topics, seed=seed, **knobs
    )
    tgt = replace(
        base,
        n_sessions=target_sessions,
        n_items=n_target_items,
        n_users=None
        if base.n_users is None
        else max(1, base.n_users * target_sessions // source_sessions),
    )
    if target_zipf_exponent is not None:
        tgt = replace(tgt, zipf_exponent=target_zipf_exponent)
    r_lat, r_si, r_ss, r_ti, r_ts = _streams(seed, 5)
    lat = _latent(base, r_lat)
    s_dom = _domain(base, lat, r_si, "s")
    t_dom = _domain(tgt, lat, r_ti, "t")
    source = _sessions(base, lat, s_dom, r_ss)
    target = _sessions(
        tgt, lat, t_dom, r_ts, session_offset=base.n_sessions, user_offset=base.users
    )
    return CrossDomain(
        source, target, _items_frame(s_dom), _items_frame(t_dom), lat.transitions.copy()
    )


# ---------------------------------------------------------------------------------------------
# logs with a known shape for ``warmrec auto``: baskets, and repeat-heavy histories


def _zipf_cdf(n: int, exponent: float) -> np.ndarray:
    cdf = np.cumsum(1.0 / np.arange(1, n + 1) ** exponent)
    return cdf / cdf[-1]


def generate_baskets(
    n_users: int = 300,
    n_items: int = 1000,
    n_groups: int = 50,
    seed: int = 0,
    *,
    baskets_per_user: float = 5.0,
    basket_size: float = 5.0,
    favourite_groups: int = 2,
    favourite_prob: float = 0.5,
    noise: float = 0.1,
    zipf_exponent: float = 0.5,
    start_time: float = 1_400_000_000.0,
) -> pl.DataFrame:
    """A basket log (``user_id``, ``item_id``, ``timestamp``): baskets of co-bought items whose
    events share one timestamp, in no order inside the basket.

    Items fall into ``n_groups`` groups of co-bought items (Zipf popularity within a group). A
    user has ``favourite_groups`` groups; each basket is drawn from one of them with
    ``favourite_prob`` (else from a group drawn uniformly) and holds ``2 + Poisson(basket_size
    - 2)`` distinct items of that group (capped at the group's size), each replaced by a
    uniformly drawn item with probability ``noise``. Users have ``1 + Poisson(baskets_per_user
    - 1)`` baskets a few days apart; the items of a basket are written in a random order with
    the basket's timestamp. What predicts a held-out item is the rest of its basket (same
    group, not already in the basket): co-occurrence with the whole current basket, seen items
    excluded.
    """
    checks = [
        (n_users >= 1, "n_users >= 1"),
        (n_groups >= 1 and n_items >= 2 * n_groups, "n_items >= 2 * n_groups >= 2"),
        (basket_size >= 2, "basket_size >= 2"),
        (baskets_per_user >= 1, "baskets_per_user >= 1"),
        (1 <= favourite_groups <= n_groups, "1 <= favourite_groups <= n_groups"),
        (0 <= favourite_prob <= 1 and 0 <= noise <= 1, "probabilities in [0, 1]"),
    ]
    for ok, what in checks:
        if not ok:
            raise ConfigError(f"generate_baskets: expected {what}")
    rng = np.random.default_rng(seed)
    group_of = rng.permutation(np.arange(n_items) % n_groups)  # item -> group
    members = [np.nonzero(group_of == g)[0] for g in range(n_groups)]
    cdfs = [_zipf_cdf(len(m), zipf_exponent) for m in members]
    users, items, times = [], [], []
    n_baskets = 1 + rng.poisson(baskets_per_user - 1, n_users)
    for u in range(n_users):
        fav = rng.choice(n_groups, favourite_groups, replace=False)
        t = start_time + rng.random() * 30 * 86400.0
        for _ in range(int(n_baskets[u])):
            g = (
                int(rng.choice(fav))
                if rng.random() < favourite_prob
                else int(rng.integers(n_groups))
            )
            size = min(2 + int(rng.poisson(basket_size - 2)), len(members[g]))
            ranks = set()
            while len(ranks) < size:  # distinct Zipf-popular members of the group
                ranks.add(int(np.searchsorted(cdfs[g], rng.random(), side="right")))
            basket = members[g][np.array(sorted(ranks))]
            swap = rng.random(size) < noise
            if swap.any():
                basket = np.where(swap, rng.integers(0, n_items, size), basket)
                basket = np.unique(basket)
            basket = rng.permutation(basket)  # no order inside a basket
            users.append(np.full(len(basket), u, dtype=np.int64))
            items.append(basket + 1)
            times.append(np.full(len(basket), np.rint(t)))
            t += 86400.0 * (1.0 + rng.exponential(4.0))
    return pl.DataFrame(
        {
            USER: np.concatenate(users),
            ITEM: np.concatenate(items).astype(np.int64),
            TIME: np.concatenate(times),
        }
    )


def generate_repeats(
    n_users: int = 200,
    n_items: int = 400,
    seed: int = 0,
    *,
    length: float = 80.0,
    repeat_prob: float = 0.75,
    recent: int = 8,
    recency_decay: float = 0.85,
    successor_prob: float = 0.3,
    zipf_exponent: float = 1.0,
    start_time: float = 1_400_000_000.0,
) -> pl.DataFrame:
    """A repeat-heavy user log (``user_id``, ``item_id``, ``timestamp``, no ties): most events
    come back to one of the user's few most recent distinct items.

    Each next event, with ``repeat_prob``, repeats one of the user's ``recent`` most recent
    distinct items (the ``j``-th most recent with weight ``recency_decay ** j``); otherwise it
    is a new pick: with ``successor_prob`` the fixed successor of the last item (one random
    item per item), else a Zipf-popular item. Histories have ``5 + Poisson(length - 5)``
    events, a few minutes to hours apart. What predicts the next item is the last few distinct
    items, recency-weighted -- not the counts of the whole history, and never with seen items
    excluded.
    """
    checks = [
        (n_users >= 1 and n_items >= 2, "n_users >= 1 and n_items >= 2"),
        (length >= 5, "length >= 5"),
        (recent >= 1, "recent >= 1"),
        (0 < recency_decay <= 1, "0 < recency_decay <= 1"),
        (0 <= repeat_prob <= 1 and 0 <= successor_prob <= 1, "probabilities in [0, 1]"),
    ]
    for ok, what in checks:
        if not ok:
            raise ConfigError(f"generate_repeats: expected {what}")
    rng = np.random.default_rng(seed)
    successor = (np.arange(n_items) + 1 + rng.integers(0, n_items - 1, n_items)) % n_items
    cdf = _zipf_cdf(n_items, zipf_exponent)
    popular = rng.permutation(n_items)  # rank -> item
    weights = recency_decay ** np.arange(recent)
    lengths = 5 + rng.poisson(length - 5, n_users)
    users, items, times = [], [], []
    for u in range(n_users):
        seq: list[int] = []
        recent_items: list[int] = []  # most recent first, distinct
        for _ in range(int(lengths[u])):
            if recent_items and rng.random() < repeat_prob:
                w = weights[: len(recent_items)]
                item = recent_items[int(rng.choice(len(w), p=w / w.sum()))]
            elif seq and rng.random() < successor_prob:
                item = int(successor[seq[-1]])
            else:
                item = int(popular[np.searchsorted(cdf, rng.random(), side="right")])
            seq.append(item)
            if item in recent_items:
                recent_items.remove(item)
            recent_items.insert(0, item)
            del recent_items[recent:]
        gaps = np.rint(60.0 * np.exp(rng.normal(2.0, 1.0, len(seq)))) + 1.0
        t0 = start_time + rng.random() * 30 * 86400.0
        users.append(np.full(len(seq), u, dtype=np.int64))
        items.append(np.array(seq, dtype=np.int64) + 1)
        times.append(t0 + np.cumsum(gaps))
    return pl.DataFrame(
        {
            USER: np.concatenate(users),
            ITEM: np.concatenate(items),
            TIME: np.concatenate(times),
        }
    )

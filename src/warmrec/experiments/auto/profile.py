"""``warmrec auto``, 1: the log's description (:class:`LogProfile`) that steers the plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LogProfile:
    """What :func:`describe_log` measured (see the package docstring)."""

    events: int
    sequences: int
    items: int
    users: int | None
    sequence_key: str
    length_median: float
    length_p90: float
    length_max: int
    items_seen_once_share: float
    top1pct_share: float
    item_gini: float
    repeat_share: float
    repeat_consecutive_share: float
    tied_time_share: float
    events_per_time: float
    valid_examples: int
    test_examples: int
    valid_target_seen_share: float
    has_user_ids: bool
    item_features: list[str]
    user_features: list[str]
    split: str
    item_text: list[str] = field(default_factory=list)
    """The item feature columns the text models read (:data:`~warmrec.models.settings.TEXT_FIELDS`
    present in the item table)."""
    item_categories: list[str] = field(default_factory=list)
    """Item feature columns of categories or tags (text with few distinct values, or lists):
    the side features BST can embed. Numbers are left out (a count such as MARS's ``nb_views``
    may be collected after the events it would describe)."""
    integer_item_ids: bool = False
    """The raw item ids are integers (their order can be a catalogue's publication order)."""
    catalogue_cold_share: float = 0.0
    """Share of the catalogue's items without a training event (new items: a time split of a
    catalogue that keeps growing)."""
    valid_target_cold_share: float = 0.0
    """Share of validation targets on items without a training event (cold items: an ID-only
    model cannot rank them; a catalogue that keeps growing, split by time)."""

    @property
    def basket(self) -> bool:
        """Events share times often enough to call the log a basket log."""
        return self.tied_time_share >= 0.2 and self.events_per_time >= 1.5

    def lines(self) -> list[str]:
        """The description as Markdown list items."""
        pct = lambda x: f"{100 * x:.1f} %"  # noqa: E731
        users = f", {self.users:,} users" if self.users else ""
        return [
            f"{self.events:,} events before the test part, {self.sequences:,} sequences (by "
            f"{self.sequence_key})" + users,
            f"catalogue: {self.items:,} items; tail: {pct(self.items_seen_once_share)} of items "
            f"occur once; the top 1 % of items hold {pct(self.top1pct_share)} of events "
            f"(Gini {self.item_gini:.2f})"
            + (
                f"; {pct(self.catalogue_cold_share)} have no training event"
                if self.catalogue_cold_share >= 0.005
                else ""
            ),
            f"lengths: median {self.length_median:g}, 90th percentile {self.length_p90:g}, "
            f"max {self.length_max:,}",
            f"repeats: {pct(self.repeat_share)} of events come back to an item of their "
            f"sequence ({pct(self.repeat_consecutive_share)} the item just before); "
            f"{pct(self.valid_target_seen_share)} of validation targets are in their history"
            + (
                f"; {pct(self.valid_target_cold_share)} are items without a training event"
                if self.valid_target_cold_share
                else ""
            ),
            f"tied times: {pct(self.tied_time_share)} of events share the time of the event "
            f"before them ({self.events_per_time:.2f} events per distinct time)"
            + (" -- a basket log" if self.basket else ""),
            f"split: {self.split} ({self.valid_examples:,} validation, "
            f"{self.test_examples:,} test examples); users: "
            + ("yes" if self.has_user_ids else "no")
            + "; features: "
            + (", ".join(self.item_features + self.user_features) or "none")
            + (f"; item text: {', '.join(self.item_text)}" if self.item_text else ""),
        ]


def target_seen_share(eval_set: Any) -> float:
    """Share of an :class:`~warmrec.data.dataset.EvalSet`'s targets already in their history."""
    return float(eval_set.target_in_history().mean()) if len(eval_set) else 0.0


def cold_item_share(train: Any, known: Any = None) -> float:
    """Share of the catalogue (``train``'s vocabulary, or its items where ``known`` is True:
    :func:`known_items`) without an event in ``train``."""
    import numpy as np

    counts = np.asarray(train.item_counts())[1:]
    if known is not None:
        counts = counts[np.asarray(known, dtype=bool)[1:]]
    return float((counts == 0).mean()) if len(counts) else 0.0


def known_items(prepared: Any) -> Any:
    """A mask over the vocabulary: the items known before the test part -- those with an event
    in training, validation or history-only rows, or in the item table (a catalogue given as
    such) -- False for the items that occur only in test events (the padding index counts as
    known); None without a test part. The vocabulary covers every part, so that held-out
    items are ranked; counted in the catalogue's share of items without a training event, the
    items only the test events bring had made the test part steer the choice on validation
    (``--cold-target-share catalogue``) and the plan. Under the coldstart scenario (no row
    split: the parts are users) the items of the training users, the validation examples
    (revealed events and targets) and the item table: not those only test users bring."""
    import numpy as np
    import polars as pl

    from warmrec.data.schema import ITEM

    sp = getattr(prepared, "split", None)
    if sp is None:
        return _known_of_users(prepared)
    if sp.test is None or not sp.test.height:
        return None
    seen = [p[ITEM] for p in (sp.train, sp.valid, sp.context) if p is not None and p.height]
    table = prepared.item_features
    if table is not None and ITEM in table.columns and table.height:
        seen.append(table[ITEM].cast(sp.test[ITEM].dtype, strict=False).drop_nulls())
    only = sp.test[ITEM].unique()
    if seen:
        only = only.filter(~only.is_in(pl.concat(seen).unique().implode()))
    known = np.ones(len(prepared.vocab), dtype=bool)
    if only.len():
        known[np.asarray(prepared.vocab.encode(only), dtype=np.int64)] = False
    known[0] = True
    return known


def _known_of_users(prepared: Any) -> Any:
    """:func:`known_items` under the coldstart scenario (:func:`~warmrec.models.fresh.known_mask`
    of its training users and validation examples, and the item table); None without a test
    part."""
    from warmrec.data.schema import ITEM
    from warmrec.models.known import known_mask

    valid, test = getattr(prepared, "valid", None), getattr(prepared, "test", None)
    if valid is None or test is None or not len(test):
        return None
    known = known_mask(prepared.train, valid).numpy().copy()
    table = getattr(prepared, "item_features", None)
    if table is not None and ITEM in table.columns and table.height:
        idx = prepared.vocab.lookup(table[ITEM].drop_nulls().to_list())
        known[idx[idx > 0]] = True
    known[0] = True
    return known


def cold_targets(train: Any, eval_set: Any) -> Any:
    """Per example of an evaluation set, whether its target is an item without an event in
    ``train`` (a :class:`~warmrec.data.dataset.SequenceDataset`)."""
    import numpy as np

    counts = np.asarray(train.item_counts())
    return counts[np.asarray(eval_set.targets, dtype=np.int64)] == 0


def target_cold_share(train: Any, eval_set: Any) -> float:
    """Share of an evaluation set's targets on items without an event in ``train``."""
    return float(cold_targets(train, eval_set).mean()) if len(eval_set) else 0.0


def describe_log(prepared: Any) -> LogProfile:
    """Describe a prepared log (:func:`warmrec.data.stats.describe` on the events before the
    test part -- training, validation and history-only rows: the plan is steered by what a
    model may see, never by the test events -- plus the validation part's repeat share, users
    and features)."""
    import polars as pl

    from warmrec.data.schema import USER
    from warmrec.data.stats import describe

    inter = prepared.info.get("interactions")
    frame = inter.interactions if inter is not None else prepared.frame
    sp = prepared.split
    if sp is not None:
        parts = [p for p in (sp.train, sp.valid, sp.context) if p is not None and p.height]
        if parts:
            frame = pl.concat(parts, how="diagonal_relaxed")
    unit = getattr(inter, "time_unit", None) or "s"
    d = describe(frame, time_unit=unit)
    spec = prepared.info.get("spec")
    split = spec.split.method if spec is not None else str(prepared.info.get("split", "?"))
    cols = lambda f, key: [c for c in f.columns if c != key] if f is not None else []  # noqa: E731
    from warmrec.data.schema import ITEM

    return LogProfile(
        events=int(d["events"]),
        sequences=int(d["sequences"]),
        items=int(d["items"]),
        users=d["users"],
        sequence_key=d["sequence_key"],
        length_median=float(d["length_median"]),
        length_p90=float(d["length_p90"]),
        length_max=int(d["length_max"]),
        items_seen_once_share=d["items_seen_once"] / max(1, d["items"]),
        top1pct_share=float(d["item_events_top1pct_share"]),
        item_gini=float(d["item_gini"]),
        repeat_share=float(d["repeat_share"]),
        repeat_consecutive_share=float(d["repeat_consecutive_share"]),
        tied_time_share=float(d["tied_time_share"]),
        events_per_time=float(d["events_per_time"]),
        valid_examples=len(prepared.valid),
        test_examples=len(prepared.test),
        valid_target_seen_share=target_seen_share(prepared.valid),
        has_user_ids=USER in frame.columns and prepared.user_vocab is not None,
        item_features=cols(prepared.item_features, ITEM),
        user_features=cols(prepared.user_features, USER),
        split=split,
        item_text=item_text_fields(prepared.item_features),
        item_categories=category_columns(prepared.item_features, ITEM),
        integer_item_ids=(
            not prepared.train.vocab.is_str and prepared.train.vocab.ids.dtype.is_integer()
        ),
        catalogue_cold_share=cold_item_share(prepared.train, known_items(prepared)),
        valid_target_cold_share=target_cold_share(prepared.train, prepared.valid),
    )


def category_columns(table: Any, key: str, max_share: float = 0.2) -> list[str]:
    """Columns of a feature ``table`` that hold categories: lists of strings (tags), or
    strings whose distinct values are at most ``max_share`` of the rows (at least 2): not
    titles or descriptions (nearly one value per row), not numbers."""
    import polars as pl

    if table is None or table.height == 0:
        return []
    out = []
    for c in table.columns:
        if c == key:
            continue
        dtype = table[c].dtype
        if dtype == pl.List(pl.String):
            if table[c].explode().drop_nulls().n_unique() >= 2:
                out.append(c)
        elif dtype == pl.String:
            n = table[c].drop_nulls().n_unique()
            if 2 <= n <= max(2, max_share * table.height):
                out.append(c)
    return out


def item_text_fields(item_features: Any) -> list[str]:
    """The columns of ``item_features`` that the text models read as item text, in their
    order (:data:`~warmrec.models.settings.TEXT_FIELDS`); [] without a table."""
    from warmrec.models.settings import TEXT_FIELDS

    if item_features is None:
        return []
    return [c for c in TEXT_FIELDS if c in item_features.columns]

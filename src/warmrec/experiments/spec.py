"""THE run: a typed :class:`RunSpec`, and the three functions that own a run.

A run is read -> split -> fit (selecting on validation) -> record -> save. Every command that
trains a model (``train``, ``pretrain``, ``transfer``, ``tune`` and its refit, ``train
--workers``), every study and ``evaluate``/``predict`` (which rebuild the spec from a saved
model) goes through:

:func:`prepare_run` ``(spec) -> Prepared``
    reads ``spec.data``, applies THE split policy (:meth:`SplitSpec.resolve`: a split folder is
    used as given unless ``resplit``; otherwise the named method, or
    :func:`~warmrec.data.split.default_split` for ``auto``), checks that the split fits the
    log's time unit, and encodes once (:func:`warmrec.data.prepared.prepare`).
:func:`fit_run` ``(spec, prepared, hooks) -> model``
    builds the model from ``spec.model`` (or pre-trains / transfers it, see ``spec.pretrain``
    and ``spec.transfer``), fits it on the training part with ``spec.train`` (loop callbacks and
    :class:`~warmrec.training.loop.LoopHooks` passed through), scores it on validation with
    ``spec.eval`` and always records the run in ``model.meta.run`` (:class:`RunInfo`, with the
    whole spec), so a saved model knows how it was made.
:func:`save_run` ``(model, out)``
    writes the model directory atomically.

A spec is a pydantic root with one section per concern, each checked when the spec is built,
before any data is read::

    [data]   path, format, columns, no_timestamp, order, time_unit, sep, names
    [split]  method = "auto" | "given" | "loo" | "loo_new" | "temporal" | "last_session" |
             "user" | "last_pair" | "time_new_learners" | "coldstart",
             that method's options, resplit
    [model]  name, then the model's own config keys
    [train]  the training loop's settings (neural models only)
    [eval]   metrics, protocol ("full" or a named sampled protocol), exclude_seen
    [transfer]  (transfer runs) source, strategy, init, their options, max_len, position_init

TOML files and ``--set a.b=c`` overrides build the same dict (:func:`spec_from_config`);
``RunSpec.model_json_schema()`` is the schema ``warmrec models --schema run`` prints.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from warmrec.config import ConfigModel, build_config
from warmrec.errors import ConfigError

if TYPE_CHECKING:
    from warmrec.artifacts import DataSource
    from warmrec.data.prepared import Prepared

SECTIONS = ("data", "split", "model", "train", "eval", "transfer")
DEFAULT_METRICS = ("hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20", "mrr@20")
"""= :data:`warmrec.evaluation.evaluate.DEFAULT_METRICS` (not imported: it pulls in torch)."""
TimeValue = float | int | str | dt.datetime | dt.date


# -- [data] --------------------------------------------------------------------------------------
class DataSpec(ConfigModel):
    """How to read the log (``[data]``): every reader option of :func:`warmrec.load_interactions`."""

    path: str
    """The log: a file, a folder (RecBole atomic files, a split folder) or a dataset name."""
    format: str | None = None
    """Input format or dataset name (None: detected from the path)."""
    columns: dict[str, str] | None = None
    """Column mapping, canonical name -> file column (common names are recognised)."""
    no_timestamp: bool = False
    """The log has no time column: file order is the event order."""
    order: str | None = None
    """The column giving the event order, for logs without timestamps."""
    time_unit: str | None = None
    """Unit of numeric timestamps (s, ms, us, ns, ordinal); None: detected by size."""
    sep: str | None = None
    """Field separator of a delimited text file (None: by the suffix)."""
    names: list[str] | None = None
    """The columns of a delimited text file without a header line, in order (None: the first
    line is the header)."""
    items: str | None = None
    """A file of item features, one row per item (CSV, TSV or Parquet: titles, text, tags,
    categories); replaces the log's own item table where it has one."""
    users: str | None = None
    """A file of user features, one row per user."""
    duplicates: Literal["keep", "drop"] = "keep"
    """Exact duplicate events (same sequence, item and time as an earlier row): ``"keep"``, or
    ``"drop"`` all but the first copy (``--drop-duplicates``); see
    :func:`warmrec.load_interactions`."""

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not str(v).strip():
            raise ValueError("expected a file, folder or dataset name, found ''")
        return v

    def absolute(self) -> DataSpec:
        """The same spec with the path made absolute (symlinks kept as typed), so a saved model
        finds its data from any working directory; a dataset name that is not a path stays."""
        from warmrec.io import typed_absolute

        update = {
            name: typed_absolute(value)
            for name in ("path", "items", "users")
            if (value := getattr(self, name)) is not None
        }
        return self.model_copy(update=update)

    def source(self) -> DataSource:
        """As recorded in a model's meta (:class:`~warmrec.artifacts.DataSource`)."""
        from warmrec.artifacts import DataSource
        from warmrec.io import fingerprint

        spec = self.absolute()
        return DataSource(**spec.model_dump(), fingerprint=fingerprint(spec.path))

    def read(self):
        """Read the log -> :class:`~warmrec.data.interactions.Interactions`."""
        from warmrec.data.readers import load_interactions

        return load_interactions(
            self.path,
            format=self.format,
            columns=self.columns,
            no_timestamp=self.no_timestamp,
            order=self.order,
            sep=self.sep,
            names=self.names,
            time_unit=self.time_unit,
            items=self.items,
            users=self.users,
            duplicates=self.duplicates,
        )


# -- [split] -------------------------------------------------------------------------------------
class _Split(ConfigModel):
    resplit: bool = False
    """For a split folder (train/valid/test files, used as given by default): merge the parts
    and split them again with this method."""
    train_fraction: float = Field(1.0, gt=0, le=1)
    """Keep this share of the training sequences (sessions, else users) after splitting: the
    :class:`~warmrec.experiments.scenarios.DataScarcity` scenario of learning curves (validation
    and test unchanged; the coldstart split, which has no row training part, takes 1 only)."""
    fraction_seed: int = 0
    """Seed of the ``train_fraction`` draw (nested fractions for one seed)."""

    def options(self) -> dict[str, Any]:
        """Keyword arguments of the split function (``method``, ``resplit`` and the training
        fraction left out)."""
        return self.model_dump(
            exclude={"method", "resplit", "train_fraction", "fraction_seed"}, exclude_none=True
        )


class AutoSplit(_Split):
    """The default policy: a split folder as given, else
    :func:`~warmrec.data.split.default_split` (``loo`` for user logs, ``last_session`` for
    session logs, ``loo`` for sessionised logs with long user histories)."""

    method: Literal["auto"] = "auto"


class GivenSplit(_Split):
    """A split folder's own train/valid/test parts, used as they are."""

    method: Literal["given"] = "given"


class LooSplit(_Split):
    """Leave-one-out: each user's last event is the test target, the one before it validation."""

    method: Literal["loo"] = "loo"
    time_order: Literal["stable", "recbole"] = "stable"
    """Tie order: "stable" keeps the file order, "recbole" reproduces RecBole's float32 key."""


class LooNewSplit(_Split):
    """Leave-one-out on new items (the MOOC anchor's protocol on MARS): each user's last event
    on an item they had not opened before is the test target, the new one before it validation,
    later events dropped (:func:`~warmrec.data.split.leave_last_new_out`). Seen items are
    excluded from the ranking unless ``[eval] exclude_seen`` says otherwise."""

    method: Literal["loo_new"] = "loo_new"
    min_new: int = Field(3, ge=2)
    """Fewest new items a user needs to get a test target (2: every user with two distinct
    items, as the anchor counts; a valid target needs 3)."""


class TemporalSplit(_Split):
    """Global cut-offs: train before ``valid_start``, validation up to ``test_start``, test after."""

    method: Literal["temporal"] = "temporal"
    test_start: TimeValue
    """Start of the test part: a date (``2019-07-01``), Unix seconds, or a position on a log
    whose timestamps are positions."""
    valid_start: TimeValue | None = None
    """Start of the validation part (None: the latest ``valid_share`` before ``test_start``)."""
    valid_share: float | None = Field(None, ge=0, lt=1)
    """Without ``valid_start``: the share of the sessions (user logs: events) before
    ``test_start`` that validate, the latest ones (None: 0.1; 0: no validation part)."""
    assign: Literal["start", "end"] = "start"
    """A session belongs to the part where it starts (crossing sessions dropped) or ends."""
    min_session_length: int = Field(2, ge=1)
    """Held-out sessions shorter than this are dropped."""
    drop_unseen: bool = True
    """Remove held-out events of items never seen in training."""
    min_test_sessions: int = Field(100, ge=0)
    """Fewer test sequences than this give a warning."""


class LastSessionSplit(_Split):
    """Hold out the most recent sessions: each user's last one, or the latest days / share."""

    method: Literal["last_session"] = "last_session"
    test_days: float | None = Field(None, gt=0)
    """Hold out the sessions of the last this many days (instead of a share)."""
    valid_days: float | None = Field(None, gt=0)
    """Validation: the this many days before the test part."""
    test_share: float = Field(0.1, gt=0, lt=1)
    """Without users or days: the latest share of sessions held out for test."""
    valid_share: float | None = Field(None, gt=0, lt=1)
    """The share of sessions before the test part held out for validation."""
    min_test_sessions: int = Field(100, ge=0)
    """Fewer test sessions than this give a warning."""
    by_user: bool | None = None
    """Per user (each user's last session) or by time; None: per user when the log has users."""
    assign: Literal["start", "end"] = "start"
    """A session belongs to the part where it starts or ends."""
    min_session_length: int = Field(2, ge=1)
    """Held-out sessions shorter than this are dropped."""
    drop_unseen: bool = True
    """Remove held-out events of items never seen in training."""


class UserSplit(_Split):
    """User-disjoint split for cold start: whole users go to test, validation or train."""

    method: Literal["user"] = "user"
    test_frac: float = Field(0.1, gt=0, lt=1)
    """Share of users held out for test."""
    valid_frac: float = Field(0.1, ge=0, lt=1)
    """Share of users held out for validation."""
    seed: int = 0
    """Seed of the user permutation."""
    key: str | None = None
    """The user column (None: ``user_id`` when present, else the sequence key)."""
    min_session_length: int = Field(2, ge=1)
    """Held-out sequences shorter than this are dropped."""
    drop_unseen: bool = True
    """Remove held-out events of items never seen in training."""


class LastPairSplit(_Split):
    """Cloudera FF19's next-event protocol (:func:`~warmrec.data.split.last_pair_split`): train
    on every sequence minus its last event; ``n_test`` and ``n_valid`` (second last, last) pairs
    of sequences drawn with ``seed``; the query is the second-last item alone."""

    method: Literal["last_pair"] = "last_pair"
    n_test: int = Field(1000, ge=1)
    """Test pairs (one per drawn sequence)."""
    n_valid: int = Field(1000, ge=0)
    """Validation pairs (other drawn sequences)."""
    seed: int = 123
    """Seed of the draw (the source project's ``default_rng(123)``)."""
    min_session_length: int = Field(3, ge=2)
    """Shorter sequences are left out (the source keeps sessions of 3 or more events)."""
    key: str | None = None
    """The sequence column (None: the log's sequence key)."""
    drop_unseen: bool = False
    """Remove pairs whose items never occur in training (the source counts them as misses)."""


class TimeNewLearnersSplit(_Split):
    """Trained before ``cut``; each learner who arrives at or after it is tested on their last
    new item, their earlier events read as history only (the MOOC anchor's second setup on MARS:
    :func:`~warmrec.data.split.time_new_learners`). Validation: the learners who arrive in
    ``[valid_start, cut)``, the same way on their events before the cut. Seen items are
    excluded from the ranking unless ``[eval] exclude_seen`` says otherwise."""

    method: Literal["time_new_learners"] = "time_new_learners"
    cut: TimeValue
    """Training ends here, test learners arrive from here: a date (``2019-07-01``), Unix
    seconds, or a position on a log whose timestamps are positions."""
    valid_start: TimeValue | None = None
    """Learners arriving from here to the cut are the validation learners (None: no
    validation part; training then cannot select)."""
    min_new: int = Field(2, ge=2)
    """Fewest distinct items a held-out learner needs to be tested (2: a target with a
    history)."""
    key: str | None = None
    """The user column (None: ``user_id`` when present, else the sequence key)."""


class ColdStartSplit(_Split):
    """The user cold-start scenario (:class:`~warmrec.experiments.scenarios.ColdStartUsers`):
    models fit on meta-train users; a meta-valid / meta-test example reveals a user's first
    ``shot`` events and asks for the next. What ``warmrec study coldstart`` records in its
    global models, so that ``evaluate`` on one scores it on its own meta-test users."""

    method: Literal["coldstart"] = "coldstart"
    scenario: dict[str, Any] = {}
    """The scenario's settings (``ColdStartUsers`` fields: shots, order, shares, caps)."""
    seed: int = 0
    """Seed of the user assignment."""
    shot: int | None = Field(None, ge=1)
    """Events revealed per held-out user (None: the scenario's largest number of shots)."""

    @field_validator("scenario")
    @classmethod
    def _scenario(cls, v: dict[str, Any]) -> dict[str, Any]:
        from warmrec.experiments.scenarios import ColdStartUsers

        ColdStartUsers(**v)
        return v

    @model_validator(mode="after")
    def _no_fraction(self) -> ColdStartSplit:
        """``train_fraction`` subsamples a row split's training part
        (:class:`~warmrec.experiments.scenarios.DataScarcity`); the scenario has none, and the
        fraction was recorded but never applied."""
        if self.train_fraction < 1.0:
            raise ValueError(
                f"train_fraction: expected 1 with split method 'coldstart' (the scenario "
                f"splits users, not rows: no training part to subsample), found "
                f"{self.train_fraction:g}; use a row split (loo, temporal, last_session, user) "
                "for a learning curve"
            )
        return self

    def options(self) -> dict[str, Any]:
        return {"scenario": dict(self.scenario), "seed": self.seed, "shot": self.shot}


SplitSpec = Annotated[
    AutoSplit
    | GivenSplit
    | LooSplit
    | LooNewSplit
    | TemporalSplit
    | LastSessionSplit
    | UserSplit
    | LastPairSplit
    | TimeNewLearnersSplit
    | ColdStartSplit,
    Field(discriminator="method"),
]
SPLIT_CLASSES: dict[str, type[_Split]] = {
    "auto": AutoSplit,
    "given": GivenSplit,
    "loo": LooSplit,
    "loo_new": LooNewSplit,
    "temporal": TemporalSplit,
    "last_session": LastSessionSplit,
    "user": UserSplit,
    "last_pair": LastPairSplit,
    "time_new_learners": TimeNewLearnersSplit,
    "coldstart": ColdStartSplit,
}


def split_spec(values: Mapping[str, Any] | None) -> _Split:
    """A ``[split]`` table as its typed spec; errors name the option and the method."""
    d = dict(values or {})
    method = d.pop("method", None) or "auto"
    klass = SPLIT_CLASSES.get(method) if isinstance(method, str) else None
    if klass is None:
        raise ConfigError(
            f"split method: expected one of {', '.join(SPLIT_CLASSES)}, found {method!r}"
        )
    if klass is TemporalSplit and "test_start" not in d:
        _refuse_unknown_keys(klass, d)  # a typo (test_strat) is named, with the close key
        raise ConfigError(
            "the temporal split needs a test start: --set split.test_start=2019-07-01 (a date, "
            "Unix seconds, or a position on an ordinal log); validation is the latest 10 % "
            "before it unless --set split.valid_start=... or split.valid_share=... (warmrec "
            "data split: --set test_start=...)"
        )
    if klass is TimeNewLearnersSplit and "cut" not in d:
        _refuse_unknown_keys(klass, d)
        raise ConfigError(
            "the time_new_learners split needs a cut: --set split.cut=2019-07-01 (a date, Unix "
            "seconds, or a position on an ordinal log) and --set split.valid_start=... for a "
            "validation part"
        )
    return build_config(klass, d)


def _refuse_unknown_keys(klass: type, d: Mapping[str, Any]) -> None:
    """The unknown-key error of ``klass`` (with its "did you mean") where ``d`` has one."""
    from warmrec.config import did_you_mean

    unknown = sorted(set(d) - set(klass.model_fields))
    if unknown:
        valid = sorted(klass.model_fields)
        hint = did_you_mean(unknown[0], valid)
        raise ConfigError(
            f"unknown key {unknown[0]!r} for {klass.__name__} (split "
            f"{klass.model_fields['method'].default!r}){hint}; valid keys: {', '.join(valid)}"
        )


def resolve_split(spec: _Split, inter: Any) -> _Split:
    """THE default-split policy, applied once the log is read: ``auto`` becomes ``given`` for a
    split folder (unless ``resplit``) and :func:`~warmrec.data.split.default_split` otherwise;
    ``given`` on data without parts, or a method on a split folder without ``resplit``, is an
    error. Returns the concrete spec that was run (what the model records)."""
    from warmrec.data.split import default_split

    has_parts = getattr(inter, "parts", None) is not None
    if isinstance(spec, AutoSplit):
        if has_parts and not spec.resplit:
            return GivenSplit(**spec.model_dump(include={"train_fraction", "fraction_seed"}))
        method = default_split(inter.interactions)
        keep = {"resplit", "train_fraction", "fraction_seed"}
        return SPLIT_CLASSES[method](**spec.model_dump(include=keep))
    if isinstance(spec, GivenSplit):
        if not has_parts:
            raise ConfigError(
                "split 'given' needs a split folder (train/valid/test files); this data has none"
            )
        return spec
    if has_parts and not spec.resplit:
        raise ConfigError(
            f"the data is already split into {'/'.join(inter.parts)} ({inter.source}); it is "
            f"used as given: drop the split method {spec.method!r} (--split), or pass --resplit "
            "(split.resplit = true) to merge the parts and split them again"
        )
    return spec


# -- [model] [eval] [transfer] ------------------------------------------------------------------
class ModelSpec(ConfigModel):
    """A registered model's name and its config keys (checked against the model's own config)."""

    name: str
    """Registered model name (``warmrec models``)."""
    config: dict[str, Any] = {}
    """The model's config keys; everything not given keeps the model's measured default."""

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        from warmrec.registry import model_class

        build_config(model_class(self.name).Config, self.config)
        return self

    def typed(self) -> Any:
        """The model's typed config."""
        from warmrec.registry import model_class

        return build_config(model_class(self.name).Config, self.config)

    def is_neural(self) -> bool:
        from warmrec.models.neural import NeuralRecommender
        from warmrec.registry import model_class

        return issubclass(model_class(self.name), NeuralRecommender)

    def takes_trainer(self) -> bool:
        """Whether the model trains with the loop (neural models, and hybrids of them)."""
        import inspect

        from warmrec.registry import model_class

        return "trainer" in inspect.signature(model_class(self.name).fit).parameters

    def trainer(self, train: Mapping[str, Any]) -> Any:
        """The typed loop settings: the class's own defaults under ``train``."""
        from warmrec.registry import model_class
        from warmrec.training.loop import TrainerConfig

        klass = model_class(self.name)
        if hasattr(klass, "trainer_config"):
            return klass.trainer_config(dict(train))
        return build_config(TrainerConfig, dict(train))


class EvalSpec(ConfigModel):
    """How a run is scored (``[eval]``): validation during ``fit_run``, test in ``evaluate``."""

    metrics: list[str] = list(DEFAULT_METRICS)
    """Metrics at cut-offs, e.g. ``hr@10``, ``ndcg@10``, ``mrr@20``."""
    protocol: str = "full"
    """``full`` (rank the whole catalogue) or a named sampled protocol (``sampled-uniform-100``,
    ``sampled-pop-100``, ``sampled-unseen-100``: SASRec.pytorch's evaluator)."""
    exclude_seen: bool = False
    """Never rank items already in the history."""

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        from warmrec.evaluation.metrics import parse_metric

        if not v:
            raise ValueError("expected at least one metric, found none")
        for m in v:
            try:
                parse_metric(m)
            except ConfigError as e:
                raise ValueError(str(e)) from None
        return v

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, v: str) -> str:
        from warmrec.evaluation.evaluate import _sample_protocol

        try:
            _sample_protocol(v)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return v


class TransferSpec(ConfigModel):
    """A transfer run (``[transfer]``): the source model and how it is carried to the target."""

    source: str
    """The pre-trained model's directory (``warmrec pretrain`` writes one)."""
    strategy: str = "finetune"
    """Transfer strategy (``warmrec.transfer.list_strategies()``): finetune, freeze, adapters,
    lora, ..., ``zeroshot`` (no target training: a text-aware source ranks the target's items
    by their text)."""
    init: Literal["random", "mean", "popularity", "text", "item2vec"] = "popularity"
    """How the target item table starts (:data:`warmrec.transfer.embeddings.METHODS`)."""
    strategy_options: dict[str, Any] = {}
    """The strategy's own options (:class:`~warmrec.transfer.strategies.StrategyOptions`,
    checked when the spec is built)."""
    init_options: dict[str, Any] = {}
    """The item-table initialisation's own options (those ``init`` reads:
    :data:`warmrec.transfer.transfer.INIT_OPTIONS`, checked when the spec is built)."""
    max_len: int | None = Field(None, ge=1)
    """Target history length (None: the source's)."""
    position_init: Literal["repeat", "interpolate"] = "repeat"
    """How position embeddings of a longer target are started
    (:data:`warmrec.transfer.transfer.POSITION_INITS`)."""
    seed: int = 0
    """Seed of the target-specific initialisation."""
    reset_domain: bool | None = None
    """Start the seen-item bias (how the domain treats repeats) at 0, not at the source's value
    (the source's repeat habit is a property of its domain; a zero-shot target has no data to
    learn its own). None (default): on for ``strategy = "zeroshot"``, off otherwise (training
    on the target learns the bias from there)."""
    refit_whitening: Literal["off", "mean", "diag", "full"] | bool | None = None
    """Re-fit the text adaptor's whitening statistics on the target's item text before
    transfer (item text only, no interaction; :func:`warmrec.models.text.refit_whitening`):
    ``"off"``, ``"mean"``, ``"diag"`` (mean and per-dimension variance, AdaBN) or ``"full"``
    (mean and covariance; ``true`` is ``"full"``). None (default): ``"diag"`` under
    ``strategy = "zeroshot"`` with a text source, else ``"off"``."""
    match_items: Literal["auto", "ids", "none"] = "auto"
    """Which items are one item in source and target and copy their source rows: ``auto``
    the shared raw ids where both catalogues have text ids (integer ids, 1..n in most public
    logs, coincide across unrelated catalogues: none), ``ids`` every shared raw id (a target
    drawn from the source's own catalogue), ``none`` no item."""
    model_options: dict[str, Any] = {}
    """Target model settings over the source's, e.g. ``{item_repr = "text", text_prior = 5}``:
    the source's encoder under another item representation (the item layer parts the source
    lacks start fresh; :func:`warmrec.transfer.transfer.build_target_model`)."""

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, v: str) -> str:
        from warmrec.transfer.strategies import STRATEGIES as names

        if v not in names:
            raise ValueError(f"expected one of {', '.join(names)}, found {v!r}")
        return v

    @model_validator(mode="after")
    def _options(self) -> TransferSpec:
        """The strategy's and the init's options, checked before any data is read (they were
        checked only once the data was split and the source loaded)."""
        from warmrec.transfer.strategies import StrategyOptions
        from warmrec.transfer.transfer import INIT_OPTIONS

        try:
            opts = build_config(StrategyOptions, {"seed": self.seed, **self.strategy_options})
        except ConfigError as e:  # named by key within strategy_options (adapter.bottleneck)
            text = str(e)
            for cls, key in (("StrategyOptions", ""), ("AdapterConfig", "adapter"),
                             ("LoraConfig", "lora")):  # fmt: skip
                text = text.replace(f"{cls}.", f"{key}." if key else "")
                text = text.replace(f" for {cls}", f" for {key}" if key else "")
            raise ValueError(f"strategy_options: {text}") from None
        if self.strategy == "freeze" and not opts.freeze:
            raise ValueError(
                "strategy_options: strategy 'freeze' needs freeze = [glob patterns of the "
                "parameters to freeze], found none"
            )
        if self.strategy != "scratch":  # scratch starts no item table from the source
            allowed = INIT_OPTIONS[self.init]
            unknown = sorted(set(self.init_options) - set(allowed))
            if unknown:
                takes = f"takes {', '.join(allowed)}" if allowed else "takes no options"
                raise ValueError(
                    f"init_options: {', '.join(unknown)} not an option of init "
                    f"{self.init!r} (it {takes})"
                )
        return self


# -- the root ------------------------------------------------------------------------------------
class RunSpec(ConfigModel):
    """One run: the data, its split, the model, the training loop and the evaluation."""

    data: DataSpec | None = None
    """How the log is read (None only for runs on data given in Python)."""
    split: SplitSpec = AutoSplit()
    """The split method and its options."""
    model: ModelSpec | None = None
    """The model (None for a transfer run: the source decides)."""
    train: dict[str, Any] = {}
    """Training-loop settings (``warmrec models --schema train``) over the model's defaults."""
    eval: EvalSpec = EvalSpec()
    """Metrics and protocol."""
    pretrain: bool = False
    """Fit as a transfer source (neural models; records item counts and titles)."""
    transfer: TransferSpec | None = None
    """Fine-tune a pre-trained model on this data instead of fitting ``model`` from scratch."""
    refit_all: bool = False
    """After the fit chosen on validation, fit the model again on every event of the log
    (validation and test included: for deployment), a neural model for the epochs the
    validated run kept; the saved model cannot be evaluated on this log any more."""

    @model_validator(mode="before")
    @classmethod
    def _flat_sections(cls, data: Any) -> Any:
        """``[model] name = ..., d = 64`` (flat, as in TOML) -> ``{name, config}``; ``[split]``
        built with errors that name the method."""
        if not isinstance(data, Mapping):
            return data
        d = dict(data)
        m = d.get("model")
        if isinstance(m, Mapping) and "config" not in m:
            m = dict(m)
            name = m.pop("name", None)
            if not name:
                raise ValueError("model: no model name: give --model NAME or [model] name")
            d["model"] = {"name": name, "config": m}
        s = d.get("split")
        if s is None or isinstance(s, Mapping):
            d["split"] = split_spec(s)
        return d

    @model_validator(mode="after")
    def _check_train(self) -> RunSpec:
        new_items = isinstance(self.split, LooNewSplit | TimeNewLearnersSplit)
        if new_items and "exclude_seen" not in self.eval.model_fields_set:
            self.eval = self.eval.model_copy(update={"exclude_seen": True})
        if self.transfer is not None:
            return self
        if self.model is None:
            if self.train:
                raise ValueError(
                    "train: training settings given but no model: give --model NAME or [model] name"
                )
            return self
        if self.model.takes_trainer():
            self.model.trainer(self.train)
        elif self.train:
            from warmrec.registry import model_class

            model_keys = set(model_class(self.model.name).Config.model_fields)
            hint = [k for k in sorted(self.train) if k in model_keys]
            raise ValueError(
                f"train: model '{self.model.name}' takes no training settings; got "
                f"{', '.join(sorted(self.train))}"
                + (f" (the model's own {hint[0]}: --set model.{hint[0]}=...)" if hint else "")
            )
        if self.pretrain and not self.model.is_neural():
            raise ValueError(f"pretrain needs a neural model, '{self.model.name}' is not one")
        return self

    # -- views ------------------------------------------------------------------------------
    def trainer(self) -> Any:
        """The typed training-loop config (the model's defaults under ``train``), or None.
        The loop validates as the run is scored: ``[eval] exclude_seen`` unless ``[train]``
        names its own (under ``loo_new`` the epochs were chosen ranking the seen items that
        the reported figures exclude)."""
        if self.model is None or not self.model.takes_trainer():
            return None
        return self.model.trainer(self.loop_train())

    def loop_train(self) -> dict[str, Any]:
        """``[train]`` as the training loop gets it: with ``exclude_seen`` from ``[eval]``
        where the loop validates and ``[train]`` does not name it."""
        train = dict(self.train)
        if self.model is not None and self.model.takes_trainer() and "exclude_seen" not in train:
            fields = getattr(type(self.model.trainer(train)), "model_fields", {})
            if "exclude_seen" in fields:
                train["exclude_seen"] = self.eval.exclude_seen
        return train

    def to_config(self, *, absolute: bool = False) -> dict[str, Any]:
        """The TOML-shaped dict (flat ``[model]``, only what differs from the defaults, but
        ``[eval] exclude_seen`` always under the splits that turn it on unless given);
        ``absolute``: the data path made absolute (for a file read from another folder)."""
        out: dict[str, Any] = {}
        if self.data is not None:
            data = self.data.absolute() if absolute else self.data
            out["data"] = data.model_dump(mode="json", exclude_defaults=True)
            out["data"]["path"] = data.path
        sp = self.split.model_dump(mode="json", exclude_defaults=True)
        out["split"] = {"method": self.split.method, **sp}
        if self.model is not None:
            out["model"] = {"name": self.model.name, **self.model.config}
        if self.train:
            out["train"] = dict(self.train)
        ev = self.eval.model_dump(mode="json", exclude_defaults=True)
        if isinstance(self.split, LooNewSplit | TimeNewLearnersSplit):
            # these splits turn exclude_seen on unless it is given: an explicit false (the
            # field's default) must be written, or the rebuilt spec would score with seen
            # items excluded (evaluate, tuning trials, --workers, studies rebuild from here)
            ev["exclude_seen"] = self.eval.exclude_seen
        if ev:
            out["eval"] = ev
        if self.pretrain:
            out["pretrain"] = True
        if self.refit_all:
            out["refit_all"] = True
        if self.transfer is not None:
            out["transfer"] = self.transfer.model_dump(mode="json", exclude_defaults=True)
            out["transfer"]["source"] = self.transfer.source
        return out

    def record(self) -> dict[str, Any]:
        """What a model saves (``meta.run.spec``): the spec with the data path made absolute."""
        spec = self if self.data is None else self.model_copy(update={"data": self.data.absolute()})
        return spec.model_dump(mode="json")

    def replace(self, **sections: Any) -> RunSpec:
        """A copy with whole sections replaced (values as in a config dict), validated."""
        cfg = self.to_config()
        for k, v in sections.items():
            if v is None:
                cfg.pop(k, None)
            else:
                cfg[k] = v.to_config() if hasattr(v, "to_config") else v
        return spec_from_config(cfg)

    def with_data(self, data: Mapping[str, Any] | None) -> RunSpec:
        """``[data]`` replaced (None: kept)."""
        return self if not data else self.replace(data=dict(data))


def spec_from_config(cfg: Mapping[str, Any] | RunSpec) -> RunSpec:
    """A :class:`RunSpec` from a config dict (a TOML file plus flags and ``--set``): unknown
    sections and keys, bad values, a model that takes no training settings -- each one line."""
    if isinstance(cfg, RunSpec):
        return cfg
    unknown = sorted(set(cfg) - {*SECTIONS, "pretrain", "refit_all"})
    if unknown:
        raise ConfigError(
            f"unknown config section(s) {', '.join(unknown)}; valid: {', '.join(sorted(SECTIONS))}"
        )
    return build_config(RunSpec, cfg)


def refuse_model_with_transfer(spec: RunSpec, command: str = "train") -> None:
    """Refuse a spec with both ``[model]`` and ``[transfer]`` for a command that fits
    ``[model]`` from scratch (``train``, ``train --workers``): ``fit_run`` would transfer the
    source and ignore ``[model]``, yet save the model under the run's name."""
    if spec.model is not None and spec.transfer is not None:
        raise ConfigError(
            f"{command}: both [model] (name {spec.model.name!r}) and [transfer] (source "
            f"{spec.transfer.source!r}) are given; {command} fits [model] from scratch: drop "
            "[transfer], or run warmrec transfer without [model] (the source decides the model)"
        )


def run_schema() -> dict[str, Any]:
    """The JSON Schema of a run config (``warmrec models --schema run``)."""
    return RunSpec.model_json_schema()


# -- running -------------------------------------------------------------------------------------
def prepare_run(
    spec: RunSpec, *, vocab: Any = None, user_vocab: Any = None, data: Any = None
) -> Prepared:
    """Read ``spec.data`` (or use ``data``: a canonical table or ``Interactions``), resolve the
    split, check it against the log's time unit and encode once -> :class:`Prepared`; its
    ``info["spec"]`` holds the spec with the split that was run."""
    from warmrec.data.interactions import Interactions
    from warmrec.data.prepared import prepare
    from warmrec.data.split import require_split_time

    if data is None:
        if spec.data is None:
            raise ConfigError("no data path: give --data PATH or [data] path in the config")
        inter = spec.data.read()
    else:
        if not isinstance(data, Interactions):
            from warmrec.data.columns import canonical_table

            data = Interactions(interactions=canonical_table(data))
        inter = data
    sp = resolve_split(spec.split, inter)
    if isinstance(sp, ColdStartSplit):
        return _prepare_coldstart(spec, sp, inter, vocab)
    method = "given" if isinstance(sp, GivenSplit) else sp.method
    opts = sp.options()
    require_split_time(inter.interactions, method, opts, inter.time_unit)
    prep = prepare(
        inter,
        split=method,
        split_options=opts,
        resplit=sp.resplit,
        vocab=vocab,
        user_vocab=user_vocab,
    )
    if sp.train_fraction < 1.0:
        from warmrec.experiments.scenarios import DataScarcity

        prep = DataScarcity(fraction=sp.train_fraction, seed=sp.fraction_seed).apply(prep)
    prep.info["spec"] = spec.model_copy(update={"split": sp})
    prep.info["interactions"] = inter
    return prep


def _prepare_coldstart(spec: RunSpec, sp: ColdStartSplit, inter: Any, vocab: Any = None):
    """The cold-start scenario as a :class:`Prepared`: one sequence per user, meta-train users'
    sequences as ``train``, meta-valid / meta-test users with ``shot`` revealed events as
    ``valid`` / ``test`` (``split`` is None: the scenario is not a row split)."""
    from warmrec.data.prepared import Prepared
    from warmrec.experiments.scenarios import ColdStartUsers, shot_eval_set
    from warmrec.experiments.studies.coldstart import user_sequences

    scenario = ColdStartUsers(**sp.scenario)
    data = user_sequences(inter.interactions, vocab=vocab)
    parts = scenario.split(data, sp.seed)
    k = sp.shot or max(scenario.shots)
    train = parts.subset(parts.train)
    valid = shot_eval_set(data, parts.valid, k)
    test = shot_eval_set(data, parts.test, k)
    seqs = data.sequences
    targets = {  # event k + 1 of each held-out user: what a part scores (no row split has it)
        name: _sequence_events(data, inter.interactions, seqs.offsets[users] + k, users)
        for name, users in (("valid", parts.valid), ("test", parts.test))
    }
    info = {
        "split": "coldstart",
        "split_info": {
            "users": {
                "train": len(parts.train),
                "valid": len(parts.valid),
                "test": len(parts.test),
            },
            "shot": k,
        },  # fmt: skip
        "spec": spec.model_copy(update={"split": sp}),
        "interactions": inter,
        "targets": targets,
    }
    return Prepared(
        inter.interactions, None, data.vocab, None, train, valid, test,
        inter.item_features, inter.user_features, info,
    )  # fmt: skip


def _sequence_events(data: Any, frame: Any, rows: Any = None, users: Any = None) -> Any:
    """Events of per-user sequences (a :class:`~warmrec.data.dataset.SequenceDataset`) as a
    canonical table (user, item and time, typed as in ``frame``, the log): every event, or the
    events at positions ``rows`` of the users at indices ``users`` (one row each)."""
    import numpy as np
    import polars as pl

    from warmrec.data.schema import ITEM, TIME

    seqs = data.sequences
    if rows is None:
        rows = np.arange(len(seqs.items))
        keys = seqs.keys.gather(np.repeat(np.arange(len(seqs.lengths)), seqs.lengths))
    else:
        keys = seqs.keys.gather(np.asarray(users, dtype=np.int64))
    rows = np.asarray(rows, dtype=np.int64)
    cols = {data.key: keys, ITEM: pl.Series(ITEM, data.vocab.decode(seqs.items[rows]))}
    if seqs.timestamps is not None and TIME in frame.columns:
        cols[TIME] = pl.Series(TIME, seqs.timestamps[rows])
    out = pl.DataFrame(cols)
    return out.with_columns(
        pl.col(c).cast(frame.schema[c], strict=False) for c in out.columns if c in frame.columns
    )


def _part_events(prep: Any, part: str) -> Any:
    """The events of ``prep``'s ``part`` (``train``, ``valid`` or ``test``) as a canonical
    table: a row split's own table; under the coldstart scenario (no row split) every event of
    the meta-train users for ``train``, the scored targets for ``valid`` / ``test``. None where
    ``prep`` has neither."""
    split = getattr(prep, "split", None)
    if split is not None:
        return getattr(split, part, None)
    info = getattr(prep, "info", None) or {}
    if info.get("split") != "coldstart":
        return None
    if part == "train":
        return _sequence_events(prep.train, prep.frame)
    return (info.get("targets") or {}).get(part)


Callback = Callable[[int, dict[str, Any], Any], "bool | None"]


def fit_run(
    spec: RunSpec,
    prepared: Prepared | Any,
    *,
    callbacks: Sequence[Callback] = (),
    hooks: Any = None,
    evaluate_valid: bool = True,
) -> Any:
    """Fit the spec's model on ``prepared.train`` (selecting on ``prepared.valid``), score it on
    validation with ``spec.eval`` and record the run in ``model.meta.run``. ``callbacks`` go to
    the training loop (or a model's own per-epoch hook), ``hooks`` (a
    :class:`~warmrec.training.loop.LoopHooks`) to the loop. ``prepared`` may be anything with
    ``train`` and ``valid`` (a tuning trial's data has no test part)."""
    valid = getattr(prepared, "valid", None)
    if valid is not None and len(valid) == 0:
        info = getattr(prepared, "info", None) or {}
        method = info.get("split", getattr(spec.split, "method", "the"))
        hint = (
            " (give --set split.valid_start=DATE before test_start)" if method == "temporal" else ""
        )
        from warmrec.data.prepared import held_out_none

        none = held_out_none(getattr(prepared, "split", None), "valid")
        hint = f" ({none}: give --set split.valid_frac=...)" if none else hint
        raise ConfigError(
            f"the {method} split leaves the validation part empty{hint}; models are selected "
            "and stopped on validation"
        )
    t0 = time.perf_counter()
    if spec.transfer is not None:
        model = _fit_transfer(spec, prepared)
    else:
        model = _fit_model(spec, prepared, callbacks, hooks)
    fit_s = time.perf_counter() - t0
    valid: dict[str, float] = {}
    n_valid = 0
    if evaluate_valid and getattr(prepared, "valid", None) is not None and len(prepared.valid):
        res = evaluate_run(model, prepared.valid, spec, prepared)
        valid, n_valid = dict(res.summary), res.n_examples
    record_run(model, spec, prepared, fit_seconds=fit_s, valid=valid, n_valid=n_valid)
    if spec.refit_all:
        model = _refit_all(spec, prepared, model, hooks)
    return model


def _refit_all(spec: RunSpec, prepared: Any, selected: Any, hooks: Any = None) -> Any:
    """``selected`` (fitted and validated) fitted again from scratch on every event of the log,
    with its settings; a neural model for the epochs the validated run kept (no validation
    left to stop on), through the same loop ``hooks`` (a data-parallel worker's shard and
    gradient averaging). The run record is the validated run's, with ``refit`` added."""
    from warmrec.data.prepared import whole_train
    from warmrec.registry import get_model

    if spec.transfer is not None or spec.pretrain:
        raise ConfigError(
            "refit_all applies to a model fitted from scratch (train); a transfer or "
            "pre-training run is saved as validated"
        )
    if getattr(selected, "fits_on_validation", False):
        raise ConfigError(
            f"refit_all: model '{selected.name}' fits its own weights on the validation part, "
            "which a refit on the whole log would train on too; save it as validated"
        )
    whole = whole_train(prepared)
    model = get_model(spec.model.name, spec.model.config)
    t0 = time.perf_counter()
    refit: dict[str, Any] = {
        "on": "all",
        "events": int(prepared.frame.height),
        "sequences": len(whole.sequences),
    }
    if spec.model.is_neural() or (spec.train and spec.model.takes_trainer()):
        best = getattr(getattr(selected, "train_result", None), "best_epoch", None)
        if not best:
            raise ConfigError(
                f"refit_all: the validated run of '{selected.name}' kept no epoch to refit for"
            )
        extra = {"hooks": hooks} if hooks is not None else {}
        model.fit(whole, None, trainer={**spec.train, "epochs": int(best)}, **extra)
        refit["epochs"] = int(best)
    else:
        model.fit(whole, None)
    refit["fit_seconds"] = time.perf_counter() - t0
    model.meta.run = selected.meta.run.model_copy(update={"refit": refit})
    for name in ("item_counts", "features", "text", "item_titles"):
        if (
            getattr(selected.meta, name, None) is not None
            and getattr(model.meta, name, None) is None
        ):
            setattr(model.meta, name, getattr(selected.meta, name))
    return model


def record_run(
    model: Any,
    spec: RunSpec,
    prepared: Any = None,
    *,
    fit_seconds: float | None = None,
    valid: Mapping[str, float] | None = None,
    n_valid: int = 0,
) -> Any:
    """Record the run in ``model.meta.run`` (:class:`~warmrec.artifacts.RunInfo`: the spec as
    run, with the split ``prepared`` resolved, data, fit time, validation metrics); returns the
    model. :func:`fit_run` calls it for every fit; a model assembled from fitted parts (the
    hybrid ``warmrec auto`` builds from two fitted members) is recorded the same way."""
    from warmrec.artifacts import RunInfo

    ran = _ran_spec(spec, prepared)
    model.meta.run = RunInfo(
        data=ran.data.source() if ran.data is not None else None,
        split={"method": ran.split.method, **ran.split.options()},
        spec=ran.record(),
        fit_seconds=fit_seconds,
        valid=dict(valid or {}),
        n_valid=n_valid,
        choices=model.fit_choices() if hasattr(model, "fit_choices") else {},
        **_loop_facts(model),
    )
    return model


def save_run(model: Any, out: str | Path) -> Path:
    """Write the fitted model's directory (atomically; the run record is in its meta)."""
    model.save(out)
    return Path(out)


def evaluate_run(
    model: Any, eval_set: Any, spec: RunSpec, prepared: Any = None, *, seed: int = 0
) -> Any:
    """:func:`warmrec.evaluate` with the spec's ``[eval]`` and training popularity."""
    from warmrec.evaluation.evaluate import evaluate

    counts = prepared.train.item_counts() if prepared is not None else None
    return evaluate(
        model,
        eval_set,
        spec.eval.metrics,
        spec.eval.protocol,
        exclude_seen=spec.eval.exclude_seen,
        item_counts=counts,
        seed=seed,
    )


def spec_of_model(model: Any, where: str | Path = "") -> RunSpec:
    """The spec a saved model was made by (its ``meta.run``); models saved before the run
    record held the whole spec are rebuilt from its data and split records."""
    run = getattr(model.meta, "run", None)
    if run is not None and run.spec:
        spec = dict(run.spec)
        spec.pop("transfer", None)  # evaluating needs no source model
        spec["pretrain"] = False
        spec["refit_all"] = False
        spec["model"] = None
        spec["train"] = {}
        return build_config(RunSpec, spec)
    cfg: dict[str, Any] = {}
    if run is not None and run.data is not None:
        cfg["data"] = run.data.read_options()
    if run is not None and run.split:
        cfg["split"] = dict(run.split)
    return spec_from_config(cfg)


def _ran_spec(spec: RunSpec, prepared: Any) -> RunSpec:
    info = getattr(prepared, "info", None) or {}
    ran = info.get("spec")
    if isinstance(ran, RunSpec):
        return spec.model_copy(update={"split": ran.split, "data": spec.data or ran.data})
    return spec


def _loop_facts(model: Any) -> dict[str, Any]:
    """The :class:`~warmrec.artifacts.RunInfo` fields the training loop's result gives: the
    loss, the trainer settings as run and how training ended (none without the loop)."""
    result = getattr(model, "train_result", None)
    if result is None:
        return {}
    out: dict[str, Any] = {
        "loss": result.extra.get("loss"),
        "trainer": dict(getattr(result, "trainer", None) or {}) or None,
    }
    if getattr(result, "history", None):
        out.update(epochs_run=int(result.epochs_run), best_epoch=int(result.best_epoch),
                   stopped_early=bool(result.stopped_early))  # fmt: skip
    return out


def _fit_model(spec: RunSpec, prepared: Any, callbacks: Sequence[Callback], hooks: Any) -> Any:
    import inspect

    from warmrec.registry import get_model

    if spec.model is None:
        raise ConfigError("no model: give --model NAME or [model] name in the config")
    model = get_model(spec.model.name, spec.model.config)
    params = inspect.signature(model.fit).parameters
    kwargs: dict[str, Any] = {}
    if spec.model.is_neural() or (spec.train and spec.model.takes_trainer()):
        kwargs["trainer"] = spec.loop_train()
    if hooks is not None:
        if not spec.model.is_neural():
            raise ConfigError(f"model '{spec.model.name}' has no training loop to hook")
        kwargs["hooks"] = hooks
    if callbacks:
        if "callbacks" not in params:
            raise ConfigError(f"model '{spec.model.name}' takes no per-epoch callbacks")
        kwargs["callbacks"] = list(callbacks)
    model.fit(prepared.train, prepared.valid, **kwargs)
    if spec.pretrain:
        import numpy as np

        model.meta.item_counts = prepared.train.item_counts().astype(np.int64).tolist()
        model.meta.role = "source"
        titles = item_titles(getattr(prepared, "item_features", None))
        if titles:
            model.meta.item_titles = [(k, v) for k, v in titles.items()]
    return model


TITLE_COLUMNS = ("title", "movie_title", "item_title", "item_name")
"""Item-feature columns read as an item's title (the first present): RecBole's ml-100k names it
``movie_title`` (a token sequence, its words joined with spaces)."""


def item_titles(item_features: Any) -> dict[Any, str] | None:
    """``{raw id: title}`` when the item features have a title column (:data:`TITLE_COLUMNS`),
    else None."""
    import polars as pl

    if item_features is None:
        return None
    col = next((c for c in TITLE_COLUMNS if c in item_features.columns), None)
    if col is None:
        return None
    from warmrec.transfer import titles_from_frame

    table = item_features.select("item_id", col)
    if isinstance(table.schema[col], pl.List):
        table = table.with_columns(pl.col(col).list.join(" "))
    return titles_from_frame(table, title_col=col)


def _fit_transfer(spec: RunSpec, prepared: Any) -> Any:
    from warmrec.models.base import Recommender
    from warmrec.transfer import transfer

    tr = spec.transfer
    assert tr is not None
    source = Recommender.load(tr.source)
    _refuse_source_leak(source, spec, prepared, tr.source)
    src_titles = source.meta.item_titles
    extra: dict[str, Any] = {}
    if tr.max_len is not None:
        extra["max_len"] = tr.max_len
    return transfer(
        source,
        prepared.train,
        prepared.valid,
        strategy=tr.strategy,
        init=tr.init,
        trainer={"exclude_seen": spec.eval.exclude_seen, **spec.train},  # validated as scored
        strategy_options=tr.strategy_options or None,
        init_options=tr.init_options or None,
        source_titles=dict((k, v) for k, v in src_titles) if src_titles else None,
        target_titles=item_titles(getattr(prepared, "item_features", None)),
        source_name=tr.source,
        position_init=tr.position_init,
        reset_domain=tr.reset_domain,
        refit_whitening=tr.refit_whitening,
        model_options=tr.model_options or None,
        seed=tr.seed,
        match_items=tr.match_items,
        **extra,
    )


def _refuse_training_events(
    model: Any,
    spec: RunSpec,
    prep: Any,
    part: str,
    where: str | Path,
    advice: str = "evaluate with its own split (leave out --split), or train a model with "
    "this split",
) -> None:
    """Refuse to score a part that holds events the model was trained on.

    Where the data or the split differ from the model's own (``evaluate --split temporal`` on
    a model trained under leave-one-out, a log that grew), the model's training part is made
    again from its run record and matched to the scored part's events (sequence key, item,
    time): a model scored on what it was trained on reads near-perfect (HR@10 1.0 against an
    honest 0.10 on a log whose rule changes at the cut)."""
    import polars as pl

    from warmrec.data.schema import ITEM, SESSION, TIME, USER

    rec = spec_of_model(model, where)
    held = _part_events(prep, part)
    if rec.data is None or held is None or held.height == 0:
        return
    if rec.data.model_dump() == spec.data.model_dump() and (
        rec.split.model_dump() == spec.split.model_dump()
    ):
        return  # the model's own split: its parts are apart by construction
    import warnings

    from warmrec.errors import DataWarning, WarmrecError

    # the events alone are compared: the feature files are not read (one moved away does not
    # stop the check)
    events_only = rec.model_copy(
        update={"data": rec.data.model_copy(update={"items": None, "users": None})}
    )
    try:
        with warnings.catch_warnings(record=True):  # the record's split warned when trained
            own = prepare_run(events_only, vocab=model.vocab, user_vocab=model.user_vocab)
    except (WarmrecError, OSError, ValueError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if Path(str(rec.data.path)).exists():
            # there but unreadable: the check cannot be made, and is not skipped in silence
            raise ConfigError(
                f"{where or 'the model'}: cannot check the {part} part for the model's "
                f"training events: its recorded training log {rec.data.path} is there but "
                f"cannot be read ({why}); make it readable again (as the model read it)"
            ) from None
        warnings.warn(  # moved or deleted (a model taken to another machine): nothing to read
            f"{where or 'the model'}: its recorded training log {rec.data.path} is not there, "
            f"so the {part} part was not checked for the model's training events (a part that "
            "holds them reads too well)",
            DataWarning,
            stacklevel=3,
        )
        return
    trained = _part_events(own, "train")  # the meta-train users' events under coldstart
    if trained is None:
        return
    cols = [c for c in (USER, SESSION, ITEM, TIME) if c in held.columns and c in trained.columns]
    if ITEM not in cols or not ({USER, SESSION} & set(cols)):
        return
    # a log read with other id types (text ids where the model's log had integers): compared
    # as text, as they were written
    same = [held[c].dtype == trained[c].dtype for c in cols]
    a = held.select(pl.col(c) if ok else pl.col(c).cast(pl.Utf8) for c, ok in zip(cols, same))
    b = trained.select(pl.col(c) if ok else pl.col(c).cast(pl.Utf8) for c, ok in zip(cols, same))
    n = a.join(b.unique(), on=cols, how="semi").height
    if n:
        method = rec.split.method
        raise ConfigError(
            f"{where or 'the model'}: {n:,} of the {held.height:,} events of the {part} part "
            f"were training events of the model (it was trained with the {method} split of "
            f"{rec.data.path}): scoring them counts what it learnt from; {advice}"
        )


def _refuse_source_leak(source: Any, spec: RunSpec, prepared: Any, where: str | Path) -> None:
    """Refuse a source pre-trained on the target's own log whose training events hold the
    target's validation or test events (another split of the same log, or a fit on all of
    it): the transferred model would be scored on what its source learnt. Sources of other
    logs cannot hold them and are not read again."""
    rec = spec_of_model(source, where)
    if spec.data is None or rec.data is None:
        return
    if Path(str(rec.data.path)).resolve() != Path(str(spec.data.path)).resolve():
        return
    refit = getattr(getattr(source.meta, "run", None), "refit", None)
    if refit:
        raise ConfigError(
            f"{where}: the source was fitted on the whole of {spec.data.path} (--refit-all), "
            "this run's validation and test events included: a model transferred from it "
            "would be scored on what its source trained on"
        )
    for part in ("valid", "test"):
        _refuse_training_events(
            source, spec, prepared, part, where,
            advice="pre-train the source with this run's split (its training part only)",
        )  # fmt: skip


# -- conveniences for studies and benchmarks that fit many models on one prepared dataset ------
def fit_model(
    name: str,
    prepared: Any,
    model_config: Mapping[str, Any] | None = None,
    train_config: Mapping[str, Any] | None = None,
) -> Any:
    """``fit_run`` of the run ``{model: name + model_config, train: train_config}`` on data
    already prepared (the run record keeps the split; validation is not scored again)."""
    spec = spec_from_config(
        {"model": {"name": name, **dict(model_config or {})}, "train": dict(train_config or {})}
    )
    return fit_run(spec, prepared, evaluate_valid=False)


def evaluate_model(
    model: Any,
    eval_set: Any,
    prepared: Any = None,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    protocol: str = "full",
    exclude_seen: bool = False,
    seed: int = 0,
) -> Any:
    """:func:`warmrec.evaluate` with training popularity filled in from ``prepared``."""
    ev = EvalSpec(metrics=list(metrics), protocol=protocol, exclude_seen=exclude_seen)
    return evaluate_run(model, eval_set, RunSpec(eval=ev), prepared, seed=seed)


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), wall seconds)``."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0

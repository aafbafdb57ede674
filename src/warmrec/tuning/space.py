"""Search spaces as TOML data, checked against a model's typed config before anything runs.

A space file has an optional ``[search]`` table and one table per config section a parameter
targets, ``[model]`` (the model's :class:`~warmrec.config.ConfigModel`) and ``[train]`` (the
training loop's :class:`~warmrec.training.loop.TrainerConfig`, neural models only)::

    [search]
    model = "item2vec"          # the family the space is for (optional; checked against --model)
    metric = "recall@10"        # validation metric to maximise (default ndcg@10)

    [model]
    min_count = 1               # a plain value: fixed in every trial
    window = { type = "int", low = 1, high = 20 }
    alpha = { type = "log", low = 1e-3, high = 0.1 }         # float, sampled on a log scale
    ns_exponent = { type = "float", low = -1.0, high = 1.0, step = 0.25 }
    sg = { type = "categorical", choices = [true, false] }
    negative = { type = "int", low = 1, high = 20, when = { "model.sg" = true } }

A table with a ``type`` key is a parameter; anything else is a fixed value. Types: ``int``
(``low``, ``high``, optional ``step``, ``log``), ``float`` (``low``, ``high``, optional ``step``
or ``log``), ``log`` (a float on a log scale), ``categorical`` (``choices``). ``when`` makes a
parameter conditional: it is sampled only when every named categorical parameter has the given
value (or one of the given values, for a list); otherwise the config's default holds.

:func:`load_space` checks, before any data is read, that every key is a field of the model's
config (or of the trainer's), that the fixed values build a valid config, and that both ends of
every range and every choice are values the field accepts (constraints are intervals, so the ends
suffice). Errors are one-line :class:`~warmrec.errors.ConfigError` naming the file and parameter.

:meth:`SearchSpace.suggest` samples a trial through Optuna's define-by-run API (``trial.suggest_*``);
the same function drives Ray Tune's ``OptunaSearch``, so both backends search the same space.

**Built-in spaces.** One space per model family ships inside the package
(``warmrec/tuning/spaces/<family>.toml``; ``configs/spaces`` of the source checkout links
there): :func:`builtin_spaces` lists them, :func:`builtin_space_path` finds one. ``warmrec tune``
without ``--space`` searches the model's built-in space, and ``warmrec auto`` samples them, in an
installed wheel as in a checkout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from warmrec.config import load_toml
from warmrec.errors import ConfigError, WarmrecError

SECTIONS = ("model", "train")
TYPES = ("int", "float", "log", "categorical")
DEFAULT_METRIC = "ndcg@10"
_PARAM_KEYS = {"type", "low", "high", "step", "log", "choices", "when"}


def builtin_spaces_dir() -> Path:
    """The folder of the search spaces shipped with the package (``<family>.toml`` files)."""
    from importlib.resources import files

    return Path(str(files("warmrec.tuning") / "spaces"))


def builtin_spaces() -> dict[str, Path]:
    """``{family: path}`` of every built-in search space, sorted by family name."""
    d = builtin_spaces_dir()
    return {p.stem: p for p in sorted(d.glob("*.toml"))} if d.is_dir() else {}


def builtin_space_path(model: str) -> Path:
    """The built-in search space of ``model``.

    Raises:
        ConfigError: ``model`` has no built-in space (the message lists those that exist).
    """
    spaces = builtin_spaces()
    if model not in spaces:
        have = ", ".join(spaces) or "none (the package's spaces folder is missing)"
        raise ConfigError(
            f"model {model!r} has no built-in search space; give --space FILE "
            f"(built-in spaces: {have})"
        )
    return spaces[model]


@dataclass(frozen=True)
class Param:
    """One searched parameter: ``section.key`` and how it is sampled."""

    section: str
    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether the conditions of ``when`` hold for the values sampled so far."""
        return all(values.get(k, _MISSING) in allowed for k, allowed in self.when.items())

    def suggest(self, trial: Any) -> Any:
        """Sample this parameter from an Optuna trial (or anything with ``suggest_*``)."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(
            self.name, float(self.low), float(self.high), step=self.step, log=self.log
        )

    def values_to_check(self) -> list[Any]:
        if self.type == "categorical":
            return list(self.choices)
        return [self.low, self.high]


_MISSING = object()


@dataclass
class SearchSpace:
    """Parameters and fixed values over a model's config and its trainer's."""

    params: list[Param]
    fixed: dict[str, dict[str, Any]]
    model: str | None = None
    metric: str = DEFAULT_METRIC
    source: str = "<space>"
    overridden: set[str] = field(default_factory=set)
    """``section.key`` of the fixed values set from the command line (``--set``), not the file."""

    def record(self) -> dict[str, Any]:
        """What the space draws from, JSON-shaped (``metric``, ``params``, ``fixed``): the part
        of a search's settings that a resumed search must share."""
        import dataclasses

        return {
            "metric": self.metric,
            "params": [dataclasses.asdict(p) for p in self.params],
            "fixed": self.fixed,
        }

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Sample every active parameter: ``{"model.window": 5, ...}`` (define-by-run)."""
        values: dict[str, Any] = {}
        for p in self.params:
            if p.active(values):
                values[p.name] = p.suggest(trial)
        return values

    def configs(self, values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """``{"model": {...}, "train": {...}}``: the fixed values with the sampled ones on top."""
        out = {s: dict(self.fixed.get(s, {})) for s in SECTIONS}
        for name, v in values.items():
            section, _, key = name.partition(".")
            out[section][key] = v
        return out

    def check(self, model: str) -> None:
        """Refuse a space that does not fit ``model``'s config; see the module docstring."""
        from warmrec.registry import model_class
        from warmrec.schema import check_configs
        from warmrec.training.loop import TrainerConfig

        where = self.source
        if self.model is not None and self.model != model:
            raise ConfigError(f"{where}: the space is for model {self.model!r}, found {model!r}")
        klass = model_class(model)
        fields = {"model": set(klass.Config.model_fields), "train": set(TrainerConfig.model_fields)}
        for section in SECTIONS:
            keys = set(self.fixed.get(section, {})) | {
                p.key for p in self.params if p.section == section
            }
            unknown = sorted(keys - fields[section])
            if unknown:
                owner = klass.Config.__name__ if section == "model" else "TrainerConfig"
                name = f"{section}.{unknown[0]}"
                head = (
                    f"{name} (from --set or --config): unknown key"
                    if name in self.overridden
                    else f"{where}: [{section}] unknown key {unknown[0]!r}"
                )
                raise ConfigError(
                    f"{head} for {owner}; valid keys: " + ", ".join(sorted(fields[section]))
                )
        fixed_model = self.fixed.get("model", {})
        fixed_train = self.fixed.get("train", {})
        try:
            check_configs(model, fixed_model, fixed_train)
        except WarmrecError as e:
            given = ", ".join(sorted(self.overridden))
            what = (
                f"fixed values (with {given} from --set or --config)" if given else "fixed values"
            )
            raise ConfigError(f"{where}: {what}: {e}") from None
        for p in self.params:
            for v in p.values_to_check():
                m = dict(fixed_model)
                t = dict(fixed_train)
                (m if p.section == "model" else t)[p.key] = v
                try:
                    check_configs(model, m, t)
                except WarmrecError as e:
                    raise ConfigError(f"{where}: parameter {p.name} = {v!r}: {e}") from None


def _param(where: str, section: str, key: str, spec: Mapping[str, Any]) -> Param:
    name = f"{section}.{key}"
    extra = sorted(set(spec) - _PARAM_KEYS)
    if extra:
        raise ConfigError(
            f"{where}: parameter {name}: unknown key {extra[0]!r}; valid: {', '.join(sorted(_PARAM_KEYS))}"
        )
    kind = spec["type"]
    if kind not in TYPES:
        raise ConfigError(
            f"{where}: parameter {name}: expected type one of {', '.join(TYPES)}, found {kind!r}"
        )
    when: dict[str, tuple[Any, ...]] = {}
    raw_when = spec.get("when", {})
    if not isinstance(raw_when, Mapping):
        raise ConfigError(f"{where}: parameter {name}: expected when = a table, found {raw_when!r}")
    for k, v in raw_when.items():
        if isinstance(v, list) and not v:  # no value could hold: never sampled, silently
            raise ConfigError(
                f"{where}: parameter {name}: expected when {k} = a value or a non-empty list "
                "of values, found []"
            )
        when[str(k)] = tuple(v) if isinstance(v, list) else (v,)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(
                f"{where}: parameter {name}: expected choices = a non-empty list, found {choices!r}"
            )
        return Param(section, key, kind, choices=tuple(choices), when=when)
    low, high = spec.get("low"), spec.get("high")
    for label, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(
                f"{where}: parameter {name}: expected {label} = a number, found {v!r}"
            )
    if kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
        raise ConfigError(
            f"{where}: parameter {name}: expected integer low and high, found {low!r}, {high!r}"
        )
    if low > high:
        raise ConfigError(f"{where}: parameter {name}: expected low <= high, found {low} > {high}")
    if not isinstance(spec.get("log", False), bool):
        raise ConfigError(
            f"{where}: parameter {name}: expected log = true or false, found {spec['log']!r}"
        )
    log = kind == "log" or spec.get("log", False)
    if log and low <= 0:
        raise ConfigError(f"{where}: parameter {name}: a log scale needs low > 0, found {low}")
    step = spec.get("step")
    if step is not None and (
        isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0
    ):
        raise ConfigError(f"{where}: parameter {name}: expected step > 0, found {step!r}")
    if step is not None and kind == "int" and not isinstance(step, int):
        raise ConfigError(f"{where}: parameter {name}: expected an integer step, found {step!r}")
    if step is not None and log and (kind != "int" or step != 1):
        raise ConfigError(f"{where}: parameter {name}: step and log cannot be combined")
    return Param(
        section,
        key,
        "int" if kind == "int" else "float",
        low=low,
        high=high,
        step=step,
        log=log,
        when=when,
    )


def parse_space(data: Mapping[str, Any], source: str = "<space>") -> SearchSpace:
    """A :class:`SearchSpace` from parsed TOML (unchecked: see :meth:`SearchSpace.check`)."""
    unknown = sorted(set(data) - {"search", *SECTIONS})
    if unknown:
        raise ConfigError(
            f"{source}: unknown table [{unknown[0]}]; valid: [search], [model], [train]"
        )
    for table in ("search", *SECTIONS):
        if not isinstance(data.get(table, {}), Mapping):
            raise ConfigError(f"{source}: expected [{table}] to be a table, found {data[table]!r}")
    search = dict(data.get("search", {}))
    bad = sorted(set(search) - {"model", "metric"})
    if bad:
        raise ConfigError(f"{source}: [search] unknown key {bad[0]!r}; valid: metric, model")
    metric = str(search.get("metric", DEFAULT_METRIC)).lower()
    from warmrec.evaluation.metrics import parse_rank_metric

    try:
        parse_rank_metric(metric, "a search maximises it")
    except WarmrecError as e:
        raise ConfigError(f"{source}: [search] metric: {e}") from None
    params: list[Param] = []
    fixed: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for section in SECTIONS:
        for key, v in dict(data.get(section, {})).items():
            if isinstance(v, Mapping) and "type" in v:
                params.append(_param(source, section, key, v))
            else:
                fixed[section][key] = v
    names = {p.name for p in params}
    for i, p in enumerate(params):
        for cond in p.when:
            ref = next((q for q in params[:i] if q.name == cond), None)
            if ref is None:
                where = "is not a parameter" if cond not in names else "comes after it"
                raise ConfigError(
                    f"{source}: parameter {p.name}: when names {cond!r}, which {where} "
                    "(a condition names a categorical parameter defined before it)"
                )
            if ref.type != "categorical":
                raise ConfigError(
                    f"{source}: parameter {p.name}: when names {cond!r}, expected a categorical "
                    f"parameter, found type {ref.type!r}"
                )
            missing = [v for v in p.when[cond] if v not in ref.choices]
            if missing:
                raise ConfigError(
                    f"{source}: parameter {p.name}: when {cond} = {missing[0]!r} is not one of "
                    f"its choices {list(ref.choices)}"
                )
    if not params:
        raise ConfigError(f"{source}: no parameter to search (a table with type = ...)")
    model = search.get("model")
    return SearchSpace(
        params=params,
        fixed=fixed,
        model=str(model) if model else None,
        metric=metric,
        source=source,
    )


def load_space(
    path: str | Path,
    model: str | None = None,
    *,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> SearchSpace:
    """Read a space file; with ``model``, check it against that model's configs.

    ``overrides`` (``{"train": {"epochs": 1}}``, from ``--set``/``--config``) replace the file's
    fixed values; a key the space searches is refused, as is a key the config does not have
    (:meth:`SearchSpace.check`)."""
    space = parse_space(load_toml(path, resolve=False), source=str(path))
    for section, values in (overrides or {}).items():
        if section not in SECTIONS:
            raise ConfigError(f"[{section}]: expected one of {', '.join(SECTIONS)}")
        for key, v in values.items():
            name = f"{section}.{key}"
            if name in space.names:
                raise ConfigError(
                    f"{name} (from --set or --config): {path} searches it; fix it in the space "
                    "file instead (a plain value there), or drop the override"
                )
            space.fixed.setdefault(section, {})[key] = v
            space.overridden.add(name)
    name = model or space.model
    if name is None:
        raise ConfigError(f"{path}: no model: give --model or [search] model")
    space.check(name)
    space.model = name
    return space

"""Typed configs: pydantic v2 models, unknown keys rejected; TOML files; ``--set`` overrides.

Every config of warmrec (each model's, the trainer's, the transfer strategies', Reptile's) is a
:class:`ConfigModel`: a pydantic model with ``extra="forbid"``, ``Literal`` choices, constrained
numbers and one docstring per field (they become the JSON Schema's descriptions, see
:func:`config_schema`). :func:`build_config` fills one from a mapping and turns pydantic's
``ValidationError`` into a one-line :class:`~warmrec.errors.ConfigError` naming the key, what
was found and what is expected (``SASRecConfig.d: expected an integer > 0, found 'abc'``).
:func:`apply_overrides` applies ``a.b=c`` strings (values parsed as TOML literals, falling back to
plain strings). :func:`load_toml` reads an experiment file and resolves its relative paths
(the keys that name files and folders, :func:`resolve_paths`) against the file's folder.
"""

from __future__ import annotations

import difflib
import numbers
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.fields import FieldInfo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from warmrec.errors import ConfigError

T = TypeVar("T", bound=BaseModel)


class ConfigModel(BaseModel):
    """Base of every warmrec config: unknown keys rejected, assignments validated, attribute
    docstrings as field descriptions; a bad value raises a one-line :class:`ConfigError`
    whether the config is built, constructed directly or assigned to."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        use_attribute_docstrings=True,
        validate_default=False,
    )

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise ConfigError(error_line(type(self), e)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as e:
            raise ConfigError(error_line(type(self), e)) from None

    @model_validator(mode="before")
    @classmethod
    def _strict_flags(cls, data: Any) -> Any:
        """true/false fields take only booleans (pydantic would read "yes" or 1 as true), and
        number fields only numbers (pydantic would read ``lr = true`` as 1.0 and ``d = "16"``
        as 16, and the saved config would keep ``true`` and ``"16"``)."""
        if isinstance(data, Mapping):
            for name, info in cls.model_fields.items():
                v = data.get(name)
                if v is None:
                    continue
                kinds = _plain_types(info.annotation)
                if kinds == {bool}:
                    if not isinstance(v, bool):
                        raise ValueError(f"{name}: expected true or false, found {v!r}")
                elif kinds and kinds <= {int, float}:
                    if isinstance(v, bool) or not isinstance(v, numbers.Real):
                        what = describe_type(info.annotation, info.metadata)
                        raise ValueError(f"{name}: expected {what}, found {v!r}")
        return data


def _plain_types(annotation: Any) -> set[type]:
    """The types a field takes, ``None``, ``Annotated`` and unions unwrapped (an empty set where
    one is not a plain class: a Literal, a list, a model)."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _plain_types(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        out: set[type] = set()
        for a in get_args(annotation):
            if a is type(None):
                continue
            sub = _plain_types(a)
            if not sub:
                return set()
            out |= sub
        return out
    return {annotation} if isinstance(annotation, type) and origin is None else set()


# -- one-line errors ---------------------------------------------------------------------------
def _constraints(metadata: Iterable[Any]) -> list[str]:
    out = []
    for m in metadata:
        for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            v = getattr(m, attr, None)
            if v is not None and isinstance(m, annotated_types.BaseMetadata):
                out.append(f"{op} {v}")
        if isinstance(m, annotated_types.MinLen) and m.min_length:
            out.append(f"at least {m.min_length} long")
    return out


def describe_type(annotation: Any, metadata: Iterable[Any] = ()) -> str:
    """What a value of ``annotation`` (with ``metadata`` constraints) must be, in words."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        base, *meta = get_args(annotation)
        flat = [x for m in meta for x in (m.metadata if isinstance(m, FieldInfo) else [m])]
        return describe_type(base, [*flat, *metadata])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        parts = [describe_type(a, metadata) for a in get_args(annotation) if a is not type(None)]
        return " or ".join(parts)  # None means "unset": TOML cannot write it
    cons = _constraints(metadata)
    tail = (" " + " and ".join(cons)) if cons else ""
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer" + tail
    if annotation is float:
        return "a number" + tail
    if annotation is str:
        return "a string" + tail
    if origin in (tuple, list):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        inner = describe_type(args[0]) if args else "values"
        return f"a list, each {inner}" + (f", {tail.strip()}" if tail else "")
    if origin is dict:
        return "a table"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"a table of {annotation.__name__} settings"
    return getattr(annotation, "__name__", str(annotation)) + tail


def _field_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, list[Any]] | None:
    """The (annotation, constraints) of the field at ``loc`` (nested models followed)."""
    model: Any = cls
    info = None
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        model = info.annotation
    if info is None:
        return None
    return info.annotation, list(info.metadata)


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'max_len'?)`` for the valid key closest to a typo, else ``""``."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def error_line(cls: type[BaseModel], err: ValidationError) -> str:
    """One line for a pydantic ``ValidationError`` of ``cls``: key, found, expected."""
    errors = err.errors(include_url=False)
    first = errors[0]
    full = tuple(first.get("loc", ()))
    loc = tuple(p for p in full if not isinstance(p, int))
    name = cls.__name__
    key = name + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in full)
    kind = first.get("type", "")
    more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    if kind == "extra_forbidden":
        parent = _field_at(cls, loc[:-1]) if len(loc) > 1 else (cls, [])
        owner = parent[0] if parent else cls
        valid = sorted(owner.model_fields) if isinstance(owner, type) else []
        where = ".".join([name, *(str(p) for p in loc[:-1])])
        hint = did_you_mean(str(loc[-1]), valid)
        return (
            f"unknown key {str(loc[-1])!r} for {where}{hint}; valid keys: {', '.join(valid)}" + more
        )
    if kind == "value_error" or kind == "assertion_error" or not loc:
        msg = str(first.get("msg", "")).removeprefix("Value error, ")
        head, sep, rest = msg.partition(": ")
        if sep and head.isidentifier() and head in cls.model_fields and not loc:
            return f"{name}.{head}: {rest}{more}"
        return f"{key}: {msg}{more}"
    found = first.get("input")
    field = _field_at(cls, loc)
    expected = describe_type(*field) if field else str(first.get("msg", "")).lower()
    return f"{key}: expected {expected}, found {found!r}{more}"


def _plain(values: Any) -> dict[str, Any]:
    if values is None:
        return {}
    if isinstance(values, BaseModel):
        return values.model_dump()
    if isinstance(values, Mapping):
        return dict(values)
    raise ConfigError(f"expected a table of settings, found {type(values).__name__} {values!r}")


def build_config(
    cls: type[T], values: Mapping[str, Any] | BaseModel | None = None, **overrides: Any
) -> T:
    """An instance of config model ``cls`` from ``values`` (a mapping or another config) and
    ``overrides``; any bad key or value raises a one-line :class:`ConfigError`."""
    merged = _plain(values)
    merged.update(overrides)
    try:
        return cls.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(error_line(cls, e)) from None


def config_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config (``model_dump(mode="json")``)."""
    if isinstance(cfg, BaseModel):
        return cfg.model_dump(mode="json")
    if isinstance(cfg, Mapping):
        return dict(cfg)
    raise ConfigError(f"expected a config, found {type(cfg).__name__}")


def config_schema(cls: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of config model ``cls`` (field docstrings as descriptions)."""
    return cls.model_json_schema()


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value as a TOML literal (``3``, ``0.1``, ``true``, ``[1, 2]``, ``"x"``);
    anything else is kept as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(config: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides to a nested dict (in place and returned)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, found {item!r}")
        key, value = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set expects key=value, found {item!r}")
        node = config
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: '{p}' is a value, not a table")
            node = nxt
        node[parts[-1]] = parse_value(value.strip())
    return config


PATH_KEYS = frozenset({"path", "text_cache"})
"""Keys that name a file or folder in any table (besides those ending in ``_dir`` or
``_path``): ``[data] path``, a model's ``text_cache`` folder."""
SECTION_PATH_KEYS = frozenset({("data", "items"), ("data", "users"), ("transfer", "source")})
"""``(table, key)`` pairs whose names say nothing of a path but that name a file or folder:
the item and user feature files of ``[data]``, the source model directory of ``[transfer]``."""


def _is_path_key(key: str, table: str | None = None) -> bool:
    return (
        key in PATH_KEYS
        or key.endswith("_dir")
        or key.endswith("_path")
        or (table, key) in SECTION_PATH_KEYS
    )


def resolve_paths(cfg: dict[str, Any], base: Path, *, _table: str | None = None) -> dict[str, Any]:
    """Make the relative paths of a config relative to ``base``: every key in
    :data:`PATH_KEYS` or ending in ``_dir`` / ``_path``, and the keys of
    :data:`SECTION_PATH_KEYS` in their table (``[data] items``, ``[transfer] source``) -- in
    place and returned; ``~`` expanded."""
    for k, v in cfg.items():
        if isinstance(v, dict):
            resolve_paths(v, base, _table=k)
        elif isinstance(v, str) and v and _is_path_key(k, _table):
            p = Path(v).expanduser()
            cfg[k] = str(p if p.is_absolute() else base / p)
    return cfg


def load_toml(path: str | Path, *, resolve: bool = True) -> dict[str, Any]:
    """Read a TOML experiment file, with errors that name the file and line. Relative paths in it
    (``[data] path``, ``items`` and ``users``, ``[transfer] source``, ``text_cache``, ``*_dir``,
    ``*_path``: :func:`resolve_paths`) are resolved against the file's folder, not the working
    directory (``resolve=False`` keeps them as written)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            cfg = tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"{p}: config file not found") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from e
    except UnicodeDecodeError as e:  # a binary file
        raise ConfigError(
            f"{p}: expected a TOML text file (UTF-8), found byte 0x{e.object[e.start]:02x} "
            f"at offset {e.start}"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: expected a TOML file, found a folder") from None
    return resolve_paths(cfg, p.resolve().parent) if resolve else cfg

"""Typed configuration: dataclasses loaded from YAML with validation that names file, key and problem.

Every configurable part of the project (synthetic world, data, training, evaluation, export, ROS node parameters)
declares a dataclass. Fields carry their constraints in ``dataclasses.field(metadata=...)`` through :func:`ranged`,
and :func:`load_config` / :func:`config_from_dict` check types and ranges recursively. A bad file never half-loads:
the first problem raises :class:`ConfigError` with the file, the dotted key and what is wrong.

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``typing.Literal[...]``, ``Optional[T]``,
``list[T]``, ``tuple[T, ...]``, ``tuple[T1, T2]``, ``dict[str, T]`` and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")

_MISSING = dataclasses.MISSING


class ConfigError(ValueError):
    """A configuration problem, located by source (file or other origin) and dotted key."""

    def __init__(self, source: str, key: str, problem: str):
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: " if source else ""
        super().__init__(f"{where}key '{key}': {problem}" if key else f"{where}{problem}")


def ranged(
    default: Any = _MISSING,
    *,
    lo: float | None = None,
    hi: float | None = None,
    help: str = "",
    default_factory: Any = _MISSING,
) -> Any:
    """A dataclass field with an inclusive numeric range and a description.

    ``lo``/``hi`` apply to numbers, and element-wise to lists and tuples of numbers.
    """
    metadata = {"lo": lo, "hi": hi, "help": help}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _check_range(value: Any, meta: typing.Mapping[str, Any], source: str, key: str) -> None:
    lo, hi = meta.get("lo"), meta.get("hi")
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if lo is not None and v < lo:
            raise ConfigError(source, key, f"value {v!r} is out of range: must be >= {lo}")
        if hi is not None and v > hi:
            raise ConfigError(source, key, f"value {v!r} is out of range: must be <= {hi}")


def _convert(value: Any, tp: Any, source: str, key: str) -> Any:
    """Check ``value`` against type ``tp`` and return it converted (lists to tuples, dicts to dataclasses)."""
    origin = get_origin(tp)

    if origin is Union or origin is types.UnionType:
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(source, key, f"must not be null (expected {_type_name(tp)})")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, source, key)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise ConfigError(source, key, "; ".join(errors))

    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(source, key, f"invalid value {value!r}: must be one of {list(choices)}")
        return value

    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(source, key, f"wrong type: expected a mapping, got {type(value).__name__}")
        return _build_dataclass(value, tp, source, key)

    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(source, key, f"wrong type: expected a list, got {type(value).__name__}")
        args = get_args(tp)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(source, key, f"wrong length: expected {len(args)} items, got {len(value)}")
            return tuple(
                _convert(v, a, source, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        item_type = args[0] if args else Any
        items = [_convert(v, item_type, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items

    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, key, f"wrong type: expected a mapping, got {type(value).__name__}")
        key_type, value_type = get_args(tp) or (str, Any)
        return {
            _convert(k, key_type, source, f"{key}.{k}"): _convert(v, value_type, source, f"{key}.{k}")
            for k, v in value.items()
        }

    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, key, f"wrong type: expected bool, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, key, f"wrong type: expected int, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(source, key, f"wrong type: expected float, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(source, key, f"wrong type: expected str, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported config field type {tp!r} at {key}")


def _build_dataclass(data: dict, cls: type[T], source: str, prefix: str) -> T:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in data:
        if name not in fields:
            dotted = f"{prefix}.{name}" if prefix else str(name)
            known = ", ".join(sorted(fields))
            raise ConfigError(source, dotted, f"unknown key (known keys: {known})")
    kwargs = {}
    for name, f in fields.items():
        dotted = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if f.default is _MISSING and f.default_factory is _MISSING:
                raise ConfigError(source, dotted, "missing required key")
            continue
        value = _convert(data[name], hints[name], source, dotted)
        _check_range(value, f.metadata, source, dotted)
        kwargs[name] = value
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError(source, prefix, str(exc)) from None
    return obj


def config_from_dict(data: dict | None, cls: type[T], source: str = "<dict>") -> T:
    """Build and validate a ``cls`` instance from a plain mapping (missing keys keep their defaults)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, "", f"top level must be a mapping, got {type(data).__name__}")
    return _build_dataclass(data, cls, source, "")


def load_config(path: str | os.PathLike, cls: type[T], section: str | None = None) -> T:
    """Load ``cls`` from a YAML file, optionally from one top-level ``section`` of it."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ConfigError(source, "", "file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(source, "", f"not valid YAML: {exc}") from None
    if section is not None:
        if not isinstance(data, dict) or section not in data:
            raise ConfigError(source, section, "missing required section")
        data = data[section] if data[section] is not None else {}
        if not isinstance(data, dict):
            raise ConfigError(source, section, f"wrong type: expected a mapping, got {type(data).__name__}")
        return _build_dataclass(data, cls, source, section)
    return config_from_dict(data, cls, source)


def config_to_dict(obj: Any) -> Any:
    """Plain YAML/JSON-serialisable form of a config dataclass (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [config_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: config_to_dict(v) for k, v in obj.items()}
    return obj


def save_config(obj: Any, path: str | os.PathLike) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(obj), sort_keys=False))

"""Typed configs: dataclass defaults, then a YAML file, then dotted ``key=value`` overrides.

An unknown key is an error that lists the valid keys; values are parsed as YAML and checked
against the field's type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from cxrl.errors import ConfigError

T = TypeVar("T")


def valid_keys(cls: type, sections: Mapping[str, type] | None = None) -> list[str]:
    """All dotted keys a config dataclass accepts (``sections``: see :func:`build`)."""
    keys: list[str] = []
    hints = {**typing.get_type_hints(cls), **(sections or {})}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += [f"{f.name}.{k}" for k in valid_keys(hints[f.name])]
        else:
            keys.append(f.name)
    return keys


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]"]`` -> nested dict with YAML-parsed values."""
    bad = [item for item in overrides if "=" not in item or not item.partition("=")[0].strip()]
    if bad:
        raise ConfigError(f"override(s) {', '.join(map(repr, bad))}: expected key=value, e.g. lr=0.1")
    out: dict[str, Any] = {}
    for item in overrides:
        key, _, raw = item.partition("=")
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw) if raw.strip() else None
    return out


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against the type hint ``tp`` (numbers widened, lists built); ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if tp is Any or value is None and _allows_none(tp):
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"config key {key!r}: expected {tp}, found {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"config key {key!r}: expected one of {typing.get_args(tp)}, found {value!r}")
        return value
    if origin in (list, tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}: expected a list, found {value!r}")
        args = typing.get_args(tp)
        items = [coerce(v, args[0], key) for v in value] if args else list(value)
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key {key!r}: expected a mapping, found {value!r}")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):  # bool is an int subclass
        raise ConfigError(f"config key {key!r}: expected {tp.__name__}, found {value!r}")
    return value


def _allows_none(tp: Any) -> bool:
    return tp is type(None) or type(None) in typing.get_args(tp)


def build(cls: type[T], data: Mapping[str, Any], prefix: str = "", sections: Mapping[str, type] | None = None) -> T:
    """Make ``cls`` from a nested mapping, checking keys and types.

    ``sections`` names the dataclass of top-level fields typed ``Any`` whose schema is chosen at run time
    (the ``method`` section of a pre-training config is the registered method's own dataclass).
    """
    hints = {**typing.get_type_hints(cls), **(sections or {})}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; valid keys: "
            + ", ".join(prefix + k for k in valid_keys(cls, sections))
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {prefix + name!r}: expected a mapping, found {value!r}")
            kwargs[name] = build(tp, value, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = coerce(value, tp, prefix + name)
    return cls(**kwargs)


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``extra`` wins."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as plain data (tuples become lists), for YAML/JSON."""
    return yaml.safe_load(yaml.safe_dump(dataclasses.asdict(cfg)))


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
    sections: Mapping[str, type] | None = None,
) -> T:
    """Defaults of ``cls`` (and of ``sections``, see :func:`build`) <- ``base`` <- YAML at ``path`` <- ``overrides``."""
    data = {**to_dict(cls()), **{name: to_dict(tp()) for name, tp in (sections or {}).items()}}
    if base:
        data = merge(data, base)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path}: not valid YAML ({e})") from e
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"config file {path}: expected a mapping at the top, found {type(loaded).__name__}")
        data = merge(data, loaded)
    data = merge(data, parse_overrides(overrides))
    return build(cls, data, sections=sections)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

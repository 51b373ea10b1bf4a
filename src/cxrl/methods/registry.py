"""The method registry: one ``@register_method`` per method, read by the engine, the CLI help, the YAML check and
the tests.

A registered method is a :class:`~cxrl.methods.base.PretrainMethod` subclass built as
``cls(encoder, cfg, ctx)`` from its own config dataclass (the YAML's ``method:`` section, which must have a
``name`` field) and a :class:`~cxrl.methods.base.BuildContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from typing import TypeVar

from cxrl.errors import ConfigError
from cxrl.methods.base import MethodConfig, PretrainMethod


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its class, its config dataclass and one line for the CLI help."""

    name: str
    cls: type[PretrainMethod]
    config: type
    summary: str


METHODS: dict[str, MethodSpec] = {}
ALIASES: dict[str, str] = {}
M = TypeVar("M", bound=type[PretrainMethod])


def register_method(
    name: str, config: type = MethodConfig, aliases: tuple[str, ...] = ()
) -> Callable[[M], M]:
    """Class decorator: register a method under ``name`` (and ``aliases``) with its config dataclass."""
    if not is_dataclass(config) or "name" not in {f.name for f in fields(config)}:
        raise ConfigError(f"method {name!r}: its config must be a dataclass with a 'name' field")

    def add(cls: M) -> M:
        summary = (cls.__doc__ or name).strip().splitlines()[0]
        METHODS[name] = MethodSpec(name, cls, config, summary)
        ALIASES.update(dict.fromkeys(aliases, name))
        return cls

    return add


def unregister_method(name: str) -> None:
    """Remove ``name`` and its aliases (tests that register a toy method)."""
    METHODS.pop(name, None)
    for alias in [a for a, target in ALIASES.items() if target == name]:
        del ALIASES[alias]


def method_names() -> str:
    """Every name ``cxrl pretrain`` takes, for help texts and errors."""
    return ", ".join(sorted({*METHODS, *ALIASES}))


def canonical_method(name: str) -> str:
    """``moco`` -> ``moco_v2``; an unknown name is a ConfigError listing the methods."""
    name = ALIASES.get(name, name)
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {method_names()}")
    return name

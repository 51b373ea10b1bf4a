"""The protocol registry: ``@register_protocol(name)``, read by ``cxrl evaluate --protocol``, the config check and
the tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from cxrl.errors import ConfigError
from cxrl.evaluate.protocols.base import EvalProtocol

PROTOCOLS: dict[str, type[EvalProtocol]] = {}
P = TypeVar("P", bound=type[EvalProtocol])


def register_protocol(name: str) -> Callable[[P], P]:
    """Class decorator: register an :class:`EvalProtocol` under ``name``."""

    def add(cls: P) -> P:
        PROTOCOLS[name] = cls
        return cls

    return add


def unregister_protocol(name: str) -> None:
    """Remove ``name`` (tests that register a toy protocol)."""
    PROTOCOLS.pop(name, None)


def protocol_class(name: str) -> type[EvalProtocol]:
    """The protocol registered as ``name``; a ConfigError listing them otherwise."""
    if name not in PROTOCOLS:
        raise ConfigError(f"evaluation protocol {name!r}: expected one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]

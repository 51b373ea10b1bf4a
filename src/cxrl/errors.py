"""Exceptions with messages that name the file, the row or key, what was expected and what was found."""

from __future__ import annotations


class CxrlError(Exception):
    """Base class: the CLI prints these without a traceback."""


class ConfigError(CxrlError, ValueError):
    """A config file or override is wrong (unknown key, bad type)."""


class DataError(CxrlError, ValueError):
    """An input file, row or image is wrong."""


class LeakageError(CxrlError):
    """A patient appears on two sides of a split."""

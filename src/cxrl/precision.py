"""Numeric precision as Lightning names it, and the autocast each name means outside Lightning.

``32``/``"32-true"`` is plain float32; ``16``/``"16-mixed"`` and ``bf16``/``"bf16-mixed"`` are mixed precision
(autocast to float16 or bfloat16; weights, views and losses stay float32). Values from YAML or the command line
may be ints or strings; :func:`canonical_precision` maps them to Lightning's long names.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

from cxrl.errors import ConfigError

PRECISIONS = {
    "32": "32-true", "32-true": "32-true",
    "16": "16-mixed", "16-mixed": "16-mixed",
    "bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed",
}
_AUTOCAST_DTYPES = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


def canonical_precision(value: str | int, key: str = "precision") -> str:
    """``32`` -> ``"32-true"``, ``"bf16"`` -> ``"bf16-mixed"``, ...; anything else is a ConfigError naming ``key``."""
    name = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if name not in PRECISIONS:
        raise ConfigError(f"config key {key!r}: expected one of {', '.join(PRECISIONS)}, found {value!r}")
    return PRECISIONS[name]


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a (canonical) precision; ``None`` for float32."""
    return _AUTOCAST_DTYPES.get(canonical_precision(precision))


def autocast(device: torch.device | str, precision: str) -> AbstractContextManager:
    """``torch.autocast`` on ``device`` for ``precision`` (a disabled context for float32)."""
    dtype = autocast_dtype(precision)
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None)


def grad_scaler(device: torch.device | str, precision: str) -> torch.amp.GradScaler:
    """A loss scaler for float16 (which underflows small gradients); a pass-through for bf16 and float32."""
    device_type = torch.device(device).type
    return torch.amp.GradScaler(device_type, enabled=autocast_dtype(precision) == torch.float16)

"""Planted subgroup differences: a finding left undrawn in some of one subgroup's positive images.

``SubgroupEffect("Cardiomegaly", "sex", "F", 0.0)`` draws no Cardiomegaly in any female image that has it, while
its labels and report still say it is there, so a classifier misses it in women: a known true-positive-rate gap
(CheXclusion, Seyyed-Kalantari et al., PSB 2021) for subgroup evaluation to find. With visibility ``v`` the
finding is drawn in a share ``v`` of the subgroup's positive images, chosen from a stream of its own
``(seed, image, 4)``, so no other image changes (Lung Opacity, the umbrella label, stays visible through any other
opacity drawn). Written as ``FINDING:KEY=VALUE:VISIBILITY``; keys: ``sex`` (F, M), ``view`` (AP, PA), ``age``
(``LO-HI`` years, high end excluded, or ``LO+``), the values of the record table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cxrl.data.phantom.sampling import FINDINGS, ImageSpec
from cxrl.errors import ConfigError

KEYS: dict[str, tuple[str, ...]] = {"sex": ("F", "M"), "view": ("AP", "PA"), "age": ()}
FORMAT = "FINDING:KEY=VALUE:VISIBILITY, e.g. Cardiomegaly:sex=F:0.5"


@dataclass(frozen=True)
class SubgroupEffect:
    """Finding ``finding`` is drawn in a share ``visibility`` of the positive images whose ``key`` is ``value``."""

    finding: str
    key: str
    value: str
    visibility: float

    def matches(self, spec: ImageSpec) -> bool:
        """Whether ``spec`` belongs to the subgroup."""
        if self.key == "sex":
            return spec.sex[0] == self.value
        if self.key == "view":
            return spec.view == self.value
        low, high = _age_range(self.value)
        return low <= spec.age < high


def _age_range(value: str) -> tuple[float, float]:
    """``"60-80"`` -> (60, 80); ``"80+"`` -> (80, inf); a ConfigError otherwise."""
    try:
        if value.endswith("+"):
            return float(value[:-1]), float("inf")
        low, high = value.split("-")
        return float(low), float(high)
    except ValueError as e:
        raise ConfigError(f"subgroup effect age {value!r}: expected LO-HI or LO+ in years, e.g. 60-80") from e


def parse_effect(text: str) -> SubgroupEffect:
    """``"Cardiomegaly:sex=F:0.5"`` -> :class:`SubgroupEffect`; a ConfigError naming the part that is wrong."""
    parts = text.split(":")
    if len(parts) != 3 or "=" not in parts[1]:
        raise ConfigError(f"subgroup effect {text!r}: expected {FORMAT}")
    finding, (key, value), share = parts[0].strip(), parts[1].split("=", 1), parts[2]
    if finding not in FINDINGS:
        raise ConfigError(f"subgroup effect {text!r}: unknown finding {finding!r}; "
                          f"phantom findings: {', '.join(FINDINGS)}")
    if key not in KEYS:
        raise ConfigError(f"subgroup effect {text!r}: unknown key {key!r}; expected one of {', '.join(KEYS)}")
    if KEYS[key] and value not in KEYS[key]:
        raise ConfigError(f"subgroup effect {text!r}: {key} must be one of {', '.join(KEYS[key])}, found {value!r}")
    if key == "age":
        _age_range(value)
    try:
        visibility = float(share)
    except ValueError:
        visibility = float("nan")
    if not 0 <= visibility <= 1:
        raise ConfigError(f"subgroup effect {text!r}: visibility must be a number in [0, 1], found {share!r}")
    return SubgroupEffect(finding, key, value, visibility)


def hidden_findings(spec: ImageSpec, effects: Sequence[SubgroupEffect], seed: int) -> tuple[str, ...]:
    """The findings of ``spec`` that ``effects`` leave undrawn (deterministic from ``seed`` and the image)."""
    if not effects:
        return ()
    draw = np.random.default_rng([seed, spec.index, 4]).random(len(effects))
    return tuple(sorted({e.finding for e, u in zip(effects, draw, strict=True)
                         if e.finding in spec.findings and e.matches(spec) and u >= e.visibility}))

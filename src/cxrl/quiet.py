"""Lightning's console noise about itself, filtered; every other warning passes.

Dropped: Lightning's "Tip" advertisements (log records, filtered once this module is imported) and, inside
:func:`quiet_lightning`, torch's ``LeafSpec`` deprecation that Lightning triggers and the hint about
``log_every_n_steps`` exceeding a short epoch (cxrl sets that interval on purpose).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

NOISE_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
)
TIP = "💡 Tip"
LIGHTNING_LOGGER = "lightning.pytorch.utilities.rank_zero"


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TIP)


logging.getLogger(LIGHTNING_LOGGER).addFilter(_NoTips())  # the tips come while the Trainer is built


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Inside the block, the :data:`NOISE_WARNINGS` are not shown."""
    with warnings.catch_warnings():
        for pattern in NOISE_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        yield

"""Which metrics an evaluation summarized and how they read in tables (report.py and compare.py share these)."""

from __future__ import annotations

import re

METRIC_LABELS = {"macro_auroc": "macro AUROC", "macro_ap": "macro AP", "macro_f1": "macro F1",
                 "macro_kappa": "macro kappa"}
METRIC_LABELS |= {"map_40_75": "mAP@[.40:.75]", "map50": "mAP@.50", "map_40_75_all": "mAP@[.40:.75] all images",
                  "map50_all": "mAP@.50 all images"}  # detection: on the test images with a box, and on all


def metric_label(key: str) -> str:
    """How a summary key reads in tables: ``macro_auroc`` -> macro AUROC, ``i2t_recall_at_5`` or ``i2t_recall@5``
    (:mod:`cxrl.evaluate.retrieval`'s spelling) -> i2t Recall@5."""
    if key in METRIC_LABELS:
        return METRIC_LABELS[key]
    return re.sub(r"recall(?:_at_|@)(\d+)", r"Recall@\1", key).replace("_", " ")


def summary_keys(summary: dict) -> list[str]:
    """The metrics summarized per fraction (each has ``KEY_mean`` and ``KEY_std``), in the protocol's order."""
    first = next(iter(summary.values()), {})
    return [k.removesuffix("_mean") for k in first if k.endswith("_mean") and f"{k.removesuffix('_mean')}_std" in first]

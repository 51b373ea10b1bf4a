"""Embedding matrices as the image-text evaluations read them: 2-D float64 arrays with unit-length rows."""

from __future__ import annotations

import numpy as np

from cxrl.errors import CxrlError


def unit_rows(x, name: str = "embeddings") -> np.ndarray:
    """``x`` (an array or a torch tensor, ``(N, D)``) as float64 with every row L2-normalized (zero rows stay zero)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or not x.shape[0] or not x.shape[1]:
        raise CxrlError(f"{name}: expected a non-empty (N, D) matrix, found shape {x.shape}")
    if not np.isfinite(x).all():
        raise CxrlError(f"{name}: rows {np.flatnonzero(~np.isfinite(x).all(1))[:5].tolist()} hold NaN or inf")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

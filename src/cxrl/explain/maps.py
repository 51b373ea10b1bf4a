"""Pictures of an embedding space: 2-D maps (UMAP, McInnes et al. 2018; t-SNE, van der Maaten & Hinton 2008) of
test embeddings coloured by a label or a record column, several encoders side by side, and cosine-similarity
heatmaps between findings (class prototypes of any encoder; positive prompt ensembles of an image-text one)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cxrl.evaluate.plots import label_groups, project, save_figure, scatter_groups
from cxrl.evaluate.subgroups import AGE_BINS, subgroup_values

COLOR_KEYS: tuple[str, ...] = ("label", "dataset", "view", "sex", "age")
Groups = dict[str, tuple[str, np.ndarray]]  # legend entry -> (colour, row mask)


def column_groups(records: pd.DataFrame, key: str) -> Groups:
    """The rows of each value of record column ``key`` (``age`` binned as the subgroups are), unknown last."""
    values = subgroup_values(records, key, AGE_BINS) if key in records else np.full(len(records), None, object)
    known = sorted({v for v in values if v is not None})
    palette = plt.get_cmap("tab10")
    groups = {str(v): (palette(i % 10), values == v) for i, v in enumerate(known)}
    return groups | {"unknown": ("0.7", np.array([v is None for v in values], bool))}


def colourings(records: pd.DataFrame, labels: np.ndarray, findings: Sequence[str], keys: Sequence[str]
               ) -> tuple[dict[str, Groups], list[str]]:
    """One colouring per row of the map: ``label`` gives one per finding (positive, negative, unknown), the record
    keys one each; a key with fewer than two known values is left out, with a note."""
    out: dict[str, Groups] = {}
    notes = []
    for key in keys:
        if key == "label":
            out |= {finding: label_groups(labels[:, k]) for k, finding in enumerate(findings)}
            continue
        groups = column_groups(records, key)
        if sum(1 for name, (_, rows) in groups.items() if name != "unknown" and rows.any()) < 2:
            notes.append(f"embedding maps: not coloured by {key} (fewer than two {key} values in the test rows)")
            continue
        out[key] = groups
    return out, notes


def embedding_maps(embeddings: Mapping[str, np.ndarray], colourings: Mapping[str, Groups], path: Path,
                   method: str = "umap") -> Path:
    """A grid of 2-D maps: one column per encoder (``name -> (N, D)`` embeddings of the same rows), one row per
    colouring (:func:`colourings`); each encoder is projected once."""
    points = {name: project(np.asarray(x, dtype=np.float32), method) for name, x in embeddings.items()}
    rows, cols = len(colourings), len(points)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.9 * rows), squeeze=False)
    for j, (name, (xy, used)) in enumerate(points.items()):
        for i, (title, groups) in enumerate(colourings.items()):
            ax = axes[i, j]
            scatter_groups(ax, xy, groups)
            ax.set(xticks=[], yticks=[], title=f"{name} ({used.upper()})" if i == 0 else "")
            if j == 0:
                ax.set_ylabel(f"coloured by {title}")
    return save_figure(fig, path)


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """``(K, K)`` cosine similarities of the rows of ``vectors`` (NaN for a NaN or zero row)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.where(norms > 0, vectors / np.where(norms > 0, norms, 1), np.nan)
    return unit @ unit.T


def class_prototypes(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(K, D)``: per finding, the mean embedding of its positive rows minus the mean of all rows (centred, so
    that the cosine compares what sets the findings apart, not the shared mean); NaN without positives."""
    centred = embeddings - embeddings.mean(0)
    positive = labels == 1
    return np.stack([centred[positive[:, k]].mean(0) if positive[:, k].any() else np.full(centred.shape[1], np.nan)
                     for k in range(labels.shape[1])])


def similarity_heatmaps(matrices: Mapping[str, np.ndarray], findings: Sequence[str], path: Path, title: str
                        ) -> Path:
    """Side-by-side ``K x K`` heatmaps (``panel title -> matrix``) on one colour scale, -1 to 1, values written."""
    k = len(findings)
    side = max(3.6, 0.55 * k + 1.6)
    fig, axes = plt.subplots(1, len(matrices), figsize=(side * len(matrices) + 1.0, side), squeeze=False)
    image = None
    for ax, (name, m) in zip(axes[0], matrices.items(), strict=True):
        image = ax.imshow(m, cmap="RdBu_r", vmin=-1, vmax=1)
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, "n/a" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(v) > 0.6 else "black")
        ax.set_xticks(range(k), findings, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), findings if ax is axes[0, 0] else [""] * k, fontsize=8)
        ax.set_title(name, fontsize=9)
    fig.colorbar(image, ax=axes[0, -1], shrink=0.8, label="cosine similarity")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)

"""Report figures (matplotlib, Agg backend): ROC curves, label efficiency, per-class AUROC, confusion
matrices and a 2-D map of test embeddings. Each function writes one PNG and returns its path."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from cxrl.evaluate.metrics import _observed, auroc  # noqa: E402

log = logging.getLogger(__name__)
DPI = 110


def save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def roc_curves(labels: np.ndarray, scores: np.ndarray, pathologies: list[str], path: Path, title: str) -> Path:
    """One ROC curve per class (observed rows only) with its AUROC in the legend."""
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    aucs = auroc(labels, scores)
    for k, name in enumerate(pathologies):
        y, s = _observed(labels, scores, k)
        if y.all() or not y.any():
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=1.6, label=f"{name} ({aucs[k]:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="0.6", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.legend(loc="lower right", fontsize=8, title="class (AUROC)", title_fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def label_efficiency(summary: dict, path: Path, label: str) -> Path:
    """Macro AUROC against label fraction (log x): mean over seeds, band = +/- one std, dots = seeds."""
    fr = np.array([v["fraction"] for v in summary.values()])
    mean = np.array([v["macro_auroc_mean"] for v in summary.values()], dtype=float)  # None -> NaN
    std = np.array([v["macro_auroc_std"] or 0.0 for v in summary.values()])
    fig, ax = plt.subplots(figsize=(7.4, 4.4))
    ax.plot(fr * 100, mean, marker="o", lw=2, label=label)
    ax.fill_between(fr * 100, mean - std, mean + std, alpha=0.25)
    for f, v in zip(fr, summary.values(), strict=True):
        ax.scatter([f * 100] * len(v["macro_auroc_values"]), v["macro_auroc_values"], s=10, c="k", alpha=0.5, zorder=3)
    ax.set_xscale("log")
    ax.set_xticks(fr * 100, [f"{f * 100:g}%" for f in fr])
    ax.minorticks_off()
    ax.set(
        xlabel="labelled training patients", ylabel="test macro AUROC", title="Label efficiency (mean ± std over seeds)"
    )
    ax.grid(alpha=0.3)
    ax.margins(x=0.06)  # whole markers at 1 % and 100 %
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)  # outside: never over a point
    return save_figure(fig, path)


def per_class_auroc(run: dict, pathologies: list[str], path: Path, title: str) -> Path:
    """Horizontal bars of per-class test AUROC with bootstrap 95 % intervals."""
    vals = np.array([run["per_class"][p]["auroc"] for p in pathologies], dtype=float)  # None -> NaN
    ci = np.array([run["per_class"][p]["auroc_ci"] for p in pathologies], dtype=float)
    err = np.abs(np.nan_to_num(np.stack([vals - ci[:, 0], ci[:, 1] - vals])))
    low = min(0.4, float(np.nanmin(np.r_[vals, ci[:, 0], 1.0])) - 0.05)
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(pathologies) + 1.4))
    y = np.arange(len(pathologies))
    ax.barh(y, np.nan_to_num(vals, nan=0.5) - 0.5, left=0.5, xerr=err, color="tab:blue", alpha=0.8, capsize=3)
    for i, v in enumerate(vals):
        right = np.nanmax([v, ci[i, 1], 0.5])
        ax.text(right + 0.01, i, "n/a" if np.isnan(v) else f"{v:.3f}", va="center", fontsize=8)
    ax.axvline(0.5, c="0.4", lw=1)
    ax.set_yticks(y, pathologies)
    ax.invert_yaxis()
    ax.set(xlim=(low, 1.09), xlabel="test AUROC (bar from chance; whiskers: bootstrap 95% CI)", title=title)
    ax.set_xticks([t for t in ax.get_xticks() if t <= 1.0])
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def confusion_matrices(run: dict, pathologies: list[str], path: Path) -> Path:
    """A grid of 2x2 test confusion matrices at the validation-chosen thresholds."""
    n = len(pathologies)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.5 * rows), squeeze=False)
    for ax, name in zip(axes.flat, pathologies, strict=False):
        cm = np.array(run["per_class"][name]["confusion"])
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(cm.max(), 1))
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=10, color="white" if v > cm.max() / 2 else "black")
        ax.set_xticks([0, 1], ["pred −", "pred +"], fontsize=8)
        ax.set_yticks([0, 1], ["true −", "true +"], fontsize=8)
        thr = run["per_class"][name]["threshold"]
        ax.set_title(f"{name}\nthreshold {thr:.3g}" if thr is not None else name, fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return save_figure(fig, path)


def embedding_map(
    embedding: np.ndarray, labels: np.ndarray, name: str, path: Path, method: str = "umap"
) -> Path | None:
    """2-D UMAP (McInnes et al. 2018) of test embeddings coloured by one label; t-SNE if UMAP fails."""
    if len(embedding) < 5:
        log.info("embedding map skipped: %d test rows", len(embedding))
        return None
    xy, used = project(np.asarray(embedding, dtype=np.float32), method)
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    scatter_groups(ax, xy, label_groups(labels))
    ax.set(title=f"{used.upper()} of test embeddings, coloured by {name}", xticks=[], yticks=[])
    return save_figure(fig, path)


def label_groups(labels: np.ndarray) -> dict[str, tuple[str, np.ndarray]]:
    """The negative, positive and unknown rows of one label column (1, 0, NaN), each with its colour."""
    return {"negative": ("tab:blue", labels == 0), "positive": ("tab:red", labels == 1),
            "unknown": ("0.7", np.isnan(labels))}


def scatter_groups(ax, xy: np.ndarray, groups: dict[str, tuple[str, np.ndarray]]) -> None:
    """Scatter the 2-D points ``xy`` group by group (``name -> (colour, row mask)``), counts in the legend."""
    for label, (c, m) in groups.items():
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=9, color=c, alpha=0.7, label=f"{label} ({int(m.sum())})")
    ax.legend(fontsize=8, markerscale=1.5)


def project(x: np.ndarray, method: str) -> tuple[np.ndarray, str]:
    """``x`` ``(N, D)`` in 2-D by ``method`` (``umap`` or ``tsne``) and the method used: t-SNE (van der Maaten &
    Hinton 2008) when asked or when UMAP fails."""
    if method == "umap":
        try:
            import umap

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reducer = umap.UMAP(n_neighbors=min(15, len(x) - 1), random_state=0, n_jobs=1)
                return reducer.fit_transform(x), "umap"
        except Exception as e:  # UMAP's numba/pynndescent stack fails on odd inputs; the map is a nicety
            log.warning("UMAP failed (%s: %s); using t-SNE", type(e).__name__, e)
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
    exact = len(x) <= 500  # Barnes-Hut's tree costs more than it saves on a few hundred points
    tsne = TSNE(perplexity=perplexity, init="pca", random_state=0, method="exact" if exact else "barnes_hut")
    return tsne.fit_transform(x), "t-sne"


def subgroup_tpr_gaps(subgroups: dict, pathologies: list[str], path: Path, title: str) -> Path:
    """TPR gap (subgroup minus overall, at the chosen threshold) per finding, one panel per subgroup key, as in
    CheXclusion's figures; whiskers: bootstrap 95 % CI; subgroups too small to measure are left out."""
    keys = subgroups["keys"]
    fig, axes = plt.subplots(len(keys), 1, figsize=(max(6.4, 0.6 * len(pathologies) + 2), 2.8 * len(keys)),
                             squeeze=False)
    x = np.arange(len(pathologies))
    for ax, key in zip(axes[:, 0], keys, strict=True):
        members = subgroups["groups"][key]
        width = 0.8 / max(len(members), 1)
        for i, (value, group) in enumerate(members.items()):
            cells = [group["per_class"][p] for p in pathologies]
            gap = np.array([c["tpr_gap"] for c in cells], dtype=float)  # None -> NaN
            ci = np.array([c["tpr_gap_ci"] for c in cells], dtype=float)
            err = np.abs(np.stack([gap - ci[:, 0], ci[:, 1] - gap]))
            shown = np.isfinite(gap)
            offset = (i - (len(members) - 1) / 2) * width
            ax.errorbar(x[shown] + offset, gap[shown], yerr=np.nan_to_num(err[:, shown]), fmt="o", ms=4, capsize=2,
                        label=f"{key} {value}")
        ax.axhline(0, c="0.4", lw=1)
        ax.set_xticks(x, pathologies if key == keys[-1] else [""] * len(x), rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("TPR gap")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, fontsize=8)
    axes[0, 0].set_title(title)
    return save_figure(fig, path)

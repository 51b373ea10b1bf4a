"""Image-text retrieval: Recall@K and median rank in both directions, from two embedding matrices.

Pair ``i`` is image ``i`` with report ``i``. For each query the rank is that of its best-scoring relevant item
(cosine similarity): ``1 + #(irrelevant items scoring >= it)``, so ties count against the model and a collapsed
encoder ranks last, not first. Relevant means the query's own pair (the figure of CLIP, Radford et al. 2021,
section 3.1, and of ConVIRT's retrieval, Zhang et al. 2022, section 4.4) or, as a second figure, any item whose
labels equal the query's (blank equals blank). Similarities are computed ``chunk_size`` queries at a time, so
memory grows as ``chunk_size x N``, never ``N x N``; chunking never changes a rank.
"""

from __future__ import annotations

import numpy as np

from cxrl.errors import ConfigError, CxrlError
from cxrl.evaluate.embeddings import unit_rows

RECALL_AT: tuple[int, ...] = (1, 5, 10)
DEFAULT_CHUNK = 256  # 256 x 50k similarities: about 100 MB per temporary


def relevant_ranks(
    queries: np.ndarray, gallery: np.ndarray, query_groups: np.ndarray, gallery_groups: np.ndarray,
    chunk_size: int = DEFAULT_CHUNK,
) -> np.ndarray:
    """1-based rank of each query's best relevant gallery item, ``(Nq,)``; relevant = same group id, and 0 for a
    query with no relevant item. ``queries`` / ``gallery`` are unit rows (:func:`unit_rows`)."""
    if chunk_size < 1:
        raise ConfigError(f"retrieval: chunk_size must be >= 1, found {chunk_size}")
    ranks = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk_size):
        sims = queries[start:start + chunk_size] @ gallery.T
        relevant = query_groups[start:start + chunk_size, None] == gallery_groups[None, :]
        best = np.where(relevant, sims, -np.inf).max(1, keepdims=True)
        ranks[start:start + chunk_size] = np.where(relevant.any(1), 1 + ((sims >= best) & ~relevant).sum(1), 0)
    return ranks


def rank_summary(ranks: np.ndarray) -> dict[str, float | int]:
    """``recall@K`` (share of ranks <= K) for K in :data:`RECALL_AT`, ``median_rank`` and ``n_queries`` over the
    queries that have a relevant item; ``n_unmatched`` counts the others (rank 0). NaN when no query has one."""
    matched = ranks[ranks > 0]
    counts = {"n_queries": int(len(matched)), "n_unmatched": int(len(ranks) - len(matched))}
    if not len(matched):
        return {**{f"recall@{k}": float("nan") for k in RECALL_AT}, "median_rank": float("nan"), **counts}
    recalls = {f"recall@{k}": float(np.mean(matched <= k)) for k in RECALL_AT}
    return {**recalls, "median_rank": float(np.median(matched)), **counts}


def label_groups(image_labels: np.ndarray, text_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One group id per distinct label row, shared by images and reports (NaN, i.e. blank, equals NaN)."""
    both = np.concatenate([np.asarray(image_labels, np.float64), np.asarray(text_labels, np.float64)])
    coded = np.where(np.isnan(both), np.inf, both)
    ids = np.unique(coded, axis=0, return_inverse=True)[1].reshape(-1)
    return ids[:len(image_labels)], ids[len(image_labels):]


def retrieval_metrics(
    image_embeddings, text_embeddings, image_labels: np.ndarray | None = None,
    text_labels: np.ndarray | None = None, chunk_size: int = DEFAULT_CHUNK,
) -> dict[str, dict]:
    """``image_to_text`` and ``text_to_image`` :func:`rank_summary` with the own report as the hit; with
    ``image_labels`` ``(N, K)``, also ``label_match`` (both directions) where a report whose labels (``text_labels``,
    default ``image_labels``) equal the image's is a hit (queries whose labels no item shares are counted apart)."""
    images = unit_rows(image_embeddings, "image embeddings")
    texts = unit_rows(text_embeddings, "text embeddings")
    if images.shape != texts.shape:
        raise CxrlError(f"retrieval: image embeddings {images.shape} and text embeddings {texts.shape} must match")
    own = np.arange(len(images))
    result = {"image_to_text": rank_summary(relevant_ranks(images, texts, own, own, chunk_size)),
              "text_to_image": rank_summary(relevant_ranks(texts, images, own, own, chunk_size))}
    if image_labels is not None:
        text_labels = image_labels if text_labels is None else text_labels
        shapes = {np.shape(image_labels), np.shape(text_labels)}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2 or next(iter(shapes))[0] != len(images):
            raise CxrlError(f"retrieval: image and text labels {sorted(shapes)} must both be ({len(images)}, K)")
        image_groups, text_groups = label_groups(image_labels, text_labels)
        result["label_match"] = {
            "image_to_text": rank_summary(relevant_ranks(images, texts, image_groups, text_groups, chunk_size)),
            "text_to_image": rank_summary(relevant_ranks(texts, images, text_groups, image_groups, chunk_size)),
        }
    return result

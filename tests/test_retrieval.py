"""Retrieval Recall@K and median rank: hand-computed ranks, ties against the model, label matches, chunking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrl.errors import ConfigError, CxrlError
from cxrl.evaluate.retrieval import label_groups, relevant_ranks, retrieval_metrics


def test_identity_embeddings_give_recall_one_and_median_rank_one_both_ways():
    eye = np.eye(12)
    result = retrieval_metrics(3 * eye, eye, image_labels=np.zeros((12, 2)))
    for figure in (result["image_to_text"], result["text_to_image"], *result["label_match"].values()):
        assert figure == {"recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0, "median_rank": 1.0,
                          "n_queries": 12, "n_unmatched": 0}


def test_a_swapped_pair_ranks_last_unless_its_labels_match():
    order = np.arange(12)
    order[[3, 7]] = [7, 3]  # reports 3 and 7 swapped: each image's own report now scores 0 like 10 others
    labels = np.zeros((12, 3))
    labels[[3, 7], 1] = 1.0  # the swapped pair shares its labels, unlike anyone else
    result = retrieval_metrics(np.eye(12), np.eye(12)[order], image_labels=labels)
    for direction in ("image_to_text", "text_to_image"):
        own = result[direction]
        assert (own["recall@1"], own["recall@10"], own["median_rank"]) == (10 / 12, 10 / 12, 1.0)
        assert result["label_match"][direction]["recall@1"] == 1.0


def test_ranks_of_a_hand_made_similarity_matrix_count_ties_against_the_query():
    sims = np.array([[0.5, 0.5, 0.25, 0.75],      # own 0.5; 1 ties it, 3 beats it -> rank 3
                     [0.25, 0.5, 0.0, 0.0],       # own 0.5 is the best -> rank 1
                     [0.5, 0.25, 0.125, 0.125]])  # own 0.125; 0, 1 beat it, 3 ties it -> rank 4
    queries, gallery = np.eye(3), sims.T  # queries @ gallery.T == sims, exactly
    np.testing.assert_array_equal(relevant_ranks(queries, gallery, np.arange(3), np.arange(4)), [3, 1, 4])
    # gallery item 3 shares query 0's group, query 2 has no relevant item (rank 0, counted apart)
    np.testing.assert_array_equal(relevant_ranks(queries, gallery, np.array([0, 1, 5]), np.array([0, 1, 2, 0])),
                                  [1, 1, 0])


def test_a_collapsed_encoder_ranks_last_not_first():
    result = retrieval_metrics(np.ones((20, 4)), np.ones((20, 4)))
    assert result["image_to_text"]["recall@10"] == 0.0 and result["image_to_text"]["median_rank"] == 20.0


def test_labels_blank_equals_blank_and_unmatched_queries_are_counted_apart():
    nan = float("nan")
    image_groups, text_groups = label_groups(np.array([[1, nan], [0, nan], [1, 0]]), np.array([[1, nan], [1, 1],
                                                                                              [0, nan]]))
    assert image_groups[0] == text_groups[0] and image_groups[1] == text_groups[2]
    assert image_groups[2] not in text_groups and text_groups[1] not in image_groups
    result = retrieval_metrics(np.eye(3), np.eye(3), image_labels=np.array([[1, nan], [0, nan], [1, 0]]),
                               text_labels=np.array([[1, nan], [1, 1], [0, nan]]))
    i2t = result["label_match"]["image_to_text"]
    assert (i2t["n_queries"], i2t["n_unmatched"]) == (2, 1)
    none = retrieval_metrics(np.eye(2), np.eye(2), np.zeros((2, 1)), np.ones((2, 1)))["label_match"]["text_to_image"]
    assert none["n_queries"] == 0 and math.isnan(none["recall@1"]) and math.isnan(none["median_rank"])


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_chunked_ranks_equal_unchunked_ranks_exactly(chunk_size):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(50, 8))
    texts = images + rng.normal(scale=1.0, size=(50, 8))
    labels = (rng.random((50, 2)) < 0.5).astype(float)
    whole = retrieval_metrics(images, texts, image_labels=labels, chunk_size=1000)
    assert whole["image_to_text"]["recall@1"] not in (0.0, 1.0)  # a case where ranks actually vary
    assert retrieval_metrics(images, texts, image_labels=labels, chunk_size=chunk_size) == whole


def test_bad_shapes_and_chunk_size_are_named():
    with pytest.raises(CxrlError, match="must match"):
        retrieval_metrics(np.eye(3), np.eye(4))
    with pytest.raises(CxrlError, match=r"must both be \(3, K\)"):
        retrieval_metrics(np.eye(3), np.eye(3), image_labels=np.zeros((2, 1)))
    with pytest.raises(ConfigError, match="chunk_size"):
        retrieval_metrics(np.eye(3), np.eye(3), chunk_size=0)
    with pytest.raises(CxrlError, match="NaN"):
        retrieval_metrics(np.full((2, 2), np.nan), np.eye(2))

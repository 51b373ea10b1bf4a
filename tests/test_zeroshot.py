"""Zero-shot scoring: CheXzero's positive-vs-negative softmax over prompt ensembles, and the five-way accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cxrl.data.labels import CHEXPERT_PATHOLOGIES
from cxrl.errors import ConfigError, CxrlError
from cxrl.evaluate.metrics import auroc
from cxrl.evaluate.zeroshot import (
    COMPETITION_FINDINGS,
    DEFAULT_PROMPTS,
    class_embeddings,
    ensemble_embeddings,
    five_way_accuracy,
    zeroshot_scores,
)


def axis_encoder(pathologies, prompts=DEFAULT_PROMPTS, noise: float = 0.3, seed: int = 0):
    """A text encoder where every positive prompt of finding k points near axis 2k and every negative near 2k + 1."""
    rng = np.random.default_rng(seed)
    axes = {}
    for k, name in enumerate(pathologies):
        for side, texts in enumerate(prompts[name]):
            for text in texts:
                axes.setdefault(text, np.eye(2 * len(pathologies))[2 * k + side]
                                + noise * rng.random(2 * len(pathologies)))
    return lambda texts: torch.tensor(np.stack([axes[t] for t in texts]))  # tensors are accepted too


def test_default_prompts_cover_the_14_chexpert_findings_with_both_sides():
    assert set(DEFAULT_PROMPTS) == set(CHEXPERT_PATHOLOGIES)
    assert all(pos and neg and not set(pos) & set(neg) for pos, neg in DEFAULT_PROMPTS.values())


def test_ensemble_is_the_renormalized_mean_and_the_score_is_the_pos_neg_softmax():
    table = {"a": [3.0, 0.0], "b": [0.0, 0.5], "c": [0.0, 2.0]}
    encode = lambda texts: np.array([table[t] for t in texts])  # noqa: E731
    np.testing.assert_allclose(ensemble_embeddings(encode, ["a", "b"], "x"), [1 / math.sqrt(2), 1 / math.sqrt(2)])
    classes = class_embeddings(encode, ["x"], {"x": (("a",), ("c",))})
    np.testing.assert_allclose(classes, [[[1.0, 0.0], [0.0, 1.0]]])
    scores = zeroshot_scores(np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), classes)
    e = math.e
    np.testing.assert_allclose(scores[:, 0], [e / (e + 1), 1 / (1 + e), 0.5])


def test_prompts_aligned_with_the_labels_give_auroc_one_for_every_finding():
    pathologies = list(CHEXPERT_PATHOLOGIES)
    rng = np.random.default_rng(1)
    labels = (rng.random((40, len(pathologies))) < 0.4).astype(float)
    labels[0], labels[1] = 1, 0  # both values in every column
    images = np.zeros((40, 2 * len(pathologies)))
    images[:, 0::2], images[:, 1::2] = labels, 1 - labels
    scores = zeroshot_scores(images, class_embeddings(axis_encoder(pathologies), pathologies))
    assert scores.shape == (40, len(pathologies))
    np.testing.assert_array_equal(auroc(labels, scores), np.ones(len(pathologies)))


def test_missing_prompts_and_a_wrong_encoder_output_are_named():
    encode = axis_encoder(["Edema"])
    with pytest.raises(ConfigError, match="Fracture"):
        class_embeddings(encode, ["Edema", "Fracture"], {"Edema": DEFAULT_PROMPTS["Edema"]})
    with pytest.raises(CxrlError, match="returned 1 rows for the 3 prompts of 'Edema"):
        class_embeddings(lambda texts: encode(texts[:1]), ["Edema"])
    with pytest.raises(CxrlError, match="do not fit"):
        zeroshot_scores(np.ones((2, 5)), class_embeddings(encode, ["Edema"]))


def test_five_way_accuracy_scores_images_with_exactly_one_competition_finding():
    encode = axis_encoder(COMPETITION_FINDINGS)
    nan = float("nan")
    labels = np.array([
        [1, 0, 0, 0, 0],      # Atelectasis, embedded as Atelectasis: right
        [0, 0, 1, nan, -1],   # Consolidation (NaN and uncertain are not positive), embedded so: right
        [0, 0, 0, 0, 1],      # Pleural Effusion, embedded so: right
        [0, 1, 0, 0, 0],      # Cardiomegaly, embedded as Edema: wrong
        [1, 1, 0, 0, 0],      # two positives: left out
        [0, 0, 0, 0, 0],      # none: left out
    ])
    images = np.zeros((6, 10))
    for row, finding in enumerate([0, 2, 4, 3, 0, 1]):
        images[row, 2 * finding] = 1
    assert five_way_accuracy(images, labels, encode) == {"accuracy": 0.75, "n_images": 4}
    empty = five_way_accuracy(images[4:], labels[4:], encode)
    assert empty["n_images"] == 0 and math.isnan(empty["accuracy"])
    with pytest.raises(CxrlError, match="must be"):
        five_way_accuracy(images, labels[:, :4], encode)


def test_a_text_encoder_from_the_project_door_plugs_in_as_encode_text(tmp_path):
    from cxrl.models.text import create_text_encoder
    from cxrl.models.text_tokenizer import train_tokenizer

    reports = [p for pos, neg in DEFAULT_PROMPTS.values() for p in pos + neg]
    train_tokenizer(reports, tmp_path, vocab_size=300)
    torch.manual_seed(0)
    encoder = create_text_encoder("tiny_text", tokenizer=tmp_path, num_hidden_layers=1).eval()

    @torch.no_grad()
    def encode_text(texts: list[str]) -> torch.Tensor:
        return encoder(**encoder.tokenize(texts, max_length=32)).pooled

    images = np.random.default_rng(0).normal(size=(5, encoder.num_features))
    scores = zeroshot_scores(images, class_embeddings(encode_text, COMPETITION_FINDINGS))
    assert scores.shape == (5, 5) and ((scores > 0) & (scores < 1)).all()
    assert np.unique(scores.round(6)).size > 1  # the prompts of different findings embed differently

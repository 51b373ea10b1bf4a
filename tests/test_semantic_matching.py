"""MedCLIP's semantic matching loss: the paper's soft targets from label cosine (and the reference code's raw dot
product), written as loops, on unpaired images and texts; matching findings pull harder."""

from __future__ import annotations

import math

import pytest
import torch

from cxrl.losses import semantic_matching_loss


def naive(v, t, lv, lt, tau, dot=False):
    """(L^{v->t} + L^{t->v}) / 2 with y_ij = softmax_j sim(l_i, l_j), p_ij = softmax_j cos(v_i, t_j) / tau."""
    def sim(a, b):
        a, b = torch.nan_to_num(a, nan=0.0), torch.nan_to_num(b, nan=0.0)
        if dot:
            return (a * b).sum()
        na, nb = a.norm(), b.norm()
        return (a * b).sum() / (na * nb) if na > 0 and nb > 0 else torch.zeros((), dtype=a.dtype)

    def direction(x, y, lx, ly):
        total = 0.0
        for i in range(len(x)):
            target = torch.stack([sim(lx[i], ly[j]) for j in range(len(y))]).softmax(0)
            logits = torch.stack([torch.cosine_similarity(x[i], y[j], dim=0) for j in range(len(y))]) / tau
            total = total - (target * logits.log_softmax(0)).sum()
        return total / len(x)

    return (direction(v, t, lv, lt) + direction(t, v, lt, lv)) / 2


def _inputs(n_image=5, n_text=4, d=6, k=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(n_image, d, generator=gen, dtype=torch.float64).requires_grad_()
    t = torch.randn(n_text, d, generator=gen, dtype=torch.float64).requires_grad_()
    lv = torch.randint(-1, 2, (n_image, k), generator=gen).double()
    lt = torch.randint(-1, 2, (n_text, k), generator=gen).double()
    lv[0] = 0.0  # a normal study: no finding at all
    lt[1, 2] = math.nan  # not mentioned
    return v, t, lv, lt


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_loss_matches_the_formula_on_unpaired_images_and_texts(similarity):
    v, t, lv, lt = _inputs()
    loss = semantic_matching_loss(v, t, lv, lt, temperature=0.1, label_similarity=similarity)
    expected = naive(v, t, lv, lt, 0.1, dot=similarity == "dot")
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    for g, w in zip(torch.autograd.grad(loss, [v, t]), torch.autograd.grad(expected, [v, t]), strict=True):
        torch.testing.assert_close(g.double(), w, rtol=1e-4, atol=1e-6)


def test_the_two_label_similarities_differ():
    v, t, lv, lt = _inputs(seed=1)
    cosine = semantic_matching_loss(v, t, lv, lt, label_similarity="cosine")
    dot = semantic_matching_loss(v, t, lv, lt, label_similarity="dot")
    assert not torch.isclose(cosine, dot)


def test_pairs_with_more_shared_findings_are_pulled_harder():
    """The target puts more mass on the text whose labels match the image's: moving the image towards that text
    lowers the loss more than moving it towards a text with other findings."""
    lv = torch.tensor([[1.0, 0.0, 0.0]])
    lt = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    t = torch.eye(3)[:2].double()
    towards_match = semantic_matching_loss(torch.tensor([[1.0, 0.0, 0.0]]).double(), t, lv, lt)
    towards_other = semantic_matching_loss(torch.tensor([[0.0, 1.0, 0.0]]).double(), t, lv, lt)
    assert towards_match < towards_other


def test_refusals():
    v, t, lv, lt = _inputs()
    with pytest.raises(ValueError, match="label_similarity"):
        semantic_matching_loss(v, t, lv, lt, label_similarity="jaccard")
    with pytest.raises(ValueError, match="one label row"):
        semantic_matching_loss(v, t, lv[:-1], lt)

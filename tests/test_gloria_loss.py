"""GLoRIA's local word-region score and loss, written as loops over images, captions, words and regions; the
reference code's word-softmax and missing exponent as options; padding words never count."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cxrl.losses.local_alignment import gloria_local_loss, gloria_local_scores


def naive_score(v, t, mask, tau1, tau2, word_softmax_first=False, paper_exponent=True):
    """Z(l, k) for one image's regions v (M, D) and one caption's words t (T, D)."""
    words = [i for i in range(len(t)) if mask[i]]
    if not words:
        return torch.zeros((), dtype=v.dtype)
    raw = {(i, j): v[j] @ t[i] for i in words for j in range(len(v))}
    if word_softmax_first:
        for j in range(len(v)):
            column = torch.stack([raw[i, j] for i in words]).softmax(0)
            for n, i in enumerate(words):
                raw[i, j] = column[n]
    total = 0.0
    for i in words:
        a = torch.stack([tau1 * raw[i, j] for j in range(len(v))]).softmax(0)
        c = sum(a[j] * v[j] for j in range(len(v)))
        total = total + torch.exp(tau2 * F.cosine_similarity(c, t[i], dim=0))
    return torch.log(total) / tau2 if paper_exponent else torch.log(total)


def _inputs(b=3, m=5, t=4, d=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    regions = torch.randn(b, m, d, generator=gen, dtype=torch.float64).requires_grad_()
    words = torch.randn(b, t, d, generator=gen, dtype=torch.float64).requires_grad_()
    mask = torch.tensor([[True, True, True, False], [True, False, False, False], [True, True, True, True]])
    return regions, words, mask


@pytest.mark.parametrize("word_softmax_first, paper_exponent", [(False, True), (True, True), (True, False)])
def test_scores_match_the_equations_for_every_image_caption_pair(word_softmax_first, paper_exponent):
    regions, words, mask = _inputs()
    scores = gloria_local_scores(regions, words, mask, 4.0, 5.0, word_softmax_first, paper_exponent)
    expected = torch.stack([torch.stack([naive_score(regions[l], words[k], mask[k], 4.0, 5.0, word_softmax_first,
                                                     paper_exponent) for k in range(3)]) for l in range(3)])
    torch.testing.assert_close(scores.double(), expected, rtol=1e-5, atol=1e-6)
    for g, w in zip(torch.autograd.grad(scores.sum(), [regions, words]),
                    torch.autograd.grad(expected.sum(), [regions, words]), strict=True):
        torch.testing.assert_close(g.double(), w, rtol=1e-4, atol=1e-6)


def test_padding_words_do_not_count_and_an_empty_caption_scores_zero():
    regions, words, mask = _inputs(seed=1)
    scores = gloria_local_scores(regions, words, mask)
    changed = words.detach().clone()
    changed[0, 3] = 100.0  # a padding position of caption 0
    torch.testing.assert_close(gloria_local_scores(regions, changed, mask), scores.detach())
    empty = mask.clone()
    empty[1] = False
    for word_softmax_first in (False, True):
        zeroed = gloria_local_scores(regions, words, empty, word_softmax_first=word_softmax_first)
        assert (zeroed[:, 1] == 0).all()
        assert all(torch.isfinite(g).all() for g in torch.autograd.grad(zeroed.sum(), [regions, words]))


def test_the_loss_is_cross_entropy_both_ways_and_falls_when_pairs_align():
    regions, words, mask = _inputs(seed=2)
    scores = gloria_local_scores(regions, words, mask)
    targets = torch.arange(3)
    expected = F.cross_entropy(10 * scores, targets) + F.cross_entropy(10 * scores.T, targets)
    torch.testing.assert_close(gloria_local_loss(scores), expected)
    aligned = regions.detach().clone()
    aligned[:, :4] = words.detach()  # each image holds its own caption's words among its regions
    assert gloria_local_loss(gloria_local_scores(aligned, words, mask)) < gloria_local_loss(scores)
    assert math.isfinite(gloria_local_loss(scores).item())


def test_shapes_that_do_not_fit_are_refused():
    regions, words, mask = _inputs()
    with pytest.raises(ValueError, match="do not fit"):
        gloria_local_scores(regions, words[..., :-1], mask)

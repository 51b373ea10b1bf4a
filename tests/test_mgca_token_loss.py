"""MGCA's token alignment: word-to-patch and patch-to-word terms written as loops over each sample's real words
and patches; word weights; padding and empty captions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cxrl.losses import mgca_token_loss


def naive_term(queries, keys, weights, tau):
    """sum_q weight_q (CE_row + CE_col)(S)_q / 2, S_qq' = q . normalise(sum_k softmax_k(q' . k / tau) k) / tau."""
    contexts = []
    for q in queries:
        a = torch.stack([q @ k / tau for k in keys]).softmax(0)
        contexts.append(F.normalize(sum(a[j] * keys[j] for j in range(len(keys))), dim=0))
    s = torch.stack([torch.stack([queries[i] @ contexts[j] / tau for j in range(len(queries))])
                     for i in range(len(queries))])
    total = 0.0
    for i in range(len(queries)):
        row = -(s[i, i] - torch.logsumexp(s[i], 0))
        col = -(s[i, i] - torch.logsumexp(s[:, i], 0))
        total = total + weights[i] * (row + col) / 2
    return total


def naive(patches, words, mask, word_weights, tau):
    losses = []
    for b in range(len(patches)):
        real = [t for t in range(words.shape[1]) if mask[b, t]]
        if not real:
            losses.append(torch.zeros((), dtype=patches.dtype))
            continue
        p = F.normalize(patches[b], dim=1)
        w = F.normalize(words[b, real], dim=1)
        omega = word_weights[b, real] / word_weights[b, real].sum()
        word_term = naive_term(w, p, omega, tau)
        patch_term = naive_term(p, w, torch.full((len(p),), 1.0 / len(p), dtype=p.dtype), tau)
        losses.append((word_term + patch_term) / 2)
    return torch.stack(losses).mean()


def _inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    patches = torch.randn(3, 5, 6, generator=gen, dtype=torch.float64).requires_grad_()
    words = torch.randn(3, 4, 6, generator=gen, dtype=torch.float64).requires_grad_()
    mask = torch.tensor([[True, True, True, False], [True, True, False, False], [True, True, True, True]])
    weights = torch.rand(3, 4, generator=gen, dtype=torch.float64) + 0.1
    return patches, words, mask, weights


@pytest.mark.parametrize("weighted", [False, True])
def test_loss_matches_the_equations_in_value_and_gradient(weighted):
    patches, words, mask, weights = _inputs()
    given = weights if weighted else None
    loss = mgca_token_loss(patches, words, mask, given, temperature=0.1)
    expected = naive(patches, words, mask, weights if weighted else torch.ones_like(weights), 0.1)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    for g, w in zip(torch.autograd.grad(loss, [patches, words]), torch.autograd.grad(expected, [patches, words]),
                    strict=True):
        torch.testing.assert_close(g.double(), w, rtol=1e-4, atol=1e-6)


def test_padding_is_ignored_and_a_sample_without_words_adds_nothing():
    patches, words, mask, _ = _inputs(seed=1)
    loss = mgca_token_loss(patches, words, mask)
    changed = words.detach().clone()
    changed[0, 3] = 50.0  # padding of sample 0
    torch.testing.assert_close(mgca_token_loss(patches, changed, mask), loss.detach())
    empty = mask.clone()
    empty[1] = False
    emptied = mgca_token_loss(patches, words, empty)
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(emptied, [patches, words]))
    keep = [0, 2]
    torch.testing.assert_close(emptied * 3 / 2, mgca_token_loss(patches[keep], words[keep], mask[keep]))


def test_shapes_that_do_not_fit_are_refused():
    patches, words, mask, _ = _inputs()
    with pytest.raises(ValueError, match="do not fit"):
        mgca_token_loss(patches, words[:, :, :-1], mask)

"""DHN-NCE (MedCLIP-SAM): the paper's equations written as loops, the decoupled positive, the hard-negative
weights, HN-NCE's alpha and masked rows (its two-process gloo test is in test_image_text_loss.py)."""

from __future__ import annotations

import math

import pytest
import torch

from cxrl.losses import dhn_nce
from cxrl.losses.image_text import _dhn_direction


def naive_direction(a, b, tau, beta, alpha=0.0, candidates=None):
    """Per query i: -s_ii/tau + log(alpha e^{s_ii/tau} + sum_{j != i} w_ij e^{s_ij/tau}),
    w_ij = n_i e^{beta s_ij/tau} / sum_{k != i} e^{beta s_ik/tau}, over candidate j of b (all by default)."""
    candidates = range(len(b)) if candidates is None else candidates
    terms = []
    for i in range(len(a)):
        s = {j: torch.cosine_similarity(a[i], b[j], dim=0) / tau for j in [*candidates, i]}
        negatives = [j for j in candidates if j != i]
        norm = sum(torch.exp(beta * s[k]) for k in negatives)
        total = sum(len(negatives) * torch.exp(beta * s[j]) / norm * torch.exp(s[j]) for j in negatives)
        total = total + alpha * torch.exp(s[i])
        terms.append(-s[i] + torch.log(total))
    return terms


def _pair(n=6, d=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=gen, dtype=torch.float64).requires_grad_(),
            torch.randn(n, d, generator=gen, dtype=torch.float64).requires_grad_())


@pytest.mark.parametrize("tau, beta, alpha", [(0.6, 0.15, 0.0), (0.1, 0.5, 0.0), (0.2, 0.15, 0.3)])
def test_dhn_nce_matches_the_paper_equations_in_value_and_gradient(tau, beta, alpha):
    v, t = _pair()
    loss = dhn_nce(v, t, temperature=tau, beta_image=beta, beta_text=beta, alpha=alpha)
    expected = torch.stack([a + b for a, b in zip(naive_direction(v, t, tau, beta, alpha),
                                                  naive_direction(t, v, tau, beta, alpha), strict=True)]).mean()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    for g, w in zip(torch.autograd.grad(loss, [v, t]), torch.autograd.grad(expected, [v, t]), strict=True):
        torch.testing.assert_close(g.double(), w, rtol=1e-4, atol=1e-6)


def test_the_positive_is_out_of_the_denominator_and_beta_zero_is_decoupled_infonce():
    v, t = _pair(seed=1)
    loss = dhn_nce(v, t, temperature=0.1, beta_image=0.0, beta_text=0.0)
    s = torch.nn.functional.normalize(v, dim=1) @ torch.nn.functional.normalize(t, dim=1).T / 0.1
    off = ~torch.eye(6, dtype=torch.bool)
    # beta 0: uniform weights n_i / n_i = 1, so log sum_{j != i} e^{s_ij} (DCL, Yeh et al. 2022)
    dcl = [-s[i, i] + torch.logsumexp(s[i][off[i]], 0) - s[i, i] + torch.logsumexp(s[:, i][off[:, i]], 0)
           for i in range(6)]
    torch.testing.assert_close(loss.double(), torch.stack(dcl).mean(), rtol=1e-5, atol=1e-6)
    # the positive sits in no denominator: each query's loss falls with slope exactly -1 in its own logit
    logits = s.detach().clone().requires_grad_()
    rows = torch.arange(6)
    per_row = _dhn_direction(logits, rows, torch.ones(6, dtype=torch.bool), 0.3, 0.0)
    (grad,) = torch.autograd.grad(per_row.sum(), logits)
    torch.testing.assert_close(grad.diagonal(), -torch.ones(6, dtype=grad.dtype))
    assert math.isfinite(loss.item())


def test_harder_negatives_weigh_more():
    v, t = _pair(n=8, seed=2)
    plain = dhn_nce(v, t, temperature=0.1, beta_image=0.0, beta_text=0.0)
    hard = dhn_nce(v, t, temperature=0.1, beta_image=0.5, beta_text=0.5)
    assert hard > plain  # a weighted mean of e^{s_ij} tilted to the largest s_ij exceeds the plain mean


def test_rows_without_a_report_are_no_query_and_their_text_no_candidate():
    v, t = _pair(n=6, seed=3)
    valid = torch.tensor([True, False, True, True, False, True])
    loss = dhn_nce(v, t, temperature=0.2, beta_image=0.15, beta_text=0.15, valid=valid)
    keep = valid.nonzero().flatten().tolist()
    image_to_text = naive_direction(v, t, 0.2, 0.15, candidates=keep)
    text_to_image = naive_direction(t, v, 0.2, 0.15)  # every image is a candidate for a real report
    expected = torch.stack([image_to_text[i] + text_to_image[i] for i in keep]).mean()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    grad_t = torch.autograd.grad(loss, t)[0]
    assert torch.isfinite(grad_t).all() and (grad_t[~valid] == 0).all()
    assert dhn_nce(v, t, valid=torch.zeros(6, dtype=torch.bool)).item() == 0.0
    lonely = dhn_nce(v[:2], t[:2], valid=torch.tensor([True, False]))  # no other report: no v->t negative
    assert torch.isfinite(lonely) and torch.isfinite(torch.autograd.grad(lonely, v)[0]).all()


def test_dhn_nce_rejects_negative_alpha_and_mismatched_shapes():
    v, t = _pair()
    with pytest.raises(ValueError, match="alpha"):
        dhn_nce(v, t, alpha=-1.0)
    with pytest.raises(ValueError, match="must match"):
        dhn_nce(v, t[:-1])

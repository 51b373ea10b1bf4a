"""ConVIRT / CLIP image-text InfoNCE: the formula, its symmetry and weighting, the learnable scale, and two gloo
processes with gathered negatives matching one process on the concatenated batch (DHN-NCE too)."""

from __future__ import annotations

import functools

import pytest
import torch
from engine_support import on_two_gloo_ranks

from cxrl.losses import LogitScale, dhn_nce, image_text_info_nce
from cxrl.models.heads import image_text_projection


def naive_direction(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """mean_i -log exp(cos(a_i, b_i) / t) / sum_k exp(cos(a_i, b_k) / t), written as loops."""
    terms = []
    for i in range(len(a)):
        sims = torch.stack([torch.cosine_similarity(a[i], b[k], dim=0) for k in range(len(b))]) / t
        terms.append(-(sims[i] - torch.logsumexp(sims, dim=0)))
    return torch.stack(terms).mean()


def _pair(n: int = 6, d: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=gen, dtype=torch.float64).requires_grad_(),
            torch.randn(n, d, generator=gen, dtype=torch.float64).requires_grad_())


@pytest.mark.parametrize("temperature, weight", [(0.1, 0.75), (0.07, 0.5), (1.0, 0.3)])
def test_loss_matches_the_convirt_formula_in_value_and_gradient(temperature, weight):
    v, t = _pair()
    loss = image_text_info_nce(v, t, temperature=temperature, image_weight=weight)
    expected = weight * naive_direction(v, t, temperature) + (1 - weight) * naive_direction(t, v, temperature)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    got = torch.autograd.grad(loss, [v, t])
    want = torch.autograd.grad(expected, [v, t])
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g.double(), w, rtol=1e-4, atol=1e-6)


def test_loss_is_symmetric_in_the_modalities_and_weights_the_two_directions():
    v, t = _pair(seed=1)
    image_only = image_text_info_nce(v, t, image_weight=1.0)
    text_only = image_text_info_nce(v, t, image_weight=0.0)
    torch.testing.assert_close(image_only.double(), naive_direction(v, t, 0.1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(text_only.double(), naive_direction(t, v, 0.1), rtol=1e-5, atol=1e-6)
    assert not torch.isclose(image_only, text_only)  # the two directions differ, so the weighting is visible
    torch.testing.assert_close(image_text_info_nce(v, t, image_weight=0.75), 0.75 * image_only + 0.25 * text_only)
    swapped = image_text_info_nce(t, v, image_weight=0.25)
    torch.testing.assert_close(swapped, image_text_info_nce(v, t, image_weight=0.75))
    torch.testing.assert_close(image_text_info_nce(t, v), image_text_info_nce(v, t))  # CLIP's mean is symmetric


def test_rows_without_a_report_are_no_query_and_their_text_no_candidate():
    v, t = _pair(n=6)
    valid = torch.tensor([True, False, True, True, False, True])
    loss = image_text_info_nce(v, t, temperature=0.1, image_weight=0.75, valid=valid)
    keep = valid.nonzero().flatten()
    image_to_text = naive_direction(v[keep], t[keep], 0.1)  # only real reports are candidates
    text_terms = []  # every image (with or without a report) is a candidate for a real report
    for i in keep.tolist():
        sims = torch.stack([torch.cosine_similarity(t[i], v[k], dim=0) for k in range(len(v))]) / 0.1
        text_terms.append(-(sims[i] - torch.logsumexp(sims, dim=0)))
    expected = 0.75 * image_to_text + 0.25 * torch.stack(text_terms).mean()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    grad_t = torch.autograd.grad(loss, t)[0]
    assert torch.isfinite(grad_t).all() and (grad_t[~valid] == 0).all()
    empty = image_text_info_nce(v, t, valid=torch.zeros(6, dtype=torch.bool))
    assert empty.item() == 0.0


def test_hard_negative_texts_join_the_image_to_text_candidates_only():
    """NegCLIP: image i is scored against every report and every hard negative text (the invalid ones left out);
    the text-to-image term is unchanged."""
    v, t = _pair(n=5)
    hard = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).requires_grad_()
    hard_valid = torch.tensor([True, False, True, True, False])
    loss = image_text_info_nce(v, t, 0.1, 0.75, hard_text=hard, hard_valid=hard_valid)
    candidates = torch.cat([t, hard[hard_valid]])
    image_terms = []
    for i in range(len(v)):
        sims = torch.stack([torch.cosine_similarity(v[i], c, dim=0) for c in candidates]) / 0.1
        image_terms.append(-(sims[i] - torch.logsumexp(sims, dim=0)))
    expected = 0.75 * torch.stack(image_terms).mean() + 0.25 * naive_direction(t, v, 0.1)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    grad = torch.autograd.grad(loss, hard)[0]
    assert (grad[~hard_valid] == 0).all() and (grad[hard_valid].abs() > 0).all()
    none_valid = image_text_info_nce(v, t, 0.1, 0.75, hard_text=hard, hard_valid=torch.zeros(5, dtype=torch.bool))
    torch.testing.assert_close(none_valid, image_text_info_nce(v, t, 0.1, 0.75))


def test_loss_rejects_a_weight_outside_unit_interval_and_mismatched_shapes():
    v, t = _pair()
    with pytest.raises(ValueError, match="image_weight"):
        image_text_info_nce(v, t, image_weight=1.5)
    with pytest.raises(ValueError, match="must match"):
        image_text_info_nce(v, t[:-1])


def test_logit_scale_starts_at_clip_init_learns_and_is_clamped_like_open_clip():
    scale = LogitScale()
    torch.testing.assert_close(scale(), torch.tensor(1 / 0.07))
    v, t = _pair()
    loss = image_text_info_nce(v.float(), t.float(), temperature=1 / scale())
    loss.backward()
    assert scale.log_scale.grad is not None and scale.log_scale.grad != 0
    with torch.no_grad():
        scale.log_scale.fill_(10.0)
    scale.clamp_()
    torch.testing.assert_close(scale(), torch.tensor(100.0))
    with torch.no_grad():
        scale.log_scale.fill_(-1.0)
    scale.clamp_()
    torch.testing.assert_close(scale(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="init_temperature"):
        LogitScale(init_temperature=0.001)


def test_image_text_projection_is_a_two_layer_mlp_without_batch_norm():
    head = image_text_projection(32, hidden_dim=16, output_dim=8)
    layers = [type(m).__name__ for m in head.modules() if not isinstance(m, torch.nn.Sequential)]
    assert [name for name in layers if name in ("Linear", "ReLU", "BatchNorm1d")] == ["Linear", "ReLU", "Linear"]
    assert head(torch.randn(3, 32)).shape == (3, 8)


LOSSES = {  # the image-text losses that gather negatives across ranks
    "info_nce": functools.partial(image_text_info_nce, temperature=0.1, image_weight=0.75),
    "dhn_nce": functools.partial(dhn_nce, temperature=0.2),
    "info_nce_hard_negatives": lambda v, t, gather=False: image_text_info_nce(
        v, t, 0.1, 0.75, gather=gather, hard_text=v + t.roll(1, dims=1), hard_valid=t[:, 0] > -0.5),
}


def _ddp_worker(rank: int, world: int, inputs: dict[str, torch.Tensor], loss_name: str) -> dict[str, torch.Tensor]:
    half = len(inputs["v"]) // world
    v, t = (inputs[k][rank * half:(rank + 1) * half].clone().requires_grad_() for k in ("v", "t"))
    loss = LOSSES[loss_name](v, t, gather=True)
    gv, gt = torch.autograd.grad(loss, [v, t])
    return {"loss": loss.detach(), "gv": gv, "gt": gt}


@pytest.mark.slow
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_two_gloo_processes_with_gathered_negatives_equal_one_process_on_the_whole_batch(tmp_path, loss_name):
    gen = torch.Generator().manual_seed(0)
    inputs = {"v": torch.randn(8, 5, generator=gen), "t": torch.randn(8, 5, generator=gen)}
    ranks = on_two_gloo_ranks(_ddp_worker, tmp_path, inputs, loss_name)

    loss = LOSSES[loss_name]
    v, t = inputs["v"].clone().requires_grad_(), inputs["t"].clone().requires_grad_()
    full = loss(v, t)
    full.backward()
    local = [loss(inputs["v"][4 * r:4 * r + 4], inputs["t"][4 * r:4 * r + 4]) for r in range(2)]
    assert not torch.isclose(sum(local) / 2, full)  # without gathering, the other rank's negatives are missing
    # Each rank averages its own rows, so the global loss is the mean over ranks; the gathered backward sums every
    # rank's contribution, so each rank holds world_size x the global gradient (DDP's averaging divides it out).
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, full.detach())
    torch.testing.assert_close(torch.cat([r["gv"] for r in ranks]) / 2, v.grad)
    torch.testing.assert_close(torch.cat([r["gt"] for r in ranks]) / 2, t.grad)

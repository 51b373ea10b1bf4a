"""Each loss against its formula written out naively (loops over anchors / entries), and a two-process DDP check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from engine_support import on_two_gloo_ranks

from cxrl.losses import (
    FeatureQueue,
    byol_loss,
    focal_loss,
    info_nce,
    inverse_frequency_weights,
    masked_bce,
    moco_v3_loss,
    multiclass_uncertainty_ce,
    multiclass_uncertainty_probability,
    nt_xent,
    positive_weights,
    swav_loss,
)

NAN = float("nan")


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum() / (a.norm() * b.norm())


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    z = torch.cat([z1, z2])
    n = len(z1)
    losses = []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        denominator = sum(torch.exp(_cos(z[i], z[k]) / t) for k in range(2 * n) if k != i)
        losses.append(-torch.log(torch.exp(_cos(z[i], z[j]) / t) / denominator))
    return torch.stack(losses).mean()


def naive_info_nce(q: torch.Tensor, positives: torch.Tensor, negatives_per_row: list[torch.Tensor], t: float):
    losses = []
    for i in range(len(q)):
        pos = torch.exp(_cos(q[i], positives[i]) / t)
        neg = sum(torch.exp(_cos(q[i], k) / t) for k in negatives_per_row[i])
        losses.append(-torch.log(pos / (pos + neg)))
    return torch.stack(losses).mean()


def _leaves(*shape: int, n: int = 2, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=gen, dtype=torch.float64).float().requires_grad_() for _ in range(n)]


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_matches_the_formula_in_value_and_gradient(temperature):
    z1, z2 = _leaves(5, 8)
    loss = nt_xent(z1, z2, temperature)
    grads = torch.autograd.grad(loss, [z1, z2])
    reference = naive_nt_xent(z1, z2, temperature)
    expected = torch.autograd.grad(reference, [z1, z2])
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)


def test_nt_xent_computes_in_float32_under_autocast():
    z1, z2 = _leaves(6, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nt_xent(z1.bfloat16(), z2.bfloat16(), 0.1)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, nt_xent(z1.bfloat16().float(), z2.bfloat16().float(), 0.1))


def test_info_nce_with_a_queue_is_moco_v2():
    q, k = _leaves(4, 6)
    queue = torch.randn(7, 6)
    loss = info_nce(q, k, queue=queue, temperature=0.2)
    torch.testing.assert_close(loss, naive_info_nce(q, k, [queue] * 4, 0.2), rtol=1e-5, atol=1e-6)
    loss.backward()
    assert k.grad is None and q.grad is not None, "keys are targets: no gradient"


def test_info_nce_in_batch_and_moco_v3_symmetrization():
    q1, q2, k1, k2 = _leaves(5, 6, n=4)
    others = [[k2[j] for j in range(5) if j != i] for i in range(5)]
    torch.testing.assert_close(info_nce(q1, k2, temperature=0.2), naive_info_nce(q1, k2, others, 0.2))
    others1 = [[k1[j] for j in range(5) if j != i] for i in range(5)]
    expected = 2 * 0.2 * (naive_info_nce(q1, k2, others, 0.2) + naive_info_nce(q2, k1, others1, 0.2))
    torch.testing.assert_close(moco_v3_loss(q1, q2, k1, k2, temperature=0.2), expected)


def test_feature_queue_is_fifo_normalized_persistent_and_graph_safe():
    queue = FeatureQueue(dim=3, size=5)
    assert set(queue.state_dict()) == {"features", "pointer"}
    assert torch.allclose(queue.features.norm(dim=1), torch.ones(5))
    first, second = torch.randn(3, 3), torch.randn(4, 3)
    q = torch.randn(2, 3, requires_grad=True)
    loss = info_nce(q, torch.randn(2, 3), queue=queue.features)
    queue.enqueue(first)
    queue.enqueue(second)
    loss.backward()  # enqueue must not invalidate the graph of a loss computed before it
    unit = torch.nn.functional.normalize
    expected_rows = {0: second[2], 1: second[3], 2: first[2], 3: second[0], 4: second[1]}
    for row, key in expected_rows.items():
        torch.testing.assert_close(queue.features[row], unit(key, dim=0))
    assert int(queue.pointer) == 2

    resumed = FeatureQueue(dim=3, size=5, seed=1)
    resumed.load_state_dict(queue.state_dict())
    assert torch.equal(resumed.features, queue.features) and int(resumed.pointer) == 2

    many = torch.randn(12, 3)
    queue.enqueue(many)
    kept = {tuple(row) for row in unit(many[-5:], dim=1).tolist()}
    assert {tuple(row) for row in queue.features.tolist()} == kept, "only the newest `size` keys stay"


def test_byol_loss_is_twice_one_minus_cosine_with_stop_gradient():
    p, z = _leaves(4, 8)
    loss = byol_loss(p, z)
    expected = torch.stack([2 - 2 * _cos(p[i], z[i]) for i in range(4)]).mean()
    torch.testing.assert_close(loss, expected)
    unit = torch.nn.functional.normalize
    torch.testing.assert_close(loss, ((unit(p, dim=1) - unit(z, dim=1)) ** 2).sum(dim=1).mean())
    loss.backward()
    assert z.grad is None


def naive_sinkhorn(scores: np.ndarray, iterations: int, eps: float) -> np.ndarray:
    """Caron et al. 2020, Alg. 1 / eq. 3: alternate prototype (row) and sample (column) normalization."""
    q = np.exp(scores / eps).T  # (K prototypes, B samples)
    q /= q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q /= q.sum(axis=1, keepdims=True) * k
        q /= q.sum(axis=0, keepdims=True) * b
    return (q * b).T


def naive_swav(high, low, t, iterations, eps, queue=None):
    crops = [np.asarray(x, dtype=np.float64) for x in [*high, *low]]
    total = 0.0
    for s in range(len(high)):
        scores = crops[s] if queue is None else np.concatenate([crops[s], queue[s]])
        codes = naive_sinkhorn(scores, iterations, eps)[: len(crops[s])]
        sub = 0.0
        for v in range(len(crops)):
            if v == s:
                continue
            logits = crops[v] / t
            log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            sub += -(codes * log_p).sum(axis=1).mean()
        total += sub / (len(crops) - 1)
    return total / len(high)


@pytest.mark.parametrize("with_queue", [False, True])
def test_swav_loss_matches_sinkhorn_and_swapped_prediction(with_queue):
    gen = torch.Generator().manual_seed(0)
    high = [torch.randn(6, 5, generator=gen) * 0.3 for _ in range(2)]
    low = [torch.randn(6, 5, generator=gen) * 0.3 for _ in range(3)]
    queue = [torch.randn(10, 5, generator=gen) * 0.3 for _ in range(2)] if with_queue else None
    loss = swav_loss(high, low, queue, temperature=0.1, sinkhorn_iterations=3, epsilon=0.05)
    expected = naive_swav([h.numpy() for h in high], [x.numpy() for x in low], 0.1, 3, 0.05,
                          None if queue is None else [x.numpy() for x in queue])
    assert loss.shape == ()
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_sinkhorn_codes_are_balanced_over_prototypes():
    scores = np.random.default_rng(0).normal(size=(64, 8)) * 0.2
    codes = naive_sinkhorn(scores, 50, 0.05)
    np.testing.assert_allclose(codes.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(codes.sum(axis=0), 64 / 8, rtol=1e-3)


TARGETS = torch.tensor([[1.0, 0.0, NAN, 1.0], [NAN, 1.0, 0.0, 0.0], [0.0, NAN, NAN, 1.0]])


def _logits(shape=(3, 4), seed=0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).requires_grad_()


def test_masked_bce_averages_over_observed_entries_only():
    logits = _logits()
    terms = []
    for i, j in zip(*np.nonzero(~np.isnan(TARGETS.numpy())), strict=True):
        p, y = torch.sigmoid(logits[i, j]), TARGETS[i, j]
        terms.append(-(y * torch.log(p) + (1 - y) * torch.log(1 - p)))
    torch.testing.assert_close(masked_bce(logits, TARGETS), torch.stack(terms).mean())
    weight = torch.tensor([1.0, 2.0, 3.0, 4.0])
    weighted = []
    for i, j in zip(*np.nonzero(~np.isnan(TARGETS.numpy())), strict=True):
        p, y = torch.sigmoid(logits[i, j]), TARGETS[i, j]
        weighted.append(-(weight[j] * y * torch.log(p) + (1 - y) * torch.log(1 - p)))
    torch.testing.assert_close(masked_bce(logits, TARGETS, pos_weight=weight), torch.stack(weighted).mean())


def test_masked_bce_all_unobserved_is_zero_with_finite_gradients_and_rejects_uncertain():
    logits = _logits()
    loss = masked_bce(logits, torch.full((3, 4), NAN))
    loss.backward()
    assert loss.item() == 0 and torch.equal(logits.grad, torch.zeros(3, 4))
    with pytest.raises(ValueError, match="uncertainty policy"):
        masked_bce(_logits(), TARGETS.nan_to_num(-1.0))


@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, None), (1.0, 0.25), (0.0, None)])
def test_focal_loss_matches_lin_et_al(gamma, alpha):
    logits = _logits()
    terms = []
    for i, j in zip(*np.nonzero(~np.isnan(TARGETS.numpy())), strict=True):
        p = torch.sigmoid(logits[i, j])
        y = TARGETS[i, j]
        p_t = p if y == 1 else 1 - p
        alpha_t = 1.0 if alpha is None else (alpha if y == 1 else 1 - alpha)
        terms.append(-alpha_t * (1 - p_t) ** gamma * torch.log(p_t))
    torch.testing.assert_close(focal_loss(logits, TARGETS, gamma, alpha), torch.stack(terms).mean())
    if gamma == 0 and alpha is None:
        torch.testing.assert_close(focal_loss(logits, TARGETS, 0.0), masked_bce(logits, TARGETS))


def test_multiclass_uncertainty_ce_and_probability():
    targets = torch.tensor([[1.0, -1.0, NAN], [0.0, 1.0, -1.0]])
    logits = _logits((2, 3, 3))
    terms = []
    for i in range(2):
        for j in range(3):
            y = targets[i, j].item()
            if math.isnan(y):
                continue
            cls = 2 if y == -1 else int(y)
            terms.append(-torch.log_softmax(logits[i, j], dim=0)[cls])
    torch.testing.assert_close(multiclass_uncertainty_ce(logits, targets), torch.stack(terms).mean())
    prob = multiclass_uncertainty_probability(logits)
    expected = torch.exp(logits[..., 1]) / (torch.exp(logits[..., 0]) + torch.exp(logits[..., 1]))
    torch.testing.assert_close(prob, expected)
    with pytest.raises(ValueError, match="shape"):
        multiclass_uncertainty_ce(logits[..., :2], targets)
    with pytest.raises(ValueError, match="found e.g."):
        multiclass_uncertainty_ce(logits, targets.nan_to_num(0.5))


def test_positive_weights_and_inverse_frequency_sample_weights():
    labels = np.array([[1, 0, NAN], [0, 0, 1], [0, 1, 1], [0, NAN, 1], [NAN, 0, -1]], dtype=np.float32)
    torch.testing.assert_close(positive_weights(labels), torch.tensor([3 / 1, 3 / 1, 1.0]))
    weights = inverse_frequency_weights(labels)
    # groups by rarest positive: row0 -> finding 0 (1 pos), row2 -> finding 1 (1 pos), rows 1, 3 -> finding 2,
    # row 4 -> none; so raw weights 1, 1/2, 1, 1/2, 1 scaled to sum 5.
    raw = np.array([1, 0.5, 1, 0.5, 1])
    np.testing.assert_allclose(weights.numpy(), raw * 5 / raw.sum())


# ---------------------------------------------------------------------------------------------- two-process DDP


def _ddp_worker(rank: int, world: int, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    half = len(inputs["z1"]) // world
    local = {k: v[rank * half:(rank + 1) * half].clone().requires_grad_() for k, v in inputs.items()}
    results: dict[str, torch.Tensor] = {}
    loss = nt_xent(local["z1"], local["z2"], 0.2, gather=True)
    g1, g2 = torch.autograd.grad(loss, [local["z1"], local["z2"]])
    results.update(ntxent=loss.detach(), g1=g1, g2=g2)
    loss = info_nce(local["z1"], local["z2"], temperature=0.2, gather=True)
    (gq,) = torch.autograd.grad(loss, [local["z1"]])
    results.update(infonce=loss.detach(), gq=gq)
    scores = [local["z1"].detach() @ inputs["protos"].T, local["z2"].detach() @ inputs["protos"].T]
    results["swav"] = swav_loss(scores, temperature=0.1, gather=True)
    queue, own = FeatureQueue(dim=5, size=6), FeatureQueue(dim=5, size=6, gather=False)
    queue.enqueue(local["z2"].detach())
    own.enqueue(local["z2"].detach())
    return {**results, "queue": queue.features, "own": own.features}


@pytest.mark.slow
def test_gathered_losses_on_two_gloo_processes_equal_the_single_process_losses(tmp_path):
    gen = torch.Generator().manual_seed(0)
    inputs = {"z1": torch.randn(8, 5, generator=gen), "z2": torch.randn(8, 5, generator=gen),
              "protos": torch.randn(4, 5, generator=gen)}
    ranks = on_two_gloo_ranks(_ddp_worker, tmp_path, inputs)

    z1, z2 = inputs["z1"].clone().requires_grad_(), inputs["z2"].clone().requires_grad_()
    full = nt_xent(z1, z2, 0.2)
    full.backward()
    # Each rank averages over its own anchors: the global loss is the mean over ranks. The gathered backward sums
    # every rank's contribution, so each rank holds world_size x the global gradient; DDP's averaging divides it out.
    torch.testing.assert_close((ranks[0]["ntxent"] + ranks[1]["ntxent"]) / 2, full.detach())
    torch.testing.assert_close(torch.cat([r["g1"] for r in ranks]) / 2, z1.grad)
    torch.testing.assert_close(torch.cat([r["g2"] for r in ranks]) / 2, z2.grad)

    q = inputs["z1"].clone().requires_grad_()
    full = info_nce(q, inputs["z2"], temperature=0.2)
    full.backward()
    torch.testing.assert_close((ranks[0]["infonce"] + ranks[1]["infonce"]) / 2, full.detach())
    torch.testing.assert_close(torch.cat([r["gq"] for r in ranks]) / 2, q.grad)

    scores = [inputs["z1"] @ inputs["protos"].T, inputs["z2"] @ inputs["protos"].T]
    torch.testing.assert_close((ranks[0]["swav"] + ranks[1]["swav"]) / 2, swav_loss(scores, temperature=0.1))

    single = FeatureQueue(dim=5, size=6)
    single.enqueue(inputs["z2"])
    assert torch.equal(ranks[0]["queue"], ranks[1]["queue"])
    torch.testing.assert_close(ranks[0]["queue"], single.features)
    for r, result in enumerate(ranks):  # a per-rank queue (SwAV) holds only its own keys
        local_only = FeatureQueue(dim=5, size=6)
        local_only.enqueue(inputs["z2"][4 * r:4 * (r + 1)])
        torch.testing.assert_close(result["own"], local_only.features)

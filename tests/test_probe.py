"""The torch linear probe: recovers a linear signal, matches scikit-learn, masks NaN labels per class."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from cxrl.evaluate.metrics import auroc
from cxrl.evaluate.probe import Curvature, _Objective, batched_lbfgs, fit_linear_probe, fit_logistic

pytestmark = pytest.mark.usefixtures("one_thread")


def _linear_data(n=600, d=20, k=3, seed=0, missing=0.25):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 5, d) + rng.normal(size=d) * 3  # unstandardized on purpose
    w = rng.normal(size=(k, d))
    y = ((x - x.mean(0)) / x.std(0) @ w.T + rng.normal(0, 0.5, (n, k)) > 0.5).astype(np.float32)
    y[rng.random((n, k)) < missing] = np.nan
    return x.astype(np.float32), y


def test_probe_recovers_a_linear_signal_and_matches_sklearn():
    x, y = _linear_data()
    tr, va, te = slice(0, 400), slice(400, 500), slice(500, 600)
    probe = fit_linear_probe(x[tr], y[tr], x[va], y[va], device="cpu")
    ours = auroc(y[te], probe.decision_function(x[te]))
    assert np.all(ours > 0.9)
    standardized = (x - probe.mean) / probe.scale
    for k in range(y.shape[1]):
        keep = ~np.isnan(y[tr, k])
        ref = LogisticRegression(C=probe.C[k], tol=1e-8, max_iter=5000).fit(standardized[tr][keep], y[tr][keep, k])
        ref_auroc = auroc(y[te, k : k + 1], ref.decision_function(standardized[te])[:, None])[0]
        assert ours[k] == pytest.approx(ref_auroc, abs=0.005)
        np.testing.assert_allclose(probe.weight[k], ref.coef_[0], atol=2e-2, rtol=2e-2)


def test_masked_rows_do_not_influence_their_class():
    x, y = _linear_data(n=300, k=2, missing=0.0)
    xt = torch.as_tensor((x - x.mean(0)) / x.std(0))
    y_masked = y.copy()
    y_masked[:100, 0] = np.nan
    theta = fit_logistic(xt, torch.as_tensor(y_masked), C=0.1, tol=1e-6)
    alone = fit_logistic(xt[100:], torch.as_tensor(y[100:, :1]), C=0.1, tol=1e-6)
    full = fit_logistic(xt, torch.as_tensor(y[:, 1:]), C=0.1, tol=1e-6)
    torch.testing.assert_close(theta[0], alone[0], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(theta[1], full[0], atol=1e-3, rtol=1e-3)
    assert (theta[0] - full[0]).abs().max() > 1e-2  # the masked rows would have mattered


def test_batched_lbfgs_solves_independent_quadratics_with_different_conditioning():
    scales = torch.tensor([1.0, 10.0, 100.0])
    target = torch.tensor([[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0]])

    def objective(theta):
        diff = theta - target
        curv = torch.stack([torch.ones(3), scales], 1)
        return 0.5 * (curv * diff**2).sum(1), curv * diff

    theta, iters = batched_lbfgs(objective, torch.zeros(3, 2), tol=1e-6)
    torch.testing.assert_close(theta, target, atol=1e-5, rtol=0)
    assert iters < 50


def test_regularization_is_chosen_per_class_on_validation():
    x, y = _linear_data(n=500, k=2, missing=0.0, seed=3)
    grid = (1e-4, 1e-2, 1.0)
    probe = fit_linear_probe(x[:300], y[:300], x[300:], y[300:], c_grid=grid, device="cpu")
    assert probe.valid_auroc.shape == (3, 2)
    best = np.argmax(probe.valid_auroc, axis=0)
    np.testing.assert_array_equal(probe.C, np.asarray(grid)[best])


def test_curvature_pairs_follow_a_change_of_ridge_exactly():
    """``add_ridge`` turns pairs gathered at one ridge into the pairs the new ridge would have produced."""
    x, y = _linear_data(n=200, d=6, k=2, missing=0.0)
    objective = _Objective(torch.as_tensor((x - x.mean(0)) / x.std(0)), torch.as_tensor(y))
    rng = torch.Generator().manual_seed(0)
    points = [torch.randn(2, 7, generator=rng) * 0.3 for _ in range(4)]

    def pairs_at(C):
        objective.set_C(C)
        memory = Curvature.empty(3, points[0])
        for a, b in zip(points, points[1:], strict=False):
            memory.push(b - a, objective(b)[1] - objective(a)[1])
        return memory

    old_C, new_C = torch.tensor([0.01, 1.0]), torch.tensor([1.0, 0.1])
    shifted, old_ridge = pairs_at(old_C), objective.ridge
    fresh = pairs_at(new_C)
    assert not torch.allclose(shifted.y, fresh.y)
    shifted.add_ridge(objective.ridge - old_ridge, objective.penalized)
    torch.testing.assert_close(shifted.y, fresh.y)
    torch.testing.assert_close(shifted.rho, fresh.rho)


def test_grid_walk_with_carried_curvature_matches_cold_fits():
    """Warm starts, reused curvature and the remembered data term change the work, not the answer."""
    x, y = _linear_data(n=500, d=30, k=3, seed=4)
    grid = (1e-3, 1e-1, 10.0)
    probe = fit_linear_probe(x[:400], y[:400], x[400:], y[400:], c_grid=grid, device="cpu", tol=1e-6)
    xt = torch.as_tensor((x[:400] - probe.mean) / probe.scale)
    cold = fit_logistic(xt, torch.as_tensor(y[:400]), C=torch.as_tensor(probe.C, dtype=torch.float32), tol=1e-6)
    np.testing.assert_allclose(probe.weight, cold[:, :-1].numpy(), atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(probe.bias, cold[:, -1].numpy(), atol=2e-3, rtol=2e-3)

"""Every method learns on a fixed tiny batch; method state (queues, EMA, prototypes) behaves; engine builders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrl.methods import METHODS, MethodConfig, create_method
from cxrl.methods.base import encode_views
from cxrl.models import create_encoder
from cxrl.train import PretrainConfig, build_optimizer, lr_factor, plan_steps
from cxrl.transforms import make_view_fn, seeds_for

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 32
SMALL = dict(proj_hidden_dim=64, proj_dim=32, pred_hidden_dim=64, num_prototypes=16, local_size=16)
METHOD_CFG = {
    "simclr": {},
    "moco_v2": {"queue_size": 32, "temperature": 0.2},
    "moco_v3": {"temperature": 0.2},
    "byol": {},
    "swav": {"local_views": 2, "queue_size": 32, "queue_start_step": 4},
    "supervised": {"uncertainty": "ones"},
}


def build(name: str, targets: np.ndarray, **extra):
    torch.manual_seed(0)
    cfg = MethodConfig(name=name, **{**SMALL, **METHOD_CFG[name], **extra})
    return create_method(cfg, create_encoder("tiny_cnn"), SIZE, targets)


def fixed_batch(toy_cache, method, n: int = 16, start: int = 0):
    rows = np.arange(start, start + n)
    images = torch.from_numpy(np.array(toy_cache.images[rows]))
    views = make_view_fn(method.views)(images, seeds_for(rows, 0, 0))
    labels = toy_cache.records[["Cardiomegaly", "Pleural Effusion", "Edema"]].to_numpy(dtype=np.float32)[rows]
    return views, {"labels": torch.from_numpy(labels)}  # the batch dict


def train_losses(method, batches, steps: int = 16, lr: float = 3e-3) -> list[float]:
    """AdamW steps over ``batches`` (views, batch dict) in turn, with the method's hooks; the losses."""
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=lr)
    losses = []
    for step in range(steps):
        views, labels = batches[step % len(batches)]
        method.on_step_start(step, steps)
        loss, _ = method.loss(views, labels)
        opt.zero_grad()
        loss.backward()
        method.on_after_backward(step)
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", sorted(n for n, spec in METHODS.items() if spec.config is MethodConfig))
def test_method_loss_falls_on_a_fixed_set(toy_cache, name):
    """(The image methods; ConVIRT's learning is tested on image-report pairs in test_convirt.py.)"""
    # Four fixed batches in turn (MoCo's 2-batch queue then never holds the current images as negatives).
    method = build(name, np.zeros((16, 3), np.float32))
    batches = [fixed_batch(toy_cache, method, start=16 * b) for b in range(4)]
    losses = train_losses(method, batches, steps=20)
    assert all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < np.mean(losses[4:8]), losses  # after the queues hold real keys


def test_views_match_the_method(toy_cache):
    swav = build("swav", np.zeros((1, 3), np.float32))
    views, _ = fixed_batch(toy_cache, swav)
    assert [v.shape[-1] for v in views] == [SIZE, SIZE, 16, 16]
    features = encode_views(swav.encoder, views)
    assert [f.shape for f in features] == [(16, swav.encoder.num_features)] * 4


def test_moco_queue_is_saved_and_filled(toy_cache):
    moco = build("moco_v2", np.zeros((1, 3), np.float32))
    views, labels = fixed_batch(toy_cache, moco)
    before = moco.state_dict()["queue.features"].clone()
    moco.loss(views, labels)
    after = moco.state_dict()["queue.features"]
    assert not torch.equal(before[:16], after[:16]) and torch.equal(before[16:], after[16:])


def test_queues_gather_for_moco_not_for_swav():
    """MoCo's negatives are global keys; SwAV's queue stays per rank because its Sinkhorn already sums ranks."""
    encoder = create_encoder("tiny_cnn")
    moco = create_method(MethodConfig(name="moco_v2", queue_size=32), encoder, 32, None)
    swav = create_method(MethodConfig(name="swav", queue_size=32), create_encoder("tiny_cnn"), 32, None)
    assert moco.queue.gather and swav.queues and not any(q.gather for q in swav.queues)


def test_momentum_target_follows_the_online_network(toy_cache):
    byol = build("byol", np.zeros((1, 3), np.float32))
    online = next(byol.encoder.parameters())
    with torch.no_grad():
        online.add_(1.0)
    target = next(byol.target_encoder.parameters())
    gap = (online - target).abs().mean()
    byol.on_step_start(0, 100)  # m = base = 0.99: the target moves 1% of the way
    assert torch.allclose((online - target).abs().mean(), 0.99 * gap, rtol=1e-4)
    assert not target.requires_grad
    byol.on_step_start(99, 100)  # m = 1 at the end of the cosine schedule: no move
    frozen = target.clone()
    byol.on_step_start(99, 100)
    assert torch.equal(frozen, target)


def test_swav_prototypes_frozen_then_trained(toy_cache):
    swav = build("swav", np.zeros((1, 3), np.float32), freeze_prototypes_steps=2)
    views, labels = fixed_batch(toy_cache, swav)
    start = swav.prototypes.heads[0].weight.detach().clone()
    train_losses(swav, [(views, labels)], steps=2)  # frozen: only renormalized
    assert torch.allclose(swav.prototypes.heads[0].weight, start / start.norm(dim=1, keepdim=True), atol=1e-6)
    swav.loss(views, labels)[0].backward()
    swav.on_after_backward(2)  # past the freeze: gradients kept
    assert swav.prototypes.heads[0].weight.grad is not None


def test_supervised_masks_unknown_and_uses_multiclass(toy_cache):
    targets = np.array([[1, 0, np.nan]] * 8 + [[0, 2, 1]] * 8, np.float32)  # 2 = uncertain under "multiclass"
    method = build("supervised", targets, uncertainty="multiclass")
    assert method.head.out_features == 9
    views, _ = fixed_batch(toy_cache, method)
    loss, _ = method.loss(views, {"labels": torch.from_numpy(targets)})
    assert torch.isfinite(loss)


def test_lr_schedule_warmup_then_cosine():
    factors = [lr_factor(s, 100, 10, "cosine") for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[-1] < 0.01
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert lr_factor(50, 100, 10, "constant") == 1.0


def test_plan_steps_from_epochs_or_max_steps():
    assert plan_steps(PretrainConfig(max_epochs=3, warmup_epochs=1), 10) == (30, 10)
    assert plan_steps(PretrainConfig(max_steps=7, warmup_epochs=10), 10) == (7, 3)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd", "lars"])
def test_optimizer_excludes_norm_and_bias_from_weight_decay(optimizer):
    method = build("simclr", np.zeros((1, 3), np.float32))
    opt = build_optimizer(method, PretrainConfig(optimizer=optimizer, weight_decay=0.1))
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() > 1 for p in decayed["params"]) and all(p.dim() == 1 for p in plain["params"])
    n_trainable = sum(1 for p in method.parameters() if p.requires_grad)
    assert len(decayed["params"]) + len(plain["params"]) == n_trainable

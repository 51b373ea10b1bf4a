"""CM-CGNS (`cxrl pretrain cm_cgns`): each loss equals its formula on small tensors, the cluster centres are method
state (one step gathered over two processes equals one process; --resume restores them), and the method trains
from the CLI lowering its terms and exports what zero-shot reads."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
from engine_support import encoder_tensors, on_two_gloo_ranks

from cxrl.losses.cgns import (
    bml_loss,
    cgns_text_loss,
    cluster_step,
    farthest_point_centres,
    simsiam_local_loss,
    update_centres,
)
from cxrl.methods.base import BuildContext
from cxrl.methods.cm_cgns import CMCGNS, CMCGNSConfig, cross_attend, sentence_features
from cxrl.models import create_encoder
from cxrl.models.image_text import load_image_text
from cxrl.train import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(proj_hidden_dim=32, proj_dim=16, vocab_size=120, tiny_width=32, tiny_layers=1, local_dim=16,
             num_clusters=4)
RUN = ["backbone=tiny_cnn", "image_size=32", "batch_size=16", "num_workers=0", "lr=2e-3", "warmup_epochs=0",
       "progress_bar=false", "monitor.enabled=false", "log_every_n_steps=1", "method.cluster_start_similarity=1.0",
       *(f"method.{k}={v}" for k, v in SMALL.items())]


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum() / (a.norm() * b.norm())


def test_simsiam_local_loss_is_minus_half_the_two_predicted_cosines_with_stopped_targets():
    torch.manual_seed(0)
    x, y = torch.randn(5, 4, requires_grad=True), torch.randn(5, 4, requires_grad=True)
    predictor, mask = torch.nn.Linear(4, 4), torch.tensor([True, True, False, True, True])
    loss = simsiam_local_loss(x, y, predictor, mask)
    terms = [_cos(predictor(x[i]), y[i].detach()) + _cos(predictor(y[i]), x[i].detach()) for i in range(5) if mask[i]]
    expected = -sum(terms) / (2 * len(terms))
    torch.testing.assert_close(loss, expected)
    (grad_loss,) = torch.autograd.grad(loss, [y])
    (grad_expected,) = torch.autograd.grad(expected, [y])
    torch.testing.assert_close(grad_loss, grad_expected)
    assert grad_loss[2].abs().sum() == 0  # a masked row gets no gradient


def test_farthest_point_pass_takes_the_row_least_similar_to_every_chosen_centre():
    rows = torch.tensor([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.0], [0.1, 1.0], [-0.7, 0.7]])
    # from row 0: row 2 is opposite; then row 3 (max similarity to {0, 2} is ~0.1, row 4's ~0.7, row 1's ~1)
    torch.testing.assert_close(farthest_point_centres(rows, 3), rows[[0, 2, 3]])
    with pytest.raises(ValueError, match="cannot seed"):
        farthest_point_centres(rows, 6)


def test_update_moves_each_centre_by_momentum_towards_the_mean_of_its_members():
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    features = torch.tensor([[2.0, 0.1], [1.0, -0.2], [0.1, 3.0]])  # two members of centre 0, one of centre 1
    m = 0.1
    expected = torch.stack([(1 - m) * centres[0] + m * (features[0] + features[1]) / 2,
                            (1 - m) * centres[1] + m * features[2], centres[2]])
    torch.testing.assert_close(update_centres(centres, features, m), expected)


def test_bml_is_zero_between_the_margins_and_linear_outside():
    delta = torch.tensor([-0.8, -0.5, -0.3, -0.2, 0.1])
    expected = torch.tensor([0.3, 0.0, 0.0, 0.0, 0.3])
    torch.testing.assert_close(bml_loss(delta, alpha=0.2, beta=0.5), expected)


def test_cgns_text_loss_is_ce_with_the_second_nearest_centre_plus_the_false_negative_margins():
    torch.manual_seed(1)
    z1, z2, centres = torch.randn(6, 3), torch.randn(6, 3), torch.randn(4, 3)
    tau, w, alpha, beta, lam = 0.5, 3.0, 0.2, 0.5, 0.3
    loss = cgns_text_loss(z1, z2, centres, tau, w, alpha, beta, lam)
    s = torch.stack([torch.stack([_cos(z1[a], z2[b]) for b in range(6)]) for a in range(6)])
    to_centres = torch.stack([torch.stack([_cos(z1[a], c) for c in centres]) for a in range(6)])
    order = to_centres.argsort(1, descending=True)
    ce, margins = [], []
    for a in range(6):
        logits = torch.cat([s[a], w * to_centres[a, order[a, 1]].reshape(1)]) / tau
        ce.append(-(logits[a] - logits.logsumexp(0)))
        for b in range(6):
            if b != a and order[a, 0] == order[b, 0]:
                delta = s[a, b] - s[a, a]
                margins.append(max(delta + alpha, 0) + max(-delta - beta, 0))
    assert margins, "the example must contain false negatives"
    torch.testing.assert_close(loss, sum(ce) / 6 + lam * sum(margins) / len(margins))
    plain = -torch.stack([(s[a] / tau)[a] - (s[a] / tau).logsumexp(0) for a in range(6)]).mean()
    torch.testing.assert_close(cgns_text_loss(z1, z2, None, tau), plain)


def test_sentence_features_are_the_mean_of_each_sentences_tokens():
    tokens = torch.arange(2 * 5 * 2, dtype=torch.float32).reshape(2, 5, 2)
    numbers = torch.tensor([[0, 1, 1, 2, 0], [0, 1, 0, 0, 0]])
    features, has = sentence_features(tokens, numbers)
    assert has.tolist() == [[True, True], [True, False]]
    torch.testing.assert_close(features[0, 0], (tokens[0, 1] + tokens[0, 2]) / 2)
    torch.testing.assert_close(features[0, 1], tokens[0, 3])
    torch.testing.assert_close(features[1, 0], tokens[1, 1])


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_cross_attention_weighs_the_real_keys_by_scaled_scores(kind):
    torch.manual_seed(2)
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    key_mask = torch.tensor([[True, True, False, True, False], [False] * 5])
    out = cross_attend(q, k, v, key_mask, kind)
    for i in range(3):
        real = key_mask[0]
        scores = k[0, real] @ q[0, i] / 2  # sqrt(4)
        weights = scores.softmax(0) if kind == "softmax" else scores.sigmoid()
        torch.testing.assert_close(out[0, i], weights @ v[0, real])
    torch.testing.assert_close(out[1], torch.zeros(3, 4))  # no keys: nothing attended


def _batch(cache, method, n: int = 8) -> dict[str, torch.Tensor]:
    columns = method.column_arrays(cache)
    return {"index": torch.arange(n), **{k: torch.as_tensor(np.array(v[:n])) for k, v in columns.items()}}


def test_the_loss_is_the_sum_of_its_logged_terms_and_stage_two_adds_the_weighted_reconstruction(toy_report_cache):
    cfg = CMCGNSConfig(cluster_start_similarity=1.0, mir_weight=2.0, mir_start_step=3, **SMALL)
    torch.manual_seed(0)
    method = CMCGNS(create_encoder("tiny_cnn"), cfg, BuildContext(32, cache=toy_report_cache)).eval()
    batch, views = _batch(toy_report_cache, method), [torch.randn(8, 1, 32, 32)]
    with torch.no_grad():
        method.on_step_start(0, 10)
        total, logs = method.loss(views, batch)
        assert bool(method.centres_ready) and "reconstruction_loss" not in logs
        torch.testing.assert_close(total, logs["global_loss"] + logs["image_local_loss"] + logs["text_local_loss"])
        text = method.text_features(batch)
        image, report, valid = method.joint(method.encoder(views[0]), text)
        torch.testing.assert_close(logs["global_loss"], method.global_loss(image, report, valid, batch))
        method.on_step_start(3, 10)
        total, logs = method.loss(views, batch)
    assert set(logs) == {"global_loss", "image_local_loss", "text_local_loss", "reconstruction_loss"}
    expected = logs["global_loss"] + logs["image_local_loss"] + logs["text_local_loss"]
    torch.testing.assert_close(total, expected + 2.0 * logs["reconstruction_loss"])


def test_cm_cgns_trains_from_the_cli_lowering_its_terms_and_exports_both_towers(toy_report_cache, tmp_path):
    # (at the code's text temperature 1 the text term's logits span only [-1, 1]: it moves, but too little for 60 steps)
    run = pretrain("cm_cgns", toy_report_cache.path, tmp_path / "cm_cgns",
                   overrides=[*RUN, "max_steps=60", "method.mir_start_step=20", "method.text_temperature=0.1"])
    metrics = pd.read_csv(run / "logs/csv/version_0/metrics.csv")
    for column in ("train/global_loss", "train/image_local_loss", "train/text_local_loss"):
        values = metrics[column].dropna().to_numpy()
        assert values[-10:].mean() < values[:10].mean() - 0.05, (column, values[:10].mean(), values[-10:].mean())
    reconstruction = metrics["train/reconstruction_loss"].dropna().to_numpy()
    assert len(reconstruction) == 40 and reconstruction[-10:].mean() < reconstruction[:10].mean()
    model = load_image_text(run)
    assert model.text(["Pleural effusion."]).shape == model.image(torch.zeros(1, 1, 32, 32)).shape


class Kill(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 4:
            raise RuntimeError("killed")


def _centres(run) -> torch.Tensor:
    state = torch.load(run / "checkpoints/last.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    assert bool(state["method.centres_ready"])
    return state["method.centres"]


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted_including_the_cluster_centres(toy_report_cache, tmp_path):
    overrides = [*RUN, "max_steps=7", "checkpoint_every_n_steps=2", "deterministic=true", "method.mir_start_step=3"]
    whole = pretrain("cm_cgns", toy_report_cache.path, tmp_path / "whole", overrides=overrides)
    with pytest.raises(RuntimeError, match="killed"):
        pretrain("cm_cgns", toy_report_cache.path, tmp_path / "split", overrides=overrides, callbacks=[Kill()])
    resumed = pretrain("cm_cgns", toy_report_cache.path, tmp_path / "split", resume=True)
    expected, found = encoder_tensors(whole), encoder_tensors(resumed)
    for name, tensor in expected.items():
        torch.testing.assert_close(found[name], tensor, rtol=0, atol=1e-6, msg=name)
    torch.testing.assert_close(_centres(resumed), _centres(whole), rtol=0, atol=1e-6)


def _cluster_worker(rank: int, world: int, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
    rows = slice(0, 5) if rank == 0 else slice(5, None)  # ranks hold different numbers of sentences
    centres, ready = torch.zeros(3, z1.shape[1]), torch.tensor(False)
    cluster_step(centres, ready, z1[rows], z2[rows], 0.3, 1.0)  # seeds them
    seeded = centres.clone()
    cluster_step(centres, ready, z1[rows], z2[rows].flip(0), 0.3, 1.0)  # moves them
    return {"seeded": seeded, "moved": centres}


@pytest.mark.slow
def test_two_gloo_processes_step_the_centres_on_every_ranks_sentences_like_one_process(tmp_path):
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(12, 4, generator=gen), torch.randn(12, 4, generator=gen)
    ranks = on_two_gloo_ranks(_cluster_worker, tmp_path, z1, z2)
    centres, ready = torch.zeros(3, 4), torch.tensor(False)
    cluster_step(centres, ready, z1, z2, 0.3, 1.0)
    seeded = centres.clone()
    cluster_step(centres, ready, z1, torch.cat([z2[:5].flip(0), z2[5:].flip(0)]), 0.3, 1.0)
    for r in ranks:
        torch.testing.assert_close(r["seeded"], seeded)
        torch.testing.assert_close(r["moved"], centres)
    local = torch.zeros(3, 4)
    cluster_step(local, torch.tensor(False), z1[:5], z2[:5], 0.3, 1.0)
    assert not torch.allclose(local, seeded)  # one rank's sentences alone seed other centres

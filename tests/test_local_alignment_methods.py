"""GLoRIA and MGCA (`cxrl pretrain gloria|mgca`): ConVIRT's global term plus their own terms, each by its formula,
falling while they train on image-report pairs; one backbone pass gives the pooled and spatial features; both export
what zero-shot reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cxrl.losses.local_alignment import gloria_local_loss, gloria_local_scores
from cxrl.methods.base import BuildContext
from cxrl.methods.convirt import ConVIRT, ConVIRTConfig
from cxrl.methods.gloria import GLoRIA, GLoRIAConfig
from cxrl.methods.word_region import word_mask
from cxrl.models import create_encoder
from cxrl.models.image_text import load_image_text
from cxrl.train import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(proj_hidden_dim=32, proj_dim=16, vocab_size=120, tiny_width=32, tiny_layers=1)


@pytest.mark.parametrize("name, kwargs", [("tiny_cnn", {}), ("resnet18", {}), ("vit_small", {"img_size": 32})])
def test_one_pass_gives_the_pooled_features_and_the_spatial_map(name, kwargs):
    torch.manual_seed(0)
    encoder = create_encoder(name, **kwargs).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        pooled, grid = encoder.pooled_and_map(x)
        torch.testing.assert_close(pooled, encoder(x))
        torch.testing.assert_close(grid, encoder.feature_map(x))


def test_words_are_the_real_tokens_between_cls_and_sep():
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    expected = torch.tensor([[0, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(word_mask(mask), expected)


def _batch(cache, method, n: int = 8) -> dict[str, torch.Tensor]:
    columns = method.column_arrays(cache)
    return {k: torch.as_tensor(np.array(v[:n])) for k, v in columns.items()}


def test_the_loss_is_convirts_plus_the_weighted_local_term(toy_report_cache):
    ctx = BuildContext(32, cache=toy_report_cache)
    torch.manual_seed(0)
    gloria = GLoRIA(create_encoder("tiny_cnn"), GLoRIAConfig(local_weight=0.5, **SMALL), ctx).eval()
    torch.manual_seed(0)
    convirt = ConVIRT(create_encoder("tiny_cnn"), ConVIRTConfig(**SMALL), ctx).eval()
    convirt.load_state_dict({k: v for k, v in gloria.state_dict().items() if k in convirt.state_dict()})
    batch, views = _batch(toy_report_cache, gloria), [torch.randn(8, 1, 32, 32)]
    with torch.no_grad():
        total, logs = gloria.loss(views, batch)
        global_term = convirt.loss(views, batch)[0]
        text = gloria.text_features(batch)
        regions = gloria.region_projection(gloria.encoder.feature_map(views[0])).flatten(2).transpose(1, 2)
        scores = gloria_local_scores(regions, gloria.word_projection(text.tokens), word_mask(text.mask))
        local_term = gloria_local_loss(scores)
    torch.testing.assert_close(logs["global_loss"], global_term)
    torch.testing.assert_close(logs["local_loss"], local_term)
    torch.testing.assert_close(total, global_term + 0.5 * local_term)


def test_gloria_trains_from_the_cli_lowering_both_terms_and_exports_both_towers(toy_report_cache, tmp_path):
    overrides = ["backbone=tiny_cnn", "image_size=32", "batch_size=16", "num_workers=0", "lr=2e-3",
                 "warmup_epochs=0", "progress_bar=false", "monitor.enabled=false", "max_steps=60",
                 "log_every_n_steps=1", *(f"method.{k}={v}" for k, v in SMALL.items())]
    run = pretrain("gloria", toy_report_cache.path, tmp_path / "gloria", overrides=overrides)
    metrics = pd.read_csv(run / "logs/csv/version_0/metrics.csv")
    for column in ("train/global_loss", "train/local_loss"):
        values = metrics[column].dropna().to_numpy()
        assert values[-10:].mean() < values[:10].mean() - 0.1, (column, values[:10].mean(), values[-10:].mean())
    model = load_image_text(run)
    assert model.text(["Pleural effusion."]).shape == model.image(torch.zeros(1, 1, 32, 32)).shape


def test_mgca_is_the_instance_plus_token_plus_prototype_terms(toy_report_cache):
    from cxrl.losses import swav_loss
    from cxrl.losses.local_alignment import mgca_token_loss
    from cxrl.methods.mgca import MGCA, MGCAConfig

    ctx = BuildContext(32, cache=toy_report_cache)
    cfg = MGCAConfig(token_weight=0.7, prototype_weight=0.5, num_prototypes=12, **SMALL)
    assert cfg.instance_weight == 2.0  # MGCA sums the two directions ConVIRT's term averages
    torch.manual_seed(0)
    mgca = MGCA(create_encoder("tiny_cnn"), cfg, ctx).eval()
    batch, views = _batch(toy_report_cache, mgca), [torch.randn(8, 1, 32, 32)]
    with torch.no_grad():
        total, logs = mgca.loss(views, batch)
        text = mgca.text_features(batch)
        image, report, valid = mgca.joint(mgca.encoder(views[0]), text)
        instance = mgca.global_loss(image, report, valid, batch)
        patches = mgca.region_projection(mgca.encoder.feature_map(views[0])).flatten(2).transpose(1, 2)
        token = mgca_token_loss(patches, mgca.word_projection(text.tokens), word_mask(text.mask))
        scores = [mgca.prototypes(torch.nn.functional.normalize(z, dim=1)) for z in (image, report)]
        prototype = swav_loss(scores, temperature=0.2)
    for name, value in (("instance_loss", instance), ("token_loss", token), ("prototype_loss", prototype)):
        torch.testing.assert_close(logs[name], value)
    torch.testing.assert_close(total, 2 * instance + 0.7 * token + 0.5 * prototype)


def test_mgca_trains_from_the_cli_lowering_its_terms(toy_report_cache, tmp_path):
    overrides = ["backbone=tiny_cnn", "image_size=32", "batch_size=16", "num_workers=0", "lr=2e-3",
                 "warmup_epochs=0", "progress_bar=false", "monitor.enabled=false", "max_steps=60",
                 "log_every_n_steps=1", "method.num_prototypes=16", *(f"method.{k}={v}" for k, v in SMALL.items())]
    run = pretrain("mgca", toy_report_cache.path, tmp_path / "mgca", overrides=overrides)
    metrics = pd.read_csv(run / "logs/csv/version_0/metrics.csv")
    for column in ("train/instance_loss", "train/token_loss"):
        values = metrics[column].dropna().to_numpy()
        assert values[-10:].mean() < values[:10].mean() - 0.1, (column, values[:10].mean(), values[-10:].mean())
    assert load_image_text(run).text(["Pleural effusion."]).shape[1] == 16

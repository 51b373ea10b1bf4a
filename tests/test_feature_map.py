"""Encoder.feature_map: the spatial map before pooling, for CNNs (pooled it gives the encoder's features) and ViTs
(patch tokens as a grid, class token left out)."""

from __future__ import annotations

import pytest
import torch

from cxrl.errors import ConfigError
from cxrl.models import create_encoder


@pytest.mark.parametrize("name, size, grid", [("tiny_cnn", 32, 2), ("resnet18", 64, 2)])
def test_a_cnn_map_pooled_is_the_encoder_output(name, size, grid):
    torch.manual_seed(0)
    encoder = create_encoder(name).eval()
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        features = encoder.feature_map(x)
        assert features.shape == (2, encoder.num_features, grid, grid)
        torch.testing.assert_close(features.mean(dim=(2, 3)), encoder(x), rtol=1e-4, atol=1e-5)


def test_a_vit_map_is_its_patch_tokens_without_the_class_token():
    torch.manual_seed(0)
    encoder = create_encoder("vit_small", img_size=32).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        grid = encoder.feature_map(x)
        tokens = encoder.backbone.forward_features(x)
    assert grid.shape == (2, encoder.num_features, 2, 2)
    torch.testing.assert_close(grid.flatten(2).transpose(1, 2), tokens[:, 1:])  # row-major patches, no [CLS]


def test_an_encoder_without_a_spatial_map_is_a_clear_error():
    encoder = create_encoder("tiny_cnn")
    encoder.backbone = torch.nn.Linear(3, 3)  # a backbone with neither features nor forward_features
    with pytest.raises(ConfigError, match="no spatial feature map"):
        encoder.feature_map(torch.randn(1, 3))


@pytest.mark.parametrize("name, strides", [("tiny_cnn", (2, 4, 8, 16)), ("resnet18", (4, 8, 16, 32))])
def test_a_cnn_pyramid_ends_in_the_feature_map_at_growing_strides(name, strides):
    torch.manual_seed(0)
    encoder = create_encoder(name).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        maps = encoder.feature_maps(x)
        torch.testing.assert_close(maps[-1], encoder.feature_map(x), rtol=1e-4, atol=1e-5)
    assert [64 // m.shape[-1] for m in maps] == list(strides)


def test_a_vit_pyramid_is_its_last_blocks_on_the_patch_grid():
    encoder = create_encoder("vit_small", img_size=32).eval()
    with torch.no_grad():
        maps = encoder.feature_maps(torch.randn(1, 1, 32, 32), n=2)
    assert [tuple(m.shape) for m in maps] == [(1, encoder.num_features, 2, 2)] * 2

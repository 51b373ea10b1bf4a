"""Encoders: every alias builds and forwards one-channel input; weights load from common formats, safely."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from cxrl.errors import ConfigError, DataError
from cxrl.models import create_encoder, list_encoders, load_weights

FAST = ["tiny_cnn", "resnet10t", "resnet18"]
SLOW = ["resnet50", "densenet121", "convnext_tiny", "vit_small", "vit_base"]


def _forward(name: str, size: int = 64) -> None:
    encoder = create_encoder(name).eval()
    with torch.no_grad():
        out = encoder(torch.randn(2, 1, size, size))
    assert out.shape == (2, encoder.num_features)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", FAST)
def test_small_encoders_forward_a_one_channel_batch(name):
    _forward(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_large_encoders_forward_a_one_channel_batch(name):
    _forward(name)


def test_every_listed_alias_is_tested():
    assert sorted(FAST + SLOW) == list_encoders()


def test_vit_accepts_any_multiple_of_its_patch_size():
    encoder = create_encoder("vit_small", img_size=64, depth=2).eval()
    with torch.no_grad():
        assert encoder(torch.randn(1, 1, 64, 64)).shape == (1, 384)
        assert encoder(torch.randn(1, 1, 96, 48)).shape == (1, 384)


def test_timm_and_torchvision_prefixes_and_channels_last():
    timm_encoder = create_encoder("timm:resnet10t", in_chans=3)
    assert timm_encoder(torch.randn(2, 3, 32, 32)).shape == (2, 512)
    tv = create_encoder("torchvision:resnet18")
    x = torch.randn(2, 1, 32, 32).to(memory_format=torch.channels_last)
    assert tv.to(memory_format=torch.channels_last)(x).shape == (2, tv.num_features) == (2, 512)


def test_unknown_name_lists_known_encoders():
    with pytest.raises(ConfigError, match="tiny_cnn"):
        create_encoder("resnet9000")
    with pytest.raises(ConfigError, match="timm could not build"):
        create_encoder("timm:not_a_model")
    with pytest.raises(ConfigError, match="depth"):
        create_encoder("tiny_cnn", depth=3)


def _tiny_pair():
    torch.manual_seed(0)
    return create_encoder("tiny_cnn").eval(), create_encoder("tiny_cnn").eval()


def _same_outputs(a, b):
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_pth_with_module_prefix_and_state_dict_wrapper_loads(tmp_path):
    source, target = _tiny_pair()
    wrapped = {"epoch": 3, "state_dict": {f"module.encoder.{k}": v for k, v in source.backbone.state_dict().items()}}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    load_weights(target, tmp_path / "ckpt.pth")
    _same_outputs(source, target)


def test_lightning_checkpoint_of_a_cxrl_method_loads_the_online_encoder(tmp_path):
    source, target = _tiny_pair()
    state = {f"method.encoder.backbone.{k}": v for k, v in source.backbone.state_dict().items()}
    state |= {f"method.key_encoder.backbone.{k}": torch.zeros_like(v) for k, v in source.backbone.state_dict().items()}
    torch.save({"epoch": 2, "global_step": 10, "state_dict": state}, tmp_path / "last.ckpt")
    with pytest.warns(UserWarning, match="key_encoder"):
        load_weights(target, tmp_path / "last.ckpt")
    _same_outputs(source, target)


def test_safetensors_loads_and_weights_argument_of_create_encoder(tmp_path):
    source, _ = _tiny_pair()
    save_file(source.backbone.state_dict(), tmp_path / "w.safetensors")
    _same_outputs(source, create_encoder("tiny_cnn", weights=tmp_path / "w.safetensors").eval())


def test_rgb_first_conv_is_summed_over_input_channels(tmp_path):
    rgb = create_encoder("resnet10t", in_chans=3).eval()
    torch.save({"model": rgb.backbone.state_dict()}, tmp_path / "rgb.pt")
    gray = create_encoder("resnet10t", weights=tmp_path / "rgb.pt").eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(gray(x), rgb(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)


def test_missing_keys_error_unexpected_keys_warn_and_empty_match_errors(tmp_path):
    source, target = _tiny_pair()
    state = source.backbone.state_dict()
    partial = {k: v for k, v in state.items() if not k.startswith("features.0.")}
    save_file(partial, tmp_path / "partial.safetensors")
    with pytest.raises(DataError, match="not in the file"):
        load_weights(target, tmp_path / "partial.safetensors")
    with pytest.warns(UserWarning, match="not in the file"):
        load_weights(target, tmp_path / "partial.safetensors", strict=False)

    save_file({**state, "projector.weight": torch.zeros(2, 2)}, tmp_path / "extra.safetensors")
    with pytest.warns(UserWarning, match="projector.weight"):
        load_weights(target, tmp_path / "extra.safetensors")

    save_file({"head.weight": torch.zeros(2, 2)}, tmp_path / "other.safetensors")
    with pytest.raises(DataError, match="no key matches"):
        load_weights(target, tmp_path / "other.safetensors")


def test_shape_mismatch_names_the_key(tmp_path):
    _, target = _tiny_pair()
    wide = create_encoder("tiny_cnn", widths=(32, 64, 96, 256))
    save_file(wide.backbone.state_dict(), tmp_path / "wide.safetensors")
    with pytest.raises(DataError, match=r"features\.\d+\.weight.*shape"):
        load_weights(target, tmp_path / "wide.safetensors")


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("missing.pt", None, "no such file"),
        ("corrupt.pth", b"not a zip or pickle", "cannot be read"),
        ("corrupt.safetensors", b"\x00\x01garbage", "cannot be read"),
        ("weights.npz", b"whatever", "unknown format"),
    ],
)
def test_bad_weight_files_raise_data_errors_naming_the_file(tmp_path, filename, content, message):
    if content is not None:
        (tmp_path / filename).write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        create_encoder("tiny_cnn", weights=tmp_path / filename)
    assert filename in str(info.value)


def test_a_file_without_tensors_is_refused(tmp_path):
    torch.save({"epoch": 3, "state_dict": {"note": "empty"}}, tmp_path / "empty.pt")
    with pytest.raises(DataError, match="holds no tensors"):
        create_encoder("tiny_cnn", weights=tmp_path / "empty.pt")


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": ConfigError("x")}, tmp_path / "pickled.pt")
    with pytest.raises(DataError, match="pickled.pt"):
        create_encoder("tiny_cnn", weights=tmp_path / "pickled.pt")


def test_hub_weights_offline_give_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="internet"):
        create_encoder("resnet10t", weights="hub:")
    with pytest.raises(ConfigError, match="not a timm model"):
        create_encoder("tiny_cnn", weights="hub:")

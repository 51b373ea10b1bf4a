"""Export: safetensors + JSON sidecar round-trips an encoder exactly, with the metadata the contract requires."""

from __future__ import annotations

import json

import pytest
import torch

from cxrl import intensity
from cxrl.errors import ConfigError, DataError
from cxrl.models import create_encoder, load_encoder, save_encoder

META = {"image_size": 32, "method": "simclr", "config": {"lr": 0.1, "views": [1, 2]}}


def _trained_like(name: str = "tiny_cnn", **kwargs):
    torch.manual_seed(1)
    encoder = create_encoder(name, **kwargs)
    encoder.train()
    with torch.no_grad():  # move BN running stats away from their defaults so buffers are checked too
        encoder(torch.randn(8, 1, 32, 32) * 3 + 1)
    return encoder.eval()


def _assert_same(a, b, size: int = 32):
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


@pytest.mark.parametrize(("name", "kwargs"), [("tiny_cnn", {}), ("vit_small", {"img_size": 32, "depth": 1})])
def test_round_trip_gives_identical_outputs_and_full_metadata(tmp_path, name, kwargs):
    encoder = _trained_like(name, **kwargs)
    weights = save_encoder(tmp_path / "run", encoder, META)
    assert weights == tmp_path / "run" / "encoder.safetensors"
    loaded, meta = load_encoder(tmp_path / "run")
    _assert_same(encoder, loaded)
    assert not loaded.training
    assert meta["backbone"] == name and meta["num_features"] == encoder.num_features
    assert meta["intensity"] == intensity.CONVENTION
    assert meta["method"] == "simclr" and meta["image_size"] == 32 and meta["config"] == META["config"]
    assert {"torch", "timm", "cxrl"} <= set(meta["versions"])
    assert json.loads((tmp_path / "run" / "encoder.json").read_text()) == meta


def test_lone_safetensors_file_loads_from_its_header(tmp_path):
    encoder = _trained_like()
    weights = save_encoder(tmp_path, encoder, META)
    lone = tmp_path / "moved" / "model.safetensors"
    lone.parent.mkdir()
    lone.write_bytes(weights.read_bytes())
    loaded, meta = load_encoder(lone)
    _assert_same(encoder, loaded)
    assert meta["backbone"] == "tiny_cnn"


def test_exported_run_dir_serves_as_weights_for_create_encoder(tmp_path):
    encoder = _trained_like()
    save_encoder(tmp_path, encoder, META)
    _assert_same(encoder, create_encoder("tiny_cnn", weights=tmp_path).eval())


def test_save_requires_the_contract_metadata_and_a_consistent_backbone(tmp_path):
    encoder = create_encoder("tiny_cnn")
    with pytest.raises(ConfigError, match="method"):
        save_encoder(tmp_path, encoder, {"image_size": 32, "config": {}})
    with pytest.raises(ConfigError, match="resnet18"):
        save_encoder(tmp_path, encoder, {**META, "backbone": "resnet18"})


def test_load_refuses_other_intensity_conventions_and_bad_metadata(tmp_path):
    save_encoder(tmp_path, create_encoder("tiny_cnn"), META)
    sidecar = tmp_path / "encoder.json"
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "intensity": {**meta["intensity"], "mean": 0.0}}))
    with pytest.raises(DataError, match="intensity"):
        load_encoder(tmp_path)
    sidecar.write_text("{not json")
    with pytest.raises(DataError, match="encoder.json"):
        load_encoder(tmp_path)


def test_missing_or_corrupt_weights_raise_data_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_encoder(tmp_path)
    (tmp_path / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}")
    with pytest.raises(DataError, match="broken.safetensors"):
        load_encoder(tmp_path / "broken.safetensors")


def test_a_flipped_byte_in_the_weights_is_refused_by_the_recorded_sha256(tmp_path):
    weights = save_encoder(tmp_path / "run", _trained_like(), META)
    assert len(json.loads((tmp_path / "run" / "encoder.json").read_text())["weights_sha256"]) == 64
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # inside the last tensor's bytes: safetensors itself still parses the file
    weights.write_bytes(bytes(data))
    with pytest.raises(DataError, match="do not match the SHA-256 recorded at export"):
        load_encoder(tmp_path / "run")


def test_exported_files_get_the_same_permissions_as_any_other_file(tmp_path):
    save_encoder(tmp_path / "run", _trained_like(), META)
    (tmp_path / "run" / "other.txt").write_text("x")
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").iterdir()}
    assert modes["encoder.safetensors"] == modes["encoder.json"] == modes["other.txt"], modes
    assert sorted(modes) == ["encoder.json", "encoder.safetensors", "other.txt"]  # no partial file left

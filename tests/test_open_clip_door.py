"""The open_clip door: random-weight open_clip models (no download) behind cxrl's image and text contracts."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from cxrl.errors import ConfigError
from cxrl.intensity import to_model_input
from cxrl.models import create_encoder

open_clip = pytest.importorskip("open_clip")

from cxrl.models.open_clip_door import load_open_clip  # noqa: E402

ARCH = "ViT-S-32"
# ViT-S-32 shrunk through open_clip.create_model's keyword overrides: ~3.4 M parameters, 64 px input.
TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TEXTS = ["There is a right pleural effusion.", "No acute cardiopulmonary process.", "Cardiomegaly."]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """open_clip's own tiny model (seed 0) and its weights as an open_clip_pytorch_model.safetensors / .bin."""
    torch.manual_seed(0)
    model = open_clip.create_model(ARCH, pretrained=None, **TINY).eval()
    folder = tmp_path_factory.mktemp("open_clip")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, folder / "open_clip_pytorch_model.safetensors")
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    return model, folder


def _gray_images(n: int = 3, size: int = 64) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)


def _open_clip_image_features(model, images: np.ndarray) -> torch.Tensor:
    """open_clip's encode_image on its own eval preprocessing of the grayscale images as RGB PIL images."""
    cfg = open_clip.get_model_preprocess_cfg(model)
    preprocess = open_clip.image_transform(cfg["size"], is_train=False, mean=cfg["mean"], std=cfg["std"])
    batch = torch.stack([preprocess(Image.fromarray(a).convert("RGB")) for a in images])
    with torch.no_grad():
        return model.encode_image(batch)


@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_local_weights_file_loads_bit_exact(reference, suffix):
    model, folder = reference
    torch.manual_seed(1)  # a different random init, which the weights must overwrite entirely
    door = load_open_clip(f"open_clip:{ARCH}", weights=folder / f"open_clip_pytorch_model{suffix}", **TINY)
    for name, tensor in model.state_dict().items():
        assert torch.equal(door.model.state_dict()[name], tensor), name
    tokens = open_clip.get_tokenizer(ARCH, context_length=32)(TEXTS)
    with torch.no_grad():
        assert torch.equal(door.text.encode_text(TEXTS), model.encode_text(tokens))


def test_image_side_on_cxrl_batch_equals_open_clip_encode_image(reference):
    model, folder = reference
    encoder = create_encoder(f"open_clip:{ARCH}", weights=folder / "open_clip_pytorch_model.safetensors", **TINY)
    images = _gray_images()
    with torch.no_grad():
        features = encoder(to_model_input(torch.from_numpy(images)))
    assert encoder.num_features == 32 and features.shape == (3, 32)
    torch.testing.assert_close(features, _open_clip_image_features(model, images), rtol=1e-5, atol=1e-5)


def test_image_side_resizes_cxrl_images_to_the_tower_size(reference):
    _, folder = reference
    encoder = create_encoder(f"open_clip:{ARCH}", weights=folder / "open_clip_pytorch_model.safetensors", **TINY)
    with torch.no_grad():
        features = encoder(to_model_input(torch.from_numpy(_gray_images(size=96))))
    assert features.shape == (3, 32) and torch.isfinite(features).all()


def test_image_encoder_exports_and_gives_linear_probe_features(reference, tmp_path, toy_cache):
    from cxrl.evaluate.features import extract_features
    from cxrl.models import load_encoder, save_encoder

    _, folder = reference
    encoder = create_encoder(f"open_clip:{ARCH}", weights=folder / "open_clip_pytorch_model.safetensors", **TINY)
    save_encoder(tmp_path, encoder, {"image_size": 64, "method": "open_clip", "config": {}})
    reloaded, meta = load_encoder(tmp_path)
    images = toy_cache.images[:8]
    expected = extract_features(encoder, images, 64, desc=None)
    assert meta["backbone"] == f"open_clip:{ARCH}" and expected.shape == (8, 32)
    np.testing.assert_array_equal(extract_features(reloaded, images, 64, desc=None), expected)


def test_zeroshot_runs_end_to_end_through_the_door(reference, toy_cache):
    from cxrl.evaluate.features import extract_features
    from cxrl.evaluate.zeroshot import class_embeddings, zeroshot_scores

    _, folder = reference
    door = load_open_clip(f"open_clip:{ARCH}", weights=folder / "open_clip_pytorch_model.safetensors", **TINY)
    pathologies = ["Cardiomegaly", "Pleural Effusion", "Edema"]
    image_embeddings = extract_features(door.image, toy_cache.images[:], 64, desc=None)
    scores = zeroshot_scores(image_embeddings, class_embeddings(door.text.encode_text, pathologies))
    assert scores.shape == (len(image_embeddings), 3) and ((scores > 0) & (scores < 1)).all()
    assert (scores.std(axis=0) > 0).all()  # the scores depend on the image


def test_offline_hf_hub_name_is_a_clear_config_error(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    with pytest.raises(ConfigError, match=f"{repo}.*internet or a filled Hugging Face cache"):
        create_encoder(f"open_clip:hf-hub:{repo}", cache_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [("open_clip:NoSuchNet-7", {}, "no architecture 'NoSuchNet-7'"),
     (f"open_clip:{ARCH}", {"in_chans": 3}, "in_chans=3")],
)
def test_bad_names_and_channels_are_config_errors(name, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create_encoder(name, **kwargs)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_exported_open_clip_image_side_is_linear_probed_by_cxrl_evaluate(reference, tmp_path, toy_cache):
    import json

    from cxrl.cli import main
    from cxrl.models import save_encoder

    _, folder = reference
    encoder = create_encoder(f"open_clip:{ARCH}", weights=folder / "open_clip_pytorch_model.safetensors", **TINY)
    save_encoder(tmp_path / "clip", encoder, {"image_size": 64, "method": "open_clip", "config": {}})
    args = ["evaluate", "--encoder", str(tmp_path / "clip"), "--data", str(toy_cache.path), "--out",
            str(tmp_path / "eval"), "--fractions", "1", "--seeds", "1", "--bootstrap", "0", "--embedding", "none",
            "--min-positives", "2"]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["encoder"]["backbone"] == f"open_clip:{ARCH}" and metrics["encoder"]["num_features"] == 32


@pytest.mark.parametrize("protocol", ["zeroshot", "retrieval", "linear"])
def test_an_open_clip_model_goes_through_the_same_protocols_as_a_cxrl_run(reference, tmp_path, toy_cache, monkeypatch,
                                                                          protocol):
    """`cxrl evaluate --encoder open_clip:ARCH --encoder-weights FILE` (the tiny architecture is given through a
    patched door, as a user's standard architecture needs no keywords)."""
    import json

    import cxrl.models.open_clip_door as door
    from cxrl.cli import main
    from cxrl.data.cache import write_cache

    real = door.load_open_clip
    monkeypatch.setattr(door, "load_open_clip", lambda name, weights=None, in_chans=1: real(name, weights, **TINY))
    records = toy_cache.records.assign(findings=np.where(toy_cache.records["Cardiomegaly"] == 1, "Cardiomegaly.",
                                                         "No cardiomegaly."))
    cache = write_cache(tmp_path / "cache", np.asarray(toy_cache.images), records, {"source": "toy"})
    _, folder = reference
    assert main(["evaluate", "--encoder", f"open_clip:{ARCH}", "--encoder-weights",
                 str(folder / "open_clip_pytorch_model.safetensors"), "--data", str(cache.path), "--out",
                 str(tmp_path / "eval"), "--protocol", protocol, "--fractions", "1", "--seeds", "1", "--bootstrap",
                 "0", "--embedding", "none", "--min-positives", "2"]) == 0
    run = json.loads((tmp_path / "eval" / "metrics.json").read_text())["runs"][0]
    headline = {"zeroshot": "macro_auroc", "retrieval": "image_to_text_recall@10", "linear": "macro_auroc"}[protocol]
    assert 0 <= run[headline] <= 1
    assert ("modality_gap" in run) == (protocol != "linear")

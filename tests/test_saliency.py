"""Zero-shot saliency segmentation (cxrl.explain.saliency): gScoreCAM / Grad-CAM maps of an image-text score, Otsu
pseudo-masks, the mean-field CRF, SAM prompted with the largest contour's box, and the Dice report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cxrl.data import rle
from cxrl.data.cache import write_cache
from cxrl.errors import ConfigError
from cxrl.evaluate.segmentation import mask_dice
from cxrl.explain import saliency
from cxrl.explain.pseudo_masks import CrfSettings, pseudo_mask
from cxrl.explain.saliency import GScoreCAM, saliency_dice, text_saliency
from cxrl.explain.sam import sam_refine
from cxrl.models.encoders import Encoder, create_encoder
from cxrl.models.image_text import ImageTextModel, JointImage

BRIGHT, DARK = "bright", "dark"  # the toy text side's two prompts


class BrightnessBackbone(nn.Module):
    """Channels 0-2 fire on bright 4x4 patches (three thresholds), 3-5 on dark ones; pooled by the mean. Exposes
    ``feature_info`` as timm models do."""

    feature_info = [{"module": "features", "num_chs": 6, "reduction": 4}]

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(1, 6, 4, stride=4)
        with torch.no_grad():
            conv.weight.fill_(1 / 16)
            conv.weight[3:] *= -1
            conv.bias.copy_(torch.tensor([-0.5, -1.0, -1.5, -0.5, -0.2, 0.0]))
        self.features = nn.Sequential(conv, nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean((2, 3))


class ToyText:
    """Negations (``"dark"``, "No ...") embed along the dark channels, anything else along the bright ones."""

    def __call__(self, texts: list[str]) -> torch.Tensor:
        bright, dark = torch.tensor([1.0, 1, 1, 0, 0, 0]), torch.tensor([0.0, 0, 0, 1, 1, 1])
        return torch.stack([dark if t == DARK or t.startswith("No ") else bright for t in texts])

    def to(self, device):
        return self


def brightness_model() -> ImageTextModel:
    encoder = Encoder(BrightnessBackbone(), "brightness", 6, {})
    return ImageTextModel(JointImage(encoder, nn.Identity(), 6).eval(), ToyText(), {})


def disc_images(n: int = 2, size: int = 32, center=(20, 10), radius: int = 5) -> tuple[torch.Tensor, np.ndarray]:
    """Normalized images: dark noisy background, one bright disc; and the disc's mask."""
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2
    rng = np.random.default_rng(0)
    images = -1.0 + 0.1 * rng.standard_normal((n, 1, size, size)) + 3.0 * disc
    return torch.tensor(images, dtype=torch.float32), disc


@pytest.mark.parametrize("method", ["gscorecam", "gradcam"])
def test_maps_have_the_batch_shape_lie_in_unit_range_and_repeat(method, one_thread):
    torch.manual_seed(0)
    encoder = create_encoder("tiny_cnn", widths=(8, 16))
    model = ImageTextModel(JointImage(encoder, nn.Linear(16, 6), 6).eval(), ToyText(), {})
    images = torch.randn(3, 1, 32, 32)
    first = text_saliency(model, images, [BRIGHT], [DARK], method=method, top_k=4)
    again = text_saliency(model, images, [BRIGHT], [DARK], method=method, top_k=4)
    assert first.shape == (3, 32, 32) and first.dtype == np.float32
    assert first.min() >= 0 and first.max() <= 1 and first.max() > 0.5
    assert np.array_equal(first, again)
    assert all(p.grad is None for p in model.image.parameters())  # no gradients left behind


def test_a_vit_stage_is_its_block_with_tokens_reshaped_to_a_grid_and_a_wrong_stage_is_named(one_thread):
    torch.manual_seed(0)
    encoder = create_encoder("timm:vit_tiny_patch16_224", img_size=32)
    layer, reshape = saliency.stage_layer(encoder)
    assert layer is encoder.backbone.blocks[-1]
    assert reshape(torch.zeros(2, 5, 192)).shape == (2, 192, 2, 2)  # class token dropped, 4 patches
    model = ImageTextModel(JointImage(encoder, nn.Linear(192, 6), 6).eval(), ToyText(), {})
    assert text_saliency(model, torch.randn(2, 1, 32, 32), [BRIGHT], [DARK], method="gradcam").shape == (2, 32, 32)
    with pytest.raises(ConfigError, match="stage 4"):
        saliency.stage_layer(create_encoder("tiny_cnn"), stage=4)


@pytest.mark.parametrize("method", ["gscorecam", "gradcam"])
def test_the_saliency_of_a_brightness_score_peaks_on_the_bright_disc(method):
    images, disc = disc_images()
    maps = text_saliency(brightness_model(), images, [BRIGHT], [DARK], method=method, top_k=4)
    for m in maps:
        assert disc[np.unravel_index(m.argmax(), m.shape)]
        assert m[disc].mean() > 4 * m[~disc].mean()


def test_gscorecam_weighs_only_the_top_k_channels_by_mean_gradient():
    model = brightness_model().image
    images, _ = disc_images(1)
    activations = model.encoder.backbone.features(images).detach().numpy()
    grads = np.zeros_like(activations)
    grads[:, [4, 1]] = [[[[2.0]], [[1.0]]]]  # channel 4 first, then channel 1
    target = saliency.TextSimilarity(torch.tensor([1.0, 1, 1, 0, 0, 0]) / 3**0.5, None, 10.0)
    with GScoreCAM(model, [model.encoder.backbone.features], top_k=2, batch_size=8) as cam:
        weights = cam.get_cam_weights(images, None, [target], activations, grads)
    assert np.flatnonzero(weights[0]).tolist() == [1, 4]
    assert weights[0].sum() == pytest.approx(1.0)


def test_an_otsu_pseudo_mask_and_its_dice_by_hand():
    s = np.full((8, 8), 0.2)
    s[2:6, 2:6] = 0.9
    mask = pseudo_mask(s)
    assert np.array_equal(mask, s > 0.5)  # Otsu splits the two levels
    truth = np.zeros((8, 8), bool)
    truth[2:6, 3:7] = True  # shifted one column: 12 shared pixels of 16 + 16
    assert mask_dice(mask, truth) == pytest.approx(2 * 12 / 32)
    assert mask_dice(np.zeros_like(truth), np.zeros_like(truth)) == 1.0
    assert not pseudo_mask(s, threshold=0.95).any()
    with pytest.raises(ConfigError, match="threshold"):
        pseudo_mask(s, threshold="mean")


def edge_scene(size: int = 48, edge: int = 24):
    """A gray image whose right part (x >= edge) is bright, and a noisy saliency whose boundary is 5 px early."""
    rng = np.random.default_rng(1)
    xx = np.broadcast_to(np.arange(size), (size, size))
    image = np.where(xx >= edge, 180, 60) + rng.normal(0, 4, (size, size))
    s = 1 / (1 + np.exp(-(xx - edge + 5) / 3.0)) + rng.normal(0, 0.2, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8), np.clip(s, 0, 1), xx >= edge


def test_the_crf_moves_a_noisy_mask_onto_the_image_edge():
    image, s, truth = edge_scene()
    plain, refined = pseudo_mask(s, image), pseudo_mask(s, image, crf=True)
    assert mask_dice(refined, truth) > mask_dice(plain, truth) + 0.05
    assert mask_dice(refined, truth) > 0.95
    off = pseudo_mask(s, image, crf=CrfSettings(appearance_weight=0.0, smoothness_weight=0.0))
    assert np.array_equal(off, plain)  # without pairwise terms the CRF keeps the thresholded mask


def tiny_sam(size: int = 64):
    """SAM at ``size`` px with one-block random-weight towers (segment_anything.modeling)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    dim, patch = 32, 16
    return Sam(
        image_encoder=ImageEncoderViT(img_size=size, patch_size=patch, embed_dim=dim, depth=1, num_heads=2,
                                      out_chans=dim),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(size // patch, size // patch),
                                     input_image_size=(size, size), mask_in_chans=4),
        mask_decoder=MaskDecoder(transformer_dim=dim, transformer=TwoWayTransformer(depth=1, embedding_dim=dim,
                                                                                     mlp_dim=64, num_heads=2),
                                 iou_head_depth=1, iou_head_hidden_dim=16),
    ).eval()


def test_sam_is_prompted_with_the_largest_contours_box(monkeypatch, one_thread):
    from segment_anything import SamPredictor

    predictor = SamPredictor(tiny_sam())
    seen = {}
    predict, set_image = predictor.predict, predictor.set_image
    monkeypatch.setattr(predictor, "predict", lambda **kw: (seen.update(kw), predict(**kw))[1])
    monkeypatch.setattr(predictor, "set_image", lambda img: (seen.update(image=img), set_image(img))[1])
    mask = np.zeros((64, 64), bool)
    mask[10:20, 40:44] = True  # 40 px
    mask[30:50, 5:25] = True  # 400 px: the largest
    image = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    refined, box = sam_refine(predictor, image, mask)
    assert box.tolist() == [5, 30, 25, 50] and seen["box"].tolist() == [5, 30, 25, 50]
    assert seen["image"].shape == (64, 64, 3) and seen["image"].dtype == np.uint8
    assert refined.shape == (64, 64) and refined.dtype == bool
    empty, no_box = sam_refine(predictor, image, np.zeros_like(mask))
    assert no_box is None and not empty.any()


def disc_cache(tmp_path, n: int = 8, size: int = 32):
    """A cache of bright-disc images (disc position varies) labelled and outlined as ``Lung Lesion``."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for _ in range(n):
        cy, cx = rng.integers(8, size - 8, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 25
        images.append(np.clip(40 + rng.normal(0, 5, (size, size)) + 160 * disc, 0, 255).astype(np.uint8))
        masks.append(json.dumps({"Lung Lesion": rle.encode_rle(disc, relative=False)}))
    records = pd.DataFrame({
        "image_path": [f"/toy/{i}.png" for i in range(n)], "patient_id": [str(i // 2) for i in range(n)],
        "split": ["train", "train"] + ["test"] * (n - 2), "Lung Lesion": 1.0, "masks": masks,
        "mask_format": rle.ABSOLUTE, "orig_height": size, "orig_width": size, "scale": 1.0, "pad_top": 0,
        "pad_left": 0})
    return write_cache(tmp_path / "cache", np.stack(images), records, {"source": "toy"})


def test_saliency_dice_beats_the_whole_image_and_writes_its_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(saliency, "load_image_text", lambda run: brightness_model())
    prompts = {"Lung Lesion": ((BRIGHT,), (DARK,))}
    result = saliency_dice("toy-run", disc_cache(tmp_path), prompts=prompts, out=tmp_path / "out", n_boot=50,
                           settings=saliency.SaliencySettings(top_k=4))
    lesion = result["findings"]["Lung Lesion"]
    assert lesion["n_images"] == 6 and set(lesion["dice"]) == {"pseudo_mask", "pseudo_mask_crf",
                                                              *saliency.BASELINES}
    assert lesion["dice"]["pseudo_mask"] > 0.6 > lesion["dice"]["whole_image"]
    low, high = lesion["dice_ci95"]["pseudo_mask"]
    assert low <= lesion["dice"]["pseudo_mask"] <= high
    assert json.loads((tmp_path / "out" / "saliency.json").read_text())["mean"] == result["mean"]
    assert (tmp_path / "out" / "overlays" / "lung_lesion.png").stat().st_size > 0


def test_the_command_line_prints_a_table_and_names_what_is_wrong(tmp_path, monkeypatch, capsys):
    cache = disc_cache(tmp_path)
    common = ["--data", str(cache.path), "--out", str(tmp_path / "out")]
    assert saliency.main(["--run", str(tmp_path / "nowhere"), *common]) == 1
    assert "nowhere" in capsys.readouterr().err
    monkeypatch.setattr(saliency, "load_image_text", lambda run: brightness_model())
    assert saliency.main(["--run", "toy", *common, "--method", "gradcam", "--threshold", "0.5"]) == 0
    table = capsys.readouterr().out
    assert "Lung Lesion" in table and "mean" in table and "location_prior" in table
    assert saliency.main(["--run", "toy", *common, "--findings", "Hernia"]) == 1
    assert "Hernia" in capsys.readouterr().err

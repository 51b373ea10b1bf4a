"""``cxrl explain``: pointing game and IoU against hand-computed maps, the random baselines, the classifier heads,
Grad-CAM on a bright-disc cache, embedding maps side by side, and the gallery loaded in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from cxrl.cli import main
from cxrl.data import rle
from cxrl.data.cache import open_cache, write_cache
from cxrl.data.labels import PATHOLOGIES
from cxrl.errors import ConfigError, DataError
from cxrl.explain import maps, pointing
from cxrl.explain.classifier import ProbeClassifier
from cxrl.explain.gradcam import CAM_METHODS, class_activation_maps, spatial_encoder, target_layer
from cxrl.explain.run import run_explain
from cxrl.models import create_encoder, save_encoder

pytestmark = pytest.mark.usefixtures("one_thread")
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def _square(size: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_pointing_game_hits_a_peak_inside_the_mask_and_misses_one_outside():
    mask = _square(32, 8, 16, 8, 16)
    inside, outside = np.zeros((32, 32)), np.zeros((32, 32))
    inside[10, 12] = 1
    outside[10, 18] = 1  # two pixels right of the mask's last column (15)
    assert pointing.pointing_hit(inside, mask) == 1.0
    assert pointing.pointing_hit(outside, mask) == 0.0
    assert pointing.pointing_hit(outside, mask, tolerance=3) == 1.0  # within the grown mask
    tie = np.zeros((32, 32))
    tie[10, 12] = tie[10, 18] = 1  # one of the two maxima inside: half a hit
    assert pointing.pointing_hit(tie, mask) == 0.5


def test_random_baselines_are_the_mask_share_and_a_random_subset_iou():
    mask = _square(32, 8, 16, 8, 16)  # 64 of 1024 pixels
    assert pointing.random_pointing(mask) == 64 / 1024
    assert pointing.pointing_hit(np.zeros((32, 32)), mask) == 64 / 1024  # a flat map ties everywhere
    rng = np.random.default_rng(0)
    hits = [pointing.pointing_hit(rng.random((32, 32)), mask) for _ in range(4000)]
    assert abs(np.mean(hits) - 64 / 1024) < 3 * np.sqrt(0.0625 * 0.9375 / 4000)
    # a random subset of k = 103 pixels: E|S & M| = k m / N, so IoU ~ 6.4 / (103 + 64 - 6.4)
    assert pointing.random_map_iou(mask, rng, 0.1, draws=400) == pytest.approx(6.44 / 160.6, rel=0.08)
    assert pointing.grow(mask, 2).sum() == pytest.approx((8 + 4) ** 2 - 4 * 3, abs=4)  # rounded corners


def test_iou_of_the_top_pixels_against_a_mask_by_hand():
    mask = _square(10, 0, 5, 0, 2)  # 10 pixels
    saliency = np.zeros((10, 10))
    saliency[0:5, 1:3] = 1.0  # 10 pixels: 5 inside (column 1), 5 outside (column 2)
    rng = np.random.default_rng(0)
    assert pointing.map_iou(saliency, mask, rng, top_fraction=0.1) == pytest.approx(5 / 15)
    assert pointing.map_iou(saliency * 0 + mask, mask, rng, top_fraction=0.1) == 1.0
    with pytest.raises(ConfigError, match="top fraction"):
        pointing.map_iou(saliency, mask, rng, top_fraction=0)


def test_summary_margins_are_map_minus_random_with_patient_intervals():
    scores = {"hit": np.array([1.0, 1.0, 0.0, 1.0]), "hit_random": np.array([0.1, 0.2, 0.1, 0.2]),
              "iou": np.array([0.5, 0.4, 0.0, 0.3]), "iou_random": np.full(4, 0.05)}
    out = pointing.summarize(scores, groups=["a", "a", "b", "c"], n_boot=200, seed=0)
    assert out["n_images"] == 4 and out["pointing_game"] == 0.75 and out["pointing_game_random"] == pytest.approx(0.15)
    assert out["pointing_game_margin"] == pytest.approx(0.6) and out["iou_margin"] == pytest.approx(0.25)
    low, high = out["pointing_game_ci"]
    assert 0 <= low < 0.75 < high <= 1


def test_probe_and_zero_shot_heads_reproduce_their_numpy_scores():
    from cxrl.evaluate.probe import fit_linear_probe
    from cxrl.evaluate.zeroshot import zeroshot_scores
    from cxrl.explain.saliency import TextSimilarity

    torch.manual_seed(0)
    encoder = create_encoder("tiny_cnn").eval()
    x = torch.randn(12, 1, 32, 32)
    with torch.no_grad():
        feats = encoder(x).numpy().astype(np.float64)
    y = (feats[:, :2] > np.median(feats[:, :2], 0)).astype(float)
    probe = fit_linear_probe(feats, y, feats, y, c_grid=(1.0,), device="cpu")
    with torch.no_grad():
        np.testing.assert_allclose(ProbeClassifier(encoder, probe)(x).numpy(), probe.decision_function(feats),
                                   rtol=1e-4, atol=1e-4)
    classes = np.random.default_rng(0).normal(size=(3, 2, encoder.num_features))
    classes /= np.linalg.norm(classes, axis=2, keepdims=True)
    ensembles = torch.as_tensor(classes, dtype=torch.float32)
    logits = np.stack([TextSimilarity(e[0], e[1], scale=1.0)(torch.as_tensor(feats)).numpy() for e in ensembles], 1)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), zeroshot_scores(feats, classes), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny_cnn", "resnet18", "vit_small"])
def test_every_cam_reaches_the_last_spatial_stage_and_returns_unit_maps(name):
    torch.manual_seed(0)
    encoder = create_encoder(name).eval()
    layer, reshape = target_layer(encoder)
    if name == "resnet18":
        assert layer is encoder.backbone.layer4
    if name == "vit_small":
        assert layer is encoder.backbone.blocks[-1].norm1
        assert reshape(torch.zeros(2, 1 + 16, 384)).shape == (2, 384, 4, 4)
    model = torch.nn.Sequential(encoder, torch.nn.Linear(encoder.num_features, 2))
    images = np.random.default_rng(0).integers(0, 255, (2, 48, 48), dtype=np.uint8)
    methods = CAM_METHODS if name == "tiny_cnn" else ["gradcam"]
    for method in methods:
        targets = [ClassifierOutputTarget(0), ClassifierOutputTarget(1)]
        cams = class_activation_maps(model, encoder, images, targets, method, image_size=64)
        assert cams.shape == (2, 48, 48) and cams.min() >= 0 and cams.max() <= 1 + 1e-6, method


def test_an_encoder_without_a_spatial_stage_is_a_clear_error(toy_cache, tmp_path):
    with pytest.raises(ConfigError, match="no spatial feature map"):
        spatial_encoder(torch.nn.Linear(3, 3), "linear")
    with pytest.raises(ConfigError, match="'torchvision:alexnet' exposes no stages"):
        run_explain(["random"], toy_cache.path, tmp_path, backbone="torchvision:alexnet", min_positives=2)
    assert not (tmp_path / "features").exists()  # refused before any work
    with pytest.raises(ConfigError, match="--cam"):
        run_explain(["random"], "unused", "unused", cam="nope")


def disc_cache(path, n: int = 120, size: int = 64, radius: int = 8, seed: int = 0):
    """Even images hold a bright disc at a random place, labelled Lung Lesion with its mask; patients 7-9 of each
    ten are the test rows."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = rng.normal(90, 15, (n, size, size))
    positive = np.arange(n) % 2 == 0
    masks = []
    for i in range(n):
        cy, cx = rng.integers(radius + 2, size - radius - 2, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        images[i][disc] += 100 * positive[i]
        masks.append(json.dumps({"Lung Lesion": rle.encode_rle(disc, relative=False)} if positive[i] else {}))
    ids = np.arange(n)
    split = np.where(ids % 10 < 5, "train", np.where(ids % 10 < 7, "valid", "test"))
    records = pd.DataFrame({
        "image_path": [f"/disc/{i}.png" for i in ids], "patient_id": ids.astype(str), "study_id": ids.astype(str),
        "view": np.where(ids % 3, "PA", "AP"), "sex": np.where(ids % 4, "F", "M"), "age": 30.0 + ids % 50,
        "split": split, "dataset": "disc", "masks": masks, "mask_format": rle.ABSOLUTE, "orig_height": size,
        "orig_width": size, "scale": 1.0, "pad_top": 0, "pad_left": 0,
    })
    for p in PATHOLOGIES:
        records[p] = np.nan
    records["Lung Lesion"] = positive.astype("float32")
    return write_cache(path, np.clip(images, 0, 255).astype(np.uint8), records, {"source": "disc"})


def trained_run(cache, path, finding: str = "Lung Lesion", steps: int = 30):
    """A tiny_cnn trained to detect ``finding`` on the cache's train rows (Adam, 30 steps of 32), exported."""
    from cxrl.evaluate.features import eval_input

    torch.manual_seed(0)
    encoder, head = create_encoder("tiny_cnn"), torch.nn.Linear(128, 1)
    train = np.flatnonzero(cache.records["split"].to_numpy() == "train")
    x = eval_input(cache.images[train], cache.image_size)
    y = torch.as_tensor(cache.records[finding].to_numpy()[train], dtype=torch.float32)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-3)
    for _ in range(steps):
        batch = torch.randint(0, len(train), (32,))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(encoder(x[batch]))[:, 0], y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_encoder(path, encoder.eval(), {"image_size": cache.image_size, "method": "supervised", "config": {}})
    return path


def test_gradcam_of_a_disc_detector_points_at_the_disc(tmp_path):
    cache = disc_cache(tmp_path / "cache")
    run = trained_run(cache, tmp_path / "run")
    # tolerance 8 px: half a cell of tiny_cnn's stride-16 map (4 x 4 at 64 px), as Zhang et al.'s 15 px at 224
    metrics = run_explain([str(run)], cache.path, tmp_path / "out", maps=["none"], n_bootstrap=100, min_positives=2,
                          tolerance=8)
    result = metrics["encoders"][0]["localization"]["Lung Lesion"]
    assert result["n_images"] == 12
    assert result["pointing_game"] >= 0.8 and result["pointing_game_random"] < 0.25
    assert result["pointing_game_margin_ci"][0] > 0.3
    assert result["iou"] > 4 * result["iou_random"]
    assert metrics["encoders"][0]["head"] == "probe" and (tmp_path / "out" / "index.html").is_file()


def test_default_findings_are_outlined_with_train_labels_and_test_positives_only(tmp_path):
    full = disc_cache(tmp_path / "full")
    keep = ~((full.records["split"] == "test") & (full.records["Lung Lesion"] == 0)).to_numpy()
    cache = write_cache(tmp_path / "cache", np.asarray(full.images)[keep], full.records[keep], {"source": "disc"})
    quick = dict(backbone="tiny_cnn", maps=["none"], n_images=2, gallery_images=1, n_bootstrap=0)
    metrics = run_explain(["random"], cache.path, tmp_path / "a", **quick)  # no test negatives: still explained
    assert metrics["findings"] == ["Lung Lesion"]
    assert metrics["encoders"][0]["localization"]["Lung Lesion"]["n_images"] == 2
    with pytest.raises(DataError, match="lower --min-positives"):
        run_explain(["random"], cache.path, tmp_path / "b", min_positives=13, **quick)  # 12 test positives


def test_a_cache_without_masks_gets_cams_and_says_localization_was_skipped(toy_cache, tmp_path):
    metrics = run_explain(["random"], toy_cache.path, tmp_path, backbone="tiny_cnn", maps=["none"], n_images=3,
                          gallery_images=2, min_positives=2, findings=["Cardiomegaly"])
    entry = metrics["encoders"][0]
    assert entry["localization"] == {"Cardiomegaly": None} and entry["macro"] == {}
    assert any("no mask" in note for note in metrics["notes"])
    assert len(entry["gallery"]["Cardiomegaly"]) == 2
    assert all((tmp_path / item["png"]).is_file() for item in entry["gallery"]["Cardiomegaly"])


def test_embedding_maps_draw_two_encoders_side_by_side(tmp_path):
    import matplotlib.image

    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(15), np.ones(15)][:, None]
    records = pd.DataFrame({"sex": np.where(np.arange(30) % 2, "F", "M"), "view": "PA"})
    colourings, notes = maps.colourings(records, labels, ["Edema"], ["label", "sex", "view"])
    assert list(colourings) == ["Edema", "sex"] and "not coloured by view" in notes[0]
    x = rng.normal(size=(30, 8)) + 4 * labels
    one = maps.embedding_maps({"a": x}, colourings, tmp_path / "one.png", method="tsne")
    two = maps.embedding_maps({"a": x, "b": rng.normal(size=(30, 8))}, colourings, tmp_path / "two.png", "tsne")
    h1, w1 = matplotlib.image.imread(one).shape[:2]
    h2, w2 = matplotlib.image.imread(two).shape[:2]
    assert h1 == h2 and w2 > 1.8 * w1  # a second column, same rows


def test_class_prototypes_and_their_cosines_by_hand():
    x = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0], [2.0, 2.0]])
    labels = np.array([[1, 0], [0, 1], [0, 0], [np.nan, np.nan]])
    protos = maps.class_prototypes(x, labels)  # the mean (1, 1) is removed first
    np.testing.assert_allclose(protos, [[1.0, -1.0], [-1.0, 1.0]])
    np.testing.assert_allclose(maps.cosine_matrix(protos), [[1.0, -1.0], [-1.0, 1.0]])
    assert np.isnan(maps.class_prototypes(x, np.zeros((4, 1)))).all()


@pytest.fixture(scope="module")
def phantom_cache(tmp_path_factory):
    """A 90-image phantom (64 px, MIMIC layout) in a 32 px cache, re-split by patient so the test split is large."""
    from cxrl.data.phantom import write_dataset
    from cxrl.data.prepare import prepare
    from cxrl.data.splits import patient_split

    tmp = tmp_path_factory.mktemp("explain_phantom")
    root = write_dataset(tmp / "ph", n=90, size=64, layout="mimic", seed=11, workers=1)
    prepare("mimic", root, tmp / "c0", size=32, workers=1, reports=True)
    cache = open_cache(tmp / "c0")
    records = patient_split(cache.records.assign(split=None), seed=0, fractions=(0.5, 0.2, 0.3))
    return write_cache(tmp / "cache", np.asarray(cache.images), records, cache.manifest)


def test_cli_gallery_loads_every_image_in_headless_chromium(phantom_cache, tmp_path, capsys):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: `make test` installs it as root (apt-get install -y chromium)")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    from cxrl.train import pretrain

    run = pretrain("convirt", phantom_cache.path, tmp_path / "convirt", overrides=[
        "backbone=tiny_cnn", "image_size=32", "batch_size=16", "num_workers=0", "warmup_epochs=0",
        "progress_bar=false", "monitor.enabled=false", "method.proj_hidden_dim=64", "method.proj_dim=32",
        "method.vocab_size=200", "max_steps=3"])
    out = tmp_path / "explain"
    code = main(["explain", "--encoder", str(run), "--baseline", "random", "--data",
                 str(phantom_cache.path), "--out", str(out), "--findings", "Pleural Effusion,Lung Opacity",
                 "--n-images", "4", "--gallery-images", "2", "--maps", "tsne", "--min-positives", "2",
                 "--bootstrap", "50", "--seed", "3"])
    assert code == 0 and "pointing game" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["role"] for e in metrics["encoders"]] == ["encoder", "baseline"]
    scored = metrics["encoders"][0]["localization"]["Pleural Effusion"]
    assert scored["n_images"] > 0 and 0 < scored["pointing_game_random"] < 1
    saliency = metrics["encoders"][0]["saliency"]["findings"]["Pleural Effusion"]  # the image-text run only
    assert {"pseudo_mask", "pseudo_mask_crf", "whole_image"} <= set(saliency["dice"]) and "saliency" not in \
        metrics["encoders"][1]
    page = (out / "index.html").read_text()
    n_images = len(re.findall(r"<img ", page))
    assert "Zero-shot saliency segmentation" in page and saliency["overlay"] in page
    # 2 findings x 2 encoders x 2 CAMs, a saliency overlay per finding, the t-SNE map, the prototype and prompt maps
    assert n_images >= 2 * 2 * 2 + 2 + 3
    assert not re.search(r"(src|href)=\"(https?:|/)", page)  # self-contained: relative links only
    probe = ("<script>window.addEventListener('load', () => { const all = [...document.images];"
             "const ok = all.filter(i => i.complete && i.naturalWidth > 0).length;"
             "document.body.insertAdjacentHTML('beforeend', `<p id='img-check'>loaded=${ok} "
             "broken=${all.length - ok}</p>`); });</script>")
    (out / "check.html").write_text(page.replace("</body>", probe + "</body>"))
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", (out / "check.html").as_uri()],
        capture_output=True, text=True, timeout=60,
    ).stdout
    assert f"loaded={n_images} broken=0" in dom


@pytest.mark.slow
def test_zero_shot_head_of_an_image_text_run_and_its_prompt_similarity(toy_report_cache, tmp_path):
    from cxrl.train import pretrain

    run = pretrain("convirt", toy_report_cache.path, tmp_path / "run", overrides=[
        "backbone=tiny_cnn", "image_size=32", "batch_size=16", "num_workers=0", "warmup_epochs=0",
        "progress_bar=false", "monitor.enabled=false", "method.proj_hidden_dim=64", "method.proj_dim=32",
        "method.vocab_size=120", "max_steps=3"])
    metrics = run_explain([str(run)], toy_report_cache.path, tmp_path / "out", head="zeroshot", maps=["none"],
                          findings=["Cardiomegaly", "Edema"], n_images=2, min_positives=2)
    assert metrics["encoders"][0]["head"] == "zeroshot"
    sims = np.array(metrics["similarity"]["prompts"][metrics["encoders"][0]["name"]])
    assert sims.shape == (2, 2) and np.allclose(np.diag(sims), 1) and np.allclose(sims, sims.T)
    assert (tmp_path / "out" / metrics["plots"]["prompt_similarity"]).is_file()

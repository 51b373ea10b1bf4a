"""Zero-shot saliency segmentation from an image-text model, after MedCLIP-SAM (Koleilat et al., MICCAI 2024).

The pipeline, one finding at a time:

1. **Saliency** (:func:`text_saliency`) of the image-text score ``s(x) = scale * (cos(v(x), t+) - cos(v(x), t-))``
   where ``v`` is the projected image embedding and ``t+`` / ``t-`` the finding's positive / negative prompt
   ensembles (CheXzero's pair, :data:`cxrl.evaluate.zeroshot.DEFAULT_PROMPTS`; without negatives,
   ``s = scale * cos(v, t+)``). With ``method="gscorecam"`` (Chen et al. 2022, gScoreCAM): the activations
   ``A_k`` of a stage of the image encoder and their gradients ``dS/dA_k``; the top-k channels by mean gradient;
   each kept channel upsampled and min-max normalized to ``M_k``, the image masked as ``x * M_k`` and re-scored;
   ``w = softmax_k(s(x * M_k))`` (zero for the other channels); saliency ``ReLU(sum_k w_k A_k)``, upsampled and
   min-max normalized. ``method="gradcam"`` (Selvaraju et al. 2017) weights channels by their mean gradient instead:
   one backward pass, no re-scoring.
2. **Pseudo-mask** (:func:`cxrl.explain.pseudo_masks.pseudo_mask`): Otsu's threshold (or a fixed one) on the
   saliency, optionally refined by a fully connected CRF (Krähenbühl & Koltun 2011) over the image's intensities.
3. **SAM** (:func:`cxrl.explain.sam.sam_refine`): the bounding box of the pseudo-mask's largest contour prompts
   Segment Anything (Kirillov et al. 2023); its mask is the output.

:func:`saliency_dice` scores all three against dense annotations (``cxrl.data.dense``) beside trivial baselines;
:func:`main` is its command line (``python -m cxrl.explain.saliency``).

Why positive minus negative: a chest X-ray "Pleural effusion." and "No pleural effusion." embed close together;
``cos(v, t+)`` alone mostly explains what any chest radiograph shares with both sentences, while the difference is
the zero-shot classifier's own logit (``softmax(s+, s-)`` = ``sigmoid(s+ - s-)``), so the map shows where the
model sees evidence *for* the finding rather than *against* its absence.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.base_cam import BaseCAM
from torch import nn
from tqdm.auto import tqdm

from cxrl.data.cache import Cache, as_cache
from cxrl.data.dense import dense_findings, outlined_masks
from cxrl.errors import ConfigError, CxrlError
from cxrl.evaluate.features import eval_input
from cxrl.evaluate.metrics import _num, bootstrap_mean_ci
from cxrl.evaluate.segmentation import mask_dice
from cxrl.evaluate.zeroshot import DEFAULT_PROMPTS, PromptPair, ensemble_embeddings
from cxrl.explain.pseudo_masks import CrfSettings, pseudo_mask
from cxrl.explain.sam import load_sam, sam_refine
from cxrl.models.encoders import STAGE_MODULES, TinyCNN, patch_grid
from cxrl.models.image_text import ImageTextModel, load_image_text

log = logging.getLogger(__name__)
METHODS = ("gscorecam", "gradcam")
VARIANTS = ("pseudo_mask", "pseudo_mask_crf", "sam")  # the pipeline's outputs, scored against the annotation
BASELINES = ("whole_image", "location_prior", "random_map")  # masks that use no image-text model


class TextSimilarity:
    """The pytorch-grad-cam target: ``scale * (cos(v, positive) - cos(v, negative))`` of embeddings ``v``
    ``(D,)`` or ``(N, D)`` (no ``negative``: ``scale * cos(v, positive)``)."""

    def __init__(self, positive: torch.Tensor, negative: torch.Tensor | None, scale: float) -> None:
        self.direction = (positive if negative is None else positive - negative).float()
        self.scale = scale

    def __call__(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.scale * (F.normalize(embedding.float(), dim=-1) @ self.direction.to(embedding.device))


class GScoreCAM(BaseCAM):
    """gScoreCAM (Chen et al. 2022, "gScoreCAM: What objects is CLIP looking at?"): Score-CAM's softmax weights over
    only the ``top_k`` channels with the highest mean gradient, re-scored ``batch_size`` masked images at a time.

    pytorch-grad-cam's ``ScoreCAM`` re-scores every channel and takes no gradients; this subclass keeps its
    ``BaseCAM`` machinery (hooks, ReLU, upsampling, normalization) and only selects the channels first."""

    def __init__(self, model: nn.Module, target_layers: list[nn.Module], top_k: int, batch_size: int,
                 reshape_transform: Callable | None = None) -> None:
        super().__init__(model, target_layers, reshape_transform=reshape_transform, uses_gradients=True,
                         compute_input_gradient=True)
        self.top_k, self.batch_size = top_k, batch_size

    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads) -> np.ndarray:
        importance = grads.mean(axis=(2, 3))
        weights = np.zeros(importance.shape, np.float32)
        with torch.no_grad():
            maps = F.interpolate(torch.from_numpy(activations).to(self.device), size=input_tensor.shape[-2:],
                                 mode="bilinear", align_corners=False)
            low, high = maps.amin((2, 3), keepdim=True), maps.amax((2, 3), keepdim=True)
            maps = (maps - low) / (high - low + 1e-8)
            for b, target in enumerate(targets):
                kept = np.argsort(-importance[b], kind="stable")[: self.top_k]
                masked = input_tensor[b].detach() * maps[b, torch.from_numpy(kept).to(self.device), None]
                scores = torch.cat([target(self.model(chunk)) for chunk in masked.split(self.batch_size)])
                weights[b, kept] = torch.softmax(scores.float(), 0).cpu().numpy()
        return weights


def stage_layer(encoder: nn.Module, stage: int = -1) -> tuple[nn.Module, Callable | None]:
    """The module whose output is stage ``stage`` of ``encoder`` (-1: the last, what ``feature_map`` returns) and
    the reshape that turns its output into ``(B, C, h, w)`` (ViT tokens -> grid; ``None`` for CNNs)."""
    backbone = getattr(encoder, "backbone", None)
    if isinstance(backbone, TinyCNN):
        stages = [backbone.features[end - 1] for end in range(STAGE_MODULES, len(backbone.features) + 1,
                                                               STAGE_MODULES)]
        return _pick(stages, stage, encoder), None
    info = getattr(backbone, "feature_info", None)
    if not info:
        raise ConfigError(f"encoder {getattr(encoder, 'name', type(encoder).__name__)!r} exposes no "
                          f"stages (tiny_cnn and timm models do)")
    layer = backbone.get_submodule(_pick(info, stage, encoder)["module"])
    prefix = getattr(backbone, "num_prefix_tokens", None)
    return layer, (partial(patch_grid, prefix_tokens=prefix, name=encoder.name) if prefix is not None else None)


def _pick(stages: Sequence, stage: int, encoder: nn.Module) -> Any:
    if not -len(stages) <= stage < len(stages):
        raise ConfigError(f"saliency stage {stage}: encoder {getattr(encoder, 'name', '')!r} has {len(stages)} "
                          f"stages (use -{len(stages)}..{len(stages) - 1})")
    return stages[stage]


def text_saliency(
    model: ImageTextModel, images: torch.Tensor, prompts: Sequence[str], negative_prompts: Sequence[str] | None = None,
    method: str = "gscorecam", top_k: int = 300, stage: int = -1, logit_scale: float = 10.0, batch_size: int = 64,
) -> np.ndarray:
    """Saliency maps ``(B, H, W)`` float32 in ``[0, 1]`` of normalized images ``(B, 1, H, W)`` for the prompt
    ensemble ``prompts`` (minus ``negative_prompts`` when given; see the module docstring).

    ``logit_scale`` multiplies the cosine similarities before gScoreCAM's softmax (1 / ConVIRT's temperature 0.1
    by default; CLIP learns about 100): at scale 1 the softmax over cosines would weight all channels alike.
    ``stage`` picks the encoder stage (:func:`stage_layer`); ``top_k`` the channels gScoreCAM keeps (MedCLIP-SAM:
    300); ``batch_size`` the masked images it scores per forward pass."""
    if method not in METHODS:
        raise ConfigError(f"saliency method {method!r}: expected one of {', '.join(METHODS)}")
    if images.ndim != 4 or images.shape[1] != 1:
        raise CxrlError(f"saliency: expected a (B, 1, H, W) image batch, found {tuple(images.shape)}")
    image = model.image
    device = next(image.parameters()).device
    embed = partial(ensemble_embeddings, model.text)
    target = TextSimilarity(torch.from_numpy(embed(list(prompts), "saliency prompts")).to(device),
                            None if negative_prompts is None else
                            torch.from_numpy(embed(list(negative_prompts), "saliency negative prompts")).to(device),
                            logit_scale)
    layer, reshape = stage_layer(getattr(image, "encoder", image), stage)
    if method == "gscorecam":
        cam: BaseCAM = GScoreCAM(image, [layer], top_k, batch_size, reshape)
    else:
        cam = GradCAM(image, [layer], reshape_transform=reshape)
        cam.compute_input_gradient = True  # gradients reach the layer even when the weights are frozen
    with cam, torch.enable_grad():
        maps = cam(images.float(), targets=[target] * len(images))
    image.zero_grad(set_to_none=True)
    return np.clip(maps, 0.0, 1.0)


def random_map(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth random ``[0, 1]`` map (Gaussian noise blurred at 1/8 of the side): a saliency that knows nothing."""
    noise = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), max(shape) / 8)
    return (noise - noise.min()) / max(float(np.ptp(noise)), 1e-12)


def location_prior(records: pd.DataFrame, finding: str, size: int, splits: Sequence[str] = ("train",),
                   limit: int = 500) -> np.ndarray | None:
    """Otsu's mask of the mean annotated mask of ``finding`` over (at most ``limit``) positive ``splits`` records:
    where the finding usually is, the same for every image; ``None`` without any such record."""
    _, masks = outlined_masks(records, _positive_rows(records, finding, splits)[:limit], finding, size)
    return pseudo_mask(masks.mean(axis=0)) if len(masks) else None


def _positive_rows(records: pd.DataFrame, finding: str, splits: Sequence[str]) -> np.ndarray:
    """Record indices of the ``splits`` images positive for ``finding``."""
    return np.flatnonzero(records["split"].isin(splits).to_numpy() & (records.get(finding) == 1).to_numpy())


@dataclass(frozen=True)
class SaliencySettings:
    """How :func:`saliency_dice` makes its masks (see :func:`text_saliency` and :func:`pseudo_mask`)."""

    method: str = "gscorecam"
    top_k: int = 300
    stage: int = -1
    logit_scale: float = 10.0
    threshold: str | float = "otsu"
    crf: CrfSettings = field(default_factory=CrfSettings)
    batch_size: int = 16  # images per saliency call


def _mean_ci(values: np.ndarray, patients: np.ndarray, n_boot: int, seed: int) -> tuple[float | None, list]:
    """Mean of per-image values and its 95% bootstrap interval over patients."""
    return _num(values.mean()), [_num(v) for v in bootstrap_mean_ci(values, patients, n_boot, seed)]


def saliency_dice(
    run: str | Path, cache: Cache | str | Path, findings: Sequence[str] | None = None, *,
    splits: Sequence[str] = ("test",), prompts: Mapping[str, PromptPair] = DEFAULT_PROMPTS,
    settings: SaliencySettings = SaliencySettings(), sam_checkpoint: str | Path | None = None,
    device: torch.device | str = "cpu", max_images: int | None = None, out: str | Path | None = None,
    overlays: int = 4, n_boot: int = 1000, seed: int = 0, model: ImageTextModel | None = None,
) -> dict[str, Any]:
    """Zero-shot segmentation Dice of the image-text model ``run`` (``model``: it, already loaded) on the
    ``splits`` images of ``cache`` positive for each finding with a non-empty mask: the pseudo-mask without and with
    CRF, SAM's mask when ``sam_checkpoint`` is given, and the baselines (the whole image; :func:`location_prior` of
    the training masks; a :func:`random_map` thresholded like the saliency). Per finding: mean Dice with a 95%
    bootstrap interval over patients; ``mean``: the mean over findings. With ``out``, writes ``saliency.json`` and
    one overlay PNG per finding (its first ``overlays`` images)."""
    cache = as_cache(cache)
    model = model if model is not None else load_image_text(run)
    model.image.to(device)
    model.text.to(device)
    predictor = load_sam(sam_checkpoint, device=device) if sam_checkpoint is not None else None
    findings = _findings(cache.records, findings, prompts)
    size, rng = cache.image_size, np.random.default_rng(seed)
    result: dict[str, Any] = {
        "run": str(run), "cache": str(cache.path), "splits": list(splits), "sam_checkpoint":
        None if sam_checkpoint is None else str(sam_checkpoint), "settings": asdict(settings), "findings": {}}
    for finding in findings:
        rows, truths = outlined_masks(cache.records, _positive_rows(cache.records, finding, splits), finding,
                                      size)
        rows, truths = rows[:max_images], truths[:max_images]
        if not len(rows):
            log.info("saliency: no %s image positive for %s with a mask; skipped", "/".join(splits), finding)
            continue
        prior = location_prior(cache.records, finding, size)
        scores = {name: [] for name in (*VARIANTS[: 2 + (predictor is not None)], *BASELINES)}
        shown: list[tuple[np.ndarray, ...]] = []
        bar = tqdm(total=len(rows), desc=f"saliency {finding}", leave=False)
        for start in range(0, len(rows), settings.batch_size):
            images = cache.read(rows[start:start + settings.batch_size])
            maps = text_saliency(model, eval_input(images, size, device), *prompts[finding], settings.method,
                                 settings.top_k, settings.stage, settings.logit_scale)
            for image, saliency, truth in zip(images, maps, truths[start:start + len(images)], strict=True):
                masks = {"pseudo_mask": pseudo_mask(saliency, image, settings.threshold),
                         "pseudo_mask_crf": pseudo_mask(saliency, image, settings.threshold, settings.crf)}
                if predictor is not None:
                    masks["sam"] = sam_refine(predictor, image, masks["pseudo_mask_crf"])[0]
                masks["whole_image"] = np.ones_like(truth)
                masks["location_prior"] = prior if prior is not None else np.zeros_like(truth)
                masks["random_map"] = pseudo_mask(random_map(truth.shape, rng), threshold=settings.threshold)
                for name, mask in masks.items():
                    scores[name].append(mask_dice(mask, truth))
                if len(shown) < overlays:
                    shown.append((image, truth, saliency, masks["pseudo_mask_crf"], masks.get("sam")))
            bar.update(len(images))
        bar.close()
        patients = cache.records["patient_id"].to_numpy()[rows]
        summary = {name: _mean_ci(np.array(v), patients, n_boot, seed) for name, v in scores.items()}
        result["findings"][finding] = {"n_images": len(rows), "dice": {k: v[0] for k, v in summary.items()},
                                       "dice_ci95": {k: v[1] for k, v in summary.items()}}
        if out is not None and shown:
            png = _overlay_figure(shown, finding, Path(out) / "overlays")
            result["findings"][finding]["overlay"] = png.relative_to(out).as_posix()
    per_finding = [f["dice"] for f in result["findings"].values()]
    result["mean"] = {k: _num(np.mean([d[k] for d in per_finding])) for k in (per_finding[0] if per_finding else {})}
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "saliency.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result


def _findings(records: pd.DataFrame, asked: Sequence[str] | None, prompts: Mapping[str, PromptPair]) -> list[str]:
    """The asked findings (each needs prompts and a label column), else every outlined finding with prompts."""
    if asked is None:
        return [f for f in dense_findings(records) if f in prompts and f in records]
    missing = [f for f in asked if f not in prompts or f not in records]
    if missing:
        raise ConfigError(f"saliency findings {missing}: each needs prompts and a label column in the cache "
                          f"(prompts exist for {sorted(prompts)})")
    return list(asked)


def _overlay_figure(shown: list[tuple[np.ndarray, ...]], finding: str, folder: Path) -> Path:
    """One row per image: the image with the annotation (green), the saliency, the CRF pseudo-mask (red) and
    SAM's mask (blue) over the annotation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 3 + (shown[0][4] is not None)
    fig, axes = plt.subplots(len(shown), columns, figsize=(2.2 * columns, 2.2 * len(shown)), squeeze=False)
    for row, (image, truth, saliency, crf_mask, sam_mask) in zip(axes, shown, strict=True):
        panels = [(None, "annotation"), (saliency, "saliency"), (crf_mask, "pseudo-mask + CRF"), (sam_mask, "SAM")]
        for ax, (layer, title) in zip(row, panels[:columns], strict=True):
            ax.imshow(image, cmap="gray")
            if title == "saliency":
                ax.imshow(layer, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            elif layer is not None:
                ax.contour(layer, levels=[0.5], colors="red" if title != "SAM" else "deepskyblue", linewidths=1)
            ax.contour(truth, levels=[0.5], colors="lime", linewidths=1)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.suptitle(finding, fontsize=10)
    fig.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{finding.lower().replace(' ', '_')}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cxrl.explain.saliency", description=(
        "Zero-shot saliency segmentation (MedCLIP-SAM): Dice of gScoreCAM/Grad-CAM pseudo-masks (Otsu, +CRF, "
        "+SAM) of an image-text run against a cache's masks, beside trivial baselines."))
    p.add_argument("--run", required=True, help="image-text run folder (e.g. `cxrl pretrain convirt` output)")
    p.add_argument("--data", required=True, help="cache folder with dense annotations (masks or boxes)")
    p.add_argument("--out", required=True, help="folder for saliency.json and overlays/")
    p.add_argument("--findings", nargs="+", help="findings to segment (default: every outlined one with prompts)")
    p.add_argument("--splits", nargs="+", default=["test"], help="record splits to evaluate (default: test)")
    p.add_argument("--method", choices=METHODS, default="gscorecam")
    p.add_argument("--top-k", type=int, default=300, help="gScoreCAM: channels re-scored (default 300)")
    p.add_argument("--stage", type=int, default=-1, help="encoder stage explained (default -1: the last)")
    p.add_argument("--logit-scale", type=float, default=10.0, help="scale of the cosine score (default 10)")
    p.add_argument("--threshold", default="otsu", help="'otsu' or a number in [0, 1] (default otsu)")
    p.add_argument("--sam-checkpoint", help="SAM ViT-B weights (sam_vit_b_01ec64.pth): adds the SAM mask")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-images", type=int, help="at most this many images per finding")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    """Command line of :func:`saliency_dice`: prints a Dice table, writes ``OUT/saliency.json`` and overlays."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    threshold: str | float = args.threshold
    if threshold != "otsu":
        try:
            threshold = float(threshold)
        except ValueError:
            print(f"saliency: error: --threshold {threshold!r}: expected 'otsu' or a number", file=sys.stderr)
            return 2
    settings = SaliencySettings(args.method, args.top_k, args.stage, args.logit_scale, threshold)
    try:
        result = saliency_dice(args.run, args.data, args.findings, splits=args.splits, settings=settings,
                               sam_checkpoint=args.sam_checkpoint, device=args.device, max_images=args.max_images,
                               out=args.out, seed=args.seed)
    except CxrlError as e:
        print(f"saliency: error: {e}", file=sys.stderr)
        return 1
    rows = {f: {"n": r["n_images"], **r["dice"]} for f, r in result["findings"].items()}
    print(pd.DataFrame({**rows, "mean": result["mean"]}).T.to_string(float_format="%.3f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

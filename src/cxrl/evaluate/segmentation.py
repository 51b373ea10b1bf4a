"""Segmentation on an encoder's feature pyramid: a U-Net decoder, MGCA's loss, per-image and global Dice.

The decoder (U-Net, Ronneberger et al. 2015) starts at the deepest map of :meth:`Encoder.feature_maps`, and at
each shallower map upsamples, concatenates it and applies two 3x3 conv-BN-ReLU; a 1x1 conv gives one logit map per
finding, bilinearly upsampled to the input. It is written here rather than taken from segmentation-models-pytorch,
whose decoders are built around its own named encoders: any cxrl, timm or ViT encoder plugs in through its
pyramid. Loss as in MGCA (Wang et al. 2022, after SIIM/RSNA practice): ``10 * focal - log(soft Dice)``.
Dice (:func:`dice_scores`): per image, with the Kaggle convention that an empty prediction on an empty mask
scores 1 (MGCA's figure; it rewards negatives), and, as figures that do not, per image over the images whose
mask is not empty and globally (all pixels of the test set pooled).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss
from tqdm.auto import tqdm

from cxrl.evaluate.features import eval_input
from cxrl.evaluate.finetune import FinetuneSettings
from cxrl.evaluate.training import EarlyStopping, optimizer_step
from cxrl.models.pyramid import OnEncoder, probe_feature_maps
from cxrl.precision import autocast, grad_scaler

DECODER_WIDTHS = (128, 64, 32)  # after each merge, deep to shallow
FOCAL_WEIGHT = 10.0  # MGCA's weight of the focal term
THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)  # mask thresholds tried on the selection rows


class UNetDecoder(nn.Module):
    """Logit maps ``(B, K, h0, w0)`` at the shallowest map's resolution from a feature pyramid (shallow to deep)."""

    def __init__(self, channels: list[int], n_classes: int) -> None:
        super().__init__()
        deep, *skips = channels[::-1]
        blocks, width = [], deep
        for skip, out in zip(skips, DECODER_WIDTHS, strict=False):
            blocks.append(_double_conv(width + skip, out))
            width = out
        self.blocks = nn.ModuleList(blocks)
        self.skips = len(blocks)
        self.head = nn.Conv2d(width, n_classes, 1)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        x, *skips = maps[::-1]
        for block, skip in zip(self.blocks, skips[: self.skips], strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip.to(x.dtype)], 1))
        return self.head(x)


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True))


class SegmentationModel(OnEncoder):
    """``encoder`` (its :meth:`feature_maps`) + :class:`UNetDecoder`; logits at the input's size. With ``frozen``
    the encoder runs without gradients in eval mode (its batch-norm statistics kept)."""

    def __init__(self, encoder: nn.Module, n_classes: int, image_size: int, frozen: bool = False) -> None:
        super().__init__(encoder, frozen)
        self.decoder = UNetDecoder([m.shape[1] for m in probe_feature_maps(encoder, image_size)], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(self.encoder_maps(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """``10 * focal - log(soft Dice)`` (MGCA): focal loss (Lin et al. 2017, alpha 0.25, gamma 2) over all pixels,
    soft Dice per finding over the batch, averaged over findings."""
    logits, masks = logits.float(), masks.float()
    focal = sigmoid_focal_loss(logits, masks, reduction="mean")
    probs = logits.sigmoid()
    inter = (probs * masks).sum((0, 2, 3))
    dice = (2 * inter + eps) / (probs.sum((0, 2, 3)) + masks.sum((0, 2, 3)) + eps)
    return FOCAL_WEIGHT * focal - torch.log(dice.mean())


def dice_scores(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-image Dice ``(N, K)`` of boolean ``(N, K, H, W)`` masks; 1 where both are empty (Kaggle convention)."""
    inter = (pred & truth).sum((2, 3))
    total = pred.sum((2, 3)) + truth.sum((2, 3))
    return np.where(total == 0, 1.0, 2 * inter / np.maximum(total, 1))


def mask_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """:func:`dice_scores` of one pair of boolean masks ``(H, W)``."""
    return float(dice_scores(pred[None, None], truth[None, None])[0, 0])


def global_dice(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice ``(K,)`` over all pixels of all images pooled (NaN for a finding empty in both)."""
    inter, total = (pred & truth).sum((0, 2, 3)), pred.sum((0, 2, 3)) + truth.sum((0, 2, 3))
    return np.where(total == 0, np.nan, 2 * inter / np.maximum(total, 1))


@dataclass
class SegmentationData:
    """uint8 images ``(N, H, W)`` and their boolean masks ``(N, K, size, size)`` at the model's input size."""

    images: np.ndarray
    masks: np.ndarray


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """Boolean masks ``(N, K, h, w)`` at ``size x size`` (area-resized, kept where at least half covered)."""
    if masks.shape[-1] == size:
        return masks
    resized = F.interpolate(torch.as_tensor(masks, dtype=torch.float32), size=(size, size), mode="area")
    return (resized >= 0.5).numpy()


@torch.no_grad()
def predict_probabilities(model: SegmentationModel, images: np.ndarray, size: int, device, batch_size: int,
                          precision: str = "32-true") -> np.ndarray:
    """Sigmoid maps ``(N, K, size, size)`` float32 of uint8 images through the evaluation view."""
    model.eval()
    out = []
    with autocast(device, precision):
        for start in range(0, len(images), batch_size):
            out.append(model(eval_input(images[start:start + batch_size], size, device)).float().sigmoid().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, model.decoder.head.out_channels, size, size), np.float32)


def choose_mask_thresholds(probs: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per finding, the probability threshold of :data:`THRESHOLD_GRID` with the best mean per-image Dice on the
    selection images (the Kaggle-convention Dice the protocol reports first); 0.5 for a finding without rows."""
    if not len(probs):
        return np.full(probs.shape[1], 0.5)
    scores = np.stack([dice_scores(probs >= t, truth).mean(0) for t in THRESHOLD_GRID])  # (T, K)
    return THRESHOLD_GRID[scores.argmax(0)]


def train_segmentation(
    encoder: nn.Module, train: SegmentationData, valid: SegmentationData, size: int, settings: FinetuneSettings,
    device: torch.device | str = "cpu", seed: int = 0, frozen: bool = False, from_scratch: bool = False,
    precision: str = "32-true",
) -> tuple[SegmentationModel, dict]:
    """Train a decoder on a copy of ``encoder`` (fine-tuned at ``settings.lr``, default 1e-4, 1e-3 from scratch;
    frozen with ``frozen``), the decoder at ``settings.head_lr``, AdamW. Keep the epoch with the best selection
    global Dice at threshold 0.5 (early stopping after ``patience`` epochs without gain; the last epoch when the
    selection rows outline none of the findings), then choose each finding's mask threshold on the selection rows
    (:func:`choose_mask_thresholds`; in the history as ``thresholds``). Images enter through the evaluation view
    (no augmentation: masks need no warping)."""
    torch.manual_seed(seed)
    model = SegmentationModel(copy.deepcopy(encoder), train.masks.shape[1], size, frozen).to(device)
    groups = [{"params": model.decoder.parameters(), "lr": settings.head_lr}]
    if not frozen:
        groups.append({"params": model.encoder.parameters(), "lr": settings.encoder_lr(from_scratch)})
    optimizer = torch.optim.AdamW(groups, weight_decay=settings.weight_decay)
    scaler, rng = grad_scaler(device, precision), np.random.default_rng(seed)
    best, history = EarlyStopping(settings.patience), []
    bar = tqdm(range(settings.epochs), desc="segmentation", unit="epoch", leave=False)
    for epoch in bar:
        model.train()
        losses = []
        for idx in np.array_split(rng.permutation(len(train.images)), max(len(train.images) // settings.batch_size, 1)):
            idx = np.sort(idx)
            with autocast(device, precision):
                logits = model(eval_input(train.images[idx], size, device))
            loss = segmentation_loss(logits, torch.as_tensor(train.masks[idx]).to(device))
            optimizer_step(optimizer, scaler, loss)
            losses.append(loss.item())
        probs = predict_probabilities(model, valid.images, size, device, settings.batch_size, precision)
        per_finding = global_dice(probs >= 0.5, valid.masks)
        score = float(np.nanmean(per_finding)) if np.isfinite(per_finding).any() else float(epoch)  # none: the last
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "valid_global_dice": score})
        bar.set_postfix(loss=f"{losses[-1]:.3f}", valid_dice=f"{score:.3f}")
        if best.update(model, epoch, score):
            break
    best.restore(model)
    probs = predict_probabilities(model, valid.images, size, device, settings.batch_size, precision)
    return model.eval(), {"best_epoch": best.epoch, "criterion": "selection global Dice", "history": history,
                          "thresholds": choose_mask_thresholds(probs, valid.masks).tolist()}

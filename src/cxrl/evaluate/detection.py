"""Detection with a cxrl encoder as backbone: torchvision's Faster R-CNN (Ren et al. 2015) on a feature pyramid
network (Lin et al. 2017, FPN) over the encoder's last stage maps.

Faster R-CNN, not RetinaNet (Lin et al. 2017): with the same backbone and budget RetinaNet learned far slower on
small training sets (bright squares, 8 epochs: mAP50 0.60 against 0.99; phantom 10 % labels, 12 epochs: 0.00
against 0.01-0.06; docs/dense.md). The box head is two 256-wide layers on 128 sampled proposals of at most 300
(torchvision's 1024, 512 and 2000 took 5x the time on 48-px squares for the same mAP50).

A CNN gives its last :data:`CNN_STAGES` stages (strides 8/16/32 for a ResNet, 4/8/16 for tiny_cnn). A ViT's maps all
share its patch stride ``s``; its last map becomes strides ``s/2, s, 2s`` (ViTDet's simple feature pyramid, Li et al.
2022: a stride-2 transposed convolution, the map itself, a 2x2 max pool). Anchors are ``2 x stride`` at three octave
scales and three aspect ratios per level (8-50 px for tiny_cnn, 16-100 px for a ResNet: fit for 64-256 px images).

Images reach the detector through the evaluation view (:func:`cxrl.evaluate.features.eval_input`: resized to the
image size, normalized); the detector's own transform is told that size and an identity normalization, so it
neither resizes nor re-normalizes and boxes stay in model-input pixels. Class ``k`` of the caller is torchvision's
``k + 1`` (0 is its background). Training: AdamW, the encoder at ``lr`` (frozen on request, BatchNorm statistics
included), the FPN and heads at ``head_lr``; optional horizontal flips that move the boxes with the image; early
stopping on the selection images' mAP (:mod:`cxrl.evaluate.detection_metrics`).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from cxrl.evaluate.detection_metrics import MAX_DETECTIONS, Detections, mean_average_precision
from cxrl.evaluate.features import eval_input
from cxrl.evaluate.finetune import FinetuneSettings
from cxrl.evaluate.training import EarlyStopping, optimizer_step
from cxrl.models.pyramid import OnEncoder, probe_feature_maps
from cxrl.precision import autocast, grad_scaler

if TYPE_CHECKING:
    from torchvision.models.detection import FasterRCNN

CNN_STAGES = 3
FPN_CHANNELS = 64  # torchvision's detectors use 256; 64 keeps the heads light next to small encoders
ANCHOR_SCALES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))  # RetinaNet's three octave scales
ASPECT_RATIOS = (0.5, 1.0, 2.0)
BOX_HEAD_WIDTH = 256


class PyramidBackbone(OnEncoder):
    """The encoder's feature pyramid through an FPN: ``forward`` returns an OrderedDict of ``out_channels`` maps,
    shallow to deep, at ``strides`` input pixels. ``frozen``: the encoder gets no gradient and stays in eval mode."""

    def __init__(self, encoder: nn.Module, image_size: int, frozen: bool = False, out_channels: int = FPN_CHANNELS):
        from torchvision.ops import FeaturePyramidNetwork  # torchvision's detection parts load when used

        super().__init__(encoder, frozen)
        self.out_channels = out_channels
        last_two = probe_feature_maps(encoder, image_size, 2)
        self.simple_pyramid = last_two[0].shape[-1] == last_two[1].shape[-1]  # a ViT: every block at its patch stride
        maps = last_two[-1:] if self.simple_pyramid else probe_feature_maps(encoder, image_size, CNN_STAGES)
        channels = [m.shape[1] for m in maps]
        self.strides = [image_size / m.shape[-1] for m in maps]
        if self.simple_pyramid:
            width, stride = channels[-1], self.strides[-1]
            self.up = nn.ConvTranspose2d(width, width, 2, stride=2)
            self.down = nn.MaxPool2d(2)
            channels, self.strides = [width] * 3, [stride / 2, stride, stride * 2]
        self.fpn = FeaturePyramidNetwork(channels, out_channels)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = self.encoder_maps(x, n=1 if self.simple_pyramid else CNN_STAGES)
        if self.simple_pyramid:
            maps = [self.up(maps[-1]), maps[-1], self.down(maps[-1])]
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))


def build_detector(encoder: nn.Module, n_classes: int, image_size: int, frozen: bool = False) -> FasterRCNN:
    """A Faster R-CNN for ``n_classes`` on ``encoder`` (used as is, not copied), for single-channel ``image_size``
    images that are already normalized; its labels are ``1 .. n_classes`` (0: background)."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    backbone = PyramidBackbone(encoder, image_size, frozen)
    levels = len(backbone.strides)
    anchors = AnchorGenerator(
        sizes=tuple(tuple(2 * s * k for k in ANCHOR_SCALES) for s in backbone.strides),
        aspect_ratios=(ASPECT_RATIOS,) * levels,
    )
    return FasterRCNN(
        backbone, None, min_size=image_size, max_size=image_size, image_mean=[0.0], image_std=[1.0],
        rpn_anchor_generator=anchors, rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=150,
        box_roi_pool=MultiScaleRoIAlign([str(i) for i in range(levels)], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(backbone.out_channels * 7 * 7, BOX_HEAD_WIDTH),
        box_predictor=FastRCNNPredictor(BOX_HEAD_WIDTH, n_classes + 1), box_batch_size_per_image=128,
        box_detections_per_img=MAX_DETECTIONS,
    )


def hflip(x: torch.Tensor, targets: Detections, flip: np.ndarray) -> tuple[torch.Tensor, Detections]:
    """Mirror the images ``x`` ``(B, C, H, W)`` where ``flip`` is true, and their boxes with them."""
    width = x.shape[-1]
    x = torch.where(torch.as_tensor(flip, device=x.device)[:, None, None, None], x.flip(-1), x)
    out = []
    for target, flipped in zip(targets, flip, strict=True):
        boxes = target["boxes"]
        if flipped:
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        out.append({**target, "boxes": boxes})
    return x, out


def train_detector(
    encoder: nn.Module,
    train_images: np.ndarray,
    train_targets: Detections,
    valid_images: np.ndarray,
    valid_targets: Detections,
    classes: Sequence[str],
    image_size: int,
    settings: FinetuneSettings,
    device: torch.device | str = "cpu",
    seed: int = 0,
    frozen: bool = False,
    from_scratch: bool = False,
    precision: str = "32-true",
) -> tuple[FasterRCNN, dict]:
    """Train a Faster R-CNN on a copy of ``encoder``: uint8 ``(N, H, W)`` images, targets in ``image_size`` pixels.

    Returns the detector of the best selection mAP (over the selection images with a box; without any, the last
    epoch's) and its history. The encoder LR is ``settings.lr``, else 1e-4 (1e-3 ``from_scratch``) as fine-tuning."""
    torch.manual_seed(seed)
    model = build_detector(copy.deepcopy(encoder), len(classes), image_size, frozen).to(device)
    encoder_params = [p for p in model.backbone.encoder.parameters() if p.requires_grad]
    seen = {id(p) for p in model.backbone.encoder.parameters()}
    optimizer = torch.optim.AdamW(
        [{"params": encoder_params, "lr": settings.encoder_lr(from_scratch)},
         {"params": [p for p in model.parameters() if id(p) not in seen], "lr": settings.head_lr}],
        weight_decay=settings.weight_decay,
    )
    scaler = grad_scaler(device, precision)
    rng = np.random.default_rng(seed)
    positives = [i for i, t in enumerate(valid_targets) if len(t["boxes"])]
    criterion = (f"valid mAP@[.40:.75] over the {len(positives)} selection images with a box" if positives
                 else "none (no selection image has a box): the last epoch")
    best = EarlyStopping(settings.patience)
    history = []
    bar = tqdm(range(settings.epochs), desc="detection", unit="epoch", leave=False)
    for epoch in bar:
        loss = _train_epoch(model, optimizer, scaler, train_images, train_targets, rng, image_size, settings, device,
                            precision)
        entry = {"epoch": epoch, "train_loss": loss}
        if positives:
            found = detect(model, valid_images[positives], image_size, device, settings.batch_size, precision)
            entry["valid_map_40_75"] = mean_average_precision(
                found, [valid_targets[i] for i in positives], classes)["map_40_75"]
        history.append(entry)
        bar.set_postfix(loss=f"{loss:.3f}", valid_map=f"{entry.get('valid_map_40_75') or 0:.3f}")
        score = (entry["valid_map_40_75"] or 0.0) if positives else float(epoch)  # no box: keep the last
        if best.update(model, epoch, score):
            break
    best.restore(model)
    chosen = history[best.epoch] if best.epoch >= 0 else {}
    return model.eval(), {"best_epoch": best.epoch, "criterion": criterion,
                          "valid_map_40_75": chosen.get("valid_map_40_75"), "history": history}


def _train_epoch(
    model, optimizer, scaler, images, targets, rng, image_size: int, s: FinetuneSettings, device, precision
) -> float:
    """One epoch over ``images`` in shuffled batches; the mean of the summed RPN and box-head losses."""
    model.train()
    order = rng.permutation(len(images))
    losses = []
    for start in range(0, len(order), s.batch_size):
        idx = np.sort(order[start:start + s.batch_size])
        x = eval_input(images[idx], image_size, device)
        batch = [{"boxes": targets[i]["boxes"].to(device), "labels": targets[i]["labels"].to(device) + 1} for i in idx]
        if s.augment:
            x, batch = hflip(x, batch, rng.random(len(idx)) < 0.5)
        with autocast(device, precision):
            loss = sum(model(list(x), batch).values())
        optimizer_step(optimizer, scaler, loss)
        losses.append(loss.item())
    return float(np.mean(losses)) if losses else float("nan")


@torch.no_grad()
def detect(
    model: FasterRCNN, images: np.ndarray, image_size: int, device: torch.device | str = "cpu", batch_size: int = 64,
    precision: str = "32-true", desc: str | None = None,
) -> Detections:
    """Detections (``boxes`` xyxy in ``image_size`` pixels, ``scores``, ``labels`` from 0; on the CPU) of uint8
    images."""
    model.eval()
    starts = range(0, len(images), batch_size)
    if desc is not None:
        starts = tqdm(starts, desc=desc, unit="batch", leave=False)
    out: Detections = []
    for start in starts:
        x = eval_input(images[start:start + batch_size], image_size, device)
        with autocast(device, precision):
            found = model(list(x))
        out += [{"boxes": f["boxes"].float().cpu(), "scores": f["scores"].float().cpu(),
                 "labels": f["labels"].cpu() - 1} for f in found]
    return out

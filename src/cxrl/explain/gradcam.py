"""Class activation maps through pytorch-grad-cam (Gildenblat et al.): Grad-CAM (Selvaraju et al. 2017), Grad-CAM++
(Chattopadhay et al. 2018), HiResCAM, XGrad-CAM, LayerCAM, Score-CAM (Wang et al. 2020), Eigen-CAM (Muhammad &
Yeasin 2020) and Eigen-Grad-CAM, of a score of the image (a linear probe's logit, an image-text zero-shot logit) at
the encoder's last spatial stage: tiny_cnn's last conv block, a timm CNN's last feature stage (``feature_info``), a
ViT's last block's first norm with its patch tokens reshaped to the grid (pytorch-grad-cam's ViT recipe)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import cv2
import numpy as np
import pytorch_grad_cam as pgc
import torch
from torch import nn

from cxrl.errors import ConfigError
from cxrl.evaluate.features import eval_input
from cxrl.explain.saliency import stage_layer
from cxrl.models.encoders import Encoder, patch_grid

CAM_METHODS: dict[str, type] = {
    "gradcam": pgc.GradCAM,
    "gradcam++": pgc.GradCAMPlusPlus,
    "hirescam": pgc.HiResCAM,
    "xgradcam": pgc.XGradCAM,
    "layercam": pgc.LayerCAM,
    "scorecam": pgc.ScoreCAM,
    "eigencam": pgc.EigenCAM,
    "eigengradcam": pgc.EigenGradCAM,
}


def spatial_encoder(image: nn.Module, name: str) -> Encoder:
    """The :class:`Encoder` behind a module: itself, or its ``encoder`` (a probe classifier, an image-text
    model's image side)."""
    encoder = image if isinstance(image, Encoder) else getattr(image, "encoder", None)
    if not isinstance(encoder, Encoder):
        raise ConfigError(f"encoder {name!r} ({type(image).__name__}) exposes no spatial feature map for Grad-CAM; "
                          "tiny_cnn and timm backbones (resnet, densenet, convnext, vit) do")
    return encoder


def target_layer(encoder: Encoder) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor] | None]:
    """The module whose output Grad-CAM weighs, and the transform of that output to ``(B, C, h, w)`` if needed: a
    ViT's last block's first norm (its tokens to the patch grid), else the last stage of
    :func:`cxrl.explain.saliency.stage_layer`."""
    backbone = encoder.backbone
    blocks = getattr(backbone, "blocks", None)
    if blocks is not None and hasattr(backbone, "num_prefix_tokens"):
        return blocks[-1].norm1, partial(patch_grid, prefix_tokens=backbone.num_prefix_tokens, name=encoder.name)
    return stage_layer(encoder)


def class_activation_maps(
    model: nn.Module,
    encoder: Encoder,
    images: np.ndarray,
    targets: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    method: str,
    image_size: int,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """``(N, H, W)`` maps in ``[0, 1]`` of uint8 ``images`` ``(N, H, W)``, image ``i`` for the score
    ``targets[i](model output)`` (a ``ClassifierOutputTarget`` of a logit, a ``TextSimilarity``), computed at
    ``image_size`` and resized to the images' ``H x W``."""
    if method not in CAM_METHODS:
        raise ConfigError(f"--cam {method!r}: expected one of {', '.join(CAM_METHODS)}")
    layer, reshape = target_layer(encoder)
    x = eval_input(images, image_size, device)
    cam = CAM_METHODS[method](model=model.eval().to(device), target_layers=[layer], reshape_transform=reshape)
    try:  # not its context manager, which swallows an IndexError
        maps = cam(x, targets=list(targets))
    finally:
        cam.activations_and_grads.release()
    height, width = images.shape[1:]
    if maps.shape[1:] != (height, width):
        maps = np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in maps])
    return maps.astype(np.float32)

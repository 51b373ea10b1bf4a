"""Classifiers for Grad-CAM built from a frozen encoder: pixels -> one logit per finding, as torch modules (so
gradients reach the encoder's feature map).

- :class:`ProbeClassifier`: the encoder followed by the linear probe of :mod:`cxrl.evaluate.probe` fitted on its
  pooled features, the standardization folded into the linear layer.
- :class:`ZeroShotClassifier`: an image-text model's image side followed by CheXzero's zero-shot head
  (:mod:`cxrl.evaluate.zeroshot`): the logit of ``softmax(s+, s-)[0]`` is ``s+ - s-``, the cosine similarity of the
  image embedding with the positive prompt ensemble minus that with the negative one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxrl.evaluate.probe import LinearProbe


class ProbeClassifier(nn.Module):
    """``logits = ((encoder(x) - mean) / scale) @ weight.T + bias`` of a fitted :class:`LinearProbe`; the encoder
    is ``image``, as in :class:`ZeroShotClassifier`."""

    def __init__(self, encoder: nn.Module, probe: LinearProbe) -> None:
        super().__init__()
        self.image = encoder
        weight = probe.weight / probe.scale  # (K, F): the standardization folded in
        bias = probe.bias - weight @ probe.mean
        self.head = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.image(x))


class ZeroShotClassifier(nn.Module):
    """``logits = unit(image(x)) @ (positive - negative).T`` for the prompt ensembles ``classes`` ``(K, 2, D)`` of
    :func:`cxrl.evaluate.zeroshot.class_embeddings`; ``sigmoid(logits)`` is
    :func:`cxrl.evaluate.zeroshot.zeroshot_scores`."""

    def __init__(self, image: nn.Module, classes: np.ndarray) -> None:
        super().__init__()
        self.image = image
        self.register_buffer("direction", torch.as_tensor(classes[:, 0] - classes[:, 1], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image(x).float(), dim=1) @ self.direction.T

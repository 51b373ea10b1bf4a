"""The linear probe as a torch module after its encoder (pixels -> one logit per finding), so that Grad-CAM's
gradients reach the encoder's feature map: :mod:`cxrl.evaluate.probe`'s probe on the pooled features, its
standardization folded into one linear layer. (The zero-shot head of an image-text encoder is
:class:`cxrl.explain.saliency.TextSimilarity` on its image side.)"""

from __future__ import annotations

import torch
from torch import nn

from cxrl.evaluate.probe import LinearProbe


class ProbeClassifier(nn.Module):
    """``logits = ((encoder(x) - mean) / scale) @ weight.T + bias`` of a fitted :class:`LinearProbe`."""

    def __init__(self, encoder: nn.Module, probe: LinearProbe) -> None:
        super().__init__()
        self.encoder = encoder
        weight = probe.weight / probe.scale  # (K, F): the standardization folded in
        bias = probe.bias - weight @ probe.mean
        self.head = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

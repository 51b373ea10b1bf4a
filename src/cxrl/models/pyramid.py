"""What dense heads (segmentation decoders, detection FPNs, word-region alignment) share about an encoder: the
shapes of its feature maps, and running it frozen or trained."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def probe_feature_maps(encoder: nn.Module, image_size: int, n: int = 4) -> list[torch.Tensor]:
    """The encoder's last ``n`` stage maps of one blank ``image_size`` image (their widths and strides); the
    encoder's train/eval mode is left as it was."""
    was_training = encoder.training
    device = next(encoder.parameters()).device
    maps = encoder.eval().feature_maps(torch.zeros(1, 1, image_size, image_size, device=device), n=n)
    encoder.train(was_training)
    return maps


class OnEncoder(nn.Module):
    """A head's base over ``encoder``: with ``frozen`` the encoder gets no gradient and stays in eval mode (its
    BatchNorm statistics kept) whatever mode the head is put in."""

    def __init__(self, encoder: nn.Module, frozen: bool = False) -> None:
        super().__init__()
        self.encoder, self.frozen = encoder, frozen
        if frozen:
            encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> OnEncoder:
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def encoder_maps(self, x: torch.Tensor, n: int = 4) -> list[torch.Tensor]:
        """``encoder.feature_maps(x, n)``, without autograd when frozen."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return self.encoder.feature_maps(x, n=n)

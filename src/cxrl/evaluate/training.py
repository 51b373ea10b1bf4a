"""What the evaluation training loops (fine-tuning, segmentation, detection) share: one loss-scaled optimizer step
and early stopping on a selection score with the best epoch's weights kept."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, loss: torch.Tensor) -> None:
    """Backward of ``loss`` (scaled for float16; a no-op scaler otherwise) and one step of ``optimizer``."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


class EarlyStopping:
    """Keeps the weights of the epoch with the highest selection score; :meth:`update` says to stop after
    ``patience`` epochs without a higher one."""

    def __init__(self, patience: int) -> None:
        self.patience, self.score, self.epoch, self.state = patience, -np.inf, -1, None

    def update(self, model: nn.Module, epoch: int, score: float) -> bool:
        """Record ``epoch``'s ``score`` (a copy of the weights when it is the best so far); True: stop training."""
        if score > self.score:
            self.score, self.epoch, self.state = score, epoch, copy.deepcopy(model.state_dict())
            return False
        return epoch - self.epoch >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best epoch's weights into ``model`` (unchanged when no epoch was recorded)."""
        if self.state is not None:
            model.load_state_dict(self.state)

"""Fine-tuning: the whole encoder plus a linear head, masked BCE, AdamW, optional layer-wise LR decay.

Training images go through CXR-safe augmentation (:mod:`cxrl.transforms`, seeded per image and epoch);
validation uses the evaluation view. Early stopping watches the validation macro AUROC over the classes with
both label values in the validation rows (else, when no class has both, the validation loss), and the best
weights are restored at the end. With a randomly initialised encoder this is supervised training from scratch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from cxrl.evaluate.features import _forward_batches
from cxrl.evaluate.metrics import auroc
from cxrl.evaluate.training import EarlyStopping, optimizer_step
from cxrl.precision import autocast, grad_scaler
from cxrl.transforms import ViewConfig, eval_view, make_view_fn, seeds_for


@dataclass
class FinetuneSettings:
    """Optimization settings; ``layer_decay`` < 1 scales the LR of block ``i`` of ``L`` by ``decay^(L - i)``."""

    epochs: int = 20
    patience: int = 5
    lr: float | None = None  # encoder LR; None: 1e-4 for a pre-trained encoder, 1e-3 from scratch (random)
    head_lr: float = 1e-3
    weight_decay: float = 1e-4
    layer_decay: float = 1.0
    batch_size: int = 64
    augment: bool = True

    def encoder_lr(self, from_scratch: bool) -> float:
        """``lr``, else 1e-4 for a pre-trained encoder and 1e-3 for one trained from scratch."""
        return self.lr if self.lr is not None else (1e-3 if from_scratch else 1e-4)


class Classifier(nn.Module):
    """``encoder`` (pooled features) followed by one linear layer with ``n_classes`` logits."""

    def __init__(self, encoder: nn.Module, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(int(encoder.num_features), n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the entries whose target is not NaN (0 if none)."""
    mask = ~torch.isnan(targets)
    if not mask.any():
        return logits.sum() * 0
    return F.binary_cross_entropy_with_logits(logits[mask], targets[mask])


def parameter_groups(model: Classifier, s: FinetuneSettings, lr: float) -> list[dict]:
    """AdamW groups: the head at ``head_lr``; encoder blocks (the first level with several children, in order)
    at ``lr * layer_decay^(blocks - i)`` (layer-wise LR decay, Clark et al. 2020 ELECTRA; BEiT, Bao et al. 2022)."""
    body = model.encoder
    while len(list(body.children())) == 1:  # unwrap single-child containers (Encoder -> backbone -> Sequential)
        body = next(body.children())
    blocks = [m for m in body.children() if any(p.requires_grad for p in m.parameters())] or [body]
    groups = [
        {"params": [p for p in block.parameters() if p.requires_grad], "lr": lr * s.layer_decay ** (len(blocks) - i)}
        for i, block in enumerate(blocks, start=1)
    ]
    seen = {id(p) for g in groups for p in g["params"]}
    rest = [p for p in model.encoder.parameters() if p.requires_grad and id(p) not in seen]
    if rest:  # parameters held directly by the container (e.g. a ViT's position embedding): the lowest layer
        groups.insert(0, {"params": rest, "lr": lr * s.layer_decay ** len(blocks)})
    return groups + [{"params": list(model.head.parameters()), "lr": s.head_lr}]


@torch.no_grad()
def predict(
    model: nn.Module, images: np.ndarray, image_size: int, device, batch_size: int = 128, precision: str = "32-true"
) -> np.ndarray:
    """Logits ``(N, K)`` of uint8 images through the evaluation view (under ``precision``'s autocast)."""
    return _forward_batches(
        model.eval(), images, image_size, device, batch_size, model.head.out_features, precision=precision
    )


@torch.no_grad()
def head_logits(model: Classifier, features: np.ndarray, device, batch_size: int = 128) -> np.ndarray:
    """Logits ``(N, K)`` of ``model.head`` on pooled features of ``model.encoder``, in :func:`predict`'s batches."""
    head = model.head
    out = [
        head(torch.as_tensor(features[i : i + batch_size]).to(device)).float().cpu().numpy()
        for i in range(0, len(features), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, head.out_features), np.float32)


def finetune(
    encoder: nn.Module,
    train_images: np.ndarray,
    train_y: np.ndarray,
    valid_images: np.ndarray,
    valid_y: np.ndarray,
    image_size: int,
    settings: FinetuneSettings,
    device: torch.device | str = "cpu",
    seed: int = 0,
    from_scratch: bool = False,
    precision: str = "32-true",
) -> tuple[Classifier, dict]:
    """Fine-tune a copy of ``encoder`` with a new head; returns the best-validation model and its history.

    Under mixed ``precision`` (:mod:`cxrl.precision`) forwards run in autocast, the loss in float32, and float16
    gradients are loss-scaled."""
    torch.manual_seed(seed)
    model = Classifier(copy.deepcopy(encoder), train_y.shape[1]).to(device)
    lr = settings.encoder_lr(from_scratch)
    optimizer = torch.optim.AdamW(parameter_groups(model, settings, lr), weight_decay=settings.weight_decay)
    amp = (precision, grad_scaler(device, precision))
    views = make_view_fn([_train_view(image_size, settings.augment)])
    targets = torch.as_tensor(train_y, dtype=torch.float32)
    rng = np.random.default_rng(seed)
    criterion, score = selection_criterion(valid_y)
    best = EarlyStopping(settings.patience)
    history = []
    bar = tqdm(range(settings.epochs), desc="fine-tune", unit="epoch", leave=False)
    for epoch in bar:
        loss = _train_epoch(model, optimizer, views, train_images, targets, rng, epoch, seed, settings, device, amp)
        logits = predict(model, valid_images, image_size, device, precision=precision)
        per_class = auroc(valid_y, logits)
        valid_auroc = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan")
        valid_loss = float(masked_bce(torch.as_tensor(logits), torch.as_tensor(valid_y, dtype=torch.float32)))
        history.append({"epoch": epoch, "train_loss": loss, "valid_macro_auroc": valid_auroc, "valid_loss": valid_loss})
        bar.set_postfix(loss=f"{loss:.3f}", valid_auroc=f"{valid_auroc:.3f}", valid_loss=f"{valid_loss:.3f}")
        if best.update(model, epoch, score(history[-1])):
            break
    best.restore(model)
    chosen = history[best.epoch] if best.epoch >= 0 else {}
    return model.eval(), {
        "best_epoch": best.epoch,
        "criterion": criterion,
        "valid_macro_auroc": chosen.get("valid_macro_auroc"),
        "valid_loss": chosen.get("valid_loss"),
        "history": history,
    }


def selection_criterion(valid_y: np.ndarray) -> tuple[str, Callable[[dict], float]]:
    """What early stopping maximizes: the validation macro AUROC over the classes with both label values in
    ``valid_y`` (AUROC is undefined for the others), else, when no class has both, minus the validation loss."""
    both = int(((valid_y == 1).any(axis=0) & (valid_y == 0).any(axis=0)).sum())
    if both:
        return f"valid macro AUROC over the {both} of {valid_y.shape[1]} classes with both label values", _auroc
    return "valid loss (no class has both label values in the selection rows)", _minus_loss


def _auroc(h: dict) -> float:
    return h["valid_macro_auroc"]


def _minus_loss(h: dict) -> float:
    return -h["valid_loss"]


def _train_view(size: int, augment: bool) -> ViewConfig:
    """Mild, CXR-safe augmentation for supervised fine-tuning: most of the chest, small rotation, no flip."""
    return ViewConfig(size=size, crop_scale=(0.7, 1.0), rotation_deg=7.0) if augment else eval_view(size)


def _train_epoch(
    model, optimizer, views, images, targets, rng, epoch, seed, s: FinetuneSettings, device, amp
) -> float:
    """One epoch; ``amp`` is (precision, its GradScaler)."""
    precision, scaler = amp
    model.train()
    order = rng.permutation(len(images))
    losses = []
    for start in range(0, len(order), s.batch_size):
        idx = np.sort(order[start : start + s.batch_size])
        batch = torch.as_tensor(np.asarray(images[idx])).to(device)
        x = views(batch, seeds_for(idx, epoch, seed))[0]  # seeds stay on the CPU
        with autocast(device, precision):
            logits = model(x)
        loss = masked_bce(logits.float(), targets[idx].to(device))
        optimizer_step(optimizer, scaler, loss)
        losses.append(loss.item())
    return float(np.mean(losses)) if losses else float("nan")

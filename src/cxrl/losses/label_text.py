"""Fine-grained label-text alignment terms: images classified by their similarity to per-finding text embeddings,
the finding embeddings kept apart (:mod:`cxrl.methods.label_text`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def finding_logits(image: torch.Tensor, findings: torch.Tensor, temperature: float = 0.1,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, K)`` logits ``z_ik = cos(v_i, e_k) / tau + b_k`` of image embeddings ``v`` ``(B, D)`` against finding
    embeddings ``e`` ``(K, D)`` with an optional per-finding bias ``b`` ``(K,)``. Computed in float32."""
    with torch.autocast(image.device.type, enabled=False):
        logits = F.normalize(image.float(), dim=1) @ F.normalize(findings.float(), dim=1).T / temperature
        return logits if bias is None else logits + bias.float()


def orthogonality_loss(findings: torch.Tensor) -> torch.Tensor:
    """``||E^ E^T - I||_F^2 / K^2`` on the unit rows ``E^`` of the finding embeddings ``(K, D)``: the mean squared
    off-diagonal cosine (the diagonal of ``E^ E^T`` is 1), 0 when the findings are mutually orthogonal."""
    with torch.autocast(findings.device.type, enabled=False):
        unit = F.normalize(findings.float(), dim=1)
        eye = torch.eye(len(unit), device=unit.device)
        return (unit @ unit.T - eye).pow(2).sum() / len(unit) ** 2

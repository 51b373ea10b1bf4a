"""Shared pieces of the engine tests (test_methods, test_train, test_resume, test_ddp)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

# A run small enough for CPU tests: tiny CNN at 32 px, global batch 16, no monitor, no progress bar.
TINY = [
    "backbone=tiny_cnn",
    "image_size=32",
    "batch_size=16",
    "num_workers=0",
    "optimizer=adamw",
    "lr=1e-3",
    "warmup_epochs=0",
    "progress_bar=false",
    "monitor.enabled=false",
    "method.proj_hidden_dim=64",
    "method.proj_dim=32",
    "method.pred_hidden_dim=64",
    "method.num_prototypes=16",
    "method.local_size=16",
]


def encoder_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(run_dir) / "encoder.safetensors"))


# The toy cache's three disc findings and how a toy report states each (tests of image-report methods).
TOY_FINDINGS = {"Cardiomegaly": ("Cardiomegaly.", "No cardiomegaly."),
                "Pleural Effusion": ("Pleural effusion.", "No pleural effusion."),
                "Edema": ("Pulmonary edema.", "No pulmonary edema.")}


def toy_report(present: dict) -> str:
    """The report of a toy image: each finding stated present or absent."""
    return " ".join(TOY_FINDINGS[f][0 if present[f] else 1] for f in TOY_FINDINGS)

"""Shared pieces of the engine tests (test_methods, test_train, test_resume, test_ddp)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
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


def on_two_gloo_ranks(worker: Callable[..., dict], folder: Path, *args) -> list[dict]:
    """``worker(rank, world, *args) -> dict`` on two spawned gloo processes (spawn, not fork: forking after OpenMP
    use can hang; file rendezvous in ``folder``); each rank's dict, in rank order. ``worker`` is module-level."""
    mp.spawn(_gloo_rank, args=(2, str(folder), worker, args), nprocs=2, join=True)
    return [torch.load(Path(folder) / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _gloo_rank(rank: int, world: int, folder: str, worker: Callable[..., dict], args: tuple) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        torch.save(worker(rank, world, *args), f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()

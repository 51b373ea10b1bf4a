"""The GPU pre-training path in one run: from the model's ceiling down to ``cxrl pretrain`` end to end.

Rows (SimCLR, images per second and MFU, the fraction of the GPU's bf16 peak that the model's FLOPs use):
  (a) model only: random views already on the device -> encoder + SimCLR head -> NT-Xent -> fused AdamW, eager and
      with ``torch.compile`` (the ceiling: no data, no views);
  (b) cxrl step: cache loader -> views on the device -> the same model (``PretrainModule.step_loss``);
  (c) lightly's recipe: PIL images through ``SimCLRTransform`` in DataLoader workers -> the same model
      (both from ``benchmarks/pretrain_throughput.py``);
  (d) ``cxrl pretrain`` end to end through Lightning (``cxrl.train.pretrain``), timed over ``--e2e-steps`` steps
      after ``--warmup`` steps, eager and with ``compile=true``;
  (e) the loader alone (the engine's default workers, pinned batches).
FLOPs per image are counted once with ``torch.utils.flop_counter`` on one forward + backward of (a).
Targets on one H200 (issue 16): (b) >= 1.5 x (c); (d) >= 0.9 x (b); (d) with compile >= 3,000 images/s.

GPU: ``python benchmarks/gpu_pretrain.py`` (ResNet-50, 224 px, batch 256, bf16). CPU smoke run of every row:
``python benchmarks/gpu_pretrain.py --cpu`` (tiny_cnn, 32 px, batch 16, a few steps; no MFU). Rows (a)-(c) time
``--steps`` steps, (d) ``--e2e-steps``, each after ``--warmup`` steps (where compilation happens).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from _timing import machine_line
from pretrain_throughput import cxrl_step_fn, lightly_step_fn, synthetic_images, timed, write_bench_cache
from torch.utils.flop_counter import FlopCounterMode

from cxrl.data.torch_dataset import CacheDataModule
from cxrl.methods import MethodConfig, create_method
from cxrl.models import create_encoder
from cxrl.precision import autocast
from cxrl.train import PretrainConfig, PretrainModule, default_workers, pretrain


def model_only_step_fn(args: argparse.Namespace, compile_model: bool) -> tuple[Callable[[], None], Callable]:
    """(a): one SimCLR step on fixed random views already on the device; also the forward+backward to count."""
    cfg = PretrainConfig(backbone=args.backbone, image_size=args.size, batch_size=args.batch)
    method = create_method(MethodConfig(), create_encoder(args.backbone), args.size, np.zeros((0, 0)))
    module = PretrainModule(method, cfg, total_steps=1, warmup_steps=0).to(args.device)  # channels_last
    if compile_model:
        method.encoder.compile()
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, fused=args.device == "cuda" or None)
    views = [torch.randn(args.batch, 1, args.size, args.size, device=args.device) for _ in range(2)]

    def forward_backward() -> None:
        with autocast(args.device, args.precision):
            loss, _ = method.loss(views, {"labels": torch.zeros(args.batch, 0, device=args.device)})
        loss.backward()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward_backward()
        optimizer.step()

    return step, forward_backward


def flops_per_image(args: argparse.Namespace) -> float:
    """Model FLOPs of one image's step (two views, forward + backward), from ``torch.utils.flop_counter``."""
    _, forward_backward = model_only_step_fn(args, compile_model=False)
    with FlopCounterMode(display=False) as counter:
        forward_backward()
    return counter.get_total_flops() / args.batch


def step_rate(step: Callable[[], None], args: argparse.Namespace) -> float:
    """Images per second over ``--steps`` calls after ``--warmup`` calls (compilation happens in the warm-up)."""
    timed(step, args.warmup, args.device)
    return args.steps * args.batch / timed(step, args.steps, args.device)


class StepTimer(pl.Callback):
    """Wall time from the start of step ``warmup`` to the end of the last step, the device synchronized."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.seconds, self.steps = warmup, 0.0, float("nan"), 0

    def _now(self, trainer: pl.Trainer) -> float:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, *_) -> None:
        if trainer.global_step == self.warmup:
            self.start = self._now(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, *_) -> None:
        if trainer.global_step == trainer.max_steps:
            self.seconds, self.steps = self._now(trainer) - self.start, trainer.global_step - self.warmup


def lightning_rate(args: argparse.Namespace, cache: str, out: Path, compile_model: bool) -> float:
    """(d): ``cxrl.train.pretrain`` on the cache, AdamW, no monitor or mid-run checkpoint; images/s after warm-up."""
    timer = StepTimer(args.warmup)
    overrides = [
        f"backbone={args.backbone}", f"image_size={args.size}", f"batch_size={args.batch}",
        f"max_steps={args.warmup + args.e2e_steps}", "optimizer=adamw", "lr=1e-4", "warmup_epochs=0",
        f"precision={args.precision}", f"compile={str(compile_model).lower()}", "monitor.enabled=false",
        "progress_bar=false", "checkpoint_every_n_steps=1000000", "log_every_n_steps=50",
        f"accelerator={'cpu' if args.device == 'cpu' else 'gpu'}",
    ]
    pretrain("simclr", cache, out, overrides=overrides, callbacks=[timer])
    return timer.steps * args.batch / timer.seconds


def loader_rate(args: argparse.Namespace, cache: str) -> tuple[float, int]:
    """(e): images/s of the engine's loader alone (default workers, pinned on a GPU machine), after one batch."""
    workers = default_workers(1)
    loader = CacheDataModule(cache, batch_size=args.batch, num_workers=workers).train_dataloader()
    batches = iter(loader)
    next(batches)
    start, n = time.perf_counter(), 0
    for batch in batches:
        n += len(batch["image"])
    return n / (time.perf_counter() - start), workers


def measure(args: argparse.Namespace, tmp: str) -> dict[str, float]:
    """Every row's images/s, in the order of the module docstring."""
    n_images = args.batch * (args.warmup + args.e2e_steps + 1)  # (d) stays in one epoch: no epoch-end checkpoint
    unique = synthetic_images(min(n_images, 2048))
    cache = write_bench_cache(tmp, np.resize(unique, (n_images, *unique.shape[1:])))
    rates = {"(a) model only, eager": step_rate(model_only_step_fn(args, False)[0], args)}
    if args.compile:
        rates["(a) model only, compiled"] = step_rate(model_only_step_fn(args, True)[0], args)
    bench = argparse.Namespace(**{**vars(args), "precision": "bf16" if args.precision == "bf16-mixed" else "32"})
    rates["(b) cxrl step"] = step_rate(cxrl_step_fn(bench, cache), args)
    rates["(c) lightly recipe"] = step_rate(lightly_step_fn(bench, unique), args)
    rates["(d) cxrl pretrain (Lightning)"] = lightning_rate(args, cache, Path(tmp) / "eager", False)
    if args.compile:
        rates["(d) cxrl pretrain compile=true"] = lightning_rate(args, cache, Path(tmp) / "compiled", True)
    rate, workers = loader_rate(args, cache)
    rates[f"(e) loader alone ({workers} workers)"] = rate
    return rates


def report(args: argparse.Namespace, rates: dict[str, float], flops: float) -> dict:
    """Print the table and the targets; return everything as a dict (``--json``)."""
    device = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"{device}, {args.backbone} {args.size}px batch {args.batch} {args.precision}, {args.steps} timed steps "
          f"({args.e2e_steps} end to end); "
          f"{flops / 1e9:.1f} GFLOP per image (2 views, fwd + bwd); MFU against {args.peak_tflops or '-'} TFLOP/s")
    for name, rate in rates.items():
        model_work = args.peak_tflops and "loader" not in name
        mfu = f"{rate * flops / (args.peak_tflops * 1e12):6.1%}" if model_work else "     -"
        print(f"  {name:34s} {rate:9.1f} img/s  MFU {mfu}")
    step, lightning = rates["(b) cxrl step"], rates["(d) cxrl pretrain (Lightning)"]
    targets = {"cxrl step / lightly recipe (>= 1.5)": step / rates["(c) lightly recipe"],
               "Lightning / cxrl step (>= 0.9)": lightning / step}
    if args.compile:
        targets["Lightning compile=true img/s (>= 3000)"] = rates["(d) cxrl pretrain compile=true"]
    for name, value in targets.items():
        print(f"  {name:40s} {value:9.3f}")
    print(machine_line(device if args.device == "cuda" else None))
    print(f"gpu_pretrain ratio={targets['cxrl step / lightly recipe (>= 1.5)']:.3f} (cxrl step / lightly's recipe)")
    return {"device": device, "args": vars(args), "flops_per_image": flops, "rates": rates, "targets": targets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="tiny CPU run of every row (tiny_cnn, 32 px, batch 16)")
    parser.add_argument("--backbone", default=None, help="default resnet50 (tiny_cnn with --cpu)")
    parser.add_argument("--size", type=int, default=None, help="default 224 (32 with --cpu)")
    parser.add_argument("--batch", type=int, default=None, help="default 256 (16 with --cpu)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps of (a)-(c), default 50 (4 with --cpu)")
    parser.add_argument("--e2e-steps", type=int, default=None, help="timed steps of (d), default 100 (4 with --cpu)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps per row, default 20 (2 with --cpu)")
    parser.add_argument("--precision", default="bf16-mixed", choices=["bf16-mixed", "32-true"])
    parser.add_argument("--workers", type=int, default=None, help="(b, c) loader workers; default cores - 2")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the compiled rows")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="bf16 peak for MFU; default 790 (an H200's measured matrix rate) on a GPU, none on CPU")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    gpu = not args.cpu and torch.cuda.is_available()
    args.device = "cuda" if gpu else "cpu"
    sizes = ("resnet50", 224, 256, 50, 100, 20) if gpu else ("tiny_cnn", 32, 16, 4, 4, 2)
    for key, value in zip(("backbone", "size", "batch", "steps", "e2e_steps", "warmup"), sizes, strict=True):
        setattr(args, key, getattr(args, key) or value)
    args.workers = max(0, (os.cpu_count() or 1) - 2) if args.workers is None else args.workers
    args.peak_tflops = args.peak_tflops or (790.0 if gpu else None)
    torch.manual_seed(0)
    flops = flops_per_image(args)
    with tempfile.TemporaryDirectory() as tmp:
        result = report(args, measure(args, tmp), flops)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()

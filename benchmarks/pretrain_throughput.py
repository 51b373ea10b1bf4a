"""SimCLR pre-training throughput: cxrl's path vs lightly's own SimCLR recipe, same run, same model and batch.

  (a) cxrl:   cache DataLoader (raw uint8, no work in workers) -> views made batched on the device from per-sample
              seeds (``cxrl.transforms``) -> encoder (channels_last, the engine's default) -> SimCLR projector ->
              NT-Xent -> AdamW step.
  (b) lightly: in-memory PIL grayscale images -> ``lightly.transforms.SimCLRTransform`` (grayscale settings: no
              saturation/hue/grayscale, no flips; same output size, same normalization) in DataLoader workers ->
              the same encoder -> ``SimCLRProjectionHead`` -> ``NTXentLoss`` -> AdamW step, a plain PyTorch loop.

Both use the same backbone (``cxrl.models.create_encoder``, 1 channel), image size, global batch, worker count,
precision and number of timed steps (after warm-up steps), alternating step by step so that load from other
processes hits both alike. On CPU the model dominates both sides; the difference is the augmentation work.
Last line: ``pretrain_throughput ratio=<a / b>`` (images per second, higher is better for cxrl).

CPU default: resnet18, 128 px, batch 32. GPU: ``--device cuda --backbone resnet50 --size 224 --precision bf16``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from _timing import machine_line
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from cxrl import intensity
from cxrl.data.cache import write_cache
from cxrl.data.torch_dataset import CacheDataModule
from cxrl.methods import create_method
from cxrl.models import create_encoder
from cxrl.train import PretrainConfig, PretrainModule

CACHE_SIZE = 256


def synthetic_images(n: int, seed: int = 0) -> np.ndarray:
    """Smooth radiograph-like shading plus grain, (n, 256, 256) uint8."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.normal(128, 40, (n, 1, 16, 16)).astype(np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=CACHE_SIZE, mode="bicubic", align_corners=False)[:, 0]
    grain = torch.from_numpy(rng.normal(0, 4, (n, CACHE_SIZE, CACHE_SIZE)).astype(np.float32))
    return (smooth + grain).clamp(0, 255).to(torch.uint8).numpy()


def write_bench_cache(folder: str, images: np.ndarray) -> str:
    records = pd.DataFrame({"patient_id": [str(i) for i in range(len(images))], "split": "train"})
    return str(write_cache(folder, images, records, {"source": "benchmark"}).path)


def cycle(loader: DataLoader) -> Iterator:
    while True:
        yield from loader


def cxrl_step_fn(args: argparse.Namespace, cache_path: str) -> Callable[[], None]:
    """One cxrl SimCLR step per call: ``PretrainModule.step_loss`` (the engine's step) plus the update."""
    data = CacheDataModule(cache_path, batch_size=args.batch, num_workers=args.workers)
    batches = cycle(data.train_dataloader())
    cfg = PretrainConfig(backbone=args.backbone, image_size=args.size, batch_size=args.batch)
    method = create_method(cfg.method, create_encoder(args.backbone), args.size, data.targets)
    module = PretrainModule(method, cfg, total_steps=1, warmup_steps=0).to(args.device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, fused=args.device == "cuda" or None)

    def step() -> None:
        batch = next(batches)
        with autocast(args):
            loss, _ = module.step_loss({**batch, "image": batch["image"].to(args.device, non_blocking=True)}, epoch=0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


class PILImages(Dataset):
    """Decoded grayscale PIL images through a lightly transform (what a lightly user's dataset yields)."""

    def __init__(self, images: np.ndarray, transform: SimCLRTransform) -> None:
        self.images = [Image.fromarray(im, mode="L") for im in images]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        return self.transform(self.images[i])


def lightly_step_fn(args: argparse.Namespace, images: np.ndarray) -> Callable[[], None]:
    """One step of lightly's SimCLR recipe (its README / examples/pytorch/simclr.py), grayscale-adapted."""
    transform = SimCLRTransform(
        input_size=args.size, cj_sat=0.0, cj_hue=0.0, random_gray_scale=0.0, hf_prob=0.0,
        normalize={"mean": [intensity.MEAN], "std": [intensity.STD]},
    )
    loader = DataLoader(
        PILImages(images, transform), batch_size=args.batch, shuffle=True, drop_last=True,
        num_workers=args.workers, pin_memory=args.device == "cuda", persistent_workers=args.workers > 0,
    )
    batches = cycle(loader)
    backbone = create_encoder(args.backbone)
    model = torch.nn.Sequential(backbone, SimCLRProjectionHead(backbone.num_features, 2048, 128)).to(args.device)
    criterion = NTXentLoss(temperature=0.1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=args.device == "cuda" or None)

    def step() -> None:
        x0, x1 = (v.to(args.device, non_blocking=True) for v in next(batches))
        with autocast(args):
            z0, z1 = model(torch.cat([x0, x1])).chunk(2)
            loss = criterion(z0, z1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def autocast(args: argparse.Namespace) -> torch.autocast:
    return torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.precision == "bf16")


def timed(step: Callable[[], None], steps: int, device: str) -> float:
    """Seconds for ``steps`` calls, synchronizing the device at both ends."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per side, after warm-up")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10, help="alternations of the two sides (10: every step)")
    parser.add_argument(
        "--workers", type=int, default=None,
        help="DataLoader workers of both sides (default 0 on CPU, where the model already holds every core and the "
        "other side's workers would refill their queue inside this side's timed steps; 8 on GPU)",
    )
    parser.add_argument("--precision", choices=["32", "bf16"], default="32")
    args = parser.parse_args()
    if args.workers is None:
        args.workers = 0 if args.device == "cpu" else 8
    torch.manual_seed(0)
    images = synthetic_images(args.batch * (args.steps + args.warmup + 2))
    with tempfile.TemporaryDirectory() as tmp:
        sides = {
            "cxrl": cxrl_step_fn(args, write_bench_cache(tmp, images)),
            "lightly": lightly_step_fn(args, images),
        }
        seconds = dict.fromkeys(sides, 0.0)
        for step in sides.values():
            timed(step, args.warmup, args.device)
        per_round = [args.steps // args.rounds + (r < args.steps % args.rounds) for r in range(args.rounds)]
        for steps in per_round:
            for name, step in sides.items():
                seconds[name] += timed(step, steps, args.device)
    rate = {name: args.steps * args.batch / s for name, s in seconds.items()}
    print(f"{args.backbone} {args.size}px batch {args.batch} on {args.device} ({args.precision}), {args.steps} steps")
    for name, r in rate.items():
        print(f"  {name:8s} {r:8.1f} images/s")
    print(machine_line(torch.cuda.get_device_name() if args.device.startswith("cuda") else None))
    print(f"pretrain_throughput ratio={rate['cxrl'] / rate['lightly']:.3f}")


if __name__ == "__main__":
    main()

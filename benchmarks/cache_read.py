"""Reading training images from the cache vs decoding the source JPEGs (the torchvision + PIL way).

Writes N synthetic 1024 x 1024 8-bit grayscale JPEGs, prepares a 256-px cache from them (``cxrl prepare``'s
code path), then times, in the same run and on the same images:

  (a) cache: seeded random batches of 64 read from the memory-mapped cache (``Cache.read``) into a torch tensor;
  (b) peer:  ``PIL.Image.open`` + decode + ``resize((256, 256))`` + ``torch.from_numpy``, one image at a time.

Both read files that are in the page cache (they were just written). Last line: ``cache_read ratio=<a / b>``.
Usage: ``python benchmarks/cache_read.py [--images 512] [--decoded 128] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from _timing import machine_line
from PIL import Image

from cxrl.data.cache import open_cache
from cxrl.data.prepare import prepare_records
from cxrl.data.records import finalize_records

SOURCE_SIZE = 1024
CACHE_SIZE = 256
BATCH = 64


def write_sources(folder: Path, count: int, seed: int = 0) -> list[str]:
    """Smooth anatomy-like shading plus fine grain, so JPEG sizes are radiograph-like (~100-200 kB)."""
    rng = np.random.default_rng(seed)
    grain = rng.normal(0, 4, (SOURCE_SIZE, SOURCE_SIZE)).astype(np.float32)
    paths = []
    for i in range(count):
        coarse = cv2.resize(rng.normal(128, 40, (16, 16)), (SOURCE_SIZE, SOURCE_SIZE), interpolation=cv2.INTER_CUBIC)
        image = np.clip(coarse + np.roll(grain, 37 * i, axis=1), 0, 255).astype(np.uint8)
        paths.append(str(folder / f"{i:05d}.jpg"))
        Image.fromarray(image).save(paths[-1], quality=90)
    return paths


def time_cache(cache_path: Path, epochs: int, seed: int = 0) -> float:
    """Images per second reading shuffled batches from the cache into tensors."""
    cache = open_cache(cache_path)
    rng = np.random.default_rng(seed)
    start, seen = time.perf_counter(), 0
    for _ in range(epochs):
        order = rng.permutation(len(cache))
        for begin in range(0, len(order), BATCH):
            batch = torch.from_numpy(cache.read(order[begin : begin + BATCH]))
            seen += batch.shape[0]
    return seen / (time.perf_counter() - start)


def time_pil(paths: list[str]) -> float:
    """Images per second decoding and resizing the source JPEGs with PIL."""
    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as img:
            image = img.convert("L").resize((CACHE_SIZE, CACHE_SIZE), Image.BILINEAR)
        torch.from_numpy(np.array(image))
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--decoded", type=int, default=128, help="source JPEGs timed for the PIL peer")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cxrl-bench-") as tmp:
        tmp = Path(tmp)
        paths = write_sources(tmp, args.images)
        records = finalize_records(pd.DataFrame({"image_path": paths, "patient_id": range(len(paths))}), "synthetic")
        start = time.perf_counter()
        prepare_records(records, tmp / "cache", size=CACHE_SIZE, workers=args.workers)
        print(f"prepare: {len(paths) / (time.perf_counter() - start):.0f} images/s with {args.workers} workers")
        pil_rate = time_pil(paths[: args.decoded])
        cache_rate = time_cache(tmp / "cache", epochs=5)
    print(f"(a) cache memmap batches of {BATCH}: {cache_rate:,.0f} images/s")
    print(f"(b) PIL decode {SOURCE_SIZE}px JPEG + resize to {CACHE_SIZE}: {pil_rate:,.0f} images/s")
    print(machine_line())
    print(f"cache_read ratio={cache_rate / pil_rate:.1f}")


if __name__ == "__main__":
    main()

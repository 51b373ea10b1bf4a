"""Two-view generation speed: cxrl's batched, per-sample-seeded views vs lightly's SimCLRTransform on PIL images.

Same images (256 px uint8), same output size and number of views, one process, one thread each (the comparison a
DataLoader worker sees), alternating rounds so that load from other processes hits both alike. lightly is set to its
grayscale-safe variant (no hue/saturation/grayscale, no flips). cxrl uses ``simclr_views`` (crop, rotation,
translation, brightness/contrast/gamma, blur, noise). Last line: ``views_speed ratio=<lightly s / cxrl s>``
(higher is better for cxrl). On a GPU (``--device cuda``) cxrl runs there; lightly stays on the CPU, as in training.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _timing import machine_line
from lightly.transforms import SimCLRTransform
from PIL import Image

from cxrl.transforms import make_view_fn, seeds_for, simclr_views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)

    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (args.batch, 256, 256), dtype=np.uint8))
    pil = [Image.fromarray(img.numpy()) for img in images]
    lightly_transform = SimCLRTransform(
        input_size=args.size, cj_sat=0.0, cj_hue=0.0, random_gray_scale=0.0, hf_prob=0.0, normalize=None
    )
    view_fn = make_view_fn(simclr_views(args.size))
    on_device = images.to(args.device)

    def cxrl_views() -> None:
        views = view_fn(on_device, seeds_for(range(args.batch), epoch=0))
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        assert len(views) == 2

    def lightly_views() -> None:
        assert all(len(lightly_transform(img)) == 2 for img in pil)

    cxrl_views()
    lightly_views()
    totals = {"cxrl": 0.0, "lightly": 0.0}
    for _ in range(args.rounds):
        for name, fn in (("cxrl", cxrl_views), ("lightly", lightly_views)):
            start = time.perf_counter()
            fn()
            totals[name] += time.perf_counter() - start
    for name, seconds in totals.items():
        print(f"{name}: {args.rounds * args.batch / seconds:.1f} images/s (2 views of {args.size} px)")
    print(machine_line(torch.cuda.get_device_name() if args.device.startswith("cuda") else None))
    print(f"views_speed ratio={totals['lightly'] / totals['cxrl']:.2f}")


if __name__ == "__main__":
    main()

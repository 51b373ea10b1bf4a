"""``cxrl explain``: Grad-CAM of encoders' finding classifiers, localization against the findings' masks, embedding
maps and similarity heatmaps, as PNGs, ``metrics.json`` and an ``index.html`` gallery."""

from __future__ import annotations

import argparse
from pathlib import Path

from cxrl.errors import ConfigError
from cxrl.evaluate.cli import comma_names


def add_cli(subparsers) -> None:
    """Register ``cxrl explain``."""
    from cxrl.explain.gradcam import CAM_METHODS
    from cxrl.explain.maps import COLOR_KEYS
    from cxrl.explain.pointing import TOP_FRACTION
    from cxrl.explain.run import HEADS, MAP_METHODS
    from cxrl.explain.saliency import METHODS as SALIENCY_METHODS

    p = subparsers.add_parser(
        "explain",
        help="Grad-CAM, pointing game vs a random map, embedding maps and similarity heatmaps (HTML gallery)",
        description="Explain encoders on a cache: a classifier per encoder (linear probe on the train rows, or an "
        "image-text encoder's zero-shot head), its class activation maps on the test images positive for each "
        "finding, the pointing game and IoU against the findings' masks beside a uniform-random map, UMAP/t-SNE "
        "maps of the test embeddings and finding x finding similarity heatmaps. Writes OUT/metrics.json, "
        "OUT/index.html and PNGs.",
    )
    p.add_argument("--encoder", action="append", required=True, help="a pre-training RUN dir, an "
                   "encoder.safetensors, 'random' or open_clip:NAME; repeat it to compare encoders side by side")
    p.add_argument("--baseline", help="an encoder drawn beside the others as 'before training', e.g. random (with "
                   "the first encoder's architecture unless --backbone) or a run at initialization")
    p.add_argument("--backbone", help="architecture of a random encoder (default: the first encoder's, else resnet18)")
    p.add_argument("--data", required=True, help="cache to explain (the probe trains on its train rows)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the explanation already in --out")
    p.add_argument("--findings", type=comma_names, help="comma-separated canonical names (default: the findings the "
                   "cache outlines with masks or boxes, with --min-positives positives)")
    p.add_argument("--min-positives", type=int, default=5, help="default findings filter (train and test rows)")
    p.add_argument("--n-images", type=int, default=50, help="positive test images explained per finding (default 50)")
    p.add_argument("--gallery-images", type=int, default=8, help="of those, shown per finding and encoder (default 8)")
    p.add_argument("--cam", choices=tuple(CAM_METHODS), default="gradcam", help="pytorch-grad-cam method")
    p.add_argument("--head", choices=HEADS, default="probe", help="what the CAM explains: the linear probe, or the "
                   "zero-shot prompt head of image-text encoders (others keep the probe)")
    p.add_argument("--tolerance", type=int, default=0, help="pointing game: pixels the mask is grown by (default 0)")
    p.add_argument("--top-fraction", type=float, default=TOP_FRACTION, help="IoU: share of the map's highest "
                   f"pixels (default {TOP_FRACTION})")
    p.add_argument("--saliency", choices=(*SALIENCY_METHODS, "none"), default="gradcam", help="image-text encoders: "
                   "zero-shot saliency segmentation by this method (default gradcam), or none")
    p.add_argument("--sam-checkpoint", help="a SAM ViT-B weights file: refine the saliency pseudo-masks with SAM")
    p.add_argument("--maps", type=comma_names, default=list(MAP_METHODS), help="embedding maps: umap,tsne or none")
    p.add_argument("--color-by", type=comma_names, default=list(COLOR_KEYS),
                   help=f"colourings of the maps, from {','.join(COLOR_KEYS)} (label: one row per finding)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--bootstrap", type=int, default=1000, help="patient-bootstrap replicates of the localization "
                   "intervals; 0: none")
    p.add_argument("--seed", type=int, default=0, help="image draw, random init, random maps, bootstrap")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from cxrl.explain.run import run_explain

    if (Path(args.out) / "metrics.json").exists() and not args.overwrite:
        raise ConfigError(f"{args.out} already holds an explanation (metrics.json): pass --overwrite or another --out")
    metrics = run_explain(
        args.encoder, args.data, args.out, baseline=args.baseline, findings=args.findings, n_images=args.n_images,
        gallery_images=args.gallery_images, cam=args.cam, head=args.head, tolerance=args.tolerance,
        top_fraction=args.top_fraction, maps=args.maps, color_by=args.color_by, min_positives=args.min_positives,
        backbone=args.backbone, device=args.device, batch_size=args.batch_size, n_bootstrap=args.bootstrap,
        seed=args.seed, saliency=args.saliency, sam_checkpoint=args.sam_checkpoint,
    )
    for entry in metrics["encoders"]:
        m = entry["macro"]
        if m:
            print(f"{entry['name']}: pointing game {m['pointing_game']:.3f} vs random {m['pointing_game_random']:.3f} "
                  f"(margin {m['pointing_game_margin']:+.3f}); IoU {m['iou']:.3f} vs random {m['iou_random']:.3f}")
    print(f"wrote {Path(args.out) / 'index.html'}")
    return 0

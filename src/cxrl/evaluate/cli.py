"""``cxrl evaluate``: a registered protocol (linear probe, fine-tuning, ...) of an encoder across label fractions and
seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

from cxrl.errors import ConfigError


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]  # an empty item ("0.1,,1") is an error, not skipped
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, found {text!r}") from e


def comma_names(text: str) -> list[str]:
    """``A, B,C`` -> ``['A', 'B', 'C']`` (empty items dropped): a command-line list of names."""
    return [x.strip() for x in text.split(",") if x.strip()]


def _subgroups(text: str) -> list[str]:
    return [] if text.strip() == "none" else comma_names(text)


def add_cli(subparsers) -> None:
    """Register ``cxrl evaluate``; ``--protocol`` offers every registered protocol."""
    from cxrl.evaluate.protocols import PROTOCOLS

    p = subparsers.add_parser(
        "evaluate",
        help="evaluate an encoder: linear, finetune (label fractions), zeroshot, retrieval (image-text runs)",
        description="Evaluate an encoder on a cache: train on label fractions of the train split, select on valid, "
        "report test metrics with bootstrap CIs. Writes OUT/metrics.json, report.html, report.md and plots.",
    )
    p.add_argument("--encoder", required=True, help="a pre-training RUN dir, an encoder.safetensors, 'random', or "
                   "open_clip:ARCH / open_clip:hf-hub:ORG/NAME")
    p.add_argument("--encoder-weights", help="a local open_clip checkpoint for --encoder open_clip:ARCH")
    p.add_argument("--backbone", default="resnet18", help="architecture of --encoder random (default resnet18)")
    p.add_argument("--data", required=True, help="cache to train (and, without --target, test) on")
    p.add_argument("--target", help="second cache to test on (cross-dataset transfer)")
    p.add_argument("--protocol", choices=tuple(PROTOCOLS), default="linear",
                   help="a registered protocol (cxrl.evaluate.protocols; default linear)")
    p.add_argument("--fractions", type=_floats, default=[0.01, 0.1, 0.25, 0.5, 1.0], help="e.g. 0.01,0.1,1")
    p.add_argument("--seeds", type=int, default=3, help="label-subset seeds per fraction (default 3)")
    p.add_argument("--seed", type=int, default=0, help="base seed")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the evaluation already in --out")
    p.add_argument("--pathologies", type=comma_names,
                   help="comma-separated canonical names (default: enough positives)")
    p.add_argument("--min-positives", type=int, default=5, help="default pathology filter (train and test)")
    p.add_argument("--uncertainty", choices=("ignore", "zeros", "ones"), default="ignore")
    p.add_argument("--blank", choices=("zero", "nan"), default="nan", help="what 'not mentioned' becomes")
    p.add_argument("--image-size", type=int, help="default: the encoder's training size, else the cache's")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--precision", default="32", help="32, 16 or bf16 (mixed: autocast on the encoder; also "
                   "Lightning's names 32-true, 16-mixed, bf16-mixed)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threshold-rule", choices=("max_f1", "youden"), default="max_f1")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates (patients resampled); 0: no CIs")
    p.add_argument("--embedding", choices=("umap", "tsne", "none"), default="umap")
    p.add_argument("--subgroups", type=_subgroups, help="per-subgroup metrics and TPR gaps under these of sex,age,"
                   "view,dataset, or none (default: those with two or more values in the test rows)")
    p.add_argument("--age-bins", type=_floats, help="left edges of the age subgroups in years (default 0,20,40,60,80)")
    p.add_argument("--prompts", help="zeroshot: YAML {finding: {positive: [...], negative: [...]}} replacing the "
                   "built-in prompts of those findings")
    ft = p.add_argument_group("fine-tuning")
    ft.add_argument("--epochs", type=int, help="maximum epochs (default 20)")
    ft.add_argument("--patience", type=int, help="early-stopping patience in epochs (default 5)")
    ft.add_argument("--lr", type=float, help="encoder learning rate (default 1e-4)")
    ft.add_argument("--head-lr", type=float, help="head learning rate (default 1e-3)")
    ft.add_argument("--layer-decay", type=float, help="layer-wise LR decay, 1 = off (default)")
    p.add_argument("--freeze-encoder", action="store_true", help="segmentation, detection: keep the encoder frozen "
                   "(default: fine-tuned with the fine-tuning settings below)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from cxrl.evaluate.protocol import run_evaluation

    if args.encoder != "random" and args.backbone != "resnet18":
        raise ConfigError("--backbone applies to --encoder random only; a RUN dir names its own backbone")
    if (Path(args.out) / "metrics.json").exists() and not args.overwrite:
        raise ConfigError(f"{args.out} already holds an evaluation (metrics.json): pass --overwrite or another --out")
    run_evaluation(
        args.encoder,
        args.data,
        args.out,
        protocol=args.protocol,
        fractions=args.fractions,
        seeds=args.seeds,
        target=args.target,
        encoder_weights=args.encoder_weights,
        backbone=args.backbone,
        seed=args.seed,
        pathologies=args.pathologies,
        min_positives=args.min_positives,
        uncertainty=args.uncertainty,
        blank=args.blank,
        image_size=args.image_size,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        threshold_rule=args.threshold_rule,
        n_bootstrap=args.bootstrap,
        embedding=args.embedding,
        subgroups=args.subgroups,
        age_bins=args.age_bins,
        prompts=args.prompts,
        epochs=args.epochs,
        patience=args.patience,
        lr=args.lr,
        head_lr=args.head_lr,
        layer_decay=args.layer_decay,
        freeze_encoder=args.freeze_encoder,
    )
    return 0

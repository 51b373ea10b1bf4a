"""``cxrl demo``: phantom (MIMIC layout, with reports) -> cache -> SimCLR and ConVIRT pre-training -> evaluation
against random init and supervised-from-scratch at 1 %, 10 % and 100 % labels, and ConVIRT's zero-shot (no labels)
-> a printed table, reports and summary.json.

Every stage is skipped when its output already exists, so an interrupted demo resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FRACTIONS = (0.01, 0.1, 1.0)
# ConVIRT's text side in every preset: the offline MiniLM, locked (its report and sentence features cached once,
# cxrl.data.text_features), half the reports cut to one sentence per step (docs/vlp.md, "A locked MiniLM").
CONVIRT_TEXT = ("method.text_encoder=minilm", "method.locked_text=true", "method.sentence_prob=0.5")
ZEROSHOT = "convirt-zeroshot"  # the evaluation whose one label-free figure fills the zero-shot column


@dataclass(frozen=True)
class Preset:
    """Sizes of one demo run."""

    n_images: int
    patients: int
    render_size: int
    cache_size: int
    backbone: str
    batch_size: int
    max_epochs: int
    lr: float
    optimizer: str
    warmup_epochs: float
    seeds: int
    finetune_epochs: int
    precision: str = "32-true"
    accelerator: str = "auto"
    embedding: str = "umap"  # the reports' 2-D map of test embeddings
    convirt: tuple[str, ...] = ()  # ConVIRT's own overrides (after the shared ones)
    min_positives: int = 5  # a finding is evaluated with this many positives and negatives in train and test


PRESETS = {
    # 10 min measured on a 2-core AMD EPYC, 21 min on a 2-core Intel Xeon (family 6, model 167). ConVIRT with a
    # locked text tower steps twice as fast as SimCLR (one view, no text tower in the loop); its 60 epochs plus the
    # MiniLM features take 3x SimCLR's 12.
    "cpu": Preset(
        n_images=5000, patients=2000, render_size=128, cache_size=64, backbone="tiny_cnn", batch_size=128,
        max_epochs=12, lr=2e-3, optimizer="adamw", warmup_epochs=1, seeds=3, finetune_epochs=4,
        convirt=("max_epochs=60", *CONVIRT_TEXT),
    ),
    # Seconds: the end-to-end test's size.
    "tiny": Preset(
        n_images=240, patients=120, render_size=64, cache_size=32, backbone="tiny_cnn", batch_size=32,
        max_epochs=1, lr=2e-3, optimizer="adamw", warmup_epochs=0, seeds=2, finetune_epochs=1, embedding="tsne",
        min_positives=1, convirt=CONVIRT_TEXT,
    ),
    # A real-sized run for one GPU.
    "gpu": Preset(
        n_images=60000, patients=20000, render_size=256, cache_size=224, backbone="resnet50", batch_size=256,
        max_epochs=100, lr=1.2, optimizer="lars", warmup_epochs=10, seeds=5, finetune_epochs=20,
        precision="bf16-mixed", convirt=("optimizer=adamw", "lr=3e-4", "weight_decay=1e-4", *CONVIRT_TEXT),
    ),
}


def run_demo(out: str | Path = "cxrl-demo", seed: int = 0, preset: str = "cpu") -> dict:
    """Run the whole demo into ``out``; returns the summary (also written to ``out/summary.json``)."""
    from cxrl.data.phantom import write_dataset
    from cxrl.data.prepare import prepare
    from cxrl.evaluate.protocol import run_evaluation
    from cxrl.train import pretrain

    p = PRESETS[preset]
    if "method.text_encoder=minilm" in p.convirt:  # fail before any stage runs, not after SimCLR's minutes
        from cxrl.models.text_tokenizer import minilm_folder

        minilm_folder()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def stage(name: str, done: Path, fn) -> None:
        t = time.perf_counter()
        if done.exists():
            log.info("demo: %s already done (%s)", name, done)
        else:
            log.info("demo: %s ...", name)
            fn()
        timings[name] = round(time.perf_counter() - t, 1)

    phantom_dir = out / "phantom"
    cache_dir = out / "cache"
    stage(
        "phantom",
        phantom_dir / "mimic-cxr-2.0.0-split.csv.gz",
        lambda: write_dataset(phantom_dir, p.n_images, size=p.render_size, layout="mimic", seed=seed,
                              patients=p.patients),
    )
    # manifest.json exists only beside a complete cache; an interrupted prepare resumes.
    stage("prepare", cache_dir / "manifest.json", lambda: prepare("mimic", phantom_dir, cache_dir,
                                                                 size=p.cache_size, reports=True))
    overrides = [f"backbone={p.backbone}", f"image_size={p.cache_size}", f"seed={seed}", f"precision={p.precision}",
                 f"accelerator={p.accelerator}", f"batch_size={p.batch_size}", f"max_epochs={p.max_epochs}",
                 f"lr={p.lr}", f"optimizer={p.optimizer}", f"warmup_epochs={p.warmup_epochs}"]
    for method in ("simclr", "convirt"):
        stage(method, out / method / "encoder.safetensors",
              lambda m=method: pretrain(m, cache_dir, out / m,
                                        overrides=[*overrides, *(p.convirt if m == "convirt" else ())]))
    evaluations = {
        "simclr": dict(encoder=out / "simclr", protocol="linear"),
        "convirt": dict(encoder=out / "convirt", protocol="linear"),
        "random": dict(encoder="random", backbone=p.backbone, protocol="linear"),
        "supervised": dict(encoder="random", backbone=p.backbone, protocol="finetune", epochs=p.finetune_epochs),
        ZEROSHOT: dict(encoder=out / "convirt", protocol="zeroshot"),
    }
    results = {}
    for name, kw in evaluations.items():
        eval_dir = out / "eval" / name
        stage(f"evaluate {name}", eval_dir / "metrics.json", lambda kw=kw, d=eval_dir: run_evaluation(
            data=cache_dir, out=d, fractions=FRACTIONS, seeds=p.seeds, image_size=p.cache_size, seed=seed,
            blank="zero", embedding=p.embedding, precision=p.precision, min_positives=p.min_positives, **kw))
        results[name] = json.loads((eval_dir / "metrics.json").read_text())
    summary = _summarize(results, out, seed, preset, timings, time.perf_counter() - started)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _summarize(results: dict, out: Path, seed: int, preset: str, timings: dict, seconds: float) -> dict:
    trained = {name: m for name, m in results.items() if name != ZEROSHOT}
    zeroshot = results[ZEROSHOT]["summary"]["0.0"]

    def by_fraction(key: str) -> dict:
        return {name: {str(f): m["summary"][str(f)][key] for f in FRACTIONS} for name, m in trained.items()}

    return {
        "preset": preset,
        "seed": seed,
        "fractions": list(FRACTIONS),
        "macro_auroc": by_fraction("macro_auroc_mean"),
        "macro_auroc_std": by_fraction("macro_auroc_std"),
        "zeroshot_macro_auroc": {"convirt": zeroshot["macro_auroc_mean"]},
        "pathologies": results["simclr"]["pathologies"],
        "reports": {name: str(out / "eval" / name / "report.html") for name in results},
        "stage_seconds": timings,
        "total_seconds": round(seconds, 1),
    }


def format_table(summary: dict) -> str:
    """The macro-AUROC table printed at the end of the demo: one column per label fraction, then zero-shot."""
    fr = summary["fractions"]
    zeroshot = summary.get("zeroshot_macro_auroc", {})
    head = f"{'encoder':<12}" + "".join(f"{f'{f:.0%} labels':>16}" for f in fr) + f"{'zero-shot':>11}"
    rows = [head, "-" * len(head)]
    for name, by_f in summary["macro_auroc"].items():
        std = summary["macro_auroc_std"][name]
        cells = "".join(f"{by_f[str(f)]:>9.3f} ± {std[str(f)]:.3f}" for f in fr)
        rows.append(f"{name:<12}{cells}" + (f"{zeroshot[name]:>11.3f}" if name in zeroshot else f"{'-':>11}"))
    return "\n".join(rows)


def _cli(args: argparse.Namespace) -> int:
    summary = run_demo(args.out, seed=args.seed, preset=args.preset)
    seeds = PRESETS[args.preset].seeds
    print(f"\nmacro AUROC on the test split, linear probe (supervised: trained from scratch), mean ± std over {seeds}"
          " label-subset seeds; zero-shot: ConVIRT's image-report similarity to prompts, no labels")
    print(format_table(summary))
    print(f"\nreports: {Path(args.out) / 'eval'}/*/report.html   summary: {Path(args.out) / 'summary.json'}")
    print(f"total {summary['total_seconds']:.0f} s")
    return 0


def add_cli(subparsers) -> None:
    """Register ``cxrl demo``."""
    p = subparsers.add_parser("demo", help="phantom -> cache -> SimCLR and ConVIRT -> evaluation, end to end")
    p.add_argument("--out", default="cxrl-demo", help="output folder (default: ./cxrl-demo)")
    p.add_argument("--seed", type=int, default=0, help="phantom and training seed")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="cpu: < 15 min on 2 cores; gpu: real size")
    p.set_defaults(func=_cli)

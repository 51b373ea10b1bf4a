"""Every image-text method and SimCLR at one budget on one phantom MIMIC-layout cache, in one table.

The sequence is plain ``cxrl`` commands (printed as they run; a finished step is skipped when the script is run
again, so an interrupted comparison resumes):

  cxrl phantom --layout mimic --seed 4242 ...; cxrl prepare mimic ... --reader-option reports=true
  cxrl pretrain METHOD --data CACHE --out OUT/runs/NAME  (the demo's budget: tiny_cnn, 64 px, batch 128,
        12 epochs, AdamW lr 2e-3, 1 warm-up epoch; each method's own YAML for everything else)
  cxrl evaluate --protocol linear --fractions 0.01,0.1,1 --seeds 3; --protocol zeroshot; --protocol retrieval
  cxrl compare OUT/eval --out OUT/table.md

and the summary printed last: per method its pre-training time, linear macro AUROC at 1 / 10 / 100 % labels,
zero-shot macro AUROC and mean Recall@10 of retrieval (mean ± std over ``--pretrain-seeds``), and each one's ratio
to ConVIRT (the peer). The phantom seed (4242) is one no test uses. ``--smoke``: 600 images, 32 px, one epoch
(checks the sequence, measures nothing).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from _timing import machine_line

CXRL = str(Path(sys.executable).with_name("cxrl"))
# name: (registered method, its overrides beyond the shared budget)
METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "simclr": ("simclr", ()),
    "convirt": ("convirt", ()),
    "dhn_nce": ("convirt", ("method.loss=dhn_nce",)),
    "medclip": ("medclip", ()),
    "gloria": ("gloria", ()),
    "mgca": ("mgca", ()),
    "mgca_token_0.1": ("mgca", ("method.token_weight=0.1",)),  # at this lr the full token term collapses MGCA
    "cm_cgns": ("cm_cgns", ()),
    "label_text": ("label_text", ()),
    "label_text_visual": ("label_text", ("method.text_branch=false",)),  # its visual-branch-only ablation
}
FULL = dict(n=5000, patients=2000, render=128, size=64, batch=128, epochs=12, fractions="0.01,0.1,1", seeds=3,
            min_positives=5)
SMOKE = dict(n=600, patients=300, render=64, size=32, batch=32, epochs=1, fractions="0.1,1", seeds=1,
             min_positives=1)


def run(cmd: list[str], done: Path) -> float:
    """Run a ``cxrl`` command unless ``done`` exists; its wall seconds (0 when skipped)."""
    if done.exists():
        return 0.0
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode:
        sys.exit(f"vlp_compare: stopped, this command failed (its message is above): {' '.join(cmd)}")
    return time.perf_counter() - start


@contextmanager
def run_lock(out: Path, run_name: str) -> Iterator[None]:
    """Hold ``OUT/.locks/RUN.lock`` while a run is trained and evaluated: a second comparison started on the same
    folder stops instead of training the same run beside the first (the lock goes with the process)."""
    path = out / ".locks" / f"{run_name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit(f"vlp_compare: another process is working on {run_name} in {out}; wait for it, or give each "
                     "comparison its own --methods")
        yield


def pretrain(name: str, run_name: str, cache: Path, out: Path, p: dict, seed: int) -> float:
    """Pre-train one method at the shared budget; seconds taken (recorded beside the run, so a rerun keeps it)."""
    method, extra = METHODS[name]
    run_dir, timing = out / "runs" / run_name, out / "runs" / f"{run_name}.seconds"
    budget = ["backbone=tiny_cnn", f"image_size={p['size']}", f"batch_size={p['batch']}", f"max_epochs={p['epochs']}",
              "optimizer=adamw", "lr=2e-3", "warmup_epochs=1", "accelerator=cpu", f"seed={seed}",
              "progress_bar=false"]
    resume = ["--resume"] if (run_dir / "checkpoints").exists() else []
    seconds = run([CXRL, "pretrain", method, "--data", str(cache), "--out", str(run_dir), *resume, *budget, *extra],
                  run_dir / "encoder.safetensors")
    if seconds:
        timing.write_text(f"{seconds:.1f}\n")
    return float(timing.read_text()) if timing.exists() else float("nan")


def evaluate(run_name: str, cache: Path, out: Path, p: dict, seed: int) -> dict[str, Path]:
    """Linear (label fractions), zero-shot and retrieval (methods with a text side) of one run."""
    run_dir, dirs = out / "runs" / run_name, {}
    protocols = ["linear", *(["zeroshot", "retrieval"] if (run_dir / "text").exists() else [])]
    for protocol in protocols:
        eval_dir = dirs[protocol] = out / "eval" / f"{run_name}-{protocol}"
        extra = ["--fractions", p["fractions"], "--seeds", str(p["seeds"])] if protocol == "linear" else []
        run([CXRL, "evaluate", "--encoder", str(run_dir), "--protocol", protocol, "--data", str(cache),
             "--out", str(eval_dir), "--seed", str(seed), "--embedding", "none", "--bootstrap", "0",
             "--device", "cpu", "--min-positives", str(p["min_positives"]), "--overwrite", *extra],
            eval_dir / "metrics.json")
    return dirs


def scores(dirs: dict[str, Path], fractions: list[str]) -> dict[str, float]:
    """The table's numbers of one method from its evaluations' ``metrics.json``."""
    out: dict[str, float] = {}
    linear = json.loads((dirs["linear"] / "metrics.json").read_text())["summary"]
    for fraction in fractions:
        out[f"linear {float(fraction) * 100:g}%"] = linear[str(float(fraction))]["macro_auroc_mean"]
    if "zeroshot" in dirs:
        out["zero-shot"] = json.loads((dirs["zeroshot"] / "metrics.json").read_text())["summary"]["0.0"][
            "macro_auroc_mean"]
        retrieval = json.loads((dirs["retrieval"] / "metrics.json").read_text())["summary"]["0.0"]
        out["R@10"] = (retrieval["image_to_text_recall@10_mean"] + retrieval["text_to_image_recall@10_mean"]) / 2
    return out


def cell(values: list[float]) -> str:
    """``mean`` or ``mean ± std`` (sample std) of one table cell."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("vlp_compare"))
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--seed", type=int, default=4242, help="the phantom's and the evaluations' seed")
    parser.add_argument("--pretrain-seeds", default=None, help="comma-separated pre-training seeds (default: --seed); "
                        "the table gives mean ± std over them")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    p, names = SMOKE if args.smoke else FULL, args.methods.split(",")
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    phantom, cache = args.out / "phantom", args.out / "cache"
    run([CXRL, "phantom", "--out", str(phantom), "--n", str(p["n"]), "--size", str(p["render"]), "--seed",
         str(args.seed), "--layout", "mimic", "--patients", str(p["patients"])],
        phantom / "mimic-cxr-2.0.0-split.csv.gz")
    run([CXRL, "prepare", "mimic", "--root", str(phantom), "--out", str(cache), "--size", str(p["size"]),
         "--reader-option", "reports=true"], cache / "manifest.json")
    seeds = [int(x) for x in (args.pretrain_seeds or str(args.seed)).split(",")]
    per_seed: dict[str, list[dict[str, float]]] = {}
    for seed in seeds:
        for name in names:
            run_name = name if seed == args.seed else f"{name}-s{seed}"
            with run_lock(args.out, run_name):
                seconds = pretrain(name, run_name, cache, args.out, p, seed)
                dirs = evaluate(run_name, cache, args.out, p, args.seed)
            per_seed.setdefault(name, []).append({"pretrain s": seconds, **scores(dirs, p["fractions"].split(","))})
    subprocess.run([CXRL, "compare", str(args.out / "eval"), "--out", str(args.out / "table.md")], check=True)
    (args.out / "summary.json").write_text(json.dumps(per_seed, indent=1))
    rows = {name: {k: float(np.mean([r[k] for r in runs])) for k in runs[0]} for name, runs in per_seed.items()}
    columns = list(dict.fromkeys(k for r in rows.values() for k in r))
    print(f"\n{len(seeds)} pre-training seed(s): mean" + (" ± std" if len(seeds) > 1 else ""))
    print("| method | " + " | ".join(columns) + " |\n" + "|---" * (len(columns) + 1) + "|")
    for name, runs in per_seed.items():
        cells = [cell([r[c] for r in runs]) if c in runs[0] else "—" for c in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")
    peer = rows.get("convirt")
    if peer:
        keys = [columns[1], "zero-shot"]  # the smallest label fraction
        ratios = {n: "/".join(f"{r[k] / peer[k]:.3f}" if k in r else "—" for k in keys) for n, r in rows.items()}
        print(machine_line())
        print(f"ratio={ratios} ({' / '.join(keys)} macro AUROC, each method over ConVIRT at the same budget)")


if __name__ == "__main__":
    main()

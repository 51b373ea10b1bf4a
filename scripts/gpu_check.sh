#!/usr/bin/env bash
# The GPU path in one script (issue 16): every method 20 steps in bf16 (SimCLR in fp16 too; ConVIRT on the
# phantom's MIMIC reports), `cxrl evaluate` linear, fine-tune, zero-shot and retrieval in bf16, then
# benchmarks/gpu_pretrain.py. Sized for one GPU in under 6 minutes; with --cpu,
# the same steps at tiny sizes on the CPU.
#
#   scripts/gpu_check.sh [--cpu] [--no-bench] [--wheels DIR] [--out DIR]
#
# --no-bench    leave out benchmarks/gpu_pretrain.py (run it alone later, when nothing else shares the GPU)
# --wheels DIR  install DIR/*.whl first (no index, no dependencies) into $TMPDIR/cxrl-gpu-site: what a machine with only
#               torch, Lightning, timm and transformers lacks (make them with scripts/gpu_wheels.sh).
# --out DIR     logs, runs and gpu_pretrain.json (default runs/gpu_check); the last lines are a table of steps.
# Runs from a checkout without installing cxrl (src/ goes on PYTHONPATH). Exit status: the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
cpu=0 bench_run=1 wheels="" out=runs/gpu_check
while [ $# -gt 0 ]; do
    case $1 in
        --cpu) cpu=1 ;;
        --no-bench) bench_run=0 ;;
        --wheels) wheels=${2:?--wheels needs a folder}; shift ;;
        --out) out=${2:?--out needs a folder}; shift ;;
        *) echo "gpu_check: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
    esac
    shift
done
python=${PYTHON:-$([ -x .venv/bin/python ] && echo "$PWD/.venv/bin/python" || echo python3)}  # make install's venv
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out"/{phantom,cache,runs,eval-linear,eval-finetune,eval-zeroshot,eval-retrieval}  # a re-run starts afresh
log=$out/gpu_check.log
: >"$log"
if [ -n "$wheels" ]; then
    site=${TMPDIR:-/tmp}/cxrl-gpu-site
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        "$wheels"/*.whl >>"$log" 2>&1 || { echo "gpu_check: installing $wheels/*.whl failed (see $log)" >&2; exit 2; }
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
cxrl() { "$python" -c 'import sys; from cxrl.cli import main; sys.exit(main())' "$@"; }

if [ $cpu = 1 ]; then
    n=160 render=64 cache_size=32 steps=4 bench=(--cpu)
    model=(backbone=tiny_cnn image_size=32 batch_size=16 accelerator=cpu)
    heads=(method.proj_hidden_dim=64 method.proj_dim=32 method.pred_hidden_dim=64 method.num_prototypes=16
           method.local_size=16)
    eval_size=(--image-size 32 --device cpu)
else
    n=1200 render=256 cache_size=256 steps=20 bench=()
    model=(backbone=resnet50 image_size=224 batch_size=128 accelerator=gpu)
    heads=()
    eval_size=(--image-size 224 --device cuda)
fi
common=("${model[@]}" max_steps=$steps optimizer=adamw lr=1e-4 warmup_epochs=0 progress_bar=false
        monitor.max_images=128 log_every_n_steps=5)

results=() failed=0
step() {  # step NAME COMMAND...: run, log, time, record
    local name=$1 start=$SECONDS status
    shift
    echo "=== $name: $*" | tee -a "$log"
    "$@" >>"$log" 2>&1
    status=$?
    [ $status = 0 ] || { failed=$((failed + 1)); tail -n 20 "$log"; }
    results+=("$(printf '%-34s %-6s %4ds' "$name" "$([ $status = 0 ] && echo ok || echo FAIL)" $((SECONDS - start)))")
}

"$python" - >>"$log" 2>&1 <<'EOF'
import torch, lightning, timm
print("torch", torch.__version__, "lightning", lightning.__version__, "timm", timm.__version__,
      "cuda", torch.cuda.is_available() and torch.cuda.get_device_name())
EOF
step "phantom ($n images)" cxrl phantom --out "$out/phantom" --n $n --size $render --seed 0 --layout mimic
step "prepare (cache $cache_size px)" cxrl prepare mimic --root "$out/phantom" --out "$out/cache" \
    --size $cache_size --overwrite --reader-option reports=true
for method in simclr moco_v2 moco_v3 byol swav supervised; do
    extra=()
    [ $method = swav ] && extra=(method.local_views=2)
    step "$method bf16-mixed $steps steps" cxrl pretrain $method --data "$out/cache" --out "$out/runs/$method" \
        "${common[@]}" "${heads[@]}" "${extra[@]}" precision=bf16-mixed
done
step "convirt bf16-mixed $steps steps" cxrl pretrain convirt --data "$out/cache" --out "$out/runs/convirt" \
    "${common[@]}" precision=bf16-mixed
step "simclr 16-mixed $steps steps" cxrl pretrain simclr --data "$out/cache" --out "$out/runs/simclr-fp16" \
    "${common[@]}" "${heads[@]}" precision=16-mixed
quick=(--data "$out/cache" --fractions 0.5,1 --seeds 1 --min-positives 2 --bootstrap 100 --embedding none
       --precision bf16 "${eval_size[@]}")
step "evaluate linear bf16" cxrl evaluate --encoder "$out/runs/simclr" --protocol linear --out "$out/eval-linear" \
    "${quick[@]}"
step "evaluate finetune bf16" cxrl evaluate --encoder "$out/runs/simclr" --protocol finetune --epochs 2 \
    --out "$out/eval-finetune" "${quick[@]}"
for protocol in zeroshot retrieval; do
    step "evaluate $protocol bf16" cxrl evaluate --encoder "$out/runs/convirt" --protocol $protocol \
        --out "$out/eval-$protocol" "${quick[@]}"
done
[ $bench_run = 1 ] && step "benchmark gpu_pretrain" "$python" benchmarks/gpu_pretrain.py "${bench[@]}" --json "$out/gpu_pretrain.json"

echo "--- benchmarks/gpu_pretrain.py"
sed -n '/MFU against/,$p' "$log" | grep -v '^===' | grep -E 'MFU|>=' || true
echo "--- steps (log: $log)"
printf '%s\n' "${results[@]}"
echo "gpu_check: $((${#results[@]} - failed)) ok, $failed failed, ${SECONDS}s"
exit $failed

#!/usr/bin/env bash
# Training throughput, lrlab vs PyTorch eager, same model, batch, threads and device, run
# alternately (A B A B ...) so machine drift hits both; prints the medians and their ratio.
#
# Usage: bench/compare_train.sh [MODEL] [BATCH] [STEPS] [THREADS] [DEVICE] [ROUNDS] [SIZE]
#   e.g. bench/compare_train.sh resnet20 128 20 2 cpu 5
# PYTORCH_ARGS adds arguments to the PyTorch side, e.g. PYTORCH_ARGS=--channels-last.
# Needs `make build` and the torch wheel that `make` installs (or your own torch 2.13 on
# PYTHONPATH).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-resnet20} batch=${2:-128} steps=${3:-20} threads=${4:-2} device=${5:-cpu} rounds=${6:-5} size=${7:-32}
cache=${LRLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lrlab}
export PYTHONPATH="$cache/torch-2.13.0${PYTHONPATH:+:$PYTHONPATH}"
bin=target/release/lrlab
[ -x "$bin" ] || { echo "build first: make build" >&2; exit 1; }
a=() b=()
for ((i = 0; i < rounds; i++)); do
    a+=("$("$bin" bench train --model "$model" --batch "$batch" --steps "$steps" --threads "$threads" --device "$device" --size "$size" --json \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_sec"])')")
    b+=("$(python3 bench/train_pytorch.py --model "$model" --batch "$batch" --steps "$steps" --threads "$threads" --device "$device" --size "$size" ${PYTORCH_ARGS:-} 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_sec"])')")
done
python3 - "$model" "$batch" "$threads" "$device" "${a[*]}" "${b[*]}" <<'PY'
import statistics, sys
model, batch, threads, device, a, b = sys.argv[1:]
a = [float(x) for x in a.split()]
b = [float(x) for x in b.split()]
ratios = [x / y for x, y in zip(a, b)]
print(f"{model} batch {batch}, {threads} threads, {device}: lrlab {statistics.median(a):.1f} img/s, "
      f"PyTorch eager {statistics.median(b):.1f} img/s, ratio {statistics.median(ratios):.3f} "
      f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {len(a)} rounds)")
PY

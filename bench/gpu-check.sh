#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU (CUDA 13 driver): builds, runs the test
# suite (which then exercises the CUDA paths of `lrlab info`), and measures training
# throughput of lrlab against PyTorch eager with bf16 autocast and channels-last:
# resnet56 at batch 1000 (CIFAR size) and resnet50 at 224 (batch 128). Prints one table.
# Meant to finish within ~5 minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
./target/release/lrlab info
cache=${LRLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lrlab}
if ! PYTHONPATH="$cache/torch-2.13.0" python3 -c "import torchvision" 2>/dev/null; then
    python3 -m pip install -q --no-deps --target "$cache/torchvision" torchvision==0.28.0 || true
fi
export PYTHONPATH="$cache/torchvision:${PYTHONPATH:-}"
echo "| model | batch | size | lrlab img/s | PyTorch img/s | ratio |"
echo "|---|---|---|---|---|---|"
for spec in "resnet56 1000 32 30" "resnet50 128 224 20"; do
    set -- $spec
    line=$(bench/compare_train.sh "$1" "$2" "$4" 0 cuda 3 "$3")
    echo "$line" | python3 -c '
import re, sys
l = sys.stdin.read()
m = re.search(r"lrlab ([\d.]+) img/s, PyTorch eager ([\d.]+) img/s, ratio ([\d.]+)", l)
print("| %s | %s | %s | %s | %s | %s |" % (sys.argv[1], sys.argv[2], sys.argv[3], *m.groups()))' "$1" "$2" "$3"
done
timeout 300 make test 2>&1 | tail -3

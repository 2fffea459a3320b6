#!/usr/bin/env bash
# dist/gpu-check/: everything the one-shot GPU check needs on a machine that has only its own
# PyTorch (release VERSION): the lrlab bundle, the stripped GPU test binary, the PyTorch side
# of the throughput comparison and run.sh (scripts/gpu-check-run.sh).
#
# Usage: scripts/gpu-bundle.sh VERSION     then, there: gpu-check/run.sh RESULTS_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: scripts/gpu-bundle.sh VERSION}
scripts/bundle.sh "$version" build
gpu_test=$(scripts/bundle.sh "$version" tests | awk '$1 == "gpu" {print $2}')
[ -x "$gpu_test" ] || { echo "gpu-bundle: the test binary of tests/gpu.rs was not built" >&2; exit 1; }
out=dist/gpu-check
rm -rf "$out.partial"
mkdir -p "$out.partial/tests" "$out.partial/bench"
cp -r "dist/lrlab-torch$version" "$out.partial/lrlab"
strip -o "$out.partial/tests/gpu" "$gpu_test"
cp bench/train_pytorch.py "$out.partial/bench/"
cp scripts/gpu-check-run.sh "$out.partial/run.sh"
echo "$version" >"$out.partial/TORCH_VERSION"
rm -rf "$out"
mv "$out.partial" "$out"
echo "gpu-bundle: $out/run.sh (torch $version, $(du -sh "$out" | cut -f1)); on the GPU machine: run.sh RESULTS_DIR" >&2

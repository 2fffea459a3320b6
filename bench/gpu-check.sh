#!/usr/bin/env bash
# The GPU check on a machine with cargo and the network: builds the one-shot bundle
# (`make gpu-bundle`) and runs it. For the machine's own PyTorch when it has a supported
# release (2.10, 2.11, 2.13), else for the torch 2.13 wheel that `make` installs.
#
# Usage: bench/gpu-check.sh [RESULTS_DIR]     (default out/gpu-check)
# A GPU machine without cargo or network: run `make gpu-bundle TORCH=<its release>` elsewhere,
# copy dist/gpu-check/ there and run `gpu-check/run.sh RESULTS_DIR` (see README, Benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-out/gpu-check}
cache=${LRLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lrlab}
installed=$(python3 -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
case "$installed" in
    2.10.* | 2.11.* | 2.13.*) torch=${installed%.*}.0 ;;
    *)
        torch=2.13.0
        # No usable PyTorch of the machine's own: run both sides on the wheel `make` installs.
        export PYTHONPATH="$cache/torch-2.13.0${PYTHONPATH:+:$PYTHONPATH}"
        if ! python3 -c "import torchvision" 2>/dev/null; then
            python3 -m pip install -q --no-deps --target "$cache/torchvision" torchvision==0.28.0 || true
            export PYTHONPATH="$cache/torchvision:$PYTHONPATH"
        fi
        ;;
esac
make gpu-bundle TORCH="$torch"
exec dist/gpu-check/run.sh "$results"

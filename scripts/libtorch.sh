#!/usr/bin/env bash
# Install libtorch from the official PyPI wheel torch==VERSION (default 2.13.0, the version
# tch 0.26 is built for; `make bundle TORCH=...` asks for others) into a cache the project
# owns, only when it is missing. Prints nothing on success when the
# install is already there, so a second run is silent and instant.
#
# Usage: scripts/libtorch.sh DIR [VERSION]    (DIR/torch/lib/libtorch.so is the result)
set -euo pipefail
dir=${1:?usage: scripts/libtorch.sh DIR [VERSION]}
version=${2:-2.13.0}
if [ -f "$dir/torch/lib/libtorch.so" ] && grep -q "__version__ = '$version" "$dir/torch/version.py" 2>/dev/null; then
    exit 0
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "lrlab setup: installing python3-pip (needed to fetch the torch wheel)" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
    else
        echo "lrlab setup: python3 with pip is needed to fetch libtorch; run: sudo apt-get install python3-pip" >&2
        exit 1
    fi
fi
echo "lrlab setup: installing torch==$version (libtorch) into $dir (several GB, once)" >&2
mkdir -p "$(dirname "$dir")"
rm -rf "$dir.partial"
# --target installs outside any Python environment (no venv, no system packages touched);
# the nvidia-* libraries land beside torch/, where libtorch's own RPATH looks for them.
python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$dir.partial" "torch==$version"
rm -rf "$dir"
mv "$dir.partial" "$dir"
echo "lrlab setup: libtorch ready at $dir/torch" >&2

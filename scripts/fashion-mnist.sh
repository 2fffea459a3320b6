#!/usr/bin/env bash
# Make sure Debian's Fashion-MNIST (IDX files) is present for the demo and the real-data tests.
set -euo pipefail
d=/usr/share/datasets/fashion-mnist
[ -f "$d/train-images-idx3-ubyte.gz" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "lrlab setup: installing Debian's dataset-fashion-mnist" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
else
    echo "lrlab setup: Fashion-MNIST is missing; run: sudo apt-get install dataset-fashion-mnist" >&2
    exit 1
fi

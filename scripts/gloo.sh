#!/usr/bin/env bash
# Make sure gloo's headers are present (Debian's libgloo-dev): lrlab's c10d shim needs them as
# declarations to train one run over several processes (gloo's code itself is inside
# libtorch). Without them lrlab still builds, without multi-process training.
set -euo pipefail
[ -f /usr/include/gloo/config.h ] && exit 0
[ -n "${LRLAB_GLOO_INCLUDE:-}" ] && [ -f "$LRLAB_GLOO_INCLUDE/gloo/config.h" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "lrlab setup: installing Debian's libgloo-dev (headers for multi-process training)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgloo-dev >/dev/null
else
    echo "lrlab setup: gloo's headers are missing, so multi-process training is left out; to have it: sudo apt-get install libgloo-dev" >&2
fi

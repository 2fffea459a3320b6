#!/usr/bin/env bash
# lrlab, built for torch @TORCH@, run on the PyTorch installed on this machine.
# It finds libtorch through `python3 -c 'import torch'` (LRLAB_PYTHON names another
# interpreter), or takes LRLAB_TORCH_LIB, the folder that holds libtorch.so. The release must
# be @TORCH@'s (same major.minor): libtorch's C++ interface changes between releases.
set -euo pipefail
built_for=@TORCH@
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
if [ -n "${LRLAB_TORCH_LIB:-}" ]; then
    lib=$LRLAB_TORCH_LIB
    from="LRLAB_TORCH_LIB"
else
    py=${LRLAB_PYTHON:-python3}
    if ! lib=$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null); then
        echo "lrlab: no PyTorch found: '$py -c \"import torch\"' failed; install torch==$built_for, or set LRLAB_TORCH_LIB to the folder holding libtorch.so" >&2
        exit 2
    fi
    from="the torch package of $py"
fi
if [ ! -f "$lib/libtorch.so" ]; then
    echo "lrlab: $lib (from $from) holds no libtorch.so" >&2
    exit 2
fi
version=
if [ -f "$lib/../version.py" ]; then
    version=$(sed -n "s/^__version__ = ['\"]\([^'\"]*\)['\"].*/\1/p" "$lib/../version.py")
elif [ -f "$lib/../build-version" ]; then
    version=$(head -n1 "$lib/../build-version")
fi
if [ -z "$version" ]; then
    echo "lrlab: cannot tell the release of the libtorch in $lib (from $from): neither ../version.py nor ../build-version says it" >&2
    exit 2
fi
release=${version%%+*}
if [ "${release%.*}" != "${built_for%.*}" ]; then
    echo "lrlab: this build is for torch $built_for, but the libtorch in $lib (from $from) is torch $version; use the bundle built for ${release%.*}.x (make bundle TORCH=$release) or install torch==$built_for" >&2
    exit 2
fi
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$here/libexec/lrlab" "$@"

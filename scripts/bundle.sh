#!/usr/bin/env bash
# Build lrlab for an installed PyTorch release, without touching the checkout's own build.
#
# Usage: scripts/bundle.sh VERSION build    -> dist/lrlab-torchVERSION/ (launcher + stripped binary)
#        scripts/bundle.sh VERSION check    -> the CPU test suite against that release
#        scripts/bundle.sh VERSION tests    -> also builds the test binaries; prints their paths
#
# A copy of the sources (tracked and new files) is built in target/torch-VERSION/ with the
# tch release made for VERSION pinned in a copy of the manifest, against the PyPI wheel of
# VERSION installed into the cache like the default one. The binary carries no library path
# of this machine: the launcher finds the PyTorch installed where it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: scripts/bundle.sh VERSION build|check|tests}
what=${2:-build}
case "$version" in
    2.10.0) tch=0.23.0 ;;
    2.11.0) tch=0.24.0 ;;
    2.13.0) tch=0.26.0 ;;
    *) echo "bundle: TORCH=$version is not supported; supported releases: 2.10.0, 2.11.0, 2.13.0" >&2; exit 2 ;;
esac
case "$what" in build | check | tests) ;; *) echo "bundle: unknown action '$what' (build, check or tests)" >&2; exit 2 ;; esac
cache=${LRLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lrlab}
cargo=${CARGO:-cargo}
scripts/libtorch.sh "$cache/torch-$version" "$version"
libtorch="$cache/torch-$version/torch"

work="target/torch-$version"
tree="$work/tree"
mkdir -p "$tree"
# A fresh copy of the sources each time (cargo rebuilds only what changed: it compares
# contents' times, and cp -p keeps them).
rm -rf "$tree/src" "$tree/tests" "$tree/benches" "$tree/examples"
if git rev-parse --git-dir >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
        | xargs -0 cp -p --parents -t "$tree"
    commit=$(git rev-parse HEAD)
    [ -z "$(git status --porcelain 2>/dev/null)" ] || commit="$commit-dirty"
    export LRLAB_GIT_COMMIT=$commit
else
    for f in Cargo.toml Cargo.lock build.rs src tests benches examples runs; do
        [ -e "$f" ] && cp -pr "$f" "$tree/"
    done
fi
sed -i -e "s/^tch = \"=[0-9.]*\"/tch = \"=$tch\"/" -e "s/^torch-sys = \"=[0-9.]*\"/torch-sys = \"=$tch\"/" "$tree/Cargo.toml"
grep -q "^tch = \"=$tch\"" "$tree/Cargo.toml" || { echo "bundle: could not pin tch $tch in the manifest copy" >&2; exit 1; }

export LIBTORCH="$libtorch" LRLAB_NO_RPATH=1 CARGO_TARGET_DIR="$PWD/$work/target"
export LD_LIBRARY_PATH="$libtorch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Not --locked: the lock file is the checkout's, and cargo moves only tch's own dependencies.
case "$what" in
    check)
        (cd "$tree" && "$cargo" test --release)
        exit ;;
    tests)
        (cd "$tree" && "$cargo" test --release --no-run --message-format=json 2>/dev/null) \
            | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])'
        exit ;;
esac
(cd "$tree" && "$cargo" build --release)

out="dist/lrlab-torch$version"
rm -rf "$out.partial"
mkdir -p "$out.partial/libexec"
strip -o "$out.partial/libexec/lrlab" "$CARGO_TARGET_DIR/release/lrlab"
sed "s/@TORCH@/$version/" scripts/bundle-launcher.sh > "$out.partial/lrlab"
chmod +x "$out.partial/lrlab"
rm -rf "$out"
mv "$out.partial" "$out"
echo "bundle: $out/lrlab (built for torch $version, $(du -sh "$out" | cut -f1))" >&2

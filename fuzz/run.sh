#!/usr/bin/env bash
# Run every fuzz target for SECONDS seconds each (default 120), one job at a time.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`), and LIBTORCH set as
# for the main build. The targets link libtorch, which AddressSanitizer does not take, so
# they are built without a sanitizer (`-s none`): panics, aborts, out-of-memory (-rss_limit_mb)
# and hangs (-timeout) are still caught. Each target starts from its committed inputs in
# fuzz/regressions/<target>/ and grows a working corpus in fuzz/corpus/<target>/ (ignored by
# git); crashes land in fuzz/artifacts/<target>/. Copy a fixed crash into
# fuzz/regressions/<target>/ so that `cargo test --test fuzz_regressions` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-120}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx cifar run_config sweep_spec jpeg)
: "${LIBTORCH:?set LIBTORCH to the libtorch folder, as for the main build}"
# The lrlab library links libtorch; its rpath reaches lrlab's own binaries only.
export LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cargo +nightly fuzz build -s none
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "== $t: ${secs}s" >&2
  cargo +nightly fuzz run -s none "$t" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192
done

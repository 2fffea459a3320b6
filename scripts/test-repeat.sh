#!/usr/bin/env bash
# Run the whole test suite N times in a row (default 5) and stop at the first failure: the
# proof that no test passes by luck of timing or seed. Extra arguments go to `cargo test`,
# e.g. `scripts/test-repeat.sh 30 --test models` for one suite.
set -uo pipefail
n="${1:-5}"
shift || true
case "$n" in '' | *[!0-9]*) echo "test-repeat: N must be a whole number, got '$n'" >&2; exit 2 ;; esac
log="$(mktemp "${TMPDIR:-/tmp}/lrlab-test-repeat.XXXXXX")"
trap 'rm -f "$log"' EXIT
cargo="${CARGO:-cargo}"
# Build once up front so that the rounds time only the tests.
"$cargo" test --release --locked --no-run "$@" >/dev/null 2>&1 || "$cargo" test --release --locked --no-run "$@" || exit 1
start=$SECONDS
for i in $(seq 1 "$n"); do
    t=$SECONDS
    if "$cargo" test --release --locked "$@" >"$log" 2>&1; then
        echo "test-repeat: round $i/$n passed ($((SECONDS - t)) s)"
    else
        echo "test-repeat: round $i/$n FAILED after $((i - 1)) passing round(s); its output:" >&2
        grep -E "FAILED|^---- |panicked at" "$log" | head -40 >&2
        echo "--- last 60 lines ---" >&2
        tail -60 "$log" >&2
        exit 1
    fi
done
echo "test-repeat: $n/$n rounds passed in $((SECONDS - start)) s"

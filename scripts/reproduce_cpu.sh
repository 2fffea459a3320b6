#!/usr/bin/env bash
# The CPU-scale reproductions: run each sweep of runs/cpu/ (resuming what is done), write its
# report, and copy what a paper or a reader needs into results/cpu/<sweep>/: the sweep spec,
# summary.csv, summary_by_point.csv, curves.csv (every run's per-epoch curve), report.md with
# its figures, each run's range test (lr_find.csv, suggestion.json) and snapshot-ensemble
# table (ensemble.csv) when it has one. Checkpoints stay in the sweep folder.
#
#   scripts/reproduce_cpu.sh                       # all three (about an hour on 2 cores)
#   scripts/reproduce_cpu.sh runs/cpu/sgdr.toml    # one
#
# Environment: LRLAB (the binary, default target/release/lrlab), OUT (sweep folders, default
# out), RESULTS (default results/cpu), JOBS (runs at once, default 2).
set -euo pipefail
LRLAB=${LRLAB:-target/release/lrlab}
OUT=${OUT:-out}
RESULTS=${RESULTS:-results/cpu}
JOBS=${JOBS:-2}
specs=("$@")
[ ${#specs[@]} -gt 0 ] || specs=(runs/cpu/super_convergence.toml runs/cpu/sgdr.toml runs/cpu/clr.toml)

for spec in "${specs[@]}"; do
    name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$spec" | head -1)
    [ -n "$name" ] || name=$(basename "$spec" .toml)
    dir="$OUT/$name"
    echo "== $spec -> $dir"
    "$LRLAB" sweep "$spec" --out "$dir" --jobs "$JOBS" --quiet
    if "$LRLAB" ensemble --help >/dev/null 2>&1 && grep -q 'snapshots *= *"restarts"' "$spec"; then
        "$LRLAB" ensemble "$dir"
    fi
    "$LRLAB" report "$dir" >/dev/null
    dest="$RESULTS/$name"
    rm -rf "$dest"
    mkdir -p "$dest/figures"
    cp "$dir/sweep.toml" "$dir/summary.csv" "$dir/summary_by_point.csv" "$dir/curves.csv" \
        "$dir/report.md" "$dest/"
    cp "$dir"/figures/* "$dest/figures/"
    for run in "$dir"/*/; do
        r=$(basename "$run")
        for f in lr_find/lr_find.csv lr_find/suggestion.json ensemble.csv config.auto.toml; do
            if [ -f "$run/$f" ]; then
                mkdir -p "$dest/runs/$r/$(dirname "$f")"
                cp "$run/$f" "$dest/runs/$r/$f"
            fi
        done
    done
    echo "   $dest"
done

#!/usr/bin/env bash
# The CPU-scale reproductions: run each sweep of runs/cpu/ (resuming what is done), write its
# report, and copy what a paper or a reader needs into results/cpu/<sweep>/: the sweep spec,
# summary.csv, summary_by_point.csv, curves.csv (every run's per-epoch curve), report.md with
# its figures, each run's range test (lr_find.csv, suggestion.json) and snapshot-ensemble
# table (ensemble.csv) when it has one, and a sweep with several seeds and snapshots gets the
# ensembles across its seeds (ensemble_across_seeds.csv). Checkpoints stay in the sweep folder.
#
#   scripts/reproduce_cpu.sh                       # all of them (about an hour on 2 cores)
#   scripts/reproduce_cpu.sh runs/cpu/sgdr.toml    # one
#
# runs/cpu/hf_lr*.toml are run configs, not sweeps: `lrlab hf-lr` writes the super-convergence
# paper's Hessian-free estimates (the authors' two scripts' windows) into results/cpu/hf_lr*/.
#
# Environment: LRLAB (the binary, default target/release/lrlab), OUT (sweep folders, default
# out), RESULTS (default results/cpu), JOBS (runs at once, default 2).
set -euo pipefail
LRLAB=${LRLAB:-target/release/lrlab}
OUT=${OUT:-out}
RESULTS=${RESULTS:-results/cpu}
JOBS=${JOBS:-2}
specs=("$@")
[ ${#specs[@]} -gt 0 ] || specs=(runs/cpu/super_convergence.toml runs/cpu/sgdr.toml runs/cpu/clr.toml runs/cpu/hf_lr.toml runs/cpu/hf_lr_f999.toml runs/cpu/hf_lr_stride10.toml)

for spec in "${specs[@]}"; do
    base=$(basename "$spec" .toml)
    case "$base" in
        hf_lr | hf_lr_f999) hf=(--steps 299 --every 1) ;;  # windows 1-297, as L2TermComputation3.py
        hf_lr_stride10) hf=(--steps 310 --every 10) ;;  # windows 10-290, as L2TermComputation4.py
        *) hf=() ;;
    esac
    if [ ${#hf[@]} -gt 0 ]; then
        echo "== $spec -> $RESULTS/$base"
        "$LRLAB" hf-lr "$spec" "${hf[@]}" --out "$RESULTS/$base" >/dev/null
        cp "$spec" "$RESULTS/$base/"
        "$LRLAB" report "$RESULTS/$base" >/dev/null
        continue
    fi
    name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$spec" | head -1)
    [ -n "$name" ] || name=$(basename "$spec" .toml)
    dir="$OUT/$name"
    echo "== $spec -> $dir"
    "$LRLAB" sweep "$spec" --out "$dir" --jobs "$JOBS" --quiet
    extra=()
    if "$LRLAB" ensemble --help >/dev/null 2>&1 && grep -q 'snapshots *= *"restarts"' "$spec"; then
        "$LRLAB" ensemble "$dir"
        # Table 2's N > 1: the seeds of each grid point together.
        if grep -q '^seeds *= *\[[^],]*,' "$spec"; then
            "$LRLAB" ensemble "$dir" --across-seeds --quiet
            extra+=("$dir/ensemble_across_seeds.csv")
        fi
    fi
    "$LRLAB" report "$dir" >/dev/null
    dest="$RESULTS/$name"
    rm -rf "$dest"
    mkdir -p "$dest/figures"
    cp "$dir/sweep.toml" "$dir/summary.csv" "$dir/summary_by_point.csv" "$dir/curves.csv" \
        "$dir/report.md" "${extra[@]}" "$dest/"
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

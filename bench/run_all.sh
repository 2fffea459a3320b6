#!/usr/bin/env bash
# Every benchmark of lrlab, on this machine, printed as ONE markdown table followed by a
# description of the machine:
#
#   bench/run_all.sh > bench/RESULTS.md        # full run (about 10 minutes on 2 quiet cores)
#   QUICK=1 bench/run_all.sh                   # smoke run: few steps and rounds, no measurement
#
# Pairs (lrlab vs a reference) run alternately, A B A B ..., so machine drift hits both; each
# round gives one ratio and the table shows the median ratio and its min-max:
#   - training, resnet20 and resnet56 at batch 128, THREADS threads, CPU, synthetic data:
#     `lrlab bench train` vs bench/train_pytorch.py (PyTorch eager), images/s;
#   - ImageNet-style loading on one core (decode a JPEG, RandomResizedCrop 224, flip):
#     examples/bench_imagenet.rs vs bench/imagenet_torchvision.py (torchvision + Pillow),
#     images/s, on JPEGs of ImageNet sizes written by scripts/make_jpegs.py; then on THREADS
#     cores (lrlab's threads vs a torch DataLoader with THREADS worker processes), and
#     lrlab's scaling from 1 to THREADS cores;
#   - schedules: per training step, lr(k) and momentum(k) (`lrlab bench schedule`) vs
#     scheduler.step() and reading the param group (bench/schedule_pytorch.py), per family.
# Single-sided figures, also over several rounds:
#   - CIFAR-10 loader / training: `lrlab bench data` on CIFAR-10 binary files of the true size
#     (written by bench/make_cifar10.py to a temporary folder), crop pad 4 + flip + normalise,
#     THREADS-1 workers (at least 1) and one consuming thread, i.e. what a run with THREADS
#     cores uses, divided by lrlab's resnet20 training images/s of the same round;
#   - data-parallel: `lrlab bench train --nproc THREADS` (resnet20, batch 128 split over
#     THREADS processes of one thread, gradients all-reduced in flat buckets) vs one process
#     with THREADS threads, images/s (when lrlab was built with multi-process training);
#   - harness overhead: `lrlab bench train --overhead` (schedule, bookkeeping and logging
#     time as a share of the resnet20 batch-128 CPU step);
#   - sweep efficiency: SWEEP_RUNS identical short LeNet runs on synthetic 28x28 data with
#     `lrlab sweep --jobs 2` (1 training thread and 1 loader worker per run) against the ideal
#     split: the sum of each run's time alone with the same settings, divided by 2.
#
# Environment: QUICK=1 (smoke run), THREADS (default 2), ROUNDS (default 5; QUICK 2),
# LRLAB_CACHE (default ~/.cache/lrlab: the torch wheel of `make`, and where this script
# installs torchvision, Pillow and numpy with pip and keeps its JPEGs).
# Progress goes to stderr, the table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
quick=${QUICK:-0}
threads=${THREADS:-2}
cache=${LRLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lrlab}
tv="$cache/torchvision"
export PYTHONPATH="$cache/torch-2.13.0${PYTHONPATH:+:$PYTHONPATH}"
if [ "$quick" = 1 ]; then
    rounds=${ROUNDS:-2}
    r20_steps=2 r56_steps=1 warmup=1 sched_steps=200000 sched_steps_py=2000
    jpegs=100 loader_batches=20 sweep_runs=4 sweep_size=512 sweep_rounds=1
else
    rounds=${ROUNDS:-5}
    r20_steps=8 r56_steps=6 warmup=2 sched_steps=1000000 sched_steps_py=10000
    jpegs=500 loader_batches=200 sweep_runs=4 sweep_size=4096 sweep_rounds=3
fi
# Targets. Pairs: lrlab's speed over the reference's (> 1: lrlab faster).
target_train=">= 1.0" target_jpeg=">= 1.3" target_sched=">= 1.0"
target_loader=">= 20" target_overhead="< 0.5" target_sweep="<= 1.1"
# Splitting one run over processes on the same cores should cost at most 10%.
target_dp=">= 0.9"
# Loading should scale with cores: at least 90% of linear.
target_scaling=$(python3 -c "print(round(0.9 * $threads, 2))")

log() { echo "[run_all $(($(date +%s) - started))s] $*" >&2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
records="$tmp/records.tsv"
: >"$records"
# rec LABEL MODE TARGET UNIT A B: one round of a row. MODE says how the ratio is formed:
# speed (A/B), time (B/A: lower A is better), pct (100*A/B), ratio (A/B, single-sided).
rec() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$records"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# done_or_die DIR...: every run folder finished (a diverged run would time less work).
done_or_die() {
    for d in "$@"; do
        grep -q '"status": "done"' "$d/status.json" 2>/dev/null ||
            { echo "run_all: the run in $d did not finish; see its status.json" >&2; exit 1; }
    done
}
secs() { python3 -c 'import time; print(time.perf_counter())'; }

# Build lrlab and the ImageNet example (a no-op when up to date). A user's own LIBTORCH wins,
# as in the Makefile; otherwise `make libtorch` installs the wheel and links .libtorch, which
# .cargo/config.toml gives to cargo.
if [ -z "${LIBTORCH:-}${LIBTORCH_USE_PYTORCH:-}" ]; then
    make --no-print-directory libtorch >&2
fi
log "building"
cargo build --release --locked --bin lrlab --example bench_imagenet >&2
out_dir=${CARGO_TARGET_DIR:-target}/release
bin="$out_dir/lrlab"
# Multi-process training needs the c10d shim (Gloo headers at build time) and 2+ threads.
multi=0
if [ "$threads" -gt 1 ] && "$bin" info 2>/dev/null | grep -q '^multi-process training: yes'; then
    multi=1
fi
pin=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin=(taskset -c 1); fi

# torchvision, Pillow, numpy for the ImageNet reference and the JPEG writer (as gpu-check.sh).
have_tv=1
if ! PYTHONPATH="$tv:$PYTHONPATH" python3 -c "import torchvision, PIL, numpy" 2>/dev/null; then
    log "installing torchvision 0.28.0, Pillow, numpy into $tv"
    python3 -m pip install -q --no-deps --target "$tv" torchvision==0.28.0 pillow numpy >&2 || have_tv=0
fi
# numpy there also spares torch its warning about a missing numpy.
if [ "$have_tv" = 1 ]; then export PYTHONPATH="$tv:$PYTHONPATH"; fi
jpeg_dir="$cache/bench-jpegs-$jpegs"
if [ "$have_tv" = 1 ] && [ ! -f "$jpeg_dir/.complete" ]; then
    log "writing $jpegs JPEGs to $jpeg_dir (once)"
    rm -rf "$jpeg_dir"
    PYTHONPATH="$tv:$PYTHONPATH" python3 scripts/make_jpegs.py "$jpeg_dir" "$jpegs" >&2
    touch "$jpeg_dir/.complete"
fi
log "writing synthetic CIFAR-10 binaries"
python3 bench/make_cifar10.py "$tmp/cifar" >&2

# The sweep: SWEEP_RUNS seeds of one LeNet config; alone, each run is a fresh `lrlab train`.
cat >"$tmp/run.toml" <<EOF
[data]
dataset = "synthetic"
shape = [1, 28, 28]
size = $sweep_size
test_size = 512
workers = 1
[model]
arch = "lenet"
[optim]
momentum = 0.9
[train]
epochs = 2
batch_size = 64
threads = 1
[schedule]
kind = "cosine"
lr_max = 0.01
EOF
{
    echo "name = \"bench-sweep\""
    echo "seeds = [$(seq -s, 0 $((sweep_runs - 1)))]"
    sed -e 's/^\[\([a-z]*\)\]$/[base.\1]/' "$tmp/run.toml"
} >"$tmp/sweep.toml"

r20="Training resnet20, batch 128, $threads threads (img/s; ref: PyTorch eager)"
r56="Training resnet56, batch 128, $threads threads (img/s; ref: PyTorch eager)"
for ((i = 1; i <= rounds; i++)); do
    log "round $i/$rounds: training"
    for spec in "resnet20 $r20_steps" "resnet56 $r56_steps"; do
        set -- $spec
        a=$("$bin" bench train --model "$1" --batch 128 --steps "$2" --warmup "$warmup" \
            --threads "$threads" --device cpu --json | json 'd["images_per_sec"]')
        b=$(python3 bench/train_pytorch.py --model "$1" --batch 128 --steps "$2" \
            --warmup "$warmup" --threads "$threads" --device cpu | json 'd["images_per_sec"]')
        if [ "$1" = resnet20 ]; then
            label=$r20 train20=$a
        else
            label=$r56
        fi
        rec "$label" speed "$target_train" "img/s" "$a" "$b"
    done
    if [ "$multi" = 1 ]; then
        # One run split over $threads processes of 1 thread each (c10d, Gloo, gradients in flat
        # buckets) against one process on the same cores.
        "$bin" bench train --model resnet20 --batch 128 --steps "$r20_steps" --warmup "$warmup" \
            --device cpu --nproc "$threads" --json >"$tmp/dp.json"
        rec "Data-parallel resnet20, batch 128: $threads processes x 1 thread (img/s; ref: 1 process x $threads threads)" \
            speed "$target_dp" "img/s" "$(json 'd["ranks"]["images_per_sec"]' <"$tmp/dp.json")" \
            "$(json 'd["one_process"]["images_per_sec"]' <"$tmp/dp.json")"
    fi

    log "round $i/$rounds: loader"
    loader=$("$bin" bench data --dataset cifar10 --path "$tmp/cifar" --augment crop_flip \
        --batch 128 --batches "$loader_batches" --workers $((threads > 1 ? threads - 1 : 1)) \
        --threads 1 --json | json 'd["images_per_sec"]')
    rec "CIFAR-10 loader (crop pad 4 + flip + normalise) / resnet20 training, $threads threads (img/s)" \
        ratio "$target_loader" "img/s" "$loader" "$train20"

    if [ "$have_tv" = 1 ]; then
        log "round $i/$rounds: ImageNet-style loading"
        a=$("${pin[@]}" "$out_dir/examples/bench_imagenet" "$jpeg_dir" "$jpegs" 1 224 1 |
            sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p')
        b=$(PYTHONPATH="$tv:$PYTHONPATH" "${pin[@]}" python3 bench/imagenet_torchvision.py \
            "$jpeg_dir" --n "$jpegs" --repeat 1 | sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p')
        rec "ImageNet-style loading, 1 core: JPEG decode + RandomResizedCrop 224 + flip (img/s; ref: torchvision + Pillow)" \
            speed "$target_jpeg" "img/s" "$a" "$b"
        if [ "$threads" -gt 1 ]; then
            # The same work on every core: lrlab's threads vs a torch DataLoader's worker
            # processes (batches of 64, as a training script collates them).
            an=$("$out_dir/examples/bench_imagenet" "$jpeg_dir" "$jpegs" "$threads" 224 1 |
                sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p')
            bn=$(PYTHONPATH="$tv:$PYTHONPATH" python3 bench/imagenet_torchvision.py "$jpeg_dir" \
                --n "$jpegs" --repeat 1 --workers "$threads" | sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p')
            rec "ImageNet-style loading, $threads cores: the same (img/s; ref: torchvision + Pillow, DataLoader with $threads worker processes)" \
                speed "$target_jpeg" "img/s" "$an" "$bn"
            rec "ImageNet-style loading, scaling from 1 to $threads cores (lrlab img/s on $threads cores; ref: lrlab img/s on 1 core)" \
                ratio ">= $target_scaling" "img/s" "$an" "$a"
        fi
    fi

    log "round $i/$rounds: schedules"
    "$bin" bench schedule --steps "$sched_steps" --json >"$tmp/sched_a.json"
    python3 bench/schedule_pytorch.py --steps "$sched_steps_py" >"$tmp/sched_b.json"
    python3 - "$tmp/sched_a.json" "$tmp/sched_b.json" "$target_sched" >>"$records" <<'PY'
import json, sys
a = {f["family"]: f["ns_per_step"] for f in json.load(open(sys.argv[1]))["families"]}
b = {f["family"]: f["ns_per_step"] for f in json.load(open(sys.argv[2]))["families"]}
for name, ns in b.items():
    label = f"Schedule {name}: one step's lr + momentum (ns/step; ref: torch.optim.lr_scheduler)"
    print(f"{label}\ttime\t{sys.argv[3]}\tns/step\t{a[name]}\t{ns}")
PY

    log "round $i/$rounds: harness overhead"
    "$bin" bench train --overhead --model resnet20 --batch 128 --steps "$r20_steps" \
        --warmup "$warmup" --threads "$threads" --json >"$tmp/overhead.json"
    rec "Harness overhead of the resnet20 batch-128 CPU step: schedule + bookkeeping + logging (µs/step; ref: whole step)" \
        pct "$target_overhead" "µs" \
        "$(json 'd["schedule_us"] + d["bookkeeping_us"] + d["logging_us"]' <"$tmp/overhead.json")" \
        "$(json 'd["step_us"]' <"$tmp/overhead.json")"
done

for ((i = 1; i <= sweep_rounds; i++)); do
    log "sweep round $i/$sweep_rounds: $sweep_runs runs alone"
    alone=0
    for ((s = 0; s < sweep_runs; s++)); do
        t0=$(secs)
        "$bin" train "$tmp/run.toml" --set "train.seed=$s" --out "$tmp/alone-$i-$s" --quiet \
            >/dev/null 2>&1
        done_or_die "$tmp/alone-$i-$s"
        alone=$(python3 -c "print($alone + $(secs) - $t0)")
    done
    log "sweep round $i/$sweep_rounds: lrlab sweep --jobs 2"
    t0=$(secs)
    "$bin" sweep "$tmp/sweep.toml" --out "$tmp/sweep-$i" --devices cpu --jobs 2 --quiet \
        >/dev/null 2>&1
    wall=$(python3 -c "print($(secs) - $t0)")
    done_or_die "$tmp/sweep-$i"/seed=*
    rec "Sweep of $sweep_runs LeNet runs, --jobs 2, vs the ideal split (s; ref: sum of the runs alone / 2)" \
        ratio "$target_sweep" "s" "$wall" "$(python3 -c "print($alone / 2)")"
done

log "done in $(($(date +%s) - started)) s"
# The table, then the machine.
python3 - "$records" "$quick" "$rounds" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, mode, target, unit, a, b = line.rstrip("\n").split("\t")
    rows.setdefault(label, (mode, target, unit, []))[3].append((float(a), float(b)))
def ratio(mode, a, b):
    return {"speed": a / b, "time": b / a, "pct": 100 * a / b, "ratio": a / b}[mode]
def fmt(x):
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"
def met(target, x):
    op, v = target.split()
    v = float(v)
    return {">=": x >= v, "<=": x <= v, "<": x < v, ">": x > v}[op]
print("| benchmark | lrlab | reference | ratio (median, min-max) | target | met? |")
print("|---|---|---|---|---|---|")
for label, (mode, target, unit, pairs) in rows.items():
    a = statistics.median(p[0] for p in pairs)
    b = statistics.median(p[1] for p in pairs)
    r = [ratio(mode, *p) for p in pairs]
    m = statistics.median(r)
    pct = "%" if mode == "pct" else ""
    print(f"| {label} | {fmt(a)} {unit} | {fmt(b)} {unit} | {fmt(m)}{pct} ({fmt(min(r))}-{fmt(max(r))}{pct}, "
          f"{len(r)} rounds) | {target}{pct} | {'yes' if met(target, m) else 'no'} |")
print()
print("Ratios: speed rows are lrlab's speed over the reference's (> 1: lrlab faster); the loader "
      "row is loader img/s over training img/s; the scaling row is img/s on all cores over img/s "
      "on one; the overhead row is the harness share of the "
      "step; the sweep row is the sweep's wall time over the ideal split (1 = perfect)."
      + (" QUICK=1 smoke run: few steps and rounds, not a measurement." if sys.argv[2] == "1" else ""))
PY
{
    echo
    echo "Machine and versions:"
    echo
    echo "- CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1 || uname -m), $(nproc) cores available"
    echo "- memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo 2>/dev/null)"
    echo "- OS: $( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") || uname -s), kernel $(uname -r)"
    echo "- torch $(python3 -c 'import torch; print(torch.__version__)'), torchvision $(PYTHONPATH="$tv:$PYTHONPATH" python3 -c 'import torchvision; print(torchvision.__version__)' 2>/dev/null || echo 'not installed'), Python $(python3 -c 'import platform; print(platform.python_version())')"
    echo "- lrlab $("$bin" --version | cut -d' ' -f2), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
    echo "- run: $(date -u '+%Y-%m-%d %H:%M UTC'), $(($(date +%s) - started)) s, $rounds rounds, $threads threads, load average at the end $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)$([ "$quick" = 1 ] && echo ', QUICK=1')"
}

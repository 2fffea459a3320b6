#!/usr/bin/env bash
# The one-shot GPU check of lrlab, built elsewhere (`make gpu-bundle`), run on a GPU machine
# that has only its own PyTorch: no compiler, no network.
#
# Usage: run.sh RESULTS_DIR     (ROUNDS=3 alternated throughput rounds by default)
#
# Steps, stopping at the first failure with the failing command named:
#   info      lrlab info: the libtorch in use, CUDA devices, cuDNN, bf16
#   cpu       a 2-epoch training on the CPU (the bundle runs at all on this PyTorch)
#   train     2 epochs of resnet20 on synthetic data on cuda, fp32; then precision = "auto"
#             (bf16 autocast); their CSVs stay in RESULTS_DIR
#   resume    the same run stopped by SIGTERM mid-run (checkpoint written on the GPU) and
#             resumed, against an uninterrupted one: the LR column must be identical and the
#             rows as many; the loss after resuming is compared (cuDNN is not bitwise
#             deterministic, so it is reported, not required equal)
#   sweep     a 2-run sweep on the one GPU with --per-device 2: both done, both on cuda:0
#   speed     training throughput against PyTorch eager (this machine's torch), bf16 autocast
#             and channels-last on both sides, alternated rounds: resnet56 at batch 1000
#             (32 px) and resnet50 at batch 128 (224 px)
#   tests     the GPU tests (tests/gpu.rs) of the test suite
# Prints one table (also RESULTS_DIR/summary.md). Exit status: 0 all passed, 1 a step failed,
# 2 bad usage or no usable PyTorch, 77 no CUDA device (the CPU steps ran, the rest did not).
#
# To try the script itself where there is no GPU: GPU_CHECK_DEVICE=cpu runs the GPU steps on
# the CPU, and SPEEDS="resnet20 32 32 3" (model batch size steps; ';' between several) sets
# the throughput cases.
set -uo pipefail
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
out=${1:?usage: run.sh RESULTS_DIR}
mkdir -p "$out" && out=$(cd "$out" && pwd)
rounds=${ROUNDS:-3}
dev=${GPU_CHECK_DEVICE:-cuda}
dev0=$([ "$dev" = cpu ] && echo cpu || echo cuda:0)
speeds=${SPEEDS:-resnet56 1000 32 30;resnet50 128 224 30}
lrlab="$here/lrlab/lrlab"
py=${LRLAB_PYTHON:-python3}
rows=()
t_all=$SECONDS

table() {
    {
        echo "| step | result | seconds | detail |"
        echo "|---|---|---|---|"
        printf '%s\n' "${rows[@]}"
    } | tee "$out/summary.md"
}
row() { rows+=("| $1 | $2 | $3 | $4 |"); }
# fail STEP COMMAND LOG: name the failing command, show its log's end, print the table, exit 1.
fail() {
    row "$1" FAILED "-" "\`$2\`"
    echo "run.sh: step $1 failed: $2" >&2
    [ -f "$3" ] && tail -n 25 "$3" >&2
    table
    exit 1
}
# step NAME COMMAND...: run it, logging into RESULTS_DIR/NAME.log; stop at a failure.
step() {
    local name=$1; shift
    local t0=$SECONDS
    if ! "$@" >"$out/$name.log" 2>&1; then
        fail "$name" "$*" "$out/$name.log"
    fi
    last_seconds=$((SECONDS - t0))
}
# The config of the check's trainings: resnet20, synthetic CIFAR-shaped data.
config() { # FILE DEVICE PRECISION EPOCHS SIZE
    cat >"$1" <<TOML
[data]
dataset = "synthetic"
shape = [3, 32, 32]
size = $5
test_size = 512
[model]
arch = "resnet20"
[optim]
momentum = 0.9
weight_decay = 5e-4
[train]
epochs = $4
batch_size = 128
seed = 1
device = "$2"
precision = "$3"
[schedule]
kind = "one_cycle"
max_lr = 0.4
TOML
}
last_row() { tail -n 1 "$1"; }

# info
step info "$lrlab" info
cat "$out/info.log" >&2
devices=$(sed -n 's/^cuda devices: //p' "$out/info.log")
detail="$(sed -n 's/^libtorch: \([^ ]*\).*/libtorch \1/p' "$out/info.log"), $devices GPU(s)"
[ "${devices:-0}" = 0 ] || detail="$detail, cudnn $(sed -n 's/^cudnn: //p' "$out/info.log"), cuda:0 bf16 $(sed -n 's/^cuda:0 bf16: //p' "$out/info.log")"
row info ok "$last_seconds" "$detail"
# The test binary runs on the same libtorch as the launcher found.
lib=${LRLAB_TORCH_LIB:-$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)}

# cpu
config "$out/cpu.toml" cpu fp32 2 2048
step cpu "$lrlab" train "$out/cpu.toml" --out "$out/cpu" --quiet
row cpu ok "$last_seconds" "2 epochs resnet20 (2048 images): $(last_row "$out/cpu/epochs.csv" | awk -F, '{printf "train_loss %.4f, test_acc %.4f", $4, $7}')"

if [ "${devices:-0}" = 0 ] && [ "$dev" != cpu ]; then
    for s in train resume sweep speed tests; do row "$s" skipped "-" "no CUDA device"; done
    table
    echo "run.sh: no CUDA device on this machine (lrlab info: cuda devices: 0): the CPU steps passed, the GPU steps did not run" >&2
    exit 77
fi

# train
config "$out/train_fp32.toml" "$dev" fp32 2 8192
step train "$lrlab" train "$out/train_fp32.toml" --out "$out/train_fp32" --quiet
t=$last_seconds
config "$out/train_bf16.toml" "$dev" auto 2 8192
step train "$lrlab" train "$out/train_bf16.toml" --out "$out/train_bf16" --quiet
t=$((t + last_seconds))
acc() { last_row "$1/epochs.csv" | cut -d, -f7; }
ips() { last_row "$1/epochs.csv" | cut -d, -f10; }
grep -q "\"device\": \"$dev0\"" "$out/train_bf16/meta.json" || fail train "grep device $dev0 $out/train_bf16/meta.json" "$out/train_bf16/meta.json"
row train ok "$t" "2 epochs: fp32 test_acc $(acc "$out/train_fp32") ($(ips "$out/train_fp32") img/s), bf16 test_acc $(acc "$out/train_bf16") ($(ips "$out/train_bf16") img/s)"

# resume: SIGTERM once a third of the steps are logged, then the same command again.
t0=$SECONDS
config "$out/resume.toml" "$dev" auto 4 8192
step resume "$lrlab" train "$out/resume.toml" --out "$out/resume_ref" --quiet
for attempt in 1 2 3 4 5; do
    dir="$out/resume_cut$attempt"
    "$lrlab" train "$out/resume.toml" --out "$dir" --quiet >"$out/resume.log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null && [ "$(wc -l 2>/dev/null <"$dir/steps.csv" || echo 0)" -lt 90 ]; do sleep 0.01; done
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"; code=$?
    [ "$code" = 3 ] && break
    [ "$code" = 0 ] || fail resume "lrlab train $out/resume.toml --out $dir (SIGTERM: exit $code, expected 3)" "$out/resume.log"
done
[ "$code" = 3 ] || fail resume "lrlab train (the run ended before SIGTERM in 5 attempts)" "$out/resume.log"
cut_at=$(($(wc -l <"$dir/steps.csv") - 1))
step resume "$lrlab" train "$out/resume.toml" --out "$dir" --quiet
if ! cmp=$("$py" - "$out/resume_ref/steps.csv" "$dir/steps.csv" "$cut_at" 2>&1 <<'PY'
import csv, sys
a = list(csv.DictReader(open(sys.argv[1])))
b = list(csv.DictReader(open(sys.argv[2])))
cut = int(sys.argv[3])
assert len(a) == len(b), f"{len(a)} rows uninterrupted, {len(b)} resumed"
assert all(x["lr"] == y["lr"] and x["step"] == y["step"] for x, y in zip(a, b)), "lr or step columns differ"
d = max(abs(float(x["loss"]) - float(y["loss"])) / abs(float(x["loss"])) for x, y in zip(a[cut:], b[cut:]))
print(f"cut at step {cut}/{len(a)}; lr identical; loss after resume within {d:.2e} (relative)")
PY
); then
    echo "$cmp" >"$out/resume_compare.log"
    fail resume "compare $out/resume_ref/steps.csv with $dir/steps.csv" "$out/resume_compare.log"
fi
row resume ok "$((SECONDS - t0))" "$cmp"

# sweep: two runs at once on the one GPU.
cat >"$out/sweep.toml" <<TOML
name = "gpu-check"
seeds = [0, 1]
[base.data]
dataset = "synthetic"
shape = [3, 32, 32]
size = 4096
test_size = 512
[base.model]
arch = "resnet20"
[base.train]
epochs = 2
batch_size = 128
device = "$dev"
[base.schedule]
kind = "cosine"
lr_max = 0.1
TOML
step sweep "$lrlab" sweep "$out/sweep.toml" --out "$out/sweep" --devices "$dev" --per-device 2 --quiet
done_runs=$(grep -c ',done,' "$out/sweep/summary.csv" || true)
on_gpu=$(grep -l "\"device\": \"$dev0\"" "$out"/sweep/*/meta.json 2>/dev/null | wc -l)
[ "$done_runs" = 2 ] && [ "$on_gpu" = 2 ] || fail sweep "lrlab sweep: $done_runs of 2 runs done, $on_gpu on $dev0 (see $out/sweep/summary.csv)" "$out/sweep.log"
row sweep ok "$last_seconds" "2 runs, --per-device 2: both done on $dev0"

# speed: lrlab and PyTorch eager alternated, medians and the median ratio.
t0=$SECONDS
IFS=';' read -ra cases <<<"$speeds"
for spec in "${cases[@]}"; do
    set -- $spec
    a=() b=()
    for ((i = 0; i < rounds; i++)); do
        cmd=("$lrlab" bench train --model "$1" --batch "$2" --size "$3" --steps "$4" --device "$dev" --json)
        step speed "${cmd[@]}"
        a+=("$("$py" -c 'import json,sys; print(json.load(sys.stdin)["images_per_sec"])' <"$out/speed.log")")
        cmd=("$py" "$here/bench/train_pytorch.py" --model "$1" --batch "$2" --size "$3" --steps "$4" --device "$dev" --channels-last)
        step speed "${cmd[@]}"
        b+=("$("$py" -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["images_per_sec"])' <"$out/speed.log")")
    done
    line=$("$py" - "$1" "$2" "$3" "${a[*]}" "${b[*]}" <<'PY'
import statistics, sys
m, batch, size, a, b = sys.argv[1:]
a = [float(x) for x in a.split()]
b = [float(x) for x in b.split()]
r = [x / y for x, y in zip(a, b)]
print(f"{m} batch {batch} ({size} px), bf16 + channels-last: lrlab {statistics.median(a):.0f} img/s, "
      f"PyTorch eager {statistics.median(b):.0f} img/s, ratio {statistics.median(r):.3f} "
      f"(min {min(r):.3f}, max {max(r):.3f}, {len(r)} rounds)")
PY
)
    echo "$line" >>"$out/speed.txt"
    row speed ok "$((SECONDS - t0))" "$line"
    t0=$SECONDS
done

# tests
step tests env LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$here/tests/gpu" --test-threads 1 --nocapture
[ "$dev" = cpu ] || ! grep -q "skipped" "$out/tests.log" || fail tests "tests/gpu: a test skipped although lrlab info saw a GPU" "$out/tests.log"
row tests ok "$last_seconds" "$(grep -o '[0-9]* passed' "$out/tests.log" | tail -1) (tests/gpu.rs)"

table
echo "run.sh: all steps passed in $((SECONDS - t_all)) s; results in $out" >&2

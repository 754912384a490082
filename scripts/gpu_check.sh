#!/usr/bin/env bash
# The GPU measurements behind docs/speed.md's tables, most wanted first, each phase under its own time
# limit and every figure written as it is measured (JSON lines), so a run cut short keeps what it got:
#
#   bash scripts/gpu_check.sh OUT                      # the default phases: at most 470 s (8 minutes), grace included
#   bash scripts/gpu_check.sh OUT resnet32 tests       # some phases, in the order given
#
# Default phases, in order: resnet32 (training speed of bf16 + compile=max, then fp32 + TF32 + max, then
# fp32 + TF32 eager; short warm-ups and steps), tests (tests/test_gpu.py), profile (one profiler trace of a
# few compiled iterations: host time a step, waits for the GPU, launches), fid (FID of 5,000 samples;
# never downloads: without the real Inception weights in $TORCH_HOME it times the same network with
# seeded random weights and says so). Named only: others (cnn32, resnet48, cnn48 at the GPU default),
# quality (2,000-step mode coverage of bf16 and compiled training against fp32 eager, seeds 0 and 1),
# augment (FID at 10% of CIFAR-10 without augmentation, with DiffAugment and with ADA: hours; needs
# internet for CIFAR-10 and the Inception weights; docs/augment.md).
# OUT gets env.txt (card, driver, torch), one log per phase, train.jsonl, profile.jsonl, trace.json,
# fid.jsonl, quality.jsonl, and phases.tsv: a line per phase as it ends (exit code, seconds, its limit).
# Needs the project (pip install -e ".[dev]", or a clone: the configs are in the package; PYTHON=... names
# the interpreter if it is not `python`) and a CUDA GPU.
#
#   bash scripts/gpu_check.sh --rehearse OUT           # every phase at tiny size on the CPU: times and budget
#
# The rehearsal runs the same phases and commands on the CPU with tiny models and counts (augment aside: it
# needs CIFAR-10 and hours), and prints each phase's seconds beside its limit and the 15-minute window.
set -uo pipefail
rehearse=0
if [ "${1:-}" = "--rehearse" ]; then
    rehearse=1
    shift
fi
if [ $# -lt 1 ]; then
    echo "usage: bash scripts/gpu_check.sh [--rehearse] OUT [resnet32|tests|profile|fid|others|quality|augment ...]" >&2
    exit 2
fi
out=$1
shift
known=(resnet32 tests profile fid others quality augment)
phases=("$@")
[ ${#phases[@]} -gt 0 ] || phases=(resnet32 tests profile fid) # the default run, most wanted first
for phase in "${phases[@]}"; do
    found=0
    for k in "${known[@]}"; do [ "$phase" = "$k" ] && found=1; done
    if [ $found -eq 0 ]; then
        echo "unknown phase '$phase': choose from ${known[*]}" >&2
        exit 2
    fi
done
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2
cd "$(dirname "$0")/.." || exit 2 # the repository root, where tests/ is
export PYTHONUNBUFFERED=1
py=${PYTHON:-python} # the interpreter with the project installed
bench=("$py" scripts/benchmark.py)

{
    timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    timeout 60 "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} >"$out/env.txt" 2>&1

used=0 budget=0
run_phase() {  # run_phase NAME SECONDS COMMAND...: the command's output goes to OUT/NAME.log
    local name=$1 limit=$2 grace=${GRACE:-5} # SIGTERM, then SIGKILL after the grace (measurements are kept as made)
    shift 2
    echo "== $name (at most ${limit} s)"
    local start=$SECONDS
    timeout -k "$grace" "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$? took=$((SECONDS - start))
    used=$((used + took)) budget=$((budget + limit + grace))
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$took" "$limit" >>"$out/phases.tsv" # as soon as it ends
    echo "   exit $rc after $took s of its $limit s$([ $rc -eq 124 ] || [ $rc -eq 137 ] && echo ' (time limit: what it measured is kept)')"
}

# Sizes: the GPU's, or the rehearsal's tiny ones on the CPU (the same commands and phases). ${a[@]+"${a[@]}"}:
# an empty array under set -u on bash < 4.4 is "unbound".
if [ $rehearse -eq 1 ]; then
    dev=cpu tiny=(--width 0.125 --images 256)
    r32=(--warmup 1 --steps 2 --settings fp32,fp32-default) prof=(--setting fp32 --steps 2 --warmup 1)
    fidargs=(--n 40 --batch 20 --repeats 1 --prdc-n 0 --model cnn32 --width 0.125) oth=(--settings fp32 --warmup 1 --steps 2)
    qual=(--steps 20 --seeds 0 --settings fp32,bf16)
else
    dev=cuda tiny=()
    r32=(--warmup 5 --steps 20 --settings bf16-max,fp32-tf32-max,fp32-tf32) prof=(--setting bf16-max --steps 5)
    fidargs=(--n 5000 --repeats 2) oth=(--settings fp32-tf32-max) qual=()
fi
: >"$out/phases.tsv"
for phase in "${phases[@]}"; do
    case $phase in
    resnet32) run_phase resnet32 175 "${bench[@]}" train --models resnet32 --device $dev ${r32[@]+"${r32[@]}"} ${tiny[@]+"${tiny[@]}"} \
        --out "$out/train.jsonl" ;;
    tests) run_phase tests 165 "$py" -m pytest -o addopts= -v -p no:cacheprovider tests/test_gpu.py ;;
    profile) run_phase profile 60 "$py" scripts/profile_step.py --device $dev ${prof[@]+"${prof[@]}"} ${tiny[@]+"${tiny[@]}"} \
        --out "$out/profile.jsonl" --trace "$out/trace.json" ;;
    fid) run_phase fid 50 "${bench[@]}" fid --device $dev ${fidargs[@]+"${fidargs[@]}"} --offline --out "$out/fid.jsonl" ;;
    others) run_phase others 240 "${bench[@]}" train --models cnn32,resnet48,cnn48 --device $dev ${oth[@]+"${oth[@]}"} \
        ${tiny[@]+"${tiny[@]}"} --out "$out/train.jsonl" ;;
    quality) run_phase quality 420 "${bench[@]}" quality --device $dev ${qual[@]+"${qual[@]}"} --out "$out/quality.jsonl" ;;
    augment)
        if [ $rehearse -eq 1 ]; then
            echo "== augment: not rehearsed (it needs CIFAR-10 and hours)"
        else
            GRACE=30 run_phase augment 21600 "$py" -m sngan.train -m experiment=small_data_cifar10 \
                augment=none,diffaugment,ada device=cuda "hydra.sweep.dir=$out/augment"
        fi
        ;;
    esac
done
# The window: a lent GPU gives 15 minutes in all, its start-up (minutes) included.
echo "phases: $used s measured of their $budget s of limits (grace included); the GPU window is 900 s, start-up included"
[ $rehearse -eq 1 ] && echo "(a rehearsal on the CPU at tiny size: the times say the phases run, not how long the GPU takes)"
exit 0

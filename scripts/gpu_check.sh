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
# fid.jsonl, quality.jsonl. Needs the project installed (pip install -e ".[dev]"; PYTHON=... names the
# interpreter if it is not `python`) and a CUDA GPU.
set -uo pipefail
if [ $# -lt 1 ]; then
    echo "usage: bash scripts/gpu_check.sh OUT [resnet32|tests|profile|fid|others|quality|augment ...]" >&2
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

run_phase() {  # run_phase NAME SECONDS COMMAND...: the command's output goes to OUT/NAME.log
    local name=$1 limit=$2 grace=${GRACE:-5} # SIGTERM, then SIGKILL after the grace (measurements are kept as made)
    shift 2
    echo "== $name (at most ${limit} s)"
    timeout -k "$grace" "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "   exit $rc$([ $rc -eq 124 ] || [ $rc -eq 137 ] && echo ' (time limit: what it measured is kept)')"
}

for phase in "${phases[@]}"; do
    case $phase in
    resnet32) run_phase resnet32 175 "${bench[@]}" train --models resnet32 --device cuda --warmup 5 --steps 20 \
        --settings bf16-max,fp32-tf32-max,fp32-tf32 --out "$out/train.jsonl" ;;
    tests) run_phase tests 165 "$py" -m pytest -o addopts= -v -p no:cacheprovider tests/test_gpu.py ;;
    profile) run_phase profile 60 "$py" scripts/profile_step.py --device cuda --setting bf16-max --steps 5 \
        --out "$out/profile.jsonl" --trace "$out/trace.json" ;;
    fid) run_phase fid 50 "${bench[@]}" fid --device cuda --n 5000 --repeats 2 --offline --out "$out/fid.jsonl" ;;
    others) run_phase others 240 "${bench[@]}" train --models cnn32,resnet48,cnn48 --device cuda \
        --settings fp32-tf32-max --out "$out/train.jsonl" ;;
    quality) run_phase quality 420 "${bench[@]}" quality --device cuda --out "$out/quality.jsonl" ;;
    augment) GRACE=30 run_phase augment 21600 "$py" -m sngan.train -m experiment=small_data_cifar10 \
        augment=none,diffaugment,ada device=cuda "hydra.sweep.dir=$out/augment" ;;
    esac
done

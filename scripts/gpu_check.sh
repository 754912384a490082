#!/usr/bin/env bash
# The GPU measurements behind docs/speed.md's tables, most wanted first, each phase under its own time
# limit and every figure written as it is measured (JSON lines), so a run cut short keeps what it got:
#
#   bash scripts/gpu_check.sh OUT                      # all phases, about 25 minutes on one H100
#   bash scripts/gpu_check.sh OUT resnet32 tests       # some phases, in the order given
#
# Phases: resnet32 (the fp32+TF32 eager, compile=max and bf16+max steps), tests (tests/test_gpu.py),
# fid (FID of 10,000 samples), others (cnn32, resnet48, cnn48 at the GPU default), quality (2,000-step
# mode coverage of bf16 and compiled training against fp32 eager, seeds 0 and 1). OUT gets env.txt (card,
# driver, torch), one log per phase and train.jsonl, fid.jsonl, quality.jsonl. Needs the project
# installed (pip install -e ".[dev]"; PYTHON=... names the interpreter if it is not `python`) and a CUDA
# GPU; without the real Inception weights the FID phase times the same network with seeded random
# weights and says so.
set -uo pipefail
if [ $# -lt 1 ]; then
    echo "usage: bash scripts/gpu_check.sh OUT [tests|resnet32|fid|others|quality ...]" >&2
    exit 2
fi
out=$1
shift
known=(resnet32 tests fid others quality) # the order of a run without phases named
phases=("$@")
[ ${#phases[@]} -gt 0 ] || phases=("${known[@]}")
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
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} >"$out/env.txt" 2>&1

run_phase() {  # run_phase NAME SECONDS COMMAND...: the command's output goes to OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s)"
    timeout -k 30 "$limit" "$@" >"$out/$name.log" 2>&1 # a run stopped by SIGTERM saves first: 30 s more
    local rc=$?
    echo "   exit $rc$([ $rc -eq 124 ] || [ $rc -eq 137 ] && echo ' (time limit: what it measured is kept)')"
}

for phase in "${phases[@]}"; do
    case $phase in
    tests) run_phase tests 420 "$py" -m pytest -n0 -q -p no:cacheprovider tests/test_gpu.py ;;
    resnet32) run_phase resnet32 300 "${bench[@]}" train --models resnet32 --device cuda \
        --settings fp32-tf32,fp32-tf32-max,bf16-max --out "$out/train.jsonl" ;;
    fid) run_phase fid 120 "${bench[@]}" fid --device cuda --repeats 2 --out "$out/fid.jsonl" ;;
    others) run_phase others 240 "${bench[@]}" train --models cnn32,resnet48,cnn48 --device cuda \
        --settings fp32-tf32-max --out "$out/train.jsonl" ;;
    quality) run_phase quality 420 "${bench[@]}" quality --device cuda --out "$out/quality.jsonl" ;;
    esac
done

#!/usr/bin/env bash
# Where the SMA kernel's cycles go, beside SDPA's (GPU; Nsight Compute). Issue 5's kernel is 1.30x
# SDPA's time at S >= 1024 and timing variants alone (the tile sweep) cannot say whether the
# softmax's issue slots, the tensor pipe or the waits between them hold it back; ncu's stall
# sampling and pipe counters can. Profiles, at B=3 H=10 S=4096 D=64 fp16 (the target's largest
# shape), one launch each of:
#   - the launcher's wgmma shape (the sweep's first wgmma row), with its SASS and stall samples;
#   - the same shape with the bias and the row sums by the tensor cores (the sweep's rows), so a
#     variant's counters show what changed;
#   - PyTorch's SDPA without bias (cuDNN's Hopper kernel on the H200), with its SASS.
#
#   bash bench/sma_ncu.sh SWEEP_BINARY OUT_DIR      # gpu_session.sh stage1 and kernel run it
#
# Writes OUT_DIR/sma_ncu.txt (each kernel's sections and raw metrics) and
# OUT_DIR/sma_ncu_sass_{launcher,sdpa}.csv.gz (per-instruction executions and stall samples:
# `ncu --page source --print-source sass --csv`). Clocks are left alone (--clock-control none).
set -euo pipefail

SWEEP=${1:?usage: bash bench/sma_ncu.sh SWEEP_BINARY OUT_DIR}
OUT_DIR=${2:?usage: bash bench/sma_ncu.sh SWEEP_BINARY OUT_DIR}
PY=${PY:-python3}
REPORTS=$(mktemp -d)
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | tail -n 1 || true)
if [[ -z $NCU || ! -x $NCU ]]; then
    echo "sma_ncu: ncu not found on PATH, in /opt/nvidia/nsight-compute or /usr/local/cuda/bin" >&2
    exit 1
fi
"$NCU" --version | tail -n 1

SECTIONS=(--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis
    --section SchedulerStats --section WarpStateStats --section InstructionStats --section Occupancy
    --section LaunchStats --section SourceCounters)
SWEEP_CASE=("$SWEEP" --shape 3,10,4096,64 --once)
SDPA_CASE='
import torch
import torch.nn.functional as F
q, k, v = (torch.randn(3, 10, 4096, 64, device="cuda", dtype=torch.float16) for _ in range(3))
F.scaled_dot_product_attention(q, k, v)
torch.cuda.synchronize()
'

profile() {  # profile NAME NCU_FILTER... COMMAND...: one report, $REPORTS/NAME.ncu-rep
    local name=$1
    shift
    "$NCU" --clock-control none "${SECTIONS[@]}" -f -o "$REPORTS/$name" "$@"
}

# the fp32 reference the sweep launches first is smaForwardFp32: not matched
profile launcher -k regex:smaForwardWgmma -c 1 "${SWEEP_CASE[@]}" --only wgmma
profile variants -k regex:smaForwardWgmma "${SWEEP_CASE[@]}" --only "warpgroups 2, softmax beside P V, at least 2"
profile sdpa -k "regex:flash|fmha|attention" -c 1 "$PY" -c "$SDPA_CASE"

for name in launcher variants sdpa; do
    echo "===== $name: details"
    "$NCU" --import "$REPORTS/$name.ncu-rep" --page details
    echo "===== $name: raw metrics"
    "$NCU" --import "$REPORTS/$name.ncu-rep" --page raw
done >"$OUT_DIR/sma_ncu.txt"
for name in launcher sdpa; do
    "$NCU" --import "$REPORTS/$name.ncu-rep" --page source --print-source sass --csv | gzip >"$OUT_DIR/sma_ncu_sass_$name.csv.gz"
done
ls -l "$OUT_DIR"/sma_ncu*
# the headline figures of each kernel, for the step's log
grep -E '^  [^ ]|Duration|Registers Per Thread|Achieved Occupancy|Issue Slots Busy|Executed Ipc Active|No Eligible' \
    "$OUT_DIR/sma_ncu.txt" | grep -v '^  [a-z_]*__' | head -n 80 || true
rm -rf "$REPORTS"

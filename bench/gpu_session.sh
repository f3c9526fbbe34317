#!/usr/bin/env bash
# Everything GPU-side in two device calls (DESIGN.md section 7): a session with a lent H100/H200
# runs this and records the figures in bench/RESULTS.md. Each step's failure is recorded and the
# next step still runs; every step gets a time limit and a stage stops starting steps at its
# deadline, so each call ends inside the limits below.
#
# Here, once per session (downloads into git-ignored .gpu-carry/, checks the sizes):
#
#   bash scripts/setup-tensorrt-rtx.sh    # TensorRT 10.14 headers in third_party/tensorrt/include
#   bash bench/prepare_gpu_wheels.sh      # .gpu-carry/part1, part2 (TRT-RTX libs wheel), small/
#
# The issues' targets name an H100 and every figure so far is an H200's (its memory is faster;
# the small kernels of a step read memory more than they compute): name kind="nvidia-h100-x1"
# in the first call where status offers it, and compare figures only within one card.
#
# On the lent H100/H200 (sm_90: no stage2) the SMA kernel (issue 5, the one issue open) comes
# first: stage1, then the kernel's second call or bench, then give the machine back. stage1 is the
# SMA kernel and the GPU tests (call G on an H200, 2026-11-27: 308 s, the machine's first start about
# 30 s; ncu added since, about a minute more, not yet timed):
#
#   run(command="bash bench/gpu_session.sh stage1", timeout_s=420,
#       carry=[".gpu-carry/small", "third_party/tensorrt"])
#
# stage1 checks and times the launcher's kernel as committed (after call I its tile loop lost 52 of
# 472 instructions a thread, unmeasured) against call G's 1.30-1.37x SDPA, then sweeps the options
# not yet in the launcher (the bias by mma.sync or by a fifth wgmma step of Q K^T, the row sums by
# the tensor cores, the lazy max; both kernels), and ncu profiles them beside SDPA's kernel (stall
# samples by instruction: what holds the kernel at 1.30x). sma_tile_sweep.md ends with each
# shape's fastest right variant against the launcher's. Where one is faster at S >= 1024 by more
# than 3% and right at every shape, make it the launcher's here (`LauncherWgmmaConfig` in
# sma_kernel_sm90.cuh; `launchMma`'s configs for the mma.sync kernel), commit, and check and time
# it in a second call (the machine will have gone back by then: a fresh one, about a minute
# more, builds the extension again):
#
#   run(command="bash bench/gpu_session.sh verify", timeout_s=360, carry=[".gpu-carry/small"])
#
# Otherwise the second call is bench, the SDXL end-to-end figures (call H: 240 s; since then it
# lists the compiled UNet's kernels, about a minute more; on a fresh machine it installs diffusers
# itself):
#
#   run(command="bash bench/gpu_session.sh bench", timeout_s=430, carry=[".gpu-carry/small"])
#
# bench's compiled row measures two changes made without a GPU: the mask pyramid pooled once a
# level and the bg rows' low-rank term accumulated in place; its profile lists each kind's
# costliest kernels by name. Record the figures in bench/RESULTS.md and its "Not measured yet".
#
# With about 4 device minutes (a start and 230 s), the SMA kernels alone: their GPU tests, the
# sweep and ncu (no plugin build, no harness, no other tests):
#
#   run(command="bash bench/gpu_session.sh kernel", timeout_s=250, carry=[".gpu-carry/small"])
#
#   kernel: summary-kernel.md  session-kernel.log  sma_tile_sweep.md  sma_ncu.txt  sma_ncu_sass_*.csv.gz
#
# On an RTX-target GPU carry .gpu-carry/part1 too, for the stage2 that follows. With less device
# time left, MILD_GPU_STAGE_SECONDS=N cuts a stage at N seconds (its steps run in the order below
# and stop at the deadline).
#
# TensorRT-RTX engines build there but cannot run on sm_90 (measured on an H200, 2026-11-26,
# bench/RESULTS.md), so stage2 would only say that again. stage2 is for a GPU that is a
# TensorRT-RTX target (sm80/86/89/120): there, stage2 at once after stage1 (the machine stays warm
# only ~30 s after a call, and the first call's files are kept only on that warm machine):
#
#   run(command="bash bench/gpu_session.sh stage2", timeout_s=400,
#       carry=[".gpu-carry/part2", ".gpu-carry/small", "third_party/tensorrt"])
#
# If the machine went back between the two (a stage2 on a fresh machine finds no part1), run
#   run(command="bash bench/gpu_session.sh prepare", timeout_s=150,
#       carry=[".gpu-carry/part1", ".gpu-carry/small", "third_party/tensorrt"])
# (stage1's first steps and the tiny ONNX export, about a minute), then stage2 at once.
#
# With 270 s of device time left after stage1, on the same warm machine at once (diffusers is
# installed there; a fresh one installs it), the issue's whole table on the torch backend (eager,
# CUDA graphs; one run a case), 512 then 1024:
#
#   run(command="bash bench/gpu_session.sh matrix", timeout_s=290, carry=[".gpu-carry/small"])
#
# (call I on an H200: 512 took 89 s and 1024 more than the 142 s left; 1024 alone in a call of its
# own: `bash bench/gpu_session.sh matrix 1024`, same timeout and carry)
#
# Inductor's autotuning (Triton GEMM templates with fused epilogues, tuned launches) on bench's
# compiled case, a call of its own after bench on the same warm machine (bench's compiled row is
# its baseline; compiling with autotuning takes minutes more, not yet measured). With stage1 and
# bench it does not fit one session's 15 device minutes: run bench then tune in a session whose
# kernel work is done, or tune in the next:
#
#   run(command="bash bench/gpu_session.sh tune", timeout_s=600, carry=[".gpu-carry/small"])
#
# (If its deadline cuts it while compiling, run it again at once on the same warm machine:
# Inductor keeps what it compiled and the autotuning results in its cache under /tmp.)
#
# Never name part1 in the second call: it would travel again and pass the 64 MiB a call carries.
# Give the machine back after the last call. What comes back in $OUT (8 files at most):
#
#   stage1: summary-stage1.md  session-stage1.log  sma_kernel.md  sma_tile_sweep.md  sma_ncu.txt
#           sma_ncu_sass_launcher.csv.gz  sma_ncu_sass_sdpa.csv.gz
#   verify: summary-verify.md  session-verify.log  sma_kernel.md
#   bench:  summary-bench.md  session-bench.log  bench-sdxl-torch-kernel-compile.json
#           bench-sdxl-torch-kernel.json  profile-sdxl-torch-compile.txt  profile-sdxl-torch.txt
#           inductor-kernels-sdxl.txt
#   stage2: summary-stage2.md  session-stage2.log  bench-tiny-trt.json  golden-trt.txt
#   matrix: summary-matrix.md  session-matrix.log  bench-sdxl-torch-matrix-{512,1024}.{json,png}
#   tune:   summary-tune.md  session-tune.log  bench-sdxl-torch-kernel-compile-tuned.json
#           profile-sdxl-torch-compile-tuned.txt
#
# stage1 (no TensorRT): GPU and tool versions; part1 kept in /tmp/mild-gpu; diffusers installed;
#   the plugin library built for sm_90 (build/plugins, where the tests look; its sm_90a wgmma
#   object too); the GPU tests of Hopper's wgmma SMA kernel (the launcher's on sm_90) in a process
#   of their own; the SMA kernel harness (parity, timing against SDPA and the mma.sync kernel,
#   compute-sanitizer); the kernel's tile-shape sweep (bench/sma_tile_sweep.cu, wgmma shapes
#   included) and Nsight Compute on the wgmma shapes and SDPA (bench/sma_ncu.sh: stall samples,
#   pipe counters); last, the other GPU tests (the SMA kernel, the torch backend: CUDA graphs,
#   torch.compile, the context's K/V graphs), the first thing the stage's deadline may cut.
# verify: the wgmma kernel's GPU tests and the kernel harness again, for a launcher changed after
#   stage1's sweep (no plugin build, no sweep, no other tests).
# bench: mild-bench on the SDXL-inpaint architecture (random weights), N=2, 512x512, 25 steps, no
#   guidance, fp16 (the VAE bf16), on `--backend torch` (the merged model, the UNet replayed as CUDA
#   graphs) with SMA by the plugin's kernel, the UNet and VAE compiled (--compile), then eager, each
#   profiled; last, the compiled UNet's Inductor kernels by name (bench/inductor_kernels.py). (SMA by the fold form was measured on 2026-11-27 and is slower than the kernel at
#   every SDXL shape: not again.)
# stage2 (TensorRT for RTX): the libs wheel joined (sha256 checked) and installed with the cp312
#   bindings; first of all, whether a TensorRT-RTX engine builds and runs on this GPU (tiny model:
#   mild-export --fp16 with engines, then fp32 golden files replayed on the engines, DESIGN.md
#   section 8 fp16 bounds: noise rel err < 1e-2, PSNR > 35 dB); the TensorRT GPU tests
#   (tests/runtime); mild-bench on the tiny engines against the tiny reference.
# MILD_GPU_SDXL_ENGINES=1 adds to stage2 the SDXL-inpaint fp16 export, engine build and
# mild-bench on them (N=2, 512, 25 steps): a call of its own, more than 10 minutes likely.
#
#   bash bench/gpu_session.sh stage1|stage2      # OUT defaults to ./gpu-out
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

STAGE=${1:-}
MATRIX_SIDES=${2:-}  # matrix only: the image sides, e.g. "1024" (default "512 1024")
case "$STAGE" in
    stage1) BUDGET=${MILD_GPU_STAGE_SECONDS:-390} ;;
    stage2) BUDGET=${MILD_GPU_STAGE_SECONDS:-360} ;;
    prepare) BUDGET=${MILD_GPU_STAGE_SECONDS:-120} ;;
    bench) BUDGET=${MILD_GPU_STAGE_SECONDS:-400} ;;
    kernel) BUDGET=${MILD_GPU_STAGE_SECONDS:-230} ;;
    verify) BUDGET=${MILD_GPU_STAGE_SECONDS:-330} ;;
    matrix) BUDGET=${MILD_GPU_STAGE_SECONDS:-270} ;;
    tune) BUDGET=${MILD_GPU_STAGE_SECONDS:-570} ;;
    *) echo "usage: bash bench/gpu_session.sh stage1|verify|bench|kernel|stage2|prepare|matrix|tune (see the comment at the top)" >&2
       exit 2 ;;
esac
START=$(date +%s)
DEADLINE=$(( START + BUDGET ))
OUT=${OUT:-$PWD/gpu-out}
STASH=/tmp/mild-gpu          # outlives a call while the machine stays warm
SITE=$STASH/site             # carried wheels are installed here
WORK=$STASH/work             # exports, engines, golden files
mkdir -p "$OUT" "$STASH" "$SITE" "$WORK"
LOG=$OUT/session-$STAGE.log
SUMMARY=$OUT/summary-$STAGE.md
export PYTHONPATH=$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
export MILD_PLUGIN_LIBRARY=$PWD/build/plugins/plugins/sma/libmild_plugins.so
PY=python3
export PY SITE STASH
: >"$LOG"
printf '# GPU session %s, %s\n\n| step | result | seconds | last line |\n| --- | --- | --- | --- |\n' \
    "$STAGE" "$(date -u +%Y-%m-%dT%H:%MZ)" >"$SUMMARY"

# step NAME LIMIT_SECONDS COMMAND: run COMMAND (bash) for at most LIMIT seconds and never past the
# stage deadline; its output goes to the log, one row to the summary; the exit status is returned.
step() {
    local name=$1 limit=$2 cmd=$3 now left rc t0 last
    now=$(date +%s)
    left=$(( DEADLINE - now - 5 ))
    if (( left < 20 )); then
        printf '| %s | skipped | 0 | stage time used up (%ss budget) |\n' "$name" "$BUDGET" >>"$SUMMARY"
        return 125
    fi
    (( limit > left )) && limit=$left
    printf '\n===== %s (limit %ss) =====\n$ %s\n' "$name" "$limit" "$cmd" >>"$LOG"
    t0=$(date +%s)
    timeout -k 10 "$limit" bash -o pipefail -c "$cmd" >>"$LOG.step" 2>&1
    rc=$?
    cat "$LOG.step" >>"$LOG"
    last=$(grep -v '^[[:space:]]*$' "$LOG.step" | tail -n 1 | tr '|' '/' | cut -c1-160)
    rm -f "$LOG.step"
    local result="ok"
    (( rc == 124 || rc == 137 )) && result="TIMED OUT (${limit}s)"
    (( rc != 0 && rc != 124 && rc != 137 )) && result="FAILED (rc $rc)"
    printf '| %s | %s | %s | %s |\n' "$name" "$result" "$(( $(date +%s) - t0 ))" "$last" >>"$SUMMARY"
    echo "[$STAGE] $name: $result"
    return "$rc"
}

install_wheels() {  # install_wheels WHEEL...: into $SITE, no index, no dependencies
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$@"
}

install_diffusers() {  # the carried wheel, unless a call before installed it on this warm machine
    $PY -c 'import diffusers' 2>/dev/null ||
        step install-diffusers 60 "$(declare -f install_wheels); install_wheels .gpu-carry/small/diffusers-*.whl"
}

setup() {  # what stage2 needs from stage1: part1 kept, diffusers, the plugin library
    step environment 60 "nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv;
        nvcc --version | tail -n 2; cmake --version | head -n 1; nproc; free -g | head -n 2;
        $PY -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda,
            torch.cuda.get_device_name(), \"sm_%d%d\" % torch.cuda.get_device_capability())'"
    if [[ -d .gpu-carry/part1 ]]; then  # carried only where a stage2 follows (a TensorRT-RTX target GPU)
        step keep-part1 60 "cp .gpu-carry/part1/*.part00 $STASH/ && ls -l $STASH/*.part00"
    fi
    step install-diffusers 60 "$(declare -f install_wheels); install_wheels .gpu-carry/small/diffusers-*.whl &&
        $PY -c 'import diffusers; print(\"diffusers\", diffusers.__version__)'"
    step plugin-sm90 180 "cmake -S . -B build/plugins -G Ninja -DCMAKE_CUDA_ARCHITECTURES=90-real \
        -DTensorRT_INCLUDE_DIR=$PWD/third_party/tensorrt/include >/dev/null &&
        cmake --build build/plugins --parallel 16 && ls -l $MILD_PLUGIN_LIBRARY"
}

prepare() {  # stage1's setup alone, for a stage2 on a fresh machine, and the tiny export as a canary
    setup
    step export-tiny-onnx 90 "$PY -m mild_export.cli.export --model tiny --fp16 --max-instances 3 --guidance \
        --no-engines --out $WORK/tiny-fp16"
}

build_sweep() {  # the sweep's nvcc build (about 20 s of one core), in the background beside the tests
    nvcc -std=c++17 -O3 -arch=sm_90a -DMILD_SMA_SM90A -Iplugins/sma bench/sma_tile_sweep.cu plugins/sma/sma_kernel.cu \
        plugins/sma/sma_kernel_sm90.cu -o "$STASH/sma_tile_sweep" >"$STASH/sma_tile_sweep.build.log" 2>&1 &
}

kernel_tests() {  # the wgmma kernel's GPU tests, in a process of their own
    step gpu-tests-wgmma 180 "$PY -m pytest -q -m gpu -rs tests/plugins/test_sma_kernel_gpu.py -k wgmma \
        -p no:cacheprovider"
}

sweeps() {  # the tile sweep, once its background build is done, then Nsight Compute on its kernels
    step sma-tile-sweep 120 "cat $STASH/sma_tile_sweep.build.log &&
        $STASH/sma_tile_sweep | tee $OUT/sma_tile_sweep.md"
    step sma-ncu 120 "bash bench/sma_ncu.sh $STASH/sma_tile_sweep $OUT"
}

verify() {  # the launcher's kernel after a change made between calls: its GPU tests, then the harness
    step environment 30 "nvidia-smi -L; $PY -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())'"
    install_diffusers  # the tests' conftest imports the reference model
    kernel_tests
    step sma-kernel-harness 210 "$PY bench/sma_kernel_harness.py --out $OUT/sma_kernel.md"
}

kernel() {  # the SMA kernels alone, for a session with about 4 device minutes left
    step environment 30 "nvidia-smi -L; $PY -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())'"
    build_sweep
    local sweep_build=$!
    install_diffusers  # the tests' conftest imports the reference model
    kernel_tests
    wait "$sweep_build"
    sweeps
}

stage1() {
    setup
    build_sweep
    local sweep_build=$!
    # The SMA kernel first: Hopper's wgmma kernel's tests in a pytest process of their own (a
    # kernel changed without a GPU can end the CUDA context; the other tests must not go with it),
    # which also builds the extension; the kernel harness (parity of the launcher's kernel, the wgmma
    # kernel on sm_90, and of the mma.sync kernel; timing against SDPA; the sanitizer); the tile
    # sweep and ncu (issue 5's open question: which option beats the launcher, and why SDPA is
    # faster); the other GPU tests last (call G: all passed; the bench stage runs the same paths
    # end to end). The end-to-end figures are the `bench` stage's.
    kernel_tests
    step sma-kernel-harness 210 "$PY bench/sma_kernel_harness.py --out $OUT/sma_kernel.md"
    wait "$sweep_build"
    sweeps
    step gpu-tests 240 "$PY -m pytest -q -m gpu -rs tests/plugins tests/runtime/test_torch_backend.py \
        tests/runtime/test_context_kv.py -p no:cacheprovider -k 'not wgmma'"
}

bench() {  # issue 6's target case on the torch backend: compiled first (the issue's figure), then eager
    step environment 30 "nvidia-smi -L; $PY -c 'import torch; print(torch.cuda.get_device_name())'"
    install_diffusers
    step bench-sdxl-torch-compile 300 "$(sdxl_bench torch kernel compile) --compile \
        --profile $OUT/profile-sdxl-torch-compile.txt"
    step bench-sdxl-torch 150 "$(sdxl_bench torch kernel) --profile $OUT/profile-sdxl-torch.txt"
    # the compiled step's own kernels by name (Inductor's cache holds the compile by now): what the
    # profile of a replayed graph cannot attribute
    step inductor-kernels-sdxl 150 "$PY bench/inductor_kernels.py --model sdxl-inpaint --instances 2 \
        --resolution 512 --device cuda >$OUT/inductor-kernels-sdxl.txt && head -n 40 $OUT/inductor-kernels-sdxl.txt"
}

sdxl_bench() {  # sdxl_bench BACKEND SMA_FORM [TAG]: the mild-bench command line for issue 6's target case
    echo "$PY -m mild_export.cli.bench --model sdxl-inpaint --backend $1 --sma $2 --device cuda \
        --precision fp16 --instances 2 --resolution 512 --steps 25 --guidance 1 --repeats 3 --warmup 1 \
        --json $OUT/bench-sdxl-$1-$2${3:+-$3}.json"
}

tune() {  # bench's compiled case with Inductor's autotuning on; its baseline is bench's first step
    step environment 30 "nvidia-smi -L; $PY -c 'import torch; print(torch.cuda.get_device_name())'"
    install_diffusers
    # GEMMs as Triton templates (epilogues fused) where they beat cuBLAS, and the pointwise and
    # reduction kernels' launches tuned: the compiled step's matmuls were 38% of its device time
    # and Inductor's own kernels 32% (call H); compiling takes minutes longer (not yet measured)
    step bench-sdxl-torch-compile-tuned 560 "TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1 \
        TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 $(sdxl_bench torch kernel compile-tuned) --compile \
        --profile $OUT/profile-sdxl-torch-compile-tuned.txt"
}

matrix() {  # the issue's whole table (N = 1..4, 512 and 1024, with and without guidance) on the torch backend
    step environment 30 "nvidia-smi -L; $PY -c 'import torch; print(torch.cuda.get_device_name())'"
    install_diffusers
    # one run a case after one warm-up, 512 first; mild-bench rewrites its JSON after each case, so
    # a cut at the deadline keeps the cases done (call I: 512 took 89 s, 1024 more than 142 s)
    local side
    for side in ${MATRIX_SIDES:-512 1024}; do
        step "bench-sdxl-torch-matrix-$side" 260 "$PY -m mild_export.cli.bench --model sdxl-inpaint \
            --backend torch --sma kernel --device cuda --precision fp16 --instances 1,2,3,4 --resolution $side \
            --steps 25 --guidance 1,7.5 --repeats 1 --warmup 1 --json $OUT/bench-sdxl-torch-matrix-$side.json \
            --plot $OUT/bench-sdxl-torch-matrix-$side.png"
    done
}

stage2() {
    step environment 30 "nvidia-smi -L; $PY -c 'import torch; print(torch.cuda.get_device_name())'"
    step install-tensorrt-rtx 90 "$(declare -f install_wheels)
        part1=\$(ls $STASH/*.part00 2>/dev/null || ls .gpu-carry/part1/*.part00 2>/dev/null) ||
            { echo 'part1 missing: run stage1 first, on this same warm machine'; exit 1; }
        wheel=\$(basename \"\${part1%.part00}\")
        cat \"\$part1\" .gpu-carry/part2/\"\$wheel\".part01 >$STASH/\"\$wheel\" &&
        (cd $STASH && sha256sum -c $PWD/.gpu-carry/small/libs-wheel.sha256) &&
        install_wheels $STASH/\"\$wheel\" .gpu-carry/small/tensorrt_rtx_cu13_bindings-*.whl &&
        PYTHON=$PY bash scripts/setup-tensorrt-rtx.sh &&
        $PY -c 'from mild_export.engine.trt_shim import TensorRT as T; t = T.load(); print(t.module.__name__, t.version)'"
    local trt_ok=$?
    if (( trt_ok == 0 )); then
        [[ -f $MILD_PLUGIN_LIBRARY ]] || step plugin-sm90 150 "cmake -S . -B build/plugins -G Ninja \
            -DCMAKE_CUDA_ARCHITECTURES=90-real -DTensorRT_INCLUDE_DIR=$PWD/third_party/tensorrt/include \
            >/dev/null && cmake --build build/plugins --parallel 16"
        # the first question: does a TensorRT-RTX engine build and run on this GPU?
        if ! step trt-tiny-engines 150 "$PY -m mild_export.cli.export --model tiny --fp16 --max-instances 3 \
            --guidance --out $WORK/tiny-fp16 && ls -l $WORK/tiny-fp16/*.plan"; then
            printf '| later TensorRT steps | skipped | 0 | they need the tiny engines |\n' >>"$SUMMARY"
            return
        fi
        # the default targets on a GPU that is no TensorRT-RTX target (sm90) are sm80,86,89,120; if
        # those engines do not run here, ask TensorRT-RTX itself to build for this GPU (--targets current)
        if ! step trt-tiny-golden 90 "$PY -m mild_export.golden write --engines $WORK/tiny-fp16 --instances 1,3 &&
            $PY -m mild_export.golden check --backend tensorrt --engines $WORK/tiny-fp16 \
                $WORK/tiny-fp16/golden/n1.mildgold $WORK/tiny-fp16/golden/n3.mildgold | tee $OUT/golden-trt.txt"; then
            step trt-tiny-current 120 "$PY -m mild_export.cli.export --model tiny --fp16 --max-instances 3 \
                --guidance --targets current --out $WORK/tiny-fp16 &&
                $PY -m mild_export.golden check --backend tensorrt --engines $WORK/tiny-fp16 \
                $WORK/tiny-fp16/golden/n1.mildgold $WORK/tiny-fp16/golden/n3.mildgold | tee $OUT/golden-trt.txt"
        fi
        step gpu-tests-tensorrt 200 "$PY -m pytest -q -m gpu -rs tests/runtime -p no:cacheprovider"
        step bench-tiny-trt 90 "$PY -m mild_export.cli.bench --engines $WORK/tiny-fp16 --backend tensorrt \
            --device cuda --instances 1,2 --steps 25 --guidance 1 --repeats 5 --json $OUT/bench-tiny-trt.json &&
            $PY -m mild_export.cli.bench --model tiny --device cuda --precision fp16 --instances 1,2 \
            --steps 25 --guidance 1 --repeats 5"
        if [[ ${MILD_GPU_SDXL_ENGINES:-0} == 1 ]]; then
            step sdxl-engines 540 "$PY -m mild_export.cli.export --model sdxl-inpaint --fp16 --resolution 512 \
                --max-instances 2 --out $WORK/sdxl-fp16"
            step bench-sdxl-trt 240 "$PY -m mild_export.cli.bench --engines $WORK/sdxl-fp16 --backend tensorrt \
                --device cuda --instances 2 --resolution 512 --steps 25 --guidance 1 --json $OUT/bench-sdxl-trt.json"
        fi
    else
        printf '| TensorRT steps | skipped | 0 | TensorRT-RTX did not install: see session-stage2.log |\n' >>"$SUMMARY"
    fi
}

"$STAGE"
printf '\n%s done in %ss of its %ss budget\n' "$STAGE" "$(( $(date +%s) - START ))" "$BUDGET" >>"$SUMMARY"
cat "$SUMMARY"

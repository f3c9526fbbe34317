#!/usr/bin/env bash
# Installs mild-export with everything its tests need. On a CPU-only machine the constraints file
# keeps pip on the CPU build of torch (a plain `torch` from PyPI pulls gigabytes of CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -c constraints/cpu.txt -e ".[dev,onnx]"
# TensorRT for RTX (builds engines ahead of time, no GPU needed) and the TensorRT C++ headers
bash scripts/setup-tensorrt-rtx.sh

#!/usr/bin/env bash
# What building engines/ (the C/C++ runtime, its example app and tests) needs beyond
# scripts/setup-tensorrt-rtx.sh: CMake >= 3.24, a C/C++ compiler, nvcc, and libpng for the example
# app. Idempotent: with everything in place it installs nothing and touches no network.
#
#   bash scripts/setup-engines.sh
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v cc >/dev/null && command -v c++ >/dev/null || missing+=(build-essential)
command -v ninja >/dev/null || missing+=(ninja-build)
dpkg -s libpng-dev >/dev/null 2>&1 || missing+=(libpng-dev)
if (( ${#missing[@]} )); then
    if ! command -v apt-get >/dev/null; then
        echo "setup-engines: install ${missing[*]} with your package manager" >&2
        exit 1
    fi
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

if ! command -v nvcc >/dev/null; then
    echo "setup-engines: nvcc not on PATH: install the CUDA toolkit (12.x or 13.x) or add its bin/ to PATH" >&2
    exit 1
fi
# TensorRT-RTX wheels, the libtensorrt_rtx.so link name and the TensorRT 10.14 headers
bash scripts/setup-tensorrt-rtx.sh

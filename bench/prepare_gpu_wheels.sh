#!/usr/bin/env bash
# Here, before a session with a lent GPU: download what bench/gpu_session.sh installs on the GPU
# machine (Python 3.12, no network there) into git-ignored folders, each small enough to travel
# with one device call (64 MiB per call, the working tree included; DESIGN.md section 7):
#
#   .gpu-carry/part1/   first half of the TensorRT-RTX libs wheel (~95 MB, split -b 50M)
#   .gpu-carry/part2/   the rest of it
#   .gpu-carry/small/   the TensorRT-RTX cp312 bindings wheel (~1.2 MB), diffusers (the GPU
#                       image lacks it), and the libs wheel's name and sha256
#
# The TensorRT 10.14 headers the plugin builds against come from scripts/setup-tensorrt-rtx.sh
# (third_party/tensorrt/include, git-ignored; carried too). Idempotent: a re-run with the parts in
# place downloads nothing. How the two calls use them: the header of bench/gpu_session.sh.
#
#   bash bench/prepare_gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."

TRT_RTX_VERSION=1.7.1.116
DIFFUSERS_VERSION=0.42.1
PART_SIZE=50M  # two parts of a ~95 MB wheel; each call also carries ~7 MB of tree, headers, small/
CARRY=.gpu-carry
PY=${PYTHON:-python3}

grep -qxF "/$CARRY/" .gitignore || { echo "prepare_gpu_wheels: add /$CARRY/ to .gitignore first" >&2; exit 1; }
mkdir -p "$CARRY/part1" "$CARRY/part2" "$CARRY/small"

download() {  # cp312 manylinux x86_64 wheels, whatever this machine's Python and processor are
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp --abi cp312 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$1" "$2"
}

if [[ ! -f "$CARRY/small/libs-wheel.sha256" ]]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    download "$tmp" "tensorrt-rtx-cu13-libs==$TRT_RTX_VERSION"
    wheel=$(cd "$tmp" && ls tensorrt_rtx_cu13_libs-*.whl)
    rm -f "$CARRY"/part1/* "$CARRY"/part2/*
    (cd "$tmp" && split -b "$PART_SIZE" -d -a 2 "$wheel" "$wheel.part")
    parts=("$tmp/$wheel".part*)
    if (( ${#parts[@]} != 2 )); then
        echo "prepare_gpu_wheels: $wheel split into ${#parts[@]} parts, not 2: change PART_SIZE" >&2
        exit 1
    fi
    mv "${parts[0]}" "$CARRY/part1/"
    mv "${parts[1]}" "$CARRY/part2/"
    (cd "$tmp" && sha256sum "$wheel") > "$CARRY/small/libs-wheel.sha256"
fi
ls "$CARRY"/small/tensorrt_rtx_cu13_bindings-*cp312*.whl >/dev/null 2>&1 \
    || download "$CARRY/small" "tensorrt-rtx-cu13-bindings==$TRT_RTX_VERSION"
ls "$CARRY"/small/diffusers-*.whl >/dev/null 2>&1 || download "$CARRY/small" "diffusers==$DIFFUSERS_VERSION"

# what each call carries, against the 64 MiB a call may take (the tracked tree travels too)
tree=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
headers=$(du -sb third_party/tensorrt/include 2>/dev/null | cut -f1 || echo 0)
small=$(du -sb "$CARRY/small" | cut -f1)
for part in part1 part2; do
    size=$(du -sb "$CARRY/$part" | cut -f1)
    total=$(( size + small + headers + tree ))
    printf 'call with %s: %s MiB (part %s + small %s + headers %s + tree %s bytes)\n' \
        "$part" "$(( total / 1048576 ))" "$size" "$small" "$headers" "$tree"
    if (( total > 62 * 1048576 )); then
        echo "prepare_gpu_wheels: the $part call would carry over 62 MiB: lower PART_SIZE" >&2
        exit 1
    fi
done
ls -l "$CARRY"/part1 "$CARRY"/part2 "$CARRY"/small

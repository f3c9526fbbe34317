#!/usr/bin/env bash
# Installs TensorRT for RTX from PyPI and fetches the TensorRT C++ headers the plugin builds against
# (DESIGN.md section 7). Idempotent: a re-run with everything in place does no network work.
#
#   bash scripts/setup-tensorrt-rtx.sh            # install into the current python3
#   TensorRT_INCLUDE_DIR=$(bash scripts/setup-tensorrt-rtx.sh --print-include)
set -euo pipefail
cd "$(dirname "$0")/.."

TRT_RTX_VERSION=1.7.1.116
HEADERS_WHEEL=kernel-lens==2.0.1          # ships the Apache-2.0 TensorRT 10.14.1 headers
HEADERS_DIR=third_party/tensorrt/include  # git-ignored
PY=${PYTHON:-python3}

if [[ "${1:-}" == "--print-include" ]]; then
    echo "$PWD/$HEADERS_DIR"
    exit 0
fi

# (a) the Python bindings and libraries, unless this exact version is already there
installed=$("$PY" - "$TRT_RTX_VERSION" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    ok = all(version(p) == sys.argv[1] for p in ("tensorrt-rtx-cu13-bindings", "tensorrt-rtx-cu13-libs"))
except PackageNotFoundError:
    ok = False
print("yes" if ok else "no")
EOF
)
if [[ "$installed" != yes ]]; then
    "$PY" -m pip install --quiet --disable-pip-version-check \
        "tensorrt-rtx-cu13-bindings==$TRT_RTX_VERSION" "tensorrt-rtx-cu13-libs==$TRT_RTX_VERSION"
fi

# (b) the ONNX parser dlopens libtensorrt_rtx.so, which the wheel lacks (the process aborts)
LIB_DIR=$("$PY" - <<'EOF'
import importlib.util, pathlib, sys
for name in ("tensorrt_rtx_libs", "tensorrt_rtx"):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        continue
    for loc in spec.submodule_search_locations:
        hits = sorted(pathlib.Path(loc).rglob("libtensorrt_rtx.so.1"))
        if hits:
            print(hits[0].parent)
            sys.exit(0)
sys.exit("setup-tensorrt-rtx: libtensorrt_rtx.so.1 not found in the tensorrt_rtx wheels")
EOF
)
if [[ ! -e "$LIB_DIR/libtensorrt_rtx.so" ]]; then
    ln -sf libtensorrt_rtx.so.1 "$LIB_DIR/libtensorrt_rtx.so"
fi

# (c) the TensorRT 10.14 C++ headers from the kernel-lens wheel, unpacked into a git-ignored folder
if [[ ! -f "$HEADERS_DIR/NvInferRuntime.h" ]]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps -d "$tmp" "$HEADERS_WHEEL"
    "$PY" - "$tmp" "$HEADERS_DIR" <<'EOF'
import pathlib, sys, zipfile
src, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(src.glob("*.whl"))
prefix = "kernel_lens/include/tensorrt/"
with zipfile.ZipFile(wheel) as zf:
    names = [n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/")]
    if not names:
        sys.exit(f"setup-tensorrt-rtx: {wheel.name} has no {prefix}")
    for name in names:
        out = dest / name[len(prefix):]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(zf.read(name))
EOF
fi
test -f "$HEADERS_DIR/NvInferRuntime.h" || { echo "setup-tensorrt-rtx: no headers in $HEADERS_DIR" >&2; exit 1; }

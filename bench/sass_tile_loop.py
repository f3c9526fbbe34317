"""Instructions a key tile in the wgmma SMA kernel's main loop, from its SASS (no GPU needed).

At D = 64 a warpgroup's 64 x 64 key tile is about 256 SM cycles of tensor work and 256 of
exponentials, and each instruction a thread is a scheduler cycle of each of its four warps: the
instructions a thread a tile are the length of the softmax a warp runs between its waits on the
tensor cores (plugins/sma/README.md), and this is how they are counted. For each
`smaForwardWgmma` instantiation in a cubin: the longest loop holding wgmma instructions (HGMMA),
the key tiles one trip of it covers (its HGMMA over a tile's: Q K^T's four 16-channel steps, P V's
kBlockN / 16, one more for the bias by wgmma), and its instructions by opcode. Static counts: a
branch that a full tile skips (the tail's masking) still counts.

    nvcc -std=c++17 -O3 -arch=sm_90a -DMILD_SMA_SM90A -Iplugins/sma -cubin \\
        plugins/sma/sma_kernel_sm90.cu -o /tmp/sma.cubin            # or bench/sma_tile_sweep.cu
    python bench/sass_tile_loop.py /tmp/sma.cubin [--kernel REGEX]

cuobjdump (with nvdisasm) must be on PATH: the CUDA toolkit's, or the nvidia-cuda-cuobjdump and
nvidia-cuda-nvdisasm wheels' `nvidia/cu13/bin`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+([^;]+);")
PREDICATE = re.compile(r"^@!?U?P\w+\s+")
TARGET = re.compile(r"0x([0-9a-f]+)")
# WgmmaConfig<kWarpGroups, kBlockN, kOverlap, kMinBlocks, kBias, kSumMma, kLazyMax> as Itanium-mangled
CONFIG = re.compile(r"WgmmaConfigILi(\d+)ELi(\d+)ELb([01])ELi(\d+)ELNS\w*?BiasByE(\d)ELb([01])ELb([01])E")
BIAS = {"0": "ffma", "1": "mma.sync", "2": "wgmma"}


@dataclass
class TileLoop:
    kernel: str  # the config's template arguments, readable
    instructions: int  # the whole kernel's
    loop: Counter[str]  # the main loop's instructions by opcode (the part before the first '.')
    tiles: float  # key tiles a trip

    @property
    def per_tile(self) -> float:
        return sum(self.loop.values()) / self.tiles

    def row(self) -> str:
        top = ", ".join(f"{op} {n / self.tiles:.0f}" for op, n in self.loop.most_common(12))
        return (
            f"| {self.kernel} | {self.instructions} | {sum(self.loop.values())} | {self.tiles:g} "
            f"| **{self.per_tile:.0f}** | {top} |"
        )


def opcode(text: str) -> str:
    return PREDICATE.sub("", text).split()[0]


def functions(sass: str) -> list[tuple[str, list[tuple[int, str]]]]:
    """(mangled name, [(address, instruction)]) for each function of cuobjdump -sass output."""
    out = []
    for part in sass.split("Function :")[1:]:
        name = part.split("\n", 1)[0].strip()
        out.append((name, [(int(m[1], 16), m[2].strip()) for m in INSTRUCTION.finditer(part)]))
    return out


def main_loop(instructions: list[tuple[int, str]]) -> Counter[str] | None:
    """Opcodes of the longest backward-branch loop that holds HGMMA, or None."""
    best: Counter[str] | None = None
    for address, text in instructions:
        if not opcode(text).startswith("BRA"):
            continue
        target = TARGET.search(text)
        if target is None or int(target[1], 16) >= address:
            continue
        start = int(target[1], 16)
        body = Counter(opcode(t).split(".")[0] for a, t in instructions if start <= a <= address)
        if body["HGMMA"] and (best is None or sum(body.values()) > sum(best.values())):
            best = body
    return best


def tile_loops(sass: str, kernel: str = "") -> list[TileLoop]:
    loops = []
    for name, instructions in functions(sass):
        config = CONFIG.search(name)
        if "smaForwardWgmma" not in name or config is None or not re.search(kernel, name):
            continue
        warpgroups, block_n, overlap, min_blocks, bias, sum_mma, lazy_max = config.groups()
        body = main_loop(instructions)
        if body is None:
            continue
        hgmma_a_tile = 4 + int(block_n) // 16 + (bias == "2")
        dtype = "bf16" if "bfloat16" in name else "fp16"
        label = (
            f"{dtype} <{warpgroups}, {block_n}, {'overlap' if overlap == '1' else 'in turns'}, "
            f"{min_blocks} CTAs>, bias by {BIAS[bias]}{', sums by mma.sync' if sum_mma == '1' else ''}"
            f"{', lazy max' if lazy_max == '1' else ''}"
        )
        loops.append(TileLoop(label, len(instructions), body, body["HGMMA"] / hgmma_a_tile))
    return loops


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cubin", type=Path)
    p.add_argument("--kernel", default="", help="only kernels whose mangled name matches this regex")
    args = p.parse_args(argv)
    if not args.cubin.is_file():
        print(
            f"sass_tile_loop: error: {args.cubin} is not a file: build it with nvcc -cubin", file=sys.stderr
        )
        return 2
    if shutil.which("cuobjdump") is None:
        print("sass_tile_loop: error: cuobjdump is not on PATH (see the docstring)", file=sys.stderr)
        return 2
    sass = subprocess.run(["cuobjdump", "-sass", str(args.cubin)], capture_output=True, text=True, check=True)
    loops = tile_loops(sass.stdout, args.kernel)
    if not loops:
        print(f"sass_tile_loop: error: no smaForwardWgmma kernel in {args.cubin}", file=sys.stderr)
        return 1
    print("| kernel | instructions | loop | tiles a trip | a tile | by opcode, a tile |")
    print("| --- | --- | --- | --- | --- | --- |")
    for loop in loops:
        print(loop.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What Inductor makes of the torch backend's UNet (`mild-bench --backend torch --compile`): the
kernels of its own that one compiled UNet call launches, grouped by the ops they fuse, and its
calls out (GEMMs, convolutions, attention, custom ops). On a CPU it shows a change to the compiled
graph (a copy gone, a fusion made) before a GPU session times it (bench/RESULTS.md, CPU); on a GPU
it names the Triton kernels a profile of the replayed step cannot attribute. On a CPU convolutions
and linears lower as on a GPU (mkldnn off).

    python bench/inductor_kernels.py [--model tiny] [--instances 2] [--resolution 64] [--code FILE]
    python bench/inductor_kernels.py --model sdxl-inpaint --resolution 512 --device cuda
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch._inductor.utils import run_and_get_code

from mild_export.bench.backends import PRECISIONS, BenchOptions, make_target
from mild_export.export.contracts import ExportShapes, contracts

KERNEL_CALL = re.compile(r"^\s+((?:cpp|triton)_\w+?)(?:_\d+)?(?:\.run)?\(", re.MULTILINE)
EXTERN_CALL = re.compile(r"(extern_kernels\.\w+|torch\.ops\.\w+\.\w+)(?:\.default)?\(")


@dataclass
class CompiledUNet:
    kernels: Counter[str]  # launches of Inductor's own kernels, by name less the index
    externs: Counter[str]  # calls out of the generated code
    code: str

    @property
    def launches(self) -> int:
        return sum(self.kernels.values())

    def report(self) -> str:
        calls_out = sum(self.externs.values())
        lines = [f"{self.launches} launches of Inductor's own kernels, {calls_out} calls out"]
        lines += [f"{n:5d}  {name}" for name, n in self.kernels.most_common()]
        lines += [f"{n:5d}  {name}" for name, n in self.externs.most_common()]
        return "\n".join(lines)


def compile_unet(
    model: str, instances: int, resolution: int, device: str = "cpu", precision: str | None = None
) -> CompiledUNet:
    """One UNet call of `model` through the torch backend with --compile, as mild-bench builds it
    (its default precision and SMA form for `device`)."""
    options = BenchOptions(model, None, torch.device(device), precision, compile_model=True)
    target = make_target("torch", options)
    shapes = ExportShapes(resolutions=(resolution,), max_instances=instances)
    contract = contracts(target.config, shapes)["unet"]
    inputs = contract.sample_inputs(torch.float32, torch.Generator().manual_seed(0))
    mkldnn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # it would take the convolutions and linears on a CPU
    try:
        _, codes = run_and_get_code(lambda: target.backend.run("unet", inputs))
    finally:
        torch.backends.mkldnn.enabled = mkldnn
    code = "\n".join(codes)
    return CompiledUNet(Counter(KERNEL_CALL.findall(code)), Counter(EXTERN_CALL.findall(code)), code)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--instances", type=int, default=2, help="fg rows (people) of the call")
    p.add_argument("--resolution", type=int, default=64, help="image side (the latent is an eighth)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=list(PRECISIONS), help="default: mild-bench's for the device")
    p.add_argument("--code", type=Path, help="also write Inductor's generated code here")
    args = p.parse_args(argv)
    try:
        compiled = compile_unet(args.model, args.instances, args.resolution, args.device, args.precision)
    except ValueError as err:  # bad input, as mild-bench words it
        print(f"inductor_kernels: error: {err}", file=sys.stderr)
        return 2
    print(compiled.report())
    if args.code:
        args.code.write_text(compiled.code)
    return 0


if __name__ == "__main__":
    sys.exit(main())

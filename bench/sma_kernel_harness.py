"""SMA kernel lab (GPU): build, validate against float64, compute-sanitizer, time against SDPA.

One device call runs it all from the repository root:

    python bench/sma_kernel_harness.py            # prints the tables; writes $OUT/sma_kernel.md (or --out)

Figures worth keeping go into bench/RESULTS.md by hand, with date, device and command.

Steps: (1) build plugins/sma/sma_kernel.cu and sma_kernel_sm90.cu as a PyTorch extension; (2)
parity of the launcher's kernel against a float64 reference on fresh random inputs (binary and
soft masks, odd lengths, every supported head-dim bucket, fp16/bf16/fp32; outputs poisoned with
NaN first), tolerance from sma_schema.json; on sm_90, where the launcher takes Hopper's wgmma kernel
for D <= 64, the mma.sync kernel's parity too, and probes that locate a wgmma parity failure; (3)
timing at the SDXL shapes against PyTorch SDPA without bias (the SDPA kernels named) and SDPA over
the fold form (and the mma.sync kernel where the launcher takes the wgmma kernel), device time from
CUDA-graph replays (and, for the launcher's kernel and SDPA, one call at a time between CUDA events,
host launch included), medians after warm-up, beside the matrix-rate floor; (4) compute-sanitizer
memcheck, racecheck and synccheck on a small case (this script re-run with --sanitize-case), for
each kernel.
Not covered yet: TensorRT-for-RTX engines on the GPU (the wheel must be carried in two parts,
DESIGN.md section 7).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mild_export.engine import sma_torch_ext  # noqa: E402
from mild_export.ops.schema import SMA  # noqa: E402
from mild_export.runtime.cuda_graph import capture, failure_reason  # noqa: E402
from reference import sma  # noqa: E402

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
HEAD_DIMS = [8, 40, 64, 80, 96, 128, 160, 200, 256]
LENGTHS = [(1, 1), (17, 17), (77, 77), (129, 300), (300, 129), (1025, 1025)]
TIMING_SHAPES = [(b, h, s, 64) for s in (256, 1024, 4096) for h in (10, 20) for b in (3, 6)]
MMA_SYNC = "two-stage"  # the mma.sync kernel where the launcher takes the wgmma kernel (sm_90)


def inputs(b, h, sq, sk, d, dtype, soft, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    kw = {"device": "cuda", "generator": g}
    q, k, v = (torch.randn(b, h, s, d, **kw).to(dtype) for s in (sq, sk, sk))
    m_q, m_k = torch.rand(b, sq, **kw), torch.rand(b, sk, **kw)
    if not soft:
        m_q, m_k = (m_q > 0.5).float(), (m_k > 0.5).float()
    alpha = 2.0 * torch.randn(h, 2, 2, **kw)
    return q, k, v, m_q.to(dtype), m_k.to(dtype), alpha.to(dtype)


def wgmma_runs(d: int, dtype_name: str = "float16") -> bool:
    """Whether Hopper's wgmma kernel (pipeline "wgmma") runs this case here."""
    return dtype_name != "float32" and sma_torch_ext.wgmma_runs(d, DTYPES[dtype_name])


def check(b, h, sq, sk, d, dtype_name, soft, seed, pipeline="auto") -> tuple[bool, float, float]:
    args = inputs(b, h, sq, sk, d, DTYPES[dtype_name], soft, seed)
    ref = sma.attention_reference(*(t.double() for t in args))
    theirs = (sma.attention_reference(*args).double() - ref).abs().max().item()
    out = torch.full_like(args[0], float("nan"))
    sma_torch_ext.sma_forward(*args, out=out, pipeline=pipeline)
    torch.cuda.synchronize()
    ours = (out.double() - ref).abs().max().item() if torch.isfinite(out).all() else float("inf")
    tol = SMA.tolerances[dtype_name]
    return ours <= tol.factor * theirs + tol.atol, ours, theirs


def validate(lines: list[str], pipeline: str = "auto") -> int:
    """Parity of one pipeline (a sma_torch_ext.PIPELINES key) on every case it runs here."""
    lines += [
        f"## Parity against float64: pipeline {pipeline}",
        "",
        "| dtype | B H Sq Sk D | masks | kernel | ours | PyTorch | ok |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    failures = runs = 0
    cases = [(2, 3, 77, 77, d, soft) for d in HEAD_DIMS for soft in (False, True)]
    cases += [(3, 2, sq, sk, 64, soft) for sq, sk in LENGTHS for soft in (False, True)]
    for dtype_name in DTYPES:
        for i, (b, h, sq, sk, d, soft) in enumerate(cases):
            if pipeline == "wgmma" and not wgmma_runs(d, dtype_name):
                continue
            ok, ours, theirs = check(b, h, sq, sk, d, dtype_name, soft, seed=i, pipeline=pipeline)
            failures += not ok
            runs += 1
            lines.append(
                f"| {dtype_name} | {b} {h} {sq} {sk} {d} | {'soft' if soft else 'binary'} | {pipeline} | "
                f"{ours:.2e} | {theirs:.2e} | {'yes' if ok else '**NO**'} |"
            )
    lines += ["", f"failures: {failures} of {runs}", ""]
    return failures


def wgmma_probes(lines: list[str]) -> None:
    """Where a wrong wgmma kernel goes wrong (it is written without a GPU): structured inputs, each
    against the mma.sync kernel on the same inputs, max |difference| / max |mma.sync's|.
    - uniform P (K = 0, alpha = 0: every key weighs the same): only P V and V's descriptor matter;
    - one-hot V (V[j] = e_(j mod 64)): out[i, c] is the softmax mass of keys j = c mod 64, so Q K^T,
      the softmax and P's register fragments show, whatever V's layout does to other values;
    - a single key tile (S = 128, no tail) and one query warpgroup (S = 64): tails and stages aside.
    """
    lines += [
        "## wgmma kernel probes (its parity failed)",
        "",
        "| probe | B H Sq Sk | error |",
        "| --- | --- | --- |",
    ]

    def compare(name, args):
        ours = sma_torch_ext.sma_forward(*args, pipeline="wgmma").float()
        theirs = sma_torch_ext.sma_forward(*args, pipeline=MMA_SYNC).float()
        err = (ours - theirs).abs().max().item() / max(theirs.abs().max().item(), 1e-6)
        b, h, sq, _ = args[0].shape
        lines.append(f"| {name} | {b} {h} {sq} {args[1].shape[2]} | {err:.2e} |")

    q, k, v, m_q, m_k, alpha = inputs(1, 2, 200, 300, 64, torch.float16, True, 11)
    compare("uniform P", (q, torch.zeros_like(k), v, m_q, m_k, torch.zeros_like(alpha)))
    one_hot = torch.eye(64, device="cuda", dtype=torch.float16)[torch.arange(300, device="cuda") % 64]
    compare("one-hot V", (q, k, one_hot.expand(1, 2, 300, 64).contiguous(), m_q, m_k, alpha))
    compare("one-hot V, no bias", (q, k, one_hot.expand(1, 2, 300, 64).contiguous(), m_q, m_k, 0 * alpha))
    compare("Sq = 64, Sk = 128", inputs(1, 2, 64, 128, 64, torch.float16, True, 12))
    compare(
        "Sq = 64, Sk = 128, uniform P",
        (
            q[:, :, :64],
            torch.zeros_like(k[:, :, :128]),
            v[:, :, :128],
            m_q[:, :64],
            m_k[:, :128],
            torch.zeros_like(alpha),
        ),
    )
    lines.append("")


SANITIZER_TOOLS = ("memcheck", "racecheck", "synccheck")


def sanitize(lines: list[str], kernel: str = "mma") -> None:
    """memcheck for out-of-bounds reads and writes; racecheck and synccheck for the K/V tiles that
    cp.async refills while other warps may still read them (a missing barrier shows up there, not
    in parity on a lucky schedule). `kernel`: "mma" (both K/V pipelines of the mma.sync kernel) or
    "wgmma" (Hopper's), each in processes of their own."""
    tool = shutil.which("compute-sanitizer") or "/usr/local/cuda/bin/compute-sanitizer"
    lines += [f"## compute-sanitizer: the {kernel} kernel", ""]
    if not Path(tool).exists():
        lines += ["compute-sanitizer not found: not run", ""]
        return
    for name in SANITIZER_TOOLS:
        run = subprocess.run(
            [
                tool,
                "--tool",
                name,
                "--error-exitcode",
                "3",
                sys.executable,
                __file__,
                "--sanitize-case",
                kernel,
            ],
            capture_output=True,
            text=True,
        )
        summary = [ln for ln in run.stdout.splitlines() + run.stderr.splitlines() if "SUMMARY" in ln]
        lines.append(f"- {name}: exit code {run.returncode}; {summary[-1] if summary else 'no summary line'}")
    lines.append("")


def sanitize_case(kernel: str) -> None:
    """Two query blocks with a tail, several key tiles with a tail, the smallest and largest
    buckets, through each pipeline of `kernel` this GPU runs (two K/V stages need sm_80/90's
    memory; the wgmma kernel sm_90 and D <= 64)."""
    two = torch.cuda.get_device_capability() in sma_torch_ext.TWO_STAGE_GPUS
    for dtype_name in DTYPES:
        for d in (40, 256):
            args = inputs(1, 2, 200, 300, d, DTYPES[dtype_name], True, 0)
            if kernel == "wgmma":
                pipelines = ["wgmma"] * wgmma_runs(d, dtype_name)
            else:
                pipelines = ["one-stage"] + ["two-stage"] * two
            for pipeline in pipelines:
                sma_torch_ext.sma_forward(*args, pipeline=pipeline)
    torch.cuda.synchronize()


def median_ms(fn, warmup=5, iters=30) -> float:
    """One call between two CUDA events, synchronised, median: what an application calling once
    sees. For a kernel shorter than the host's launch path (10-20 us from Python) this times the
    host; `device_ms` times the device."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def device_ms(fn, calls=20, replays=10) -> float | None:
    """Device time of one call: `calls` calls captured in one CUDA graph, replayed, median over
    replays divided by `calls`. This is how the UNet runs them (replayed CUDA graphs), and at
    S=256 the only way to see the kernel rather than the launch. None if the capture fails."""
    try:
        graph, _ = capture(lambda: [fn() for _ in range(calls)], torch.device("cuda"))
    except RuntimeError as err:
        print(f"CUDA graph {failure_reason(err)}: per-call timing only")
        return None
    return median_ms(graph.replay, warmup=2, iters=replays) / calls


def shown(ms: float | None) -> str:
    return "capture failed" if ms is None else f"{ms:.4f}"


def device_kernels(fn) -> str:
    """The device kernels one call of `fn` runs, by name: which SDPA backend the 1.15x target is
    measured against (flash attention 2 and cuDNN's or flash attention 3's Hopper kernels differ by
    about 1.5x at D = 64)."""
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    names = [
        e.key for e in prof.key_averages() if e.self_device_time_total > 0 and not e.key.startswith("aten::")
    ]
    return ", ".join(f"`{n[:90]}`" for n in names) or "none seen"


def matrix_rate_tflops() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    ms = median_ms(lambda: a @ a, iters=10)
    return 2 * 8192**3 / (ms * 1e-3) / 1e12


def timing(lines: list[str], rate: float, wgmma: bool) -> None:
    """The launcher's kernel against SDPA and the fold form, and against the mma.sync kernel where
    the launcher takes the wgmma kernel (`wgmma`)."""
    q, k, v, _, _, _ = inputs(3, 10, 4096, 4096, 64, torch.float16, False, 0)
    sdpa_kernels = device_kernels(lambda: F.scaled_dot_product_attention(q, k, v))
    mma = ["mma.sync", "mma.sync / SDPA"] if wgmma else []
    header = ["B H S D", "SMA kernel", "SDPA (no bias)", "SDPA fold", "kernel / SDPA", *mma]
    header += ["TFLOP/s", "floor", "per call: kernel, SDPA, ratio"]
    lines += [
        "## Timing (fp16, median ms)",
        "",
        f"measured fp16 matrix rate: {rate:.0f} TFLOP/s",
        "",
        f"SDPA's kernels (B=3 H=10 S=4096): {sdpa_kernels}",
        "",
        "Device time per call (calls replayed from a CUDA graph, as in the UNet); then the same",
        "one call at a time between CUDA events (host launch included: the 2026-11-27 figures).",
        f"The launcher's kernel here: {'wgmma' if wgmma else 'mma.sync'} at D = 64.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
    ]
    for b, h, s, d in TIMING_SHAPES:
        q, k, v, m_q, m_k, alpha = inputs(b, h, s, s, d, torch.float16, False, 0)
        calls = {
            "kernel": lambda: sma_torch_ext.sma_forward(q, k, v, m_q, m_k, alpha),  # noqa: B023
            "sdpa": lambda: F.scaled_dot_product_attention(q, k, v),  # noqa: B023
            "fold": lambda: sma.attention_fold(q, k, v, m_q, m_k, alpha),  # noqa: B023
        }
        if wgmma:
            calls["mma"] = lambda: sma_torch_ext.sma_forward(q, k, v, m_q, m_k, alpha, pipeline=MMA_SYNC)  # noqa: B023
        ms = {name: device_ms(fn) for name, fn in calls.items()}
        host = {name: median_ms(calls[name]) for name in ("kernel", "sdpa")}
        kernel, sdpa = ms["kernel"], ms["sdpa"]
        tflops = "-" if kernel is None else f"{4 * b * h * s * s * d / (kernel * 1e-3) / 1e12:.0f}"
        cells = [f"{b} {h} {s} {d}", shown(kernel), shown(sdpa), shown(ms["fold"]), ratio(kernel, sdpa)]
        if wgmma:
            cells += [shown(ms["mma"]), ratio(ms["mma"], sdpa)]
        cells += [tflops, f"{floor_ms(b, h, s, d, rate):.4f}"]
        cells.append(f"{host['kernel']:.3f}, {host['sdpa']:.3f}, {host['kernel'] / host['sdpa']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")


def floor_ms(b: int, h: int, s: int, d: int, rate: float) -> float:
    """The attention's matrix FLOPs (Q K^T and P V) at the measured matrix rate."""
    return 4 * b * h * s * s * d / (rate * 1e12) * 1e3


def ratio(ms: float | None, base: float | None) -> str:
    return "-" if ms is None or base is None else f"{ms / base:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sanitize-case", choices=("mma", "wgmma"), help=argparse.SUPPRESS)
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the tables here (default $OUT/sma_kernel.md)")
    args = parser.parse_args()
    if args.sanitize_case:
        sanitize_case(args.sanitize_case)
        return 0
    if not torch.cuda.is_available():
        print("no CUDA GPU visible to torch: nothing to measure", file=sys.stderr)
        return 2
    sma_torch_ext.load()
    out = args.out or (Path(os.environ["OUT"], "sma_kernel.md") if os.environ.get("OUT") else None)
    lines = [
        "# SMA kernel results",
        "",
        f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}",
        "",
    ]
    # each section is printed and written as soon as it is done: a run stopped at its time limit
    # keeps what it measured. The sanitizer, the slowest and least predictable, runs last, in
    # processes of its own
    wgmma = wgmma_runs(64)
    failures = guarded(lines, lambda: validate(lines))
    shown = report(lines, 0, out)
    if wgmma:
        if failures:
            guarded(lines, lambda: wgmma_probes(lines))
        failures += guarded(lines, lambda: validate(lines, MMA_SYNC))
        shown = report(lines, shown, out)
    if not args.no_timing:
        guarded(lines, lambda: timing(lines, matrix_rate_tflops(), wgmma))
        shown = report(lines, shown, out)
    for kernel in ("mma", "wgmma") if wgmma else ("mma",):
        sanitize(lines, kernel)
        shown = report(lines, shown, out)
    return 1 if failures else 0


def guarded(lines: list[str], section) -> int:
    """Runs a section; a CUDA fault (which ends this process's CUDA context: a kernel changed
    without a GPU) is written down rather than lost, and counts as one failure."""
    try:
        return section() or 0
    except RuntimeError as err:
        lines += [f"**a kernel stopped the run**: `{err}`", ""]
        return 1


def report(lines: list[str], shown: int, out: Path | None) -> int:
    """Print the lines from `shown` on, rewrite `out` with all of them; how many are shown now."""
    print("\n".join(lines[shown:]), flush=True)
    if out is not None:
        out.write_text("\n".join(lines))
    return len(lines)


if __name__ == "__main__":
    sys.exit(main())

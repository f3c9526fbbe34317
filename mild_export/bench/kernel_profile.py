"""Where one image's time goes, kernel by kernel: torch.profiler over one pipeline run.

mild-bench's stages say how long each graph took; this says what ran inside them, and whether
the device or the host set the pace: the device's busy time (the sum of its kernels' and copies'
times) against the wall time. On an H200 the reference's SDXL UNet step took 170 ms for 7 ms of
matrix work (bench/RESULTS.md): a profile tells host overhead from slow kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity

from mild_export.bench.cases import Case, erase_seconds, synthetic_inputs
from reference.backend import Backend
from reference.files import atomic_write
from reference.pipeline import ErasePipeline

ROWS = 30  # operators listed, the most expensive first
TOP_PER_KIND = 8  # kernels listed by full name under each kind: what to fuse or replace next
# What a device kernel does, by its name (lower case), the first kind whose words it contains:
# Inductor's kernels first (their names carry the ops they fused), convolutions before matmuls
# (cuDNN's are implicit GEMMs). Call C's SDXL profiles (bench/RESULTS.md) gave the names.
KINDS = (
    ("Inductor (Triton)", ("triton_",)),
    ("attention", ("sma::", "flash", "fmha", "sdpa", "attention")),
    ("convolution", ("fprop", "conv", "dgrad", "wgrad", "winograd")),
    ("matmul", ("gemm", "nvjet", "cutlass", "cublas", "xmma", "addmm", "aten::mm", "aten::bmm")),
    ("layout and copies", ("nchwtonhwc", "nhwctonchw", "transpose", "copy", "memcpy", "memset", "cat")),
    ("normalization", ("norm", "rowwisemoments", "welford")),
    ("elementwise", ("elementwise", "vectorized", "reduce", "softmax", "silu", "gelu")),
)
HOST_BOUND = 0.8  # a device busier than this share of the wall time is what limits the run


@dataclass(frozen=True)
class KernelProfile:
    label: str
    wall_ms: float
    device_busy_ms: float  # 0 on a CPU
    table: str
    by_kind: list[tuple[str, float, int]]  # (kind, device ms, kernels), the most expensive first
    top: dict[str, list[tuple[str, float, int]]]  # kind -> its costliest (name, device ms, calls)

    def kind_table(self) -> str:
        """Device time by what the kernels do: where a step's time goes, against the floor's GEMMs."""
        lines = [f"{'kernels by kind':<20} {'device ms':>10} {'share':>6} {'calls':>7}"]
        lines += [
            f"{kind:<20} {ms:>10.1f} {ms / self.device_busy_ms:>6.0%} {calls:>7}"
            for kind, ms, calls in self.by_kind
        ]
        return "\n".join(lines)

    def top_table(self) -> str:
        """Each kind's costliest kernels by full name (the operator table cuts names short)."""
        lines = []
        for kind, _, _ in self.by_kind:
            lines.append(f"{kind}:")
            lines += [
                f"  {ms:>8.2f} ms {calls:>6} calls {1e3 * ms / calls:>8.1f} us  {name}"
                for name, ms, calls in self.top[kind]
            ]
        return "\n".join(lines)

    def summary(self) -> str:
        if self.device_busy_ms == 0:
            return f"{self.label}: {self.wall_ms:.1f} ms wall (CPU: no device time)"
        share = self.device_busy_ms / self.wall_ms
        pace = "the host sets the pace" if share < HOST_BOUND else "the device sets the pace"
        return (
            f"{self.label}: {self.wall_ms:.1f} ms wall, device busy {self.device_busy_ms:.1f} ms "
            f"({share:.0%}: {pace})"
        )


def profile_image(backend: Backend, case: Case) -> KernelProfile:
    """One image of `case` under the profiler (run it after warm-up: first calls allocate and tune)."""
    on_gpu = backend.device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if on_gpu else [])]
    image, masks = synthetic_inputs(case)
    with torch.profiler.profile(activities=activities) as prof:
        wall_s = erase_seconds(ErasePipeline(backend), case, image, masks)  # end to end, no stage waits
    events = prof.key_averages()
    busy_us = sum(e.self_device_time_total for e in events) if on_gpu else 0.0
    sort_by = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    device = [(e.key, e.self_device_time_total, e.count) for e in events if e.self_device_time_total > 0]
    table = events.table(sort_by=sort_by, row_limit=ROWS)
    top = top_by_kind(device, TOP_PER_KIND)
    return KernelProfile(case.label, wall_s * 1e3, busy_us / 1e3, table, time_by_kind(device), top)


def kernel_kind(name: str) -> str:
    lower = name.lower()
    return next((kind for kind, words in KINDS if any(w in lower for w in words)), "other")


def time_by_kind(events: list[tuple[str, float, int]]) -> list[tuple[str, float, int]]:
    """(name, device us, calls) of each kernel or op -> (kind, device ms, calls), largest first."""
    totals: dict[str, tuple[float, int]] = {}
    for name, us, calls in events:
        ms, count = totals.get(kernel_kind(name), (0.0, 0))
        totals[kernel_kind(name)] = (ms + us / 1e3, count + calls)
    return sorted(((kind, ms, calls) for kind, (ms, calls) in totals.items()), key=lambda row: -row[1])


def top_by_kind(events: list[tuple[str, float, int]], count: int) -> dict[str, list[tuple[str, float, int]]]:
    """(name, device us, calls) of each kernel -> kind: its `count` costliest (name, device ms, calls)."""
    top: dict[str, list[tuple[str, float, int]]] = {}
    for name, us, calls in sorted(events, key=lambda event: -event[1]):
        kernels = top.setdefault(kernel_kind(name), [])
        if len(kernels) < count:
            kernels.append((name, us / 1e3, calls))
    return top


def write_profile(path: Path, profile: KernelProfile, title: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    kinds = f"{profile.kind_table()}\n\n{profile.top_table()}\n\n" if profile.by_kind else ""  # none on a CPU
    text = f"{title}\n{profile.summary()}\n\n{kinds}{profile.table}\n"
    atomic_write(path, lambda f: f.write(text.encode()))

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
from reference.pipeline import ErasePipeline

ROWS = 30  # operators listed, the most expensive first
HOST_BOUND = 0.8  # a device busier than this share of the wall time is what limits the run


@dataclass(frozen=True)
class KernelProfile:
    label: str
    wall_ms: float
    device_busy_ms: float  # 0 on a CPU
    table: str

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
    return KernelProfile(
        case.label, wall_s * 1e3, busy_us / 1e3, events.table(sort_by=sort_by, row_limit=ROWS)
    )


def write_profile(path: Path, profile: KernelProfile, title: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{title}\n{profile.summary()}\n\n{profile.table}\n")

"""Benchmark cases and their timed runs: N people, image side, steps, guidance.

A case runs the real `ErasePipeline.erase` on a synthetic photo with N rectangular masks, all
people removed and every layer decoded (what `mild-erase` does), so the timed work is the
user's work. Warm-up runs are discarded; figures are medians over the repeats.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mild_export.bench.timing import COMPOSE, TimedBackend, synchronize, timing_compose
from reference.pipeline import ErasePipeline

STAGES = ("text_encoder", "conditioner", "vae_encoder", "unet", "vae_decoder", COMPOSE, "other")


@dataclass(frozen=True)
class Case:
    instances: int
    resolution: int
    steps: int
    guidance: float  # 1 = no guidance (one row per branch), else two rows per branch

    @property
    def copies(self) -> int:
        return 1 if self.guidance == 1.0 else 2

    @property
    def label(self) -> str:
        cfg = "no cfg" if self.copies == 1 else f"cfg {self.guidance:g}"
        return f"N={self.instances} {self.resolution}px {self.steps}st {cfg}"


@dataclass
class ImageRun:
    """One image run twice: end to end as an application runs it, and staged, the device
    synchronised around every graph call so each stage gets its own time. The waits cost the
    staged run the host's queueing time at every call (25 UNet steps), which the end-to-end run
    hides behind the device's work: `image_s` is the figure a user gets."""

    image_s: float  # end to end
    staged_s: float  # the staged run's wall time: its stages plus "other"
    stages_ms: dict[str, float]  # per stage, summed over its calls; "other" is the rest (host work)
    unet_steps_ms: list[float]


@dataclass
class CaseResult:
    case: Case
    runs: list[ImageRun]
    flops: dict[str, int] = field(default_factory=dict)  # per graph, for the whole image
    floor_s: float = 0.0

    @property
    def image_s(self) -> float:
        return statistics.median(r.image_s for r in self.runs)

    @property
    def image_spread(self) -> float | None:
        """(slowest - fastest) / median of the end-to-end repeats; None for a single run. A wide one
        says the machine was busy or its clocks moved while the case ran: its median is not to trust."""
        if len(self.runs) < 2:
            return None
        times = [r.image_s for r in self.runs]
        return (max(times) - min(times)) / self.image_s

    @property
    def staged_s(self) -> float:
        return statistics.median(r.staged_s for r in self.runs)

    @property
    def stages_ms(self) -> dict[str, float]:
        return {s: statistics.median(r.stages_ms[s] for r in self.runs) for s in STAGES}

    @property
    def unet_step_ms(self) -> float:
        return statistics.median(ms for r in self.runs for ms in r.unet_steps_ms)

    @property
    def ratio(self) -> float:
        """Measured over floor: 1 would be every FLOP at the matmul rate and nothing else."""
        return self.image_s / self.floor_s if self.floor_s else float("nan")


def synthetic_inputs(case: Case, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A noise photo and N overlapping rectangles, so composition has real work to do."""
    g = torch.Generator().manual_seed(seed)
    side = case.resolution
    image = torch.rand(3, side, side, generator=g)
    masks = torch.zeros(case.instances, side, side)
    for k in range(case.instances):
        top, left = (side * (1 + k)) // (case.instances + 4), (side * (1 + 2 * k)) // (2 * case.instances + 4)
        masks[k, top : top + side // 3, left : left + side // 4] = 1
    return image, masks


def erase_seconds(pipeline: ErasePipeline, case: Case, image: Tensor, masks: Tensor) -> float:
    """The wall time of one `erase`, from an idle device to an idle device."""
    device = pipeline.device
    synchronize(device)
    start = time.perf_counter()
    pipeline.erase(image, masks, steps=case.steps, guidance=case.guidance, all_layers=True)
    synchronize(device)
    return time.perf_counter() - start


def time_image(timed: TimedBackend, case: Case, image: Tensor, masks: Tensor) -> ImageRun:
    image_s = erase_seconds(ErasePipeline(timed.inner), case, image, masks)
    timed.calls.clear()
    with timing_compose(timed):
        staged_s = erase_seconds(ErasePipeline(timed), case, image, masks)
    stages_ms = {s: 0.0 for s in STAGES}
    for call in timed.calls:
        stages_ms[call.graph] += call.seconds * 1e3
    stages_ms["other"] = staged_s * 1e3 - sum(stages_ms.values())
    unet_steps_ms = [call.seconds * 1e3 for call in timed.calls if call.graph == "unet"]
    return ImageRun(image_s, staged_s, stages_ms, unet_steps_ms)


def run_case(timed: TimedBackend, case: Case, repeats: int, warmup: int) -> CaseResult:
    """`warmup` discarded runs (allocations, kernel selection, shape specialisation), then `repeats`."""
    image, masks = synthetic_inputs(case)
    runs = [time_image(timed, case, image, masks) for _ in range(warmup + repeats)]
    return CaseResult(case, runs[warmup:])

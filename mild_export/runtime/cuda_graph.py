"""Capturing a piece of PyTorch work as a CUDA graph, for the torch backend's replays.

A replay costs the GPU's time and one launch of host time, where running the same work eagerly
launches each kernel from Python: the SDXL UNet's hundreds of kernels a step, or the context's
K/V projections of 70 cross-attentions once an image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def capture(
    work: Callable[[], T], device: torch.device, pool: tuple | None = None
) -> tuple[torch.cuda.CUDAGraph, T]:
    """-> (graph, what `work` returned while captured): replaying the graph redoes `work` on the
    same tensors. A capture records and runs nothing, so those tensors hold their values only after
    a replay. `work` runs once eagerly first, on a side stream (lazy initialisation, cuBLAS handles
    and workspaces, must not be captured), then once under capture. RuntimeError if the capture
    fails, with the caller's stream current again and the random generator usable."""
    current = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(current)
    with torch.cuda.stream(side):
        work()
    current.wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
            result = work()
    except RuntimeError:
        torch.cuda.set_stream(current)  # a capture that fails to end can leave its stream current
        _release_generator(device)
        torch.cuda.synchronize(device)
        raise
    return graph, result


def _release_generator(device: torch.device) -> None:
    """A capture that fails to end never runs the epilogue that takes the device's default random
    generator out of capture mode (torch 2.11), so every later random op on the device raised
    "Offset increment outside graph capture encountered unexpectedly" (an H200, 2026-11-27). A
    clone of its state (same seed and offset) is out of capture mode: the generator takes that."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    generator = torch.cuda.default_generators[index]
    generator.graphsafe_set_state(generator.clone_state())


def failure_reason(err: RuntimeError) -> str:
    """The first line of a failed capture's error, for the log line that says graphs are off."""
    return f"capture failed ({next(iter(str(err).splitlines()), type(err).__name__)})"

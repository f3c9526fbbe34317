"""Timing every graph call of a pipeline run, whatever the backend.

The pipeline reaches the model only through `Backend.run`, so wrapping the backend sees every
stage by its graph name. Devices run asynchronously: the clock is read only after the device has
finished, or a stage would be charged with the work queued before it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import reference.pipeline
from reference.backend import Backend

COMPOSE = "compose"


def synchronize(device: torch.device) -> None:
    """Wait for queued device work; CPU work is already finished when a call returns."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class GraphCall:
    graph: str  # a graph name (reference.graphs), or "compose"
    seconds: float
    shapes: dict[str, tuple[int, ...]]  # the inputs' shapes, to check the counted work is the timed work


class TimedBackend:
    """A Backend that forwards to another one and records each call's wall time."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.config = inner.config
        self.device = inner.device
        self.calls: list[GraphCall] = []

    def tokenize(self, prompts: list[str]) -> dict[str, Tensor]:
        return self.inner.tokenize(prompts)

    def run(self, graph: str, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        shapes = {name: tuple(t.shape) for name, t in inputs.items()}
        return self.timed(graph, shapes, self.inner.run, graph, inputs)

    def timed(self, name: str, shapes: dict[str, tuple[int, ...]], fn: Callable[..., Any], *args: Any) -> Any:
        synchronize(self.device)
        start = time.perf_counter()
        out = fn(*args)
        synchronize(self.device)
        self.calls.append(GraphCall(name, time.perf_counter() - start, shapes))
        return out


@contextlib.contextmanager
def timing_compose(backend: TimedBackend) -> Iterator[None]:
    """Record `compose` calls of ErasePipeline as a stage of their own.

    Composition is tensor arithmetic in the pipeline, not a graph, so it never reaches the backend:
    the pipeline module's `compose` is swapped for a timed one for the length of the block.
    """
    original = reference.pipeline.compose

    def timed_compose(*args: Any, **kwargs: Any) -> Tensor:
        return backend.timed(COMPOSE, {}, lambda: original(*args, **kwargs))

    reference.pipeline.compose = timed_compose
    try:
        yield
    finally:
        reference.pipeline.compose = original

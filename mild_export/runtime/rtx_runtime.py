"""TensorRT for RTX's runtime settings: when its JIT specialises kernels, and where it keeps them.

TensorRT for RTX compiles kernels for the GPU present when an engine first runs. For dynamic
shapes its default strategy (LAZY) runs generic kernels while shape-specialised ones compile in
the background, so the first images at a shape run slower by an amount that depends on timing, and
a benchmark's warm-up may or may not have reached the steady state. EAGER compiles them in the
first call with a shape, blocking: after one image the engines run as fast as they will. The
runtime cache keeps what was compiled in a file, so the next process skips the JIT for shapes it
has seen (TensorRT checks the file against this GPU, driver and version, and ignores a stale one).

    cache = JitCache(folder / jit_cache_name(gpu_name))
    config, _ = runtime_config(trt, engine, "unet", cache, cuda_graph=False)  # one per context
    ...                                                            # run at a new shape
    cache.save()                                                   # written only when it grew
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from mild_export.engine.trt_shim import TensorRT
from reference.files import atomic_write

log = logging.getLogger("mild")

SPECIALIZATION = "EAGER"  # compile shape-specialised kernels in the first call with a shape


def jit_cache_name(gpu_name: str) -> str:
    """One file per GPU model, so a folder shared by two kinds of GPU keeps both caches."""
    return f"rtx-jit-cache-{re.sub(r'[^a-z0-9]+', '-', gpu_name.lower()).strip('-')}.bin"


class JitCache:
    """One IRuntimeCache shared by every engine of a folder, read from and written to `path`.

    The cache can only be made from a runtime config, so it is created with the first config
    that `attach` sees and loaded from the file then; a file this GPU or TensorRT rejects is
    logged and replaced at the next save."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.cache: Any = None
        self._saved = b""
        self._unwritable = False

    def attach(self, config: Any) -> None:
        if self.cache is None:
            self.cache = config.create_runtime_cache()
            self._load()
        if not config.set_runtime_cache(self.cache):
            log.warning(
                "tensorrt: the JIT cache %s could not be attached; kernels compile each start", self.path
            )

    def _load(self) -> None:
        if not self.path.is_file():
            log.info("tensorrt: no JIT cache at %s yet: kernels compile on first use", self.path)
            return
        blob = self.path.read_bytes()
        if self.cache.deserialize(blob):
            self._saved = blob
            log.info("tensorrt: JIT cache loaded from %s (%.1f MB)", self.path, len(blob) / 1e6)
        else:
            log.warning(
                "tensorrt: %s was written by another GPU, driver or TensorRT for RTX: kernels compile "
                "again and replace it",
                self.path,
            )

    def save(self) -> bool:
        """Write the cache if it holds more than the file; False when there was nothing to write or
        the folder is read-only (logged once: kernels then compile at each start)."""
        if self.cache is None or self._unwritable:
            return False
        blob = bytes(self.cache.serialize())
        if not blob or blob == self._saved:
            return False
        try:
            atomic_write(self.path, lambda file: file.write(blob))
        except OSError as err:
            self._unwritable = True
            log.warning(
                "tensorrt: cannot write the JIT cache %s (%s): kernels compile at each start", self.path, err
            )
            return False
        self._saved = blob
        log.info("tensorrt: JIT cache saved to %s (%.1f MB)", self.path, len(blob) / 1e6)
        return True


def runtime_config(
    trt: TensorRT, engine: Any, name: str, cache: JitCache | None, cuda_graph: bool
) -> tuple[Any, str | None]:
    """An RTX runtime config for engine `name`: EAGER specialisation, `cache` attached and, with
    `cuda_graph`, TensorRT for RTX's own CUDA graph capture. Also why the runner should not capture
    graphs itself (None: it may). A TensorRT for RTX without these settings gets (None, reason)."""
    module = trt.module
    try:
        config = engine.create_runtime_config()
        config.dynamic_shapes_kernel_specialization_strategy = getattr(
            module.DynamicShapesKernelSpecializationStrategy, SPECIALIZATION
        )
    except (AttributeError, RuntimeError, TypeError) as err:
        log.warning("tensorrt: %s: TensorRT for RTX %s has no runtime settings (%s)", name, trt.version, err)
        return None, "TensorRT for RTX without runtime settings: no CUDA graphs"
    if cache is not None:
        cache.attach(config)
    if not cuda_graph:
        return config, "not asked for (cuda_graph=False)"
    try:
        config.cuda_graph_strategy = module.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
    except AttributeError as err:
        reason = f"TensorRT for RTX {trt.version} has no CUDA graph strategy ({err})"
        log.warning("tensorrt: %s runs without CUDA graphs: %s", name, reason)
        return config, reason
    log.info("tensorrt: %s uses TensorRT for RTX's own CUDA graphs (WHOLE_GRAPH_CAPTURE)", name)
    return config, "TensorRT for RTX captures CUDA graphs itself (WHOLE_GRAPH_CAPTURE)"

"""TensorRT for RTX's runtime settings on any machine: the runtime config a context gets and the JIT
cache file's life (loaded once, written only when it grew, a stale or unwritable file survived).

A runtime config comes only from a deserialized engine, which needs a GPU, so the engine and
its config are stand-ins here; the enum values set on them are the installed module's own."""

from __future__ import annotations

import logging

import pytest

from mild_export.runtime.rtx_runtime import JitCache, jit_cache_name, runtime_config


class FakeCache:
    """IRuntimeCache: serialize() gives what the JIT compiled so far; deserialize() may refuse."""

    def __init__(self, accepts: bool = True):
        self.content, self.accepts, self.loaded = b"", accepts, []

    def serialize(self) -> bytes:
        return self.content

    def deserialize(self, blob: bytes) -> bool:
        self.loaded.append(bytes(blob))
        if self.accepts:
            self.content = bytes(blob)
        return self.accepts


class FakeConfig:
    def __init__(self, cache: FakeCache):
        self._cache, self.attached = cache, None

    def create_runtime_cache(self) -> FakeCache:
        return self._cache

    def set_runtime_cache(self, cache: FakeCache) -> bool:
        self.attached = cache
        return True


class FakeEngine:
    def __init__(self, cache: FakeCache | None = None):
        self.cache = cache or FakeCache()

    def create_runtime_config(self) -> FakeConfig:
        return FakeConfig(self.cache)


@pytest.fixture
def rtx(trt):
    if not trt.is_rtx:
        pytest.skip("the installed TensorRT is not TensorRT for RTX")
    return trt


def test_contexts_specialise_eagerly_with_the_cache_attached(rtx, tmp_path):
    module = rtx.module
    cache = JitCache(tmp_path / "jit.bin")
    config, reason = runtime_config(rtx, FakeEngine(), "unet", cache, cuda_graph=False)
    strategy = module.DynamicShapesKernelSpecializationStrategy.EAGER
    assert config.dynamic_shapes_kernel_specialization_strategy == strategy
    assert config.attached is cache.cache is not None
    assert not hasattr(config, "cuda_graph_strategy")
    assert reason == "not asked for (cuda_graph=False)"


def test_cuda_graphs_are_left_to_tensorrt_for_rtx(rtx, caplog):
    caplog.set_level(logging.INFO, logger="mild")
    config, reason = runtime_config(rtx, FakeEngine(), "unet", None, cuda_graph=True)
    assert config.cuda_graph_strategy == rtx.module.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
    assert config.attached is None  # no cache asked for
    assert reason == "TensorRT for RTX captures CUDA graphs itself (WHOLE_GRAPH_CAPTURE)"
    assert "tensorrt: unet uses TensorRT for RTX's own CUDA graphs (WHOLE_GRAPH_CAPTURE)" in caplog.text


def test_an_rtx_without_runtime_settings_runs_plain(rtx, caplog):
    class OldEngine:
        def create_runtime_config(self):
            raise AttributeError("'ICudaEngine' object has no attribute 'create_runtime_config'")

    config, reason = runtime_config(rtx, OldEngine(), "vae_decoder", None, cuda_graph=True)
    assert config is None and reason == "TensorRT for RTX without runtime settings: no CUDA graphs"
    assert (
        "tensorrt: vae_decoder: TensorRT for RTX" in caplog.text and "has no runtime settings" in caplog.text
    )


def test_the_cache_file_is_written_when_it_grew_and_loaded_by_the_next_process(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mild")
    path = tmp_path / "jit.bin"
    first = JitCache(path)
    assert not first.save()  # no config attached yet: nothing to write
    engine = FakeEngine()
    first.attach(engine.create_runtime_config())
    first.attach(engine.create_runtime_config())  # a second engine shares the one cache
    assert "no JIT cache at" in caplog.text
    assert not first.save() and not path.exists()  # nothing compiled yet
    engine.cache.content = b"kernels for 3 rows"
    assert first.save() and path.read_bytes() == b"kernels for 3 rows"
    assert not first.save()  # unchanged: not written again
    engine.cache.content += b" and 5 rows"
    assert first.save() and path.read_bytes() == b"kernels for 3 rows and 5 rows"

    later = FakeEngine()
    second = JitCache(path)
    second.attach(later.create_runtime_config())
    assert later.cache.loaded == [b"kernels for 3 rows and 5 rows"]
    assert not second.save()  # what was loaded is what the file holds
    assert "JIT cache loaded from" in caplog.text


def test_a_cache_of_another_gpu_is_replaced(tmp_path, caplog):
    path = tmp_path / "jit.bin"
    path.write_bytes(b"from another GPU")
    engine = FakeEngine(FakeCache(accepts=False))
    cache = JitCache(path)
    cache.attach(engine.create_runtime_config())
    assert f"tensorrt: {path} was written by another GPU, driver or TensorRT for RTX" in caplog.text
    engine.cache.content = b"compiled here"
    assert cache.save() and path.read_bytes() == b"compiled here"


def test_a_read_only_folder_is_said_once_and_nothing_fails(tmp_path, caplog):
    path = tmp_path / "missing-folder" / "jit.bin"
    engine = FakeEngine()
    cache = JitCache(path)
    cache.attach(engine.create_runtime_config())
    engine.cache.content = b"compiled"
    assert not cache.save() and not cache.save()
    warnings = [r.getMessage() for r in caplog.records if "cannot write the JIT cache" in r.getMessage()]
    assert len(warnings) == 1 and str(path) in warnings[0] and "kernels compile at each start" in warnings[0]


def test_one_cache_file_per_gpu_model():
    assert jit_cache_name("NVIDIA H100 80GB HBM3") == "rtx-jit-cache-nvidia-h100-80gb-hbm3.bin"
    assert jit_cache_name("NVIDIA GeForce RTX 4090") == "rtx-jit-cache-nvidia-geforce-rtx-4090.bin"

"""libmild_plugins.so on a CPU-only machine: exports, loading into TensorRT for RTX, ahead-of-time
engine builds with the plugin layer, and the plugin's own build-time validation."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from onnx import TensorProto
from sma_graph import sma_model

from mild_export.engine.trt_shim import REPO_ROOT, TensorRTError, plugin_library_path
from mild_export.ops.schema import SMA
from tests.conftest import HEADERS, _run

TARGET = "sm86"


def test_exports_exactly_the_two_entry_points(plugin_library):
    out = subprocess.run(
        ["nm", "-D", "--defined-only", str(plugin_library)], capture_output=True, text=True, check=True
    ).stdout
    symbols = sorted(line.split()[-1] for line in out.splitlines() if line.strip())
    assert symbols == ["getCreators", "setLoggerFinder"]


def test_links_no_tensorrt_library(plugin_library):
    out = subprocess.run(
        ["readelf", "-d", str(plugin_library)], capture_output=True, text=True, check=True
    ).stdout
    needed = [line for line in out.splitlines() if "(NEEDED)" in line]
    assert needed, "readelf listed no NEEDED entries at all"
    assert not [n for n in needed if "nvinfer" in n or "tensorrt" in n or "cudart.so" in n], needed


def _cubins(library) -> list[str]:
    """The architectures of the library's cubins, e.g. ["sm_86", "sm_90", "sm_90a"]."""
    cmd = ["cuobjdump", "--list-elf", str(library)]
    listed = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return sorted(line.rsplit(".", 2)[-2] for line in listed.splitlines() if line.endswith(".cubin"))


def test_a_build_for_sm90_carries_the_wgmma_kernel_for_sm90a_alone(plugin_library, tmp_path):
    """Where the architectures include 90, sma_kernel_sm90.cu is compiled for sm_90a alone beside
    every architecture's sma_kernel.cu (whose launcher then takes it on sm_90); the session's
    sm_86 build carries no sm_90a code."""
    if shutil.which("cuobjdump") is None:
        pytest.skip("listing the library's cubins needs cuobjdump on PATH")
    assert _cubins(plugin_library) == ["sm_86"]
    build = tmp_path / "build"
    arches = "-DCMAKE_CUDA_ARCHITECTURES=86-real;90-real"
    _run(["cmake", "-S", str(REPO_ROOT), "-B", str(build), arches, f"-DTensorRT_INCLUDE_DIR={HEADERS}"])
    _run(["cmake", "--build", str(build), "--parallel", "2"])
    assert _cubins(plugin_library_path(build)) == ["sm_86", "sm_90", "sm_90a"]


def _builder(trt, plugin_library):
    logger = trt.logger("VERBOSE")
    builder = trt.builder(logger)
    trt.load_plugin_library(builder, plugin_library)
    return logger, builder


def test_registry_lists_our_creator(trt, plugin_library):
    logger, builder = _builder(trt, plugin_library)
    found = [
        (c.name, c.plugin_version, c.plugin_namespace)
        for c in builder.get_plugin_registry().all_creators
        if c.name == SMA.op_type
    ]
    assert found == [(SMA.op_type, SMA.plugin_version, SMA.plugin_namespace)]
    creator = trt.plugin_creator(builder)
    assert (creator.name, creator.plugin_version) == (SMA.op_type, SMA.plugin_version)
    assert any(str(plugin_library) in r.message for r in logger.records), "TensorRT did not log the load"


def _parse(trt, builder, logger, model: bytes, plugin_override: bool = True):
    network = trt.network(builder)
    parser = trt.parse_onnx(network, model, logger, plugin_override=plugin_override)
    return network, parser


def _dynamic_batch_config(trt, builder, network, batches=(1, 2, 4)):
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(tensor.shape)
        if -1 in shape:
            lo, opt, hi = (tuple(b if d == -1 else d for d in shape) for b in batches)
            profile.set_shape(tensor.name, lo, opt, hi)
    config.add_optimization_profile(profile)
    trt.set_targets(config, [TARGET])
    return config


@pytest.mark.parametrize("elem_type", [TensorProto.FLOAT16, TensorProto.FLOAT], ids=["fp16", "fp32"])
def test_engine_with_plugin_builds_ahead_of_time(trt, plugin_library, elem_type):
    logger, builder = _builder(trt, plugin_library)
    network, _parser = _parse(trt, builder, logger, sma_model(elem_type))
    assert network.num_layers == 1
    assert trt.count_plugin_layers(network) == 1
    out = network.get_output(0)
    want = trt.module.DataType.HALF if elem_type == TensorProto.FLOAT16 else trt.module.DataType.FLOAT
    assert out.dtype == want
    assert tuple(out.shape) == (-1, 2, 77, 40)

    config = _dynamic_batch_config(trt, builder, network)
    config.plugins_to_serialize = [str(plugin_library)]
    plan = trt.build(builder, network, config, logger)
    assert len(plan) > 0
    # the library is embedded in the engine (plugins_to_serialize): its exported name is in the plan
    assert b"getCreators" in plan


def test_without_override_the_function_body_is_inlined(trt, plugin_library):
    logger, builder = _builder(trt, plugin_library)
    network, _parser = _parse(trt, builder, logger, sma_model(), plugin_override=False)
    assert trt.count_plugin_layers(network) == 0
    assert network.num_layers > 5  # the standard-op body of the model-local function


def _expect_rejection(trt, plugin_library, capfd, model: bytes, culprit: str, callback: str):
    logger, builder = _builder(trt, plugin_library)
    with pytest.raises(TensorRTError) as excinfo:
        network, _parser = _parse(trt, builder, logger, model)
        trt.build(builder, network, _dynamic_batch_config(trt, builder, network), logger)
    # TensorRT's log (through our ILogger) names the plugin callback that refused
    assert callback in str(excinfo.value)
    assert callback in logger.text()
    # the plugin's own message names the culprit (written to stderr: under TensorRT for RTX the
    # plugin may not call ILogger, DESIGN.md section 7)
    err = capfd.readouterr().err
    assert f"[mild_plugins] ERROR: {SMA.op_type} layer 'sma0'" in err
    assert culprit in err


def test_rejects_wrong_input_rank(trt, plugin_library, capfd):
    model = sma_model(shapes={"q": ["B", 77, 40]})
    _expect_rejection(
        trt,
        plugin_library,
        capfd,
        model,
        "input 0 (q) must have rank 4 [B, H, Sq, D], got rank 3",
        "output shape computation",
    )


def test_rejects_mismatched_head_dims(trt, plugin_library, capfd):
    model = sma_model(shapes={"k": ["B", 2, 77, 32]})
    _expect_rejection(
        trt,
        plugin_library,
        capfd,
        model,
        "head dim D differs: input 0 (q) dim 3 is 40 but input 1 (k) dim 3 is 32",
        "configurePlugin",
    )


def test_rejects_unsupported_dtype(trt, plugin_library, capfd):
    model = sma_model(TensorProto.INT32)
    _expect_rejection(
        trt,
        plugin_library,
        capfd,
        model,
        "input 0 (q) has type INT32; SpatiallyModulatedAttention supports FLOAT, HALF and BF16",
        "getOutputDataTypes",
    )


def test_rejects_mixed_dtypes(trt, plugin_library, capfd):
    model = sma_model(TensorProto.FLOAT16, types={"m_k": TensorProto.FLOAT})
    _expect_rejection(
        trt, plugin_library, capfd, model, "input 4 (m_k) has type FLOAT but q has HALF", "getOutputDataTypes"
    )


def test_rejects_unsupported_head_dim(trt, plugin_library, capfd):
    shape = ["B", 2, 77, 36]
    model = sma_model(shapes={"q": shape, "k": shape, "v": shape})
    _expect_rejection(
        trt,
        plugin_library,
        capfd,
        model,
        "head dim D = 36 of input 0 (q) is not supported",
        "configurePlugin",
    )

"""mild-export's engine step on a CPU-only machine (TensorRT for RTX builds ahead of time).

Three builds in all, kept small for CI: the tiny model fp32 and fp16 at the smallest profile the
CLI allows (one instance, the smallest image side), one target; the `--sma function` folder is a
copy of the fp32 one, so only its UNet is exported and built again.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import onnx
import pytest

from mild_export.cli.export import main
from mild_export.engine import build
from mild_export.engine.build import DEFAULT_RTX_TARGETS, choose_targets, parse_targets
from mild_export.engine.trt_shim import PLUGIN_LIBRARY_NAME, TensorRT
from mild_export.ops.schema import SMA
from reference.files import file_sha256

pytestmark = pytest.mark.slow

GRAPHS = ("text_encoder", "conditioner", "vae_encoder", "vae_decoder", "unet")
TARGET = "sm86"
SMALLEST = ["--model", "tiny", "--resolution", "16", "--max-instances", "1", "--targets", TARGET]


def export(out: Path, *extra: str) -> int:
    return main([*SMALLEST, "--out", str(out), *extra])


def export_graphs_only(out: Path) -> int:
    """--no-engines, without --targets (refused beside it: it would change nothing)."""
    return main([*SMALLEST[:-2], "--out", str(out), "--no-engines"])


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def sma_nodes(path: Path) -> int:
    model = onnx.load(str(path), load_external_data=False)
    return sum(n.op_type == SMA.op_type and n.domain == SMA.domain for n in model.graph.node)


def parsed_plugin_layers(trt: TensorRT, plugin_library: Path, onnx_path: Path) -> tuple[int, object]:
    """Plugin layers of the network TensorRT parses from `onnx_path`, and its first output's type."""
    logger = trt.logger()
    builder = trt.builder(logger)
    trt.load_plugin_library(builder, plugin_library)
    network = trt.network(builder)
    _parser = trt.parse_onnx(network, onnx_path.read_bytes(), logger)
    return trt.count_plugin_layers(network), network.get_output(0).dtype


@pytest.fixture(scope="module")
def fp32(trt, plugin_library, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fp32")
    assert export(out, "--plugin", str(plugin_library)) == 0
    return out


@pytest.fixture(scope="module")
def fp16(trt, plugin_library, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fp16")
    with pytest.MonkeyPatch.context() as mp:  # the plugin found through the environment this time
        mp.setenv(build.PLUGIN_ENV, str(plugin_library))
        assert export(out, "--fp16") == 0
    return out


@pytest.fixture(scope="module")
def bf16(trt, plugin_library, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bf16")
    assert export(out, "--bf16", "--plugin", str(plugin_library)) == 0
    return out


@pytest.fixture(autouse=True)
def info_logs(caplog):
    caplog.set_level(logging.INFO, logger="mild")


@pytest.fixture
def fp32_copy(fp32, tmp_path) -> Path:
    """A folder with the fp32 ONNX files and engines, for runs that change what is there."""
    return Path(shutil.copytree(fp32, tmp_path / "copy"))


# --- what a build writes -----------------------------------------------------------------------------


@pytest.mark.parametrize("folder, precision", [("fp32", "fp32"), ("fp16", "fp16"), ("bf16", "bf16")])
def test_every_graph_has_an_engine_listed_in_the_manifest(request, trt, folder, precision):
    out = request.getfixturevalue(folder)
    manifest = read_manifest(out)
    for name in GRAPHS:
        entry = manifest["engines"][name]
        plan = out / f"{name}.plan"
        assert entry["file"] == plan.name and plan.stat().st_size > 0
        assert entry["sha256"] == file_sha256(plan)
        assert entry["onnx_sha256"] == manifest["graphs"][name]["sha256"]
        assert entry["tensorrt"] == f"TensorRT-RTX {trt.version}"
        assert entry["targets"] == [TARGET]
        assert entry["precision"] == precision
        assert entry["symbols"] == manifest["graphs"][name]["symbols"]  # the contract's profile
    assert manifest["engines"]["plugin_library"] == PLUGIN_LIBRARY_NAME
    assert (out / PLUGIN_LIBRARY_NAME).is_file()  # what the runtimes load, beside the engines
    # TensorRT for RTX has no timing cache (full TensorRT keeps one in DIR/timing.cache)
    assert (out / build.TIMING_CACHE).is_file() == trt.has_timing_cache
    assert [p.name for p in out.glob(".*")] == [".mild-export"]  # its mark; no temporary leftovers


@pytest.mark.parametrize("folder, dtype", [("fp32", "FLOAT"), ("fp16", "HALF"), ("bf16", "BF16")])
def test_one_plugin_layer_per_sma_node(request, trt, plugin_library, folder, dtype):
    out = request.getfixturevalue(folder)
    engines = read_manifest(out)["engines"]
    for name in GRAPHS:
        nodes = sma_nodes(out / f"{name}.onnx")
        assert engines[name]["plugin_layers"] == nodes, name
        if name == "unet":
            assert nodes > 0
            layers, out_type = parsed_plugin_layers(trt, plugin_library, out / "unet.onnx")
            assert layers == nodes
            assert out_type == getattr(trt.module.DataType, dtype)  # strongly typed: the ONNX's type
    # the plugin library is embedded in the UNet engine (plugins_to_serialize)
    assert b"getCreators" in (out / "unet.plan").read_bytes()


def test_second_run_reuses_the_engines(fp32, plugin_library, caplog):
    before = {p.name: p.stat().st_mtime_ns for p in fp32.glob("*.plan")}
    assert export(fp32, "--plugin", str(plugin_library)) == 0
    assert {p.name: p.stat().st_mtime_ns for p in fp32.glob("*.plan")} == before
    for name in GRAPHS:
        assert f"engines: {name}.plan is up to date" in caplog.text
    assert "engines: 0 built, 5 up to date" in caplog.text


def test_function_form_has_no_plugin_layers_and_needs_no_plugin(fp32_copy, monkeypatch, caplog):
    monkeypatch.setenv(build.PLUGIN_ENV, str(fp32_copy / "no-such-library.so"))  # never looked at
    monkeypatch.setattr(build, "plugin_library_path", lambda: fp32_copy / "nothing-here.so")
    unet_before = read_manifest(fp32_copy)["engines"]["unet"]
    assert export(fp32_copy, "--sma", "function") == 0
    manifest = read_manifest(fp32_copy)
    assert manifest["sma"] == "function"
    unet = manifest["engines"]["unet"]
    assert sma_nodes(fp32_copy / "unet.onnx") > 0  # the same node, its function body inlined
    assert unet["plugin_layers"] == 0
    assert unet["key"] != unet_before["key"] and unet["sha256"] == file_sha256(fp32_copy / "unet.plan")
    assert "engines: built unet.plan" in caplog.text
    assert "engines: text_encoder.plan is up to date" in caplog.text


# --- when engines are skipped ------------------------------------------------------------------------


def test_without_tensorrt_the_onnx_files_are_written_and_engines_skipped(fp32_copy, monkeypatch, caplog):
    def no_tensorrt(prefer=None):
        raise ImportError("no TensorRT Python module found (tensorrt: No module named 'tensorrt')")

    monkeypatch.setattr(TensorRT, "load", staticmethod(no_tensorrt))
    assert export(fp32_copy) == 0
    assert "engines: skipped, no TensorRT Python module found" in caplog.text
    assert all((fp32_copy / f"{name}.onnx").is_file() for name in GRAPHS)


def test_without_the_plugin_library_engines_are_skipped(fp32_copy, monkeypatch, caplog):
    monkeypatch.delenv(build.PLUGIN_ENV, raising=False)
    missing = fp32_copy / "build" / PLUGIN_LIBRARY_NAME
    monkeypatch.setattr(build, "plugin_library_path", lambda: missing)
    assert export(fp32_copy) == 0
    assert (
        f"engines: skipped, the SMA plugin library {PLUGIN_LIBRARY_NAME} was not found (no --plugin, "
        f"no ${build.PLUGIN_ENV}, not in {missing.parent}): build it with `{build.BUILD_PLUGIN}`"
    ) in caplog.text


def test_no_engines_option(fp32_copy, caplog):
    assert export_graphs_only(fp32_copy) == 0
    assert "engines: skipped (--no-engines)" in caplog.text


def test_stale_engine_is_removed_with_its_listing(fp32_copy, caplog):
    manifest = read_manifest(fp32_copy)
    manifest["engines"]["unet"]["onnx_sha256"] = "0" * 64  # as if built from an older unet.onnx
    (fp32_copy / "manifest.json").write_text(json.dumps(manifest))
    assert export_graphs_only(fp32_copy) == 0
    assert not (fp32_copy / "unet.plan").exists()
    assert "unet" not in read_manifest(fp32_copy)["engines"]
    assert "engines: removed unet.plan, built from an older unet.onnx" in caplog.text


# --- bad options fail before the export --------------------------------------------------------------


def test_sm90_is_not_an_rtx_target(trt, tmp_path, caplog):
    assert main(["--model", "tiny", "--out", str(tmp_path), "--targets", "sm86,sm90"]) == 2
    assert (
        "error: target sm90 (Hopper: H100, H200) is not a TensorRT for RTX target; TensorRT for RTX "
        f"{trt.version} builds for {','.join(trt.rtx_targets())}. On Hopper use full TensorRT "
        "(pip install tensorrt), which builds for the GPU present"
    ) in caplog.text
    assert not list(tmp_path.iterdir())  # nothing exported


def test_unknown_target(trt, tmp_path, caplog):
    assert main(["--model", "tiny", "--out", str(tmp_path), "--targets", "sm87"]) == 2
    assert (
        f"error: unknown target 'sm87': TensorRT for RTX {trt.version} builds for "
        f"{','.join(trt.rtx_targets())}"
    ) in caplog.text


def test_malformed_targets(tmp_path, caplog):
    assert main(["--model", "tiny", "--out", str(tmp_path), "--targets", "sm86;ampere"]) == 2
    assert (
        "error: --targets 'sm86;ampere': 'sm86;ampere' is not a compute capability; "
        "give a comma-separated list such as sm86,sm89"
    ) in caplog.text


def test_missing_plugin_path(trt, tmp_path, caplog):
    missing = tmp_path / "libmild_plugins.so"
    assert main(["--model", "tiny", "--out", str(tmp_path / "o"), "--plugin", str(missing)]) == 2
    assert f"error: --plugin {missing}: no such file; give the path of {PLUGIN_LIBRARY_NAME}" in caplog.text


def test_missing_plugin_library_named_by_the_environment(trt, tmp_path, monkeypatch, caplog):
    missing = tmp_path / "libmild_plugins.so"
    monkeypatch.setenv(build.PLUGIN_ENV, str(missing))
    assert main(["--model", "tiny", "--out", str(tmp_path / "o")]) == 2
    assert f"error: $MILD_PLUGIN_LIBRARY {missing}: no such file; give the path of" in caplog.text


def test_a_plugin_library_tensorrt_cannot_load(trt, tmp_path, caplog):
    """It failed with exit code 1 at the UNet engine, after the export and four engines."""
    not_a_library = tmp_path / "libmild_plugins.so"
    not_a_library.write_text("not a shared library")
    assert main(["--model", "tiny", "--out", str(tmp_path / "o"), "--plugin", str(not_a_library)]) == 2
    flavour = "TensorRT-RTX" if trt.is_rtx else "TensorRT"
    assert (
        f"error: {not_a_library}: {flavour} {trt.version} cannot load it as a plugin library; give the "
        f"{PLUGIN_LIBRARY_NAME} built by `{build.BUILD_PLUGIN}`"
    ) in caplog.text
    assert "loading model" not in caplog.text and not (tmp_path / "o").exists()


# --- targets -----------------------------------------------------------------------------------------


def test_parse_targets():
    assert parse_targets("sm86, sm_89,120,sm86") == ("sm86", "sm89", "sm120")
    assert parse_targets("Current") == ("current",)


def test_current_target_is_tensorrt_for_rtx_own_choice(trt):
    """'current' asks TensorRT for RTX to build for this machine's GPU (its own verdict on a GPU
    that is not an ahead-of-time target, such as sm90)."""
    assert choose_targets(trt, ("current",), "sm90") == ("current",)
    config = trt.builder(trt.logger()).create_builder_config()
    trt.set_targets(config, ("current",))
    assert config.num_compute_capabilities == 1
    assert config.get_compute_capability(0) == trt.module.ComputeCapability.CURRENT


def test_current_target_without_a_gpu_is_refused_before_the_export(trt, tmp_path, caplog, monkeypatch):
    """Without a GPU TensorRT for RTX failed at the first engine, after the export, with a CUDA
    driver error (exit 1); the option is refused first, naming targets that build here."""
    monkeypatch.setattr(build, "present_gpu", lambda: None)
    assert main(["--model", "tiny", "--targets", "current", "--out", str(tmp_path / "o")]) == 2
    assert caplog.messages == [
        "error: --targets current builds for this machine's GPU and none is visible (neither PyTorch nor "
        "nvidia-smi sees one): name the targets instead, e.g. --targets sm80,sm86,sm89,sm120"
    ]
    assert not (tmp_path / "o").exists()


def test_default_targets(trt, caplog):
    assert choose_targets(trt, None, "sm89") == ("sm89",)  # the GPU present
    assert choose_targets(trt, None, None) == DEFAULT_RTX_TARGETS
    assert choose_targets(trt, None, "sm90") == DEFAULT_RTX_TARGETS
    assert "the GPU present (sm90) is not a TensorRT for RTX target" in caplog.text


def test_full_tensorrt_takes_no_targets(trt):
    full = TensorRT(trt.module, is_rtx=False)
    with pytest.raises(ValueError, match=r"--targets sm86: full TensorRT .* builds for the GPU present"):
        choose_targets(full, ("sm86",), "sm86")
    with pytest.raises(build.EnginesUnavailable, match="for the GPU present and there is none"):
        choose_targets(full, None, None)
    assert choose_targets(full, None, "sm90") == ()

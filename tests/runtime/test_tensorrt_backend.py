"""The TensorRT backend: its refusals and shape/dtype rules on any machine; on a GPU, the whole tiny
pipeline on fp32 and fp16 engines against the PyTorch reference on the same inputs.

GPU tolerances (DESIGN.md section 8) and why:
- fp16 engines: per-step noise relative error < 1e-2, composite PSNR > 35 dB.
- fp32 engines: < 1e-4 and > 60 dB where TensorRT computes in fp32. On Ampere and newer it does
  not: TensorRT enables TF32 for fp32 convolutions and matrix products by default (mild-export
  does not turn it off), and TF32 rounds their inputs to 10 mantissa bits (unit roundoff
  2^-11 = 4.9e-4), so 1e-4 is below the precision the engine computes in. There the bounds are
  1e-3 per step (about twice TF32's unit roundoff: activations and sums stay fp32) and the fp16
  image bound, 35 dB (TF32 has fp16's mantissa).
The reference runs in strict fp32 (TF32 off in PyTorch) on the same GPU, on the very inputs each
engine call got, so the per-step error is that of one UNet call, not an accumulated drift.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mild_export.bench.backends import BenchOptions, make_target
from mild_export.cli.erase import main as erase
from mild_export.engine.trt_shim import REPO_ROOT, plugin_library_path
from mild_export.export.contracts import ExportShapes, contracts
from mild_export.export.manifest import Manifest, graph_entry
from mild_export.runtime import tensorrt_backend as trb
from mild_export.runtime.rtx_runtime import jit_cache_name
from mild_export.runtime.trt_engine import TORCH_DTYPES, check_profile, torch_dtype
from reference.config import ModelConfig
from tests.conftest import requires_gpu

SHAPES = ExportShapes(resolutions=(64,), max_instances=2, guidance=True)
GRAPHS = ("text_encoder", "conditioner", "vae_encoder", "vae_decoder", "unet")


# --- a folder as mild-export leaves it, without running an export ----------------------------------


def fake_export(folder: Path, engines: bool) -> Path:
    """manifest.json with five ONNX entries and, with `engines`, five .plan entries (fake bytes)."""
    config = ModelConfig.from_name("tiny")
    manifest = Manifest(
        model="tiny",
        model_sha256="0" * 64,
        config=config.to_dict(),
        precision="fp16",
        sma="plugin",
        opset=17,
        shapes={"resolutions": [64], "max_instances": 2, "guidance": True},
        kept_in_fp32=[],
    )
    for name, contract in contracts(config, SHAPES).items():
        manifest.graphs[name] = graph_entry(contract, f"{name}.onnx", f"{name}-onnx-sha", "key")
        if engines:
            plan = folder / f"{name}.plan"
            plan.write_bytes(b"not an engine " + name.encode())
            manifest.engines[name] = {
                "file": plan.name,
                "sha256": trb.file_sha256(plan),
                "onnx_sha256": f"{name}-onnx-sha",
                "tensorrt": "TensorRT-RTX 1.7.1.116",
                "targets": ["sm86"],
            }
    manifest.write(folder)
    return folder


@pytest.fixture
def photo(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[10:40, 20:44] = 255
    Image.fromarray(mask).save(tmp_path / "m1.png")
    return tmp_path


def erase_with_tensorrt(photo: Path, engines: Path, *extra: str) -> int:
    args = [str(photo / "photo.png"), "--mask", str(photo / "m1.png"), "--steps", "1"]
    return erase(
        [*args, "--out", str(photo / "out"), "--backend", "tensorrt", "--engines", str(engines), *extra]
    )


@pytest.fixture
def gpu_visible(monkeypatch):
    """Pretend a GPU is visible, to reach the folder checks that come after the GPU check."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


# --- the CLI's refusals (no GPU needed) --------------------------------------------------------------


def test_cli_without_a_gpu(photo, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert erase_with_tensorrt(photo, fake_export(tmp_path, engines=True)) == 2
    assert (
        "error: --backend tensorrt needs an NVIDIA GPU: none visible (torch.cuda.is_available() is False); "
        "use --backend onnxruntime"
    ) in caplog.text


def test_cli_without_plans(photo, tmp_path, gpu_visible, caplog):
    folder = tmp_path / "export"
    folder.mkdir()
    fake_export(folder, engines=False)
    assert erase_with_tensorrt(photo, folder, "--device", "cuda:0") == 2
    assert (
        f"error: {folder} has no TensorRT engines (no .plan files): run mild-export --out {folder} with "
        "TensorRT installed (it builds DIR/<graph>.plan after the ONNX export)"
    ) in caplog.text


def test_cli_on_the_cpu_device(photo, tmp_path, gpu_visible, caplog):
    assert erase_with_tensorrt(photo, fake_export(tmp_path, engines=True), "--device", "cpu") == 2
    assert "error: --backend tensorrt runs on an NVIDIA GPU, not on cpu: give --device cuda" in caplog.text


def test_cli_needs_engines(photo, capsys):
    with pytest.raises(SystemExit) as exit_:
        erase(
            [str(photo / "photo.png"), "--mask", str(photo / "m1.png"), "--out", "o", "--backend", "tensorrt"]
        )
    assert exit_.value.code == 2
    assert "--backend tensorrt runs exported graphs: give --engines DIR" in capsys.readouterr().err


def test_bench_knows_the_backend(tmp_path, monkeypatch):
    options = BenchOptions("tiny", None, torch.device("cuda"), None)
    with pytest.raises(ValueError, match="--backend tensorrt runs exported graphs: give --engines DIR"):
        make_target("tensorrt", options)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"--backend tensorrt needs an NVIDIA GPU: none visible"):
        make_target("tensorrt", BenchOptions("tiny", fake_export(tmp_path, True), torch.device("cuda"), None))


# --- the folder checks ------------------------------------------------------------------------------


def test_a_missing_engine_is_named(tmp_path):
    folder = fake_export(tmp_path, engines=True)
    manifest = Manifest.read(folder)
    del manifest.engines["vae_decoder"]
    with pytest.raises(ValueError, match=rf"{folder} has no engine for vae_decoder: run mild-export --out"):
        trb.engine_files(folder, manifest)


def test_an_edited_engine_is_named(tmp_path):
    folder = fake_export(tmp_path, engines=True)
    (folder / "unet.plan").write_bytes(b"truncated")
    with pytest.raises(
        ValueError, match=r"unet\.plan does not match its manifest hash \(edited or truncated\)"
    ):
        trb.engine_files(folder, Manifest.read(folder))


def test_an_engine_of_an_older_onnx_file_is_named(tmp_path):
    folder = fake_export(tmp_path, engines=True)
    manifest = Manifest.read(folder)
    manifest.engines["unet"]["onnx_sha256"] = "older"
    with pytest.raises(ValueError, match=r"unet\.plan was built from an older unet\.onnx"):
        trb.engine_files(folder, manifest)


def test_every_engine_is_found(tmp_path):
    folder = fake_export(tmp_path, engines=True)
    assert trb.engine_files(folder, Manifest.read(folder)) == {n: folder / f"{n}.plan" for n in GRAPHS}


def test_rebuild_hints_name_the_export_command(tmp_path, trt, monkeypatch):
    folder = fake_export(tmp_path, engines=True)
    manifest = Manifest.read(folder)
    command = (
        "mild-export --model tiny --fp16 --resolution=64 --max-instances 2 --guidance --sma plugin "
        f"--out {folder}"
    )
    assert trb.export_command(folder, manifest) == command
    if trt.is_rtx:
        monkeypatch.setattr(trb, "present_target", lambda: "sm89")
        assert trb.rebuild_hint(trt, folder, manifest).endswith(f"{command} --targets sm89 --force")
        monkeypatch.setattr(trb, "present_target", lambda: "sm90")
        assert trb.rebuild_hint(trt, folder, manifest).startswith(
            "this GPU (sm90) is not a TensorRT for RTX target; install full TensorRT"
        )


# --- shapes and types at the boundary ----------------------------------------------------------------


UNET_SAMPLE = ((1, 9, 4, 4), (2, 9, 8, 8), (4, 9, 16, 16))


def test_profile_check_accepts_the_range():
    for shape in [(1, 9, 4, 4), (3, 9, 6, 10), (4, 9, 16, 16)]:
        check_profile("unet", "sample_fg", shape, UNET_SAMPLE, ("batch_fg", 9, "height", "width"))


def test_profile_check_names_input_axis_and_option():
    dims = ("batch_fg", 9, "height", "width")
    with pytest.raises(ValueError) as err:
        check_profile("unet", "sample_fg", (5, 9, 8, 8), UNET_SAMPLE, dims)
    assert str(err.value) == (
        "unet: sample_fg axis 0 (batch_fg) is 5, outside the engine's profile 1..4: "
        "export again with --max-instances (or --guidance)"
    )
    with pytest.raises(ValueError, match=r"unet: sample_fg axis 3 \(width\) is 2, .* --resolution"):
        check_profile("unet", "sample_fg", (1, 9, 4, 2), UNET_SAMPLE, dims)
    with pytest.raises(ValueError, match=r"unet: sample_fg axis 1 is 4, the engine expects 9"):
        check_profile("unet", "sample_fg", (1, 4, 4, 4), UNET_SAMPLE, dims)
    with pytest.raises(ValueError, match=r"unet: input sample_fg has rank 3, the engine expects 4"):
        check_profile("unet", "sample_fg", (1, 9, 4), UNET_SAMPLE, dims)


def test_dtype_mapping(trt):
    DataType = trt.module.DataType
    assert torch_dtype(DataType.FLOAT) == torch.float32
    assert torch_dtype(DataType.HALF) == torch.float16
    assert torch_dtype(DataType.BF16) == torch.bfloat16
    assert torch_dtype(DataType.INT64) == torch.int64
    assert torch_dtype(DataType.INT32) == torch.int32
    assert torch_dtype(DataType.BOOL) == torch.bool
    assert set(TORCH_DTYPES) <= set(DataType.__members__)
    with pytest.raises(ValueError, match=r"engine tensor eps_fg has TensorRT type FP8, which the runtime"):
        torch_dtype(DataType.FP8, "eps_fg")


# --- on a GPU: the pipeline on engines against the reference -----------------------------------------


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.double().cpu() - b.double().cpu()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def uses_tf32() -> bool:
    return torch.cuda.get_device_capability()[0] >= 8


@pytest.fixture(scope="session")
def gpu_plugin(trt) -> Path:
    """The SMA plugin library built for the GPU present (the shared fixture builds sm_86 only).

    Skips where the installed TensorRT's engines cannot run on this GPU: TensorRT for RTX has no
    sm90, and on an H200 its engines built for the default targets or for `current` both failed to
    load ("TensorRT-RTX does not support this compute capability", bench/RESULTS.md, 2026-11-26).
    """
    from tests.conftest import HEADERS, _run

    gpu = trb.present_target()
    if trt.is_rtx and gpu not in trt.rtx_targets():
        pytest.skip(
            f"TensorRT for RTX {trt.version} engines do not run on this GPU ({gpu} is not one of its "
            f"targets {', '.join(trt.rtx_targets())}): install full TensorRT (pip install tensorrt)"
        )
    if shutil.which("cmake") is None or shutil.which("nvcc") is None:
        pytest.skip("building the plugin needs cmake and nvcc on PATH")
    if not (HEADERS / "NvInferRuntime.h").is_file():
        pytest.skip(f"TensorRT headers missing in {HEADERS}: run `bash scripts/setup-tensorrt-rtx.sh`")
    major, minor = torch.cuda.get_device_capability()
    build = REPO_ROOT / "build" / f"plugins-sm{major}{minor}"
    if not (build / "CMakeCache.txt").is_file():
        arch = f"-DCMAKE_CUDA_ARCHITECTURES={major}{minor}-real"
        _run(["cmake", "-S", ".", "-B", str(build), arch, f"-DTensorRT_INCLUDE_DIR={HEADERS}"])
    _run(["cmake", "--build", str(build), "--parallel", "8"])
    return plugin_library_path(build)


def export_with_engines(out: Path, precision: str, plugin: Path) -> Path:
    from mild_export.engine.build import EngineSettings, build_engines, check_engines
    from mild_export.export.exporter import ExportSettings, export_model
    from mild_export.export.precision import Precision
    from tests.conftest import make_trained_tiny

    model = make_trained_tiny(seed=3)
    tools = check_engines(EngineSettings(plugin=plugin), sma="plugin")
    settings = ExportSettings(precision=Precision(precision), shapes=SHAPES)
    manifest = export_model(model, "tiny", out, settings, progress=False)
    build_engines(out, manifest, contracts(model.config, SHAPES), tools, progress=False)
    return out


class Paired:
    """The engine backend, with every UNet call also run by the reference on the same inputs."""

    def __init__(self, ours, reference):
        self.ours, self.reference = ours, reference
        self.config, self.device = ours.config, ours.device
        self.errors: list[float] = []

    def tokenize(self, prompts):
        return self.ours.tokenize(prompts)

    def run(self, graph, inputs):
        out = self.ours.run(graph, inputs)
        if graph == "unet":
            ref = self.reference.run(graph, {k: v.float() for k, v in inputs.items()})
            ours = torch.cat([out["eps_fg"], out["eps_bg"]]).double()
            theirs = torch.cat([ref["eps_fg"], ref["eps_bg"]]).double()
            self.errors.append(((ours - theirs).norm() / theirs.norm()).item())
        return out


@pytest.fixture(scope="module")
def strict_fp32():
    """The reference in strict fp32: PyTorch's TF32 off for matrix products and convolutions."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def scene(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, 64, 64, generator=g)
    masks = torch.zeros(n, 64, 64)
    for k in range(n):
        masks[k, 6 + 12 * k : 38 + 12 * k, 8 + 14 * k : 30 + 14 * k] = 1
    return image, masks


@pytest.mark.gpu
@pytest.mark.slow
@requires_gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engines_reproduce_the_reference(trt, gpu_plugin, strict_fp32, tmp_path, precision):
    from reference.backend import TorchBackend
    from reference.pipeline import ErasePipeline
    from tests.conftest import make_trained_tiny

    folder = export_with_engines(tmp_path, precision, gpu_plugin)
    reference = TorchBackend(make_trained_tiny(seed=3), "cuda")
    paired = Paired(trb.TensorRTBackend(folder), reference)
    image, masks = scene(2, seed=5)
    kwargs = dict(remove=[1], steps=4, guidance=3.0, seed=11, prompt="a park", all_layers=True)
    ref = ErasePipeline(reference).erase(image, masks, **kwargs)
    ours = ErasePipeline(paired).erase(image, masks, **kwargs)

    tf32 = precision == "fp32" and uses_tf32()
    step_bound, image_bound = {"fp32": (1e-4, 60.0), "fp16": (1e-2, 35.0)}[precision]
    if tf32:  # see the module docstring
        step_bound, image_bound = 1e-3, 35.0
    assert len(paired.errors) == 4
    assert max(paired.errors) < step_bound, f"per-step relative errors {paired.errors} ({precision})"
    assert psnr(ours.composite, ref.composite) > image_bound
    assert psnr(ours.background, ref.background) > image_bound
    assert (ref.background.cpu() - image).abs().mean() > 0.01  # the images are not trivially equal


@pytest.mark.gpu
@pytest.mark.slow
@requires_gpu
def test_cuda_graph_replays_the_unet_and_text_is_cached(trt, gpu_plugin, tmp_path, caplog):
    from reference.pipeline import ErasePipeline

    caplog.set_level(logging.INFO, logger="mild")
    folder = export_with_engines(tmp_path, "fp16", gpu_plugin)
    plain = trb.TensorRTBackend(folder)
    graphed = trb.TensorRTBackend(folder, cuda_graph=True)
    image, masks = scene(1, seed=6)
    kwargs = dict(steps=5, guidance=1.0, seed=3, prompt="a street")
    a = ErasePipeline(plain).erase(image, masks, **kwargs)
    b = ErasePipeline(graphed).erase(image, masks, **kwargs)
    unet = graphed.runners["unet"]
    if unet.runtime_config is not None:  # TensorRT for RTX: its own capture (WHOLE_GRAPH_CAPTURE)
        assert "tensorrt: unet uses TensorRT for RTX's own CUDA graphs" in caplog.text
    elif any(s.graph is not None for s in unet._sets.values()):  # full TensorRT: a torch CUDA graph
        assert "tensorrt: unet captured into a CUDA graph" in caplog.text
    else:  # falling back is allowed, silently is not
        assert f"tensorrt: unet runs without CUDA graphs: {unet.graph_off_reason}" in caplog.text
    others = [r.graph_off_reason for n, r in graphed.runners.items() if n != "unet"]
    assert others == ["not asked for (cuda_graph=False)"] * 4
    assert psnr(a.composite, b.composite) > 60
    if trt.is_rtx:  # the kernels TensorRT for RTX compiled here are kept for the next process
        cache = folder / jit_cache_name(torch.cuda.get_device_name())
        assert cache.is_file() and cache.stat().st_size > 0
        trb.TensorRTBackend(folder)
        assert f"tensorrt: JIT cache loaded from {cache}" in caplog.text

    tokens = graphed.tokenize(["a street"])  # what the erase call above encoded (no guidance)
    calls = []
    text = graphed.runners["text_encoder"]
    graphed.runners["text_encoder"] = lambda inputs: calls.append(1) or text(inputs)
    first = graphed.run("text_encoder", tokens)
    second = graphed.run("text_encoder", graphed.tokenize(["a street"]))
    assert not calls  # encoded once, in the first erase call
    assert torch.equal(first["prompt_embeds"], second["prompt_embeds"])
    assert first["prompt_embeds"].dtype == torch.float32 and first["prompt_embeds"].is_cuda

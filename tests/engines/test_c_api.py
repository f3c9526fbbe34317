"""The C/C++ runtime in engines/: build, link, exported symbols, C API validation without a GPU,
host-side numbers against the Python reference, find_package, and (GPU only) the example app
against the Python pipeline.

engines/ is configured once into build/engines for one CUDA architecture (sm_86) and rebuilt
incrementally, so a re-run costs a no-op `cmake --build`.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mild_export.export.contracts import ExportShapes, contracts
from mild_export.export.manifest import Manifest, graph_entry
from mild_export.export.prompt_file import write_prompt_cache
from reference import hmg
from reference.compose import ComposeMode, layers_needed
from reference.config import TINY, TINY_XL, HMGConfig, SchedulerConfig
from reference.ddim import DDIM
from reference.text import ByteTokenizer

REPO = Path(__file__).resolve().parents[2]
ENGINES = REPO / "engines"
BUILD = REPO / "build" / "engines"
HEADERS = REPO / "third_party" / "tensorrt" / "include"
TEST_ARCH = "86-real"
HEADER = ENGINES / "include" / "mild" / "mild.h"


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def _checked(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    result = _run(cmd, **kw)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} failed ({result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def _configure(build: Path) -> subprocess.CompletedProcess:
    generator = ["-G", "Ninja"] if shutil.which("ninja") and not (build / "CMakeCache.txt").is_file() else []
    return _checked(
        ["cmake", "-S", ENGINES, "-B", build, *generator, f"-DCMAKE_CUDA_ARCHITECTURES={TEST_ARCH}"], cwd=REPO
    )


@pytest.fixture(scope="session")
def build() -> Path:
    """build/engines, configured here if needed and brought up to date."""
    for tool in ("cmake", "nvcc"):
        if shutil.which(tool) is None:
            pytest.skip(f"building engines/ needs {tool} on PATH")
    if not (HEADERS / "NvInferRuntime.h").is_file():
        pytest.skip(f"TensorRT headers missing in {HEADERS}: run `bash scripts/setup-tensorrt-rtx.sh`")
    try:
        import tensorrt_rtx_libs  # noqa: F401
    except ImportError:
        pytest.skip("the TensorRT-RTX wheel is not installed: run `bash scripts/setup-tensorrt-rtx.sh`")
    if not (BUILD / "CMakeCache.txt").is_file():
        _configure(BUILD)
    _checked(["cmake", "--build", BUILD, "--parallel", str(min(8, os.cpu_count() or 2))], cwd=REPO)
    return BUILD


def _cache_value(build: Path, name: str) -> str:
    for line in (build / "CMakeCache.txt").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split("=", 1)[1]
    raise KeyError(name)


def has_gpu() -> bool:
    """An NVIDIA GPU with a driver is visible (torch may be a CPU build, so ask the driver)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    return _run([smi, "-L"]).returncode == 0


def _header_functions() -> set[str]:
    return set(re.findall(r"MILD_API\s+[\w\s\*]+?\b(mild_\w+)\s*\(", HEADER.read_text()))


# ---- fixture folders ------------------------------------------------------------------------------


def write_manifest(folder: Path, *, config=TINY, max_instances=2, guidance=False, plans=True, prompts=("",)):
    """A manifest in mild-export's own format (the Python contracts), an engines section naming
    dummy plan files, and a prompt cache holding `prompts`."""
    folder.mkdir(parents=True, exist_ok=True)
    shapes = ExportShapes(resolutions=(64,), max_instances=max_instances, guidance=guidance)
    manifest = Manifest(
        model=config.name,
        model_sha256="0" * 64,
        config=config.to_dict(),
        precision="fp32",
        sma="plugin",
        opset=18,
        shapes=asdict(shapes),
        kept_in_fp32=[],
    )
    for name, contract in contracts(config, shapes).items():
        manifest.graphs[name] = graph_entry(contract, f"{name}.onnx", "0" * 64, "test")
        manifest.engines[name] = {"file": f"{name}.plan", "tensorrt": "TensorRT-RTX 1.7.1 (sm_86)"}
        if plans:  # not an engine: what deserialisation must reject with a status
            (folder / f"{name}.plan").write_bytes(b"not a TensorRT engine\n" * 8)
    g = torch.Generator().manual_seed(0)
    text = (1, config.text.max_length, config.cross_attention_dim)
    pooled = (1, config.text.pooled_dim) if config.text.pooled_dim else None
    encodings = {
        p: {"prompt_embeds": torch.randn(text, generator=g)}
        | ({"pooled_prompt_embeds": torch.randn(pooled, generator=g)} if pooled else {})
        for p in prompts
    }
    write_prompt_cache(folder, encodings, manifest)  # mild-export's own writer
    manifest.engines["plugin_library"] = "libmild_plugins.so"
    manifest.write(folder)
    Manifest.read(folder)  # what Python writes, Python reads back
    return folder


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("c_api")
    write_manifest(root / "good")
    write_manifest(root / "no_engines", plans=False)
    (root / "empty").mkdir()
    (root / "broken").mkdir()
    (root / "broken" / "manifest.json").write_text('{"format": 1, "graphs": {')
    (root / "merged").mkdir()  # what mild-merge writes, given where an export belongs
    (root / "merged" / "manifest.json").write_text('{"kind": "mild-merged", "format": 1}')
    return root


def expected_statuses(build: Path) -> tuple[str, str]:
    """(what valid arguments end in on this machine, what mild_runtime_check_tensorrt returns)."""
    matches = _cache_value(build, "MILD_RUNTIME_TENSORRT_MATCHES") == "ON"
    trt = "MILD_OK" if matches else "MILD_ERROR_TENSORRT_MISMATCH"
    if not has_gpu():
        return "MILD_ERROR_NO_CUDA_DEVICE", trt
    # with a GPU: a runtime of the other TensorRT is refused; with the right one the dummy
    # plugin path or the dummy plan files are rejected
    return ("MILD_ERROR_ENGINE" if matches else "MILD_ERROR_TENSORRT_MISMATCH"), trt


# ---- build and link -------------------------------------------------------------------------------


def test_configure_names_the_tensorrt_headers(build):
    out = _configure(build)
    text = (HEADERS / "NvInferVersion.h").read_text()
    major, minor, patch = (
        re.search(rf"#define TRT_{k}_ENTERPRISE (\d+)", text).group(1) for k in ("MAJOR", "MINOR", "PATCH")
    )
    assert f"mild_runtime: compiled against TensorRT {major}.{minor}.{patch} headers" in out.stdout
    assert "libtensorrt_rtx" in out.stdout
    # 10.14 headers with the TensorRT-RTX library: the build says what that means
    assert "ILogger" in out.stderr and "MILD_ERROR_TENSORRT_MISMATCH" in out.stderr


def test_library_exports_exactly_the_c_api(build):
    lib = build / "libmild_runtime.so"
    out = _checked(["nm", "-D", "--defined-only", lib]).stdout
    exported = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert not [s for s in exported if s.startswith("_Z")], "C++ symbols leak from the library"
    assert exported == _header_functions(), exported ^ _header_functions()


def test_library_links_tensorrt_and_static_cudart(build):
    ldd = _checked(["ldd", build / "libmild_runtime.so"]).stdout
    assert "not found" not in ldd, ldd
    assert re.search(r"libtensorrt_rtx\.so\.1 => \S+", ldd), ldd
    assert "libcudart" not in ldd  # static: loads on machines without the CUDA toolkit
    needed = _checked(["readelf", "-d", build / "libmild_runtime.so"]).stdout
    assert "libmild_runtime.so.0" in needed  # SONAME


def test_example_app_links(build):
    app = build / "mild_erase_app"
    ldd = _checked(["ldd", app]).stdout
    assert "not found" not in ldd, ldd
    assert "libmild_runtime.so.0" in ldd and "libpng16" in ldd
    result = _run([app])
    assert result.returncode == 2 and "usage: mild_erase_app" in result.stderr
    result = _run([app, "--help"])
    assert result.returncode == 0 and result.stdout.startswith("usage: mild_erase_app") and not result.stderr


def test_tensorrt_version_functions(build):
    lib = ctypes.CDLL(str(build / "libmild_runtime.so"))
    lib.mild_runtime_tensorrt_version.restype = ctypes.c_char_p
    lib.mild_last_error.restype = ctypes.c_char_p
    lib.mild_runtime_version.restype = ctypes.c_char_p
    text = lib.mild_runtime_tensorrt_version().decode()
    assert text.startswith("TensorRT 10.14.1") and "libtensorrt_rtx" in text, text
    assert lib.mild_runtime_version().decode() == "0.1.0"
    status = lib.mild_runtime_check_tensorrt()
    _, trt = expected_statuses(build)
    if trt == "MILD_OK":
        assert status == 0
    else:
        message = lib.mild_last_error().decode()
        assert status == 5, message
        assert (
            "TensorRT 10.14.1 headers" in message and "TensorRT-RTX 1.7.1" in message and "ILogger" in message
        )


# ---- the C API without a GPU ------------------------------------------------------------------------


def test_c_api_validation(build, fixture_root):
    load, trt = expected_statuses(build)
    result = _run([build / "mild_c_api_validation", fixture_root, load, trt])
    print(result.stdout)
    summary = re.search(r"(\d+) passed, (\d+) failed", result.stdout)
    assert summary, result.stdout + result.stderr
    passed, failed = map(int, summary.groups())
    assert failed == 0 and result.returncode == 0, result.stdout
    assert passed >= 55
    assert "FAIL" not in result.stdout


def _png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(array).save(path)
    return path


def test_example_app_reports_bad_input_before_the_engines(build, fixture_root, tmp_path):
    app = build / "mild_erase_app"
    rng = np.random.default_rng(1)
    image = _png(tmp_path / "photo.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    mask = np.zeros((64, 64), np.uint8)
    mask[10:30, 20:40] = 255
    good = _png(tmp_path / "m0.png", mask)
    small = _png(tmp_path / "small.png", mask[:32, :48])
    out = tmp_path / "out.png"
    base = [app, "--engines", fixture_root / "good", "--image", image, "--out", out, "--quiet"]

    result = _run([*base, "--mask", good, "--mask", small])
    assert result.returncode == 1
    assert "MILD_ERROR_INVALID_ARGUMENT" in result.stderr and "masks[1] is 48x32" in result.stderr

    result = _run([*base, "--mask", good, "--mask", good, "--mask", good])
    assert result.returncode == 1 and "--max-instances 3" in result.stderr

    result = _run([*base, "--mask", good, "--steps", "0"])
    assert result.returncode == 1 and "params->steps is 0" in result.stderr

    # --remove counts from 1, as mild-erase does, and is checked in those terms
    for remove in ("3", "0", "1,2"):
        result = _run([*base, "--mask", good, "--remove", remove])
        assert result.returncode == 2, result.stderr
        culprit = remove.split(",")[-1]
        assert f"--remove {culprit}: the masks are numbered 1..1, in --mask order" in result.stderr

    # numbers are whole: "5x" was 5, "abc" said only "stoi", a seed of -1 was 2^64 - 1
    for option, value, fix in [
        ("--steps", "abc", "give an integer"),
        ("--steps", "5x", "give an integer"),
        ("--remove", "x", "give an integer"),
        ("--guidance", "1.5q", "give a number"),
        ("--seed", "-1", "give an integer in 0..18446744073709551615"),
    ]:
        result = _run([*base, "--mask", good, option, value])
        assert result.returncode == 2 and f"{option} is '{value}': {fix}" in result.stderr, result.stderr

    # a missing --out folder is said before the engines run, not after a whole erase
    result = _run([*base[:-3], "--out", tmp_path / "no-such-folder" / "out.png", "--mask", good])
    assert result.returncode == 2 and "no-such-folder does not exist (create it first)" in result.stderr

    result = _run(
        [app, "--engines", fixture_root / "missing", "--image", image, "--mask", good, "--out", out]
    )
    assert result.returncode == 1 and "MILD_ERROR_MANIFEST" in result.stderr

    load, _ = expected_statuses(build)
    result = _run([*base, "--mask", good])
    assert result.returncode == 1 and load in result.stderr, result.stderr
    assert not out.exists()


def test_instances_leave_room_for_the_background_row(build, tmp_path):
    """The decoder's row list (the kernels' IndexList, kMaxIndices = 64 entries) holds the N fg rows
    and the background, so an export for 64 instances still takes at most 63 per call: a 64th used
    to write list.n = 65 and the gather kernel read past list.idx. Checked on the host, before any
    engine loads (lazy_load)."""
    folder = write_manifest(tmp_path / "wide", max_instances=64)
    rng = np.random.default_rng(2)
    image = _png(tmp_path / "photo.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    mask = np.zeros((64, 64), np.uint8)
    mask[8:24, 8:24] = 255
    good = _png(tmp_path / "m.png", mask)
    out = tmp_path / "out.png"
    base = [build / "mild_erase_app", "--engines", folder, "--image", image, "--out", out, "--quiet"]

    result = _run([*base, *["--mask", good] * 64])
    assert result.returncode == 1
    assert "MILD_ERROR_UNSUPPORTED_SHAPE" in result.stderr and "serve at most 63 instances" in result.stderr

    load, _ = expected_statuses(build)  # 63 pass the host checks and reach the engines
    result = _run([*base, *["--mask", good] * 63])
    assert result.returncode == 1 and load in result.stderr, result.stderr
    assert not out.exists()


# ---- host-side numbers against the Python reference ---------------------------------------------------


def _host(build: Path, *args) -> str:
    return _checked([build / "mild_host_reference", *args]).stdout


@pytest.mark.parametrize("steps", [1, 7, 25, 50, 999])
def test_ddim_schedule_matches_reference(build, steps):
    got = json.loads(_host(build, "schedule", steps))
    ddim = DDIM.create(SchedulerConfig(), steps)
    assert got["timesteps"] == ddim.timesteps.tolist()
    # the reference computes ᾱ in float32; the runtime in float64
    np.testing.assert_allclose(got["alpha_t"], ddim.alpha_t.double().numpy(), rtol=2e-6)
    np.testing.assert_allclose(got["alpha_prev"], ddim.alpha_prev.double().numpy(), rtol=2e-6)


@pytest.mark.parametrize(("seed", "h", "w"), [(0, 8, 8), (1234, 3, 5), (2**40 + 7, 17, 9), (42, 64, 64)])
def test_initial_noise_matches_torch(build, tmp_path, seed, h, w):
    path = tmp_path / "noise.f32"
    _host(build, "noise", seed, 4 * h * w, path)
    got = np.fromfile(path, np.float32)
    want = torch.randn(1, 4, h, w, generator=torch.Generator().manual_seed(seed)).flatten().numpy()
    # same uniforms and Box-Muller; torch's vectorised log/sin/cos round differently in the last bits
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _random_masks(rng, n, h, w):
    masks = np.zeros((n, h, w), np.uint8)
    for k in range(n):
        y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
        masks[k, y0 : y0 + rng.integers(3, h - y0), x0 : x0 + rng.integers(3, w - x0)] = 1
    return masks


@pytest.mark.parametrize(("n", "h", "w", "size"), [(1, 64, 64, 32), (3, 40, 56, 32), (5, 24, 72, 16)])
def test_condition_maps_and_layers_match_reference(build, tmp_path, n, h, w, size):
    rng = np.random.default_rng(n * 100 + h)
    masks = _random_masks(rng, n, h, w)
    masks.tofile(tmp_path / "masks.u8")
    keypoints = np.stack(
        [
            rng.uniform(0, w, (n, 18)),
            rng.uniform(0, h, (n, 18)),
            (rng.uniform(size=(n, 18)) > 0.3).astype(float),
        ],
        -1,
    ).astype(np.float32)
    keypoints.tofile(tmp_path / "keypoints.f32")
    parsing = rng.integers(0, 20, (h, w), dtype=np.uint8)
    parsing.tofile(tmp_path / "parsing.u8")
    config = HMGConfig(map_size=size, token_grid=4, hidden=8, pose_sigma=1.5)
    m = torch.from_numpy(masks).float()
    for remove, mode in [
        ("0", "copy"),
        ("-", "copy"),
        (",".join(map(str, range(0, n, 2))), "eq6"),
        ("0", "eq6"),
    ]:
        removed = [] if remove == "-" else [int(k) for k in remove.split(",")]
        out = json.loads(_host(build, "maps", tmp_path, n, h, w, size, config.pose_sigma, remove, mode))
        reference_mode = ComposeMode.EQ6 if mode == "eq6" else ComposeMode.COPY_OUTSIDE
        assert out["needed"] == layers_needed(m, removed, reference_mode), (remove, mode)

    mask_maps = np.fromfile(tmp_path / "out_mask_maps.f32", np.float32).reshape(n + 1, 1, size, size)
    want = hmg.render_mask_maps(hmg.context_masks(m), config).numpy()
    np.testing.assert_allclose(mask_maps, want, atol=1e-6)
    pose = np.fromfile(tmp_path / "out_pose_maps.f32", np.float32).reshape(18, size, size)
    want = hmg.render_pose_maps(torch.from_numpy(keypoints), (h, w), config).numpy()
    np.testing.assert_allclose(pose, want, atol=1e-6)
    parsing_maps = np.fromfile(tmp_path / "out_parsing_maps.f32", np.float32).reshape(20, size, size)
    want = hmg.render_parsing_maps(torch.from_numpy(parsing).long(), config).numpy()
    np.testing.assert_allclose(parsing_maps, want, atol=1e-6)


def test_latent_mask_pooling_rule_is_max_pool():
    """The kernel's rule (a latent pixel touching the mask is inside) is the reference's max-pool."""
    rng = np.random.default_rng(3)
    masks = _random_masks(rng, 2, 40, 56)
    touching = masks.reshape(2, 5, 8, 7, 8).any(axis=(2, 4)).astype(np.float32)
    want = F.max_pool2d(torch.from_numpy(masks).float()[:, None], 8)[:, 0].numpy()
    np.testing.assert_array_equal(touching, want)


@pytest.mark.parametrize("prompt", ["", "a quiet street", "çà 漢字 🙂", "x" * 40])
def test_byte_tokens_match_reference(build, prompt):
    got = json.loads(_host(build, "tokens", prompt, 16))
    assert got == ByteTokenizer(16)([prompt])[0].tolist()


@pytest.mark.parametrize(
    ("config", "max_instances", "guidance"), [(TINY, 2, False), (TINY, 5, True), (TINY_XL, 3, True)]
)
def test_manifest_reader_matches_python(build, tmp_path, config, max_instances, guidance):
    folder = write_manifest(
        tmp_path / "m", config=config, max_instances=max_instances, guidance=guidance, prompts=("", "a")
    )
    got = json.loads(_host(build, "manifest", folder))
    assert got["max_instances"] == [max_instances, max_instances if guidance else 0]
    assert got["context_length"] == config.context_length
    assert got["text_length"] == config.text.max_length
    assert got["cross_attention_dim"] == config.cross_attention_dim
    assert got["map_size"] == config.hmg.map_size
    assert got["added_conditions"] == config.has_added_conditions
    assert got["latent_height"] == [8, 8]
    assert got["prompts"] == 2


# ---- golden files (mild_export/golden.py) read by the C++ runtime -------------------------------------


def _golden_inputs(n: int, h: int, w: int, guidance: float, conditions: bool):
    from mild_export.golden import GoldenInputs

    g = torch.Generator().manual_seed(n * 1000 + h)
    masks = torch.from_numpy(_random_masks(np.random.default_rng(n + h), n, h, w)).float()
    xy = torch.rand(n, 18, 2, generator=g) * torch.tensor([w, h])
    keypoints = torch.cat([xy, (torch.rand(n, 18, 1, generator=g) > 0.3).float()], -1)
    return GoldenInputs(
        image=torch.rand(3, h, w, generator=g),
        masks=masks,
        keypoints=keypoints if conditions else None,
        parsing=torch.randint(0, 20, (h, w), generator=g) if conditions else None,
        prompt="a bench",
        seed=2**33 + n,
        steps=3,
        guidance=guidance,
    )


@pytest.mark.parametrize(
    ("n", "h", "w", "guidance", "conditions"), [(1, 64, 64, 1.0, False), (3, 40, 56, 3.0, True)]
)
def test_golden_file_read_by_the_runtime(build, tmp_path, n, h, w, guidance, conditions):
    """The C++ reader sees the table of contents Python wrote, and the runtime's host code, fed the
    file's inputs, reproduces its schedule, noise, condition maps and (over the file's own noise
    predictions) DDIM loop to float32 rounding (the reference computes in float32, the host in
    float64)."""
    from mild_export.golden import read_golden, write_golden
    from tests.conftest import make_trained_tiny

    path = write_golden(
        make_trained_tiny(seed=n), _golden_inputs(n, h, w, guidance, conditions), tmp_path / "g"
    )
    golden = read_golden(path)
    got = json.loads(_host(build, "golden", path))
    assert got["version"] == golden.version
    assert [(t["name"], t["dtype"], tuple(t["shape"])) for t in got["tensors"]] == [
        (name, a.dtype.name, a.shape) for name, a in golden.tensors.items()
    ]
    checks = got["checks"]
    assert checks["timesteps"] == 0
    assert checks["alpha_t"] < 2e-6 and checks["alpha_prev"] < 2e-6
    assert checks["noise"] < 1e-5  # same draw; torch's vectorised log/sin/cos round differently
    assert checks["mask_maps"] < 1e-6 and checks["pose_maps"] < 1e-6 and checks["parsing_maps"] < 1e-6
    assert checks["latents"] < 1e-5 * golden.meta["steps"]


def test_golden_version_mismatch_is_refused_by_the_runtime(build, tmp_path):
    from mild_export.golden import FORMAT_VERSION, write_tensors

    path = write_tensors(tmp_path / "old.mildgold", {"a": np.zeros(2, np.float32)}, {})
    raw = bytearray(path.read_bytes())
    raw[8:12] = (FORMAT_VERSION + 1).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    result = _run([build / "mild_host_reference", "golden", path])
    assert result.returncode == 1
    versions = f"golden format version {FORMAT_VERSION + 1}, but this reader reads version {FORMAT_VERSION}"
    assert f"{path} is {versions}" in result.stderr
    (tmp_path / "x.mildgold").write_bytes(b"PK\x03\x04" + bytes(60))
    result = _run([build / "mild_host_reference", "golden", tmp_path / "x.mildgold"])
    assert result.returncode == 1 and "is not a golden file (no MILDGOLD magic" in result.stderr


# ---- find_package(MildRuntime) and the C++ wrapper ------------------------------------------------------

CONSUMER_CMAKE = """
cmake_minimum_required(VERSION 3.24)
project(consumer LANGUAGES CXX)
find_package(MildRuntime 0.1 REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE Mild::mild_runtime)
"""

CONSUMER_MAIN = r"""
#include <mild/mild.hpp>
#include <iostream>
int main(int argc, char** argv) {
    std::cout << mild::tensorrt_version() << "\n";
    try {
        mild::Context ctx(mild::Context::Params().model_dir(argv[1]).lazy_load(true));
        mild::Context moved = std::move(ctx);
        std::cout << "max " << moved.max_instances(false) << "\n";
        mild::EraseParams p;
        p.raw.steps = 0;
        std::vector<uint8_t> pixels(64 * 64 * 3);
        std::vector<uint8_t> bits(64 * 64, 1);
        mild_image image{64, 64, 3, 0, pixels.data()};
        moved.erase(image, {mild_mask{64, 64, 0, bits.data()}}, p);
    } catch (const mild::Error& e) {
        std::cout << "status " << e.status() << ": " << e.what() << "\n";
        return 0;
    }
    return 1;
}
"""


def test_find_package_and_cpp_wrapper(build, fixture_root, tmp_path):
    prefix = tmp_path / "prefix"
    _checked(["cmake", "--install", build, "--prefix", prefix])
    assert (prefix / "include" / "mild" / "mild.hpp").is_file()
    assert (prefix / "lib" / "cmake" / "MildRuntime" / "MildRuntimeConfig.cmake").is_file()
    src = tmp_path / "consumer"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(CONSUMER_CMAKE)
    (src / "main.cpp").write_text(CONSUMER_MAIN)
    _checked(["cmake", "-S", src, "-B", src / "build", f"-DCMAKE_PREFIX_PATH={prefix}"])
    _checked(["cmake", "--build", src / "build"])
    trt_dir = _cache_value(build, "TensorRT_LIBRARY_DIR")
    env = {**os.environ, "LD_LIBRARY_PATH": f"{prefix / 'lib'}:{trt_dir}"}
    out = _checked([src / "build" / "consumer", fixture_root / "good"], env=env).stdout
    assert "TensorRT 10.14.1" in out
    assert "max 2" in out
    assert "status 1: MILD_ERROR_INVALID_ARGUMENT: mild_erase: params->steps is 0" in out


def test_installed_example_app_finds_the_installed_library(build, tmp_path):
    """`cmake --install --prefix P` then P/bin/mild_erase_app, with nothing on LD_LIBRARY_PATH."""
    prefix = tmp_path / "prefix"
    _checked(["cmake", "--install", build, "--prefix", prefix])
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    result = _run([prefix / "bin" / "mild_erase_app", "--help"], env=env)
    assert result.returncode == 0 and result.stdout.startswith("usage: mild_erase_app"), result.stderr


# ---- GPU: the example app against the Python pipeline ----------------------------------------------------


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.gpu
def test_example_app_matches_python_pipeline(build, tmp_path):
    """C++ app vs the Python pipeline on the same exported model, seed and noise: PSNR > 50 dB.

    Needs a GPU, a runtime compiled against the headers of the TensorRT it links, and a mild-export
    folder with built engines in MILD_TEST_ENGINES_DIR (the ONNX graphs there run the Python side)."""
    if not has_gpu():
        pytest.skip("no NVIDIA GPU with a driver (nvidia-smi -L fails): the engines cannot run here")
    if _cache_value(build, "MILD_RUNTIME_TENSORRT_MATCHES") != "ON":
        pytest.skip(
            "build/engines was compiled against TensorRT 10.14 headers but links TensorRT-RTX (ILogger ABI, "
            "DESIGN.md section 7): configure with -DMILD_RUNTIME_TENSORRT_INCLUDE_DIR=<TensorRT-RTX include>"
        )
    folder = os.environ.get("MILD_TEST_ENGINES_DIR")
    if not folder or not list(Path(folder).glob("*.plan")):
        pytest.skip("set MILD_TEST_ENGINES_DIR to a mild-export folder with built TensorRT engines (*.plan)")
    from mild_export.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from reference.pipeline import ErasePipeline

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    masks = np.zeros((2, 64, 64), np.uint8)
    masks[0, 8:40, 4:28] = 255
    masks[1, 20:60, 30:56] = 255
    paths = [_png(tmp_path / "photo.png", photo)] + [
        _png(tmp_path / f"m{k}.png", m) for k, m in enumerate(masks)
    ]
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    noise.numpy().tofile(tmp_path / "noise.f32")
    out = tmp_path / "composite.png"
    cmd = [
        build / "mild_erase_app",
        "--engines",
        folder,
        "--image",
        paths[0],
        "--out",
        out,
        "--steps",
        "10",
        "--quiet",
    ]
    for p in paths[1:]:
        cmd += ["--mask", p]
    _checked([*cmd, "--noise", tmp_path / "noise.f32"])
    from PIL import Image

    got = np.asarray(Image.open(out).convert("RGB"))
    pipeline = ErasePipeline(OnnxRuntimeBackend(Path(folder)))
    image = torch.from_numpy(photo).permute(2, 0, 1).float() / 255
    want = pipeline.erase(image, torch.from_numpy(masks > 0).float(), steps=10, seed=0).composite
    want = (want.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    assert _psnr(got, want) > 50

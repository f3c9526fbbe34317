"""Golden files (mild_export/golden.py): the format round trip, refusals that name the file, and
what a file written by the reference holds. The C++ reader is tested in tests/engines/test_c_api.py,
the ONNX Runtime replay in tests/export/test_pipeline_onnxruntime.py."""

import math
import struct

import numpy as np
import pytest
import torch

from mild_export.golden import (
    FORMAT_VERSION,
    GoldenError,
    GoldenInputs,
    compare,
    read_golden,
    replay,
    write_golden,
    write_tensors,
)
from reference.backend import TorchBackend
from reference.compose import ComposeMode
from reference.config import SchedulerConfig
from reference.ddim import DDIM
from tests.conftest import make_trained_tiny


def test_round_trip_keeps_every_dtype_shape_and_value(tmp_path):
    rng = np.random.default_rng()  # fresh values each run
    arrays = {
        "f32": rng.standard_normal((3, 5, 7)).astype(np.float32),
        "f16": rng.standard_normal((17,)).astype(np.float16),
        "f64": rng.standard_normal((2, 1, 3)),
        "i64": rng.integers(-(2**40), 2**40, (4, 3)),
        "i32": rng.integers(-5, 5, (9,)).astype(np.int32),
        "u8": rng.integers(0, 256, (5, 13), dtype=np.uint8),
        "scalar": np.float32(rng.standard_normal()).reshape(()),
        "empty": np.zeros((0, 4), np.float32),
        "strided": rng.standard_normal((6, 8)).astype(np.float32)[::2, ::3],
    }
    meta = {"prompt": "çà 漢字", "seed": 2**40 + 1, "nested": {"a": [1, 2.5, None]}}
    path = write_tensors(tmp_path / "g.mildgold", arrays, meta)
    golden = read_golden(path)
    assert golden.version == FORMAT_VERSION and golden.meta == meta
    assert list(golden.tensors) == list(arrays)
    for name, array in arrays.items():
        got = golden[name]
        assert got.dtype == array.dtype and got.shape == array.shape, name
        np.testing.assert_array_equal(got, array)
        got[...] = 0  # arrays are writable copies, not views of the file's bytes


def test_layout_is_the_documented_one(tmp_path):
    path = write_tensors(tmp_path / "g.mildgold", {"a": np.arange(3, dtype=np.float32)}, {})
    raw = path.read_bytes()
    assert raw[:8] == b"MILDGOLD"
    version, n = struct.unpack_from("<II", raw, 8)
    assert version == FORMAT_VERSION and (16 + n) % 64 == 0
    assert raw[16 + n : 16 + n + 12] == np.arange(3, dtype="<f4").tobytes()


def test_version_mismatch_names_the_file_and_both_versions(tmp_path):
    path = write_tensors(tmp_path / "old.mildgold", {"a": np.zeros(2, np.float32)}, {})
    raw = bytearray(path.read_bytes())
    raw[8:12] = struct.pack("<I", FORMAT_VERSION + 1)
    path.write_bytes(bytes(raw))
    message = (
        f"{path} is golden format version {FORMAT_VERSION + 1}, but this reader reads version "
        f"{FORMAT_VERSION}: regenerate it with `python -m mild_export.golden write --engines DIR`"
    )
    with pytest.raises(GoldenError) as err:
        read_golden(path)
    assert str(err.value) == message


def test_other_files_are_refused_by_name(tmp_path):
    other = tmp_path / "photo.png"
    other.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(GoldenError, match=rf"{other} is not a golden file"):
        read_golden(other)
    path = write_tensors(tmp_path / "cut.mildgold", {"a": np.ones(100, np.float32)}, {})
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(GoldenError, match=rf"{path}: tensor a lies outside the file"):
        read_golden(path)
    missing = tmp_path / "missing.mildgold"
    with pytest.raises(
        GoldenError, match=rf"{missing}: cannot read the golden file \(No such file or directory\)"
    ):
        read_golden(missing)
    with pytest.raises(ValueError, match=r"write_golden: a is bool; use one of float32, "):
        write_tensors(tmp_path / "b.mildgold", {"a": np.ones(2, bool)}, {})


def test_reference_golden_file_holds_the_run(tmp_path):
    model = make_trained_tiny(seed=4)
    g = torch.Generator().manual_seed(5)
    n, h, w = 2, 40, 56  # not square, not the model's size
    masks = torch.zeros(n, h, w)
    masks[0, 4:30, 3:20] = 1
    masks[1, 10:38, 25:50] = 1
    xy = torch.rand(n, 18, 2, generator=g) * torch.tensor([w, h])
    keypoints = torch.cat([xy, torch.ones(n, 18, 1)], -1)
    inputs = GoldenInputs(
        image=torch.rand(3, h, w, generator=g),
        masks=masks,
        keypoints=keypoints,
        parsing=torch.randint(0, 20, (h, w), generator=g),
        prompt="a wall",
        seed=77,
        steps=3,
        guidance=2.0,
        remove=[1],
        compose_mode=ComposeMode.EQ6,
    )
    golden = read_golden(write_golden(model, inputs, tmp_path / "n2.mildgold", {"model": "tiny"}))
    assert golden.meta["model"] == "tiny" and golden.meta["config"]["name"] == model.config.name
    back = golden.inputs()
    for name in ("image", "masks", "keypoints", "parsing"):
        torch.testing.assert_close(getattr(back, name), getattr(inputs, name).to(getattr(back, name).dtype))
    assert (back.prompt, back.seed, back.steps, back.guidance, back.remove, back.compose_mode) == (
        "a wall",
        77,
        3,
        2.0,
        [1],
        ComposeMode.EQ6,
    )
    ddim = DDIM.create(SchedulerConfig(), 3)
    np.testing.assert_array_equal(golden["timesteps"], ddim.timesteps.numpy())
    noise = torch.randn(1, 4, h // 8, w // 8, generator=torch.Generator().manual_seed(77))
    np.testing.assert_array_equal(golden["noise"], noise.numpy())
    assert golden["eps_fg"].shape == (3, 2 * n, 4, h // 8, w // 8)  # guidance: cond and uncond rows
    assert golden["eps_bg"].shape == (3, 2, 4, h // 8, w // 8)
    assert golden["latents"].shape == (n + 1, 4, h // 8, w // 8)
    assert golden["layers"].shape == (n, 3, h, w) and golden["composite"].shape == (3, h, w)
    assert golden["mask_maps"].shape[0] == n + 1
    # the per-step noise differs from step to step, and the reference replays itself exactly
    assert np.abs(golden["eps_fg"][0] - golden["eps_fg"][-1]).mean() > 1e-3
    parity = compare(golden, replay(golden, TorchBackend(model)))
    assert parity.noise_rel_err == [0.0] * 3 and parity.psnr == dict.fromkeys(parity.psnr, math.inf)
    assert parity.ok("fp32")
    # a step off by 2e-4 (twice the fp32 bound) is measured as such and fails fp32 parity, not fp16
    off = dict(golden.tensors, eps_fg=golden["eps_fg"].copy(), eps_bg=golden["eps_bg"].copy())
    off["eps_fg"][1] *= 1 + 2e-4
    off["eps_bg"][1] *= 1 + 2e-4
    parity = compare(golden, off)
    assert parity.noise_rel_err[0] == parity.noise_rel_err[2] == 0
    assert parity.noise_rel_err[1] == pytest.approx(2e-4, rel=1e-2)
    assert not parity.ok("fp32") and parity.ok("fp16")

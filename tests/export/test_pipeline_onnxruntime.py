"""The whole tiny pipeline on ONNX Runtime against the PyTorch reference, through golden files."""

import numpy as np
import pytest
import torch

from mild_export.export.contracts import ExportShapes
from mild_export.export.exporter import ExportSettings, export_model
from mild_export.golden import GoldenInputs, compare, read_golden, replay, write_golden
from mild_export.runtime.onnxruntime_backend import OnnxRuntimeBackend
from reference.backend import TorchBackend
from reference.pipeline import ErasePipeline
from tests.conftest import make_trained_tiny


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    model = make_trained_tiny(seed=2)
    reference = TorchBackend(make_trained_tiny(seed=2))
    out = tmp_path_factory.mktemp("export")
    settings = ExportSettings(shapes=ExportShapes(resolutions=(64, 96), max_instances=3, guidance=True))
    export_model(model, "tiny", out, settings, progress=False)
    return reference, OnnxRuntimeBackend(out)


def scene(n, height, width, seed):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, height, width, generator=g)
    masks = torch.zeros(n, height, width)
    for k in range(n):
        top, left = 4 + 9 * k, 6 + 11 * k
        masks[k, top : top + 30, left : left + 20] = 1
    return image, masks


@pytest.mark.parametrize(("n", "size", "guidance"), [(1, (64, 64), 1.0), (3, (96, 64), 3.0)])
def test_onnxruntime_reproduces_the_reference(backends, tmp_path, n, size, guidance):
    """The reference writes a golden file; ONNX Runtime replays its inputs (DESIGN.md section 8, fp32):
    per-step noise relative error < 1e-4, composite, background and every layer > 60 dB."""
    reference, onnxruntime = backends
    image, masks = scene(n, *size, seed=n)
    inputs = GoldenInputs(image, masks, prompt="a park", seed=11, steps=4, guidance=guidance, remove=[0])
    golden = read_golden(write_golden(reference, inputs, tmp_path / f"n{n}.mildgold"))
    parity = compare(golden, replay(golden, onnxruntime))
    assert max(parity.noise_rel_err) < 1e-4, parity.table()
    assert min(parity.psnr.values()) > 60, parity.table()
    assert len(parity.noise_rel_err) == 4
    assert np.abs(golden["background"] - golden["image"]).mean() > 0.01  # not trivially equal


def test_shapes_outside_the_export_are_refused_by_name(backends):
    _, onnxruntime = backends
    image, masks = scene(4, 64, 64, seed=0)
    with pytest.raises(ValueError, match=r"outside the exported range .* export again with --max-instances"):
        ErasePipeline(onnxruntime).erase(image, masks, steps=1)

"""The whole tiny pipeline on ONNX Runtime against the PyTorch reference, same seed and inputs."""

import math

import pytest
import torch

from mild_export.export.contracts import ExportShapes
from mild_export.export.exporter import ExportSettings, export_model
from mild_export.runtime.onnxruntime_backend import OnnxRuntimeBackend
from reference.backend import TorchBackend
from reference.pipeline import ErasePipeline
from tests.conftest import make_trained_tiny


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


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
def test_onnxruntime_reproduces_the_reference(backends, n, size, guidance):
    reference, onnxruntime = backends
    image, masks = scene(n, *size, seed=n)
    kwargs = dict(remove=[0], steps=4, guidance=guidance, seed=11, prompt="a park", all_layers=True)
    ref = ErasePipeline(reference).erase(image, masks, **kwargs)
    ours = ErasePipeline(onnxruntime).erase(image, masks, **kwargs)
    assert psnr(ours.composite, ref.composite) > 60  # DESIGN.md section 8, fp32
    assert psnr(ours.background, ref.background) > 60
    for k in range(n):
        assert psnr(ours.layers[k], ref.layers[k]) > 60
    assert (ref.background - image).abs().mean() > 0.01  # the images are not trivially equal


def test_shapes_outside_the_export_are_refused_by_name(backends):
    _, onnxruntime = backends
    image, masks = scene(4, 64, 64, seed=0)
    with pytest.raises(ValueError, match=r"outside the exported range .* export again with --max-instances"):
        ErasePipeline(onnxruntime).erase(image, masks, steps=1)

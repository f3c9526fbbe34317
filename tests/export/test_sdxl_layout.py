"""The SDXL layout (two text encoders, pooled embeddings, size ids) shrunk to tiny-xl, exported."""

import numpy as np
import onnxruntime as ort
import torch

from mild_export.export.contracts import ExportShapes, contracts
from mild_export.export.modules import graph_modules
from mild_export.export.onnx_export import export_graph
from mild_export.export.precision import Precision, SMAForm
from reference.backend import TorchBackend
from reference.model import load_model
from reference.pipeline import ErasePipeline


def test_sdxl_added_conditions_reach_the_unet_graph(tmp_path):
    model = load_model("tiny-xl")
    cs = contracts(model.config, ExportShapes(resolutions=(64,), max_instances=2, guidance=True))
    assert set(cs["unet"].inputs) >= {"text_embeds", "time_ids"}
    assert cs["text_encoder"].spec.outputs == ("prompt_embeds", "pooled_prompt_embeds")
    modules = graph_modules(model)
    for name in ("text_encoder", "unet"):
        path = export_graph(
            cs[name], modules[name], tmp_path / f"{name}.onnx", Precision.FP32, SMAForm.PLUGIN
        )
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = cs[name].sample_inputs(torch.float32, torch.Generator().manual_seed(3))
        out = session.run(None, {k: v.numpy() for k, v in x.items()})
        with torch.no_grad():
            ref = modules[name](**x)
        for ours, theirs in zip(out, ref, strict=True):
            assert np.linalg.norm(ours - theirs.numpy()) / np.linalg.norm(theirs.numpy()) < 1e-4
    changed = dict(x, time_ids=x["time_ids"] * 2)  # the size ids are really used
    with torch.no_grad():
        assert (torch.cat(modules["unet"](**changed)) - torch.cat(modules["unet"](**x))).abs().max() > 1e-4


def test_sdxl_pipeline_with_guidance():
    backend = TorchBackend(load_model("tiny-xl"))
    image, masks = torch.rand(3, 64, 64), torch.zeros(2, 64, 64)
    masks[0, 10:40, 5:30], masks[1, 20:50, 35:60] = 1, 1
    out = ErasePipeline(backend).erase(image, masks, steps=2, guidance=2.0, prompt="a street")
    assert out.composite.shape == (3, 64, 64) and torch.isfinite(out.composite).all()

"""Merge: folded fg/bg Q/K/V reproduce the LoRA model on both branches; each shared tensor stored once."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
from safetensors import safe_open

from reference.branch_attention import PROJECTIONS, BranchLinear
from reference.merge import (
    MANIFEST,
    WEIGHTS,
    check_materialised,
    load_merged,
    merge_model,
    save_merged,
    skeleton,
)
from reference.model import load_model
from tests.conftest import make_trained_tiny
from tests.reference.test_layered_unet import unet_inputs


def run_unet(model, inputs):
    with torch.no_grad():
        return torch.cat(model.unet(**inputs))


def test_merged_branches_match_the_lora_model():
    trained = make_trained_tiny(seed=5)  # random LoRA B, scales, SMA alphas, E_trans: merging matters
    merged = merge_model(trained)
    inputs = unet_inputs(n_fg=3, seed=2)
    # The truth: the unmerged model in float64. Both float32 forms must sit at its noise floor.
    truth = run_unet(copy.deepcopy(trained).double(), {k: v.double() for k, v in inputs.items()})
    lora_err = (run_unet(trained, inputs).double() - truth).abs().max()
    merged_out = run_unet(merged, inputs)
    merged_err = (merged_out.double() - truth).abs().max()
    assert merged_err <= 10 * lora_err + 1e-6, (merged_err, lora_err)
    # the comparison is not trivial: without LoRA the outputs differ by far more, on both branches
    base = copy.deepcopy(trained)
    for name, p in base.named_parameters():
        if "lora_B" in name:
            p.data.zero_()
    base_out = run_unet(base, inputs)
    for rows in (slice(0, 3), slice(3, 4)):  # fg rows, bg row
        assert (base_out[rows] - merged_out[rows]).abs().max() > 1000 * merged_err


def test_merged_projection_weights_follow_eq1():
    trained = make_trained_tiny(seed=1)
    merged = merge_model(trained)
    attn = trained.unet.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    proc = attn.processor
    new = merged.unet.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    for index, proj in enumerate(PROJECTIONS):
        layer, folded = getattr(attn, proj), getattr(new, proj)
        assert isinstance(folded, BranchLinear)
        for b in ("fg", "bg"):
            expected = layer.base_layer.weight + proc.lora_scale[b][index] * layer.scaling[b] * (
                layer.lora_B[b].weight @ layer.lora_A[b].weight
            )
            torch.testing.assert_close(getattr(folded, f"weight_{b}"), expected)
    # shared tensors are the trained model's own, not copies
    assert merged.unet.unet.conv_in.weight.data_ptr() == trained.unet.unet.conv_in.weight.data_ptr()


def test_file_holds_each_shared_tensor_once(tmp_path):
    trained = make_trained_tiny(seed=2)
    save_merged(merge_model(trained), tmp_path, "tiny")
    source = {k: v for k, v in trained.state_dict().items() if "lora_" not in k}
    qkv = {
        k: v for k, v in source.items() if k.endswith(tuple(f".{p}.base_layer.weight" for p in PROJECTIONS))
    }
    with safe_open(str(tmp_path / WEIGHTS), "pt") as f:
        keys = list(f.keys())
        stored_bytes = sum(f.get_tensor(k).nbytes for k in keys)
    assert len(keys) == len(set(keys)) == len(source) + len(qkv)  # one extra tensor per projection
    assert (
        sum(k.endswith(".weight_fg") for k in keys) == sum(k.endswith(".weight_bg") for k in keys) == len(qkv)
    )
    expected_bytes = sum(v.nbytes for v in source.values()) + sum(v.nbytes for v in qkv.values())
    assert stored_bytes == expected_bytes
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["tensors"] == {
        "total": len(keys),
        "per_branch": 2 * len(qkv),
        "shared": len(keys) - 2 * len(qkv),
    }
    assert manifest["base_model"] == "tiny" and WEIGHTS in manifest["files"]
    alphas = torch.cat([v.flatten() for k, v in source.items() if k.endswith("sma_alpha")])
    assert manifest["sma_alpha"]["layers"] == 7  # tiny: one self-attention per transformer block
    assert manifest["sma_alpha"]["abs_max"] == pytest.approx(alphas.abs().max().item(), rel=1e-6)
    assert manifest["sma_alpha"]["mean"] == pytest.approx(alphas.mean().item(), rel=1e-5)
    assert "e_trans" in manifest["encoders"]


def test_load_model_rebuilds_a_merged_folder_alone(tmp_path):
    trained = make_trained_tiny(seed=3)
    save_merged(merge_model(trained), tmp_path, "tiny")
    loaded = load_model(tmp_path)  # the same entry point as model names and diffusers folders
    inputs = unet_inputs(n_fg=2, seed=4)
    torch.testing.assert_close(run_unet(loaded, inputs), run_unet(trained, inputs), rtol=1e-5, atol=1e-5)
    ids = trained.text.tokenize(["a person"])
    with torch.no_grad():
        torch.testing.assert_close(loaded.text(**ids), trained.text(**ids))
        images = torch.rand(1, 3, 32, 32) * 2 - 1
        torch.testing.assert_close(loaded.encode_images(images), trained.encode_images(images))
    stored = {p.data_ptr() for p in loaded.parameters()}
    assert len(stored) == len(list(loaded.parameters()))  # no tensor held twice


def test_corrupt_merged_folder_is_named(tmp_path):
    save_merged(merge_model(make_trained_tiny()), tmp_path, "tiny")
    data = bytearray((tmp_path / WEIGHTS).read_bytes())
    data[-10:] = b"0123456789"
    (tmp_path / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{WEIGHTS} is missing or differs"):
        load_merged(tmp_path)


def test_pipeline_on_a_merged_folder_matches_the_lora_model(tmp_path):
    from reference.backend import TorchBackend
    from reference.pipeline import ErasePipeline

    trained = make_trained_tiny(seed=4)
    save_merged(merge_model(trained), tmp_path, "tiny")
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 64, 64, generator=g)
    masks = torch.zeros(2, 64, 64)
    masks[0, 8:30, 8:30] = 1
    masks[1, 30:60, 20:50] = 1
    lora = ErasePipeline(TorchBackend(trained)).erase(image, masks, steps=3, all_layers=True)
    merged = ErasePipeline(TorchBackend(load_model(tmp_path))).erase(image, masks, steps=3, all_layers=True)
    torch.testing.assert_close(merged.background, lora.background, rtol=0, atol=1e-4)
    for k in (0, 1):
        torch.testing.assert_close(merged.layers[k], lora.layers[k], rtol=0, atol=1e-4)


def test_the_merged_skeleton_holds_no_weights_until_assigned():
    """Placeholders live on the meta device: merging SDXL costs no second model's memory."""
    model = load_model("tiny")
    shell = skeleton(model.config, model.text)
    text = {id(p) for p in model.text.parameters()}
    placeholders = [p for p in shell.parameters() if id(p) not in text]
    assert placeholders and all(p.is_meta for p in placeholders)
    merged = merge_model(model)
    assert not any(t.is_meta for t in (*merged.parameters(), *merged.buffers()))


def test_a_tensor_left_on_the_meta_device_is_named():
    with pytest.raises(ValueError, match=r"merging left 1 tensors without values, e\.g\. weight"):
        check_materialised(torch.nn.Linear(2, 2, bias=False, device="meta"), "merging")


def test_merged_weights_are_readable_as_the_umask_allows(tmp_path):
    """safetensors 0.8 writes its files 0o600: a merged model shared on a machine was its writer's alone."""
    old = os.umask(0o022)
    try:
        out = save_merged(merge_model(load_model("tiny")), tmp_path / "merged", "tiny")
    finally:
        os.umask(old)
    assert (out / WEIGHTS).stat().st_mode & 0o777 == 0o644

"""Which type each graph runs in: SDXL's VAE stays float32 under float16 where its config says
force_upcast (as diffusers' SDXL pipelines do), everything else follows the asked type."""

from __future__ import annotations

import pytest
import torch

from reference.config import PRESETS
from reference.graphs import graph_dtypes, vae_upcast
from reference.model import load_model

F16, BF16, F32 = torch.float16, torch.bfloat16, torch.float32
SDXL = PRESETS["sdxl-inpaint"]
FP16_FIX = SDXL.replace(vae={**SDXL.vae, "force_upcast": False})  # e.g. madebyollin's fp16-fix VAE


@pytest.mark.parametrize(
    ("config", "dtype", "vae"),
    [(SDXL, F16, F32), (FP16_FIX, F16, F16), (PRESETS["sd15-inpaint"], F16, F16), (SDXL, BF16, BF16)],
    ids=["sdxl-fp16", "sdxl-fp16-fix-vae", "sd15-fp16", "sdxl-bf16"],
)
def test_only_an_sdxl_vae_that_asks_for_it_is_upcast(config, dtype, vae):
    dtypes = graph_dtypes(config, dtype)
    assert set(dtypes) == {"text_encoder", "conditioner", "vae_encoder", "vae_decoder", "unet"}
    assert dtypes["vae_encoder"] == dtypes["vae_decoder"] == vae
    assert dtypes["unet"] == dtypes["text_encoder"] == dtypes["conditioner"] == dtype


def test_the_model_casts_its_parts_by_the_policy():
    vae_weights = [p.clone() for p in load_model("tiny-xl").vae.parameters()]
    xl, sd = load_model("tiny-xl").cast(F16), load_model("tiny").cast(F16)
    # the fp32 VAE is the original, not a round trip through fp16
    assert all(torch.equal(a, b) for a, b in zip(xl.vae.parameters(), vae_weights, strict=True))
    assert {p.dtype for p in xl.vae.parameters()} == {F32}
    assert {p.dtype for p in xl.unet.parameters()} == {p.dtype for p in xl.text.parameters()} == {F16}
    assert {p.dtype for p in sd.parameters()} == {F16}


def test_an_upcast_vae_takes_the_type_it_is_given():
    dtypes = graph_dtypes(SDXL, F16, BF16)
    assert dtypes["vae_encoder"] == dtypes["vae_decoder"] == BF16 and dtypes["unet"] == F16
    assert graph_dtypes(FP16_FIX, F16, BF16)["vae_decoder"] == F16  # only an overflowing VAE moves


def test_a_cpu_upcasts_to_fp32():
    assert vae_upcast(torch.device("cpu")) == F32

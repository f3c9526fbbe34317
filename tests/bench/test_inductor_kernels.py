"""bench/inductor_kernels.py: what Inductor generates for the torch backend's compiled UNet."""

import pytest
from diffusers.models.attention_processor import Attention

from reference.model import load_model


@pytest.mark.slow  # Inductor compiles the tiny UNet's C++ kernels (seconds when its cache has them)
def test_counts_the_compiled_unets_kernels_and_calls_out(bench_script):
    compiled = bench_script("inductor_kernels").compile_unet("tiny", instances=2, resolution=64)
    attentions = sum(isinstance(m, Attention) for m in load_model("tiny").unet.modules())
    assert compiled.launches == sum(compiled.kernels.values()) > 0
    assert all(name.startswith("cpp_fused_") for name in compiled.kernels)
    # every attention reads its image tokens through one fused low-rank projection, whose bg term
    # accumulates in place; cross-attention's K/V come projected once an image (graph inputs)
    assert compiled.externs["torch.ops.mild.accumulate_matmul"] == attentions
    assert compiled.externs["torch.ops.aten._scaled_dot_product_flash_attention_for_cpu"] == attentions
    report = compiled.report().splitlines()
    assert report[0].startswith(f"{compiled.launches} launches of Inductor's own kernels")
    assert f"{attentions:5d}  torch.ops.mild.accumulate_matmul" in report


def test_bad_input_is_one_line_on_stderr(bench_script, capsys):
    assert bench_script("inductor_kernels").main(["--resolution", "60"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("inductor_kernels: error: resolution 60 is not supported by tiny")
    assert "\n" not in err

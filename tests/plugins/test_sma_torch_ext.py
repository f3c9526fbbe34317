"""The kernel extension's Python entry (CPU): a pipeline name is checked before anything builds."""

from __future__ import annotations

import pytest
import torch

from mild_export.engine import sma_torch_ext


def test_an_unknown_pipeline_name_lists_the_choices():
    t = torch.zeros(1, 1, 1, 8)
    message = "pipeline 'hopper': choose one of auto, one-stage, two-stage, wgmma"
    with pytest.raises(ValueError, match=message):
        sma_torch_ext.sma_forward(t, t, t, t[0, 0], t[0, 0], torch.zeros(1, 2, 2), pipeline="hopper")


@pytest.mark.parametrize(
    ("capability", "gencode", "defines"),
    [
        ((9, 0), "-gencode=arch=compute_90a,code=sm_90a", ["-DMILD_SMA_SM90A"]),
        ((8, 6), "-gencode=arch=compute_86,code=sm_86", []),
        ((12, 0), "-gencode=arch=compute_120,code=sm_120", []),
    ],
)
def test_sm90_builds_the_wgmma_kernel_and_no_other_gpu_does(capability, gencode, defines):
    """wgmma is an sm_90a feature: the extension compiles sm_90a (which runs on sm_90 only) and tells
    the launcher so; every other GPU gets its own SASS and the mma.sync kernel alone."""
    assert sma_torch_ext._gencode(*capability) == gencode
    assert sma_torch_ext._wgmma_flags(*capability) == defines

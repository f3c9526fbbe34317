"""The fused SMA kernel against a float64 reference (GPU only).

Tolerance rule (DESIGN.md section 8, sma_schema.json): our max error against float64 may be at
most `factor` times the error of PyTorch's own attention in the same precision, plus `atol`.
Fresh random inputs per case, outputs poisoned with NaN before the kernel runs.
"""

from __future__ import annotations

import pytest
import torch

from mild_export.ops.schema import SMA
from reference import sma

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU visible to torch (torch.cuda.is_available() is False)", allow_module_level=True)

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@pytest.fixture(scope="module")
def ext():
    from mild_export.engine import sma_torch_ext

    return sma_torch_ext


def _inputs(b, h, sq, sk, d, dtype, soft: bool, seed: int):
    g = torch.Generator(device="cuda").manual_seed(seed)
    kw = {"device": "cuda", "generator": g}
    q = torch.randn(b, h, sq, d, **kw).to(dtype)
    k = torch.randn(b, h, sk, d, **kw).to(dtype)
    v = torch.randn(b, h, sk, d, **kw).to(dtype)
    if soft:
        m_q, m_k = torch.rand(b, sq, **kw), torch.rand(b, sk, **kw)
    else:
        m_q, m_k = (torch.rand(b, sq, **kw) > 0.5).float(), (torch.rand(b, sk, **kw) > 0.5).float()
    alpha = 2.0 * torch.randn(h, 2, 2, **kw)
    return q, k, v, m_q.to(dtype), m_k.to(dtype), alpha.to(dtype)


def _check(ext, b, h, sq, sk, d, dtype_name, soft, seed, pipeline="auto"):
    dtype = DTYPES[dtype_name]
    q, k, v, m_q, m_k, alpha = _inputs(b, h, sq, sk, d, dtype, soft, seed)
    ref = sma.attention_reference(*(t.double() for t in (q, k, v, m_q, m_k, alpha)))
    torch_same = sma.attention_reference(q, k, v, m_q, m_k, alpha)
    out = torch.full_like(q, float("nan"))
    ext.sma_forward(q, k, v, m_q, m_k, alpha, out, pipeline=pipeline)
    torch.cuda.synchronize()
    assert torch.isfinite(out).all(), "the kernel left poisoned (NaN) outputs or produced inf/NaN"
    ours = (out.double() - ref).abs().max().item()
    theirs = (torch_same.double() - ref).abs().max().item()
    tol = SMA.tolerances[dtype_name]
    assert ours <= tol.factor * theirs + tol.atol, (
        f"max error {ours:.3g} > {tol.factor} x PyTorch's {theirs:.3g} + {tol.atol} "
        f"(B={b} H={h} Sq={sq} Sk={sk} D={d} {dtype_name} soft={soft} pipeline {pipeline})"
    )
    if sk == 1:
        return  # one key: softmax is 1 whatever the bias
    # the bias matters: the same kernel without alpha must differ from the reference
    plain = ext.sma_forward(q, k, v, m_q, m_k, torch.zeros_like(alpha), pipeline=pipeline)
    assert (plain.double() - ref).abs().max().item() > 10 * (ours + tol.atol)


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("d", [40, 64, 80, 128, 160, 8, 24, 96, 200, 256])
def test_head_dims(ext, d, dtype_name):
    _check(ext, 2, 3, 77, 77, d, dtype_name, soft=False, seed=d)


@pytest.mark.parametrize("pipeline", ["auto", "one-stage"])
@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize(("sq", "sk"), [(1, 1), (17, 17), (63, 65), (129, 300), (300, 129), (1025, 1025)])
@pytest.mark.parametrize("soft", [False, True], ids=["binary", "soft"])
def test_sequence_lengths_and_masks(ext, sq, sk, soft, dtype_name, pipeline):
    """The launcher's choice and the mma.sync kernel, which differ on sm_90 (the wgmma kernel there
    at D <= 64) and run the same kernel elsewhere."""
    _check(ext, 3, 2, sq, sk, 64, dtype_name, soft, seed=sq * 1000 + sk, pipeline=pipeline)


@pytest.mark.parametrize("pipeline", ["one-stage", "two-stage"])
@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
@pytest.mark.parametrize("d", [64, 96, 128, 160, 256])
def test_every_tile_shape_over_several_tiles(ext, d, dtype_name, pipeline):
    """Each head-dim bucket has its own query-block and key-tile sizes: two query blocks with a
    tail and at least three key tiles (each refilled by cp.async) with a tail, whatever the sizes,
    through both K/V pipelines (one stage is what sm_86/89/120 run, whatever GPU runs the test)."""
    if pipeline == "two-stage" and torch.cuda.get_device_capability() not in ext.TWO_STAGE_GPUS:
        pytest.skip("two K/V stages need the shared memory of sm_80/90; the launcher never takes them here")
    _check(ext, 2, 2, 200, 150, d, dtype_name, soft=True, seed=d + 1, pipeline=pipeline)


@pytest.fixture(scope="module")
def wgmma(ext):
    """Hopper's wgmma kernel runs on sm_90 only (compiled for sm_90a there)."""
    major, minor = torch.cuda.get_device_capability()
    if not ext.wgmma_runs(64, torch.float16):
        pytest.skip(f"the wgmma kernel runs on sm_90 only; this GPU is sm_{major}{minor}")
    return ext


HOPPER_CASES = [
    (2, 3, 77, 77, 64),
    (2, 3, 77, 77, 40),  # SD1.5's first head dim, channels past D zero-filled
    (2, 3, 77, 77, 8),
    (3, 2, 1, 1, 64),
    (3, 2, 63, 65, 64),
    (3, 2, 129, 300, 64),  # a query tail and three key tiles with a tail
    (3, 2, 300, 129, 64),
    (2, 2, 1025, 1025, 64),
    (5, 10, 256, 256, 64),  # SDXL 512's 16 x 16 self-attention, N + 1 = 5 rows
]


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
@pytest.mark.parametrize(("b", "h", "sq", "sk", "d"), HOPPER_CASES)
@pytest.mark.parametrize("soft", [False, True], ids=["binary", "soft"])
def test_wgmma_kernel(wgmma, b, h, sq, sk, d, dtype_name, soft):
    _check(wgmma, b, h, sq, sk, d, dtype_name, soft, seed=sq * 1000 + sk + d, pipeline="wgmma")


def test_wgmma_kernel_reads_the_attention_layout(wgmma):
    """[B, S, H, D] memory seen as [B, H, S, D] is read in place and written in that layout, as by
    the mma.sync kernel, equal to the call on contiguous copies."""
    q, k, v, m_q, m_k, alpha = _inputs(2, 3, 300, 300, 64, torch.float16, True, 7)
    strided = [t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v)]
    out = wgmma.sma_forward(*strided, m_q, m_k, alpha, pipeline="wgmma")
    assert out.stride() == (300 * 3 * 64, 64, 3 * 64, 1)
    assert torch.equal(out, wgmma.sma_forward(q, k, v, m_q, m_k, alpha, pipeline="wgmma"))


def test_wgmma_pipeline_refuses_what_it_cannot_run(ext):
    """Head dims past 64 and fp32 stay on the mma.sync kernel; asking the wgmma kernel for them (or
    for anything on a GPU other than sm_90) names what it runs."""
    q, k, v, m_q, m_k, alpha = _inputs(1, 1, 8, 8, 80, torch.float16, False, 0)
    message = "pipeline 3 \\(wgmma\\) runs fp16/bf16 with head_dim <= 64 on an sm_90 GPU"
    with pytest.raises(RuntimeError, match=message):
        ext.sma_forward(q, k, v, m_q, m_k, alpha, pipeline="wgmma")


def _bad_call(ext, case: str):
    q, k, v, m_q, m_k, alpha = _inputs(1, 1, 8, 8, 64, torch.float16, False, 0)
    if case == "pipeline":
        return ext.load().sma_forward(q, k, v, m_q, m_k, alpha, None, 7)
    if case == "shapes":
        return ext.sma_forward(q, k[..., :32], v[..., :32], m_q, m_k, alpha)
    return ext.sma_forward(q.int(), k, v, m_q, m_k, alpha)


@pytest.mark.parametrize(
    "case, message",
    [
        (
            "pipeline",
            "pipeline must be 0 \\(the GPU's choice\\), 1 or 2 \\(K/V stages\\) or 3 \\(wgmma\\), not 7",
        ),
        ("shapes", "q \\[1, 1, 8, 64\\] and k/v \\[1, 1, 8, 32\\] disagree"),
        ("dtype", "q must be float32, float16 or bfloat16, got Int"),
    ],
    ids=["pipeline", "shapes", "dtype"],  # `-k wgmma` selects the wgmma kernel's tests alone
)
def test_errors_with_formatted_values(ext, case, message):
    """Messages that carry values (formatted in the binding: TORCH_CHECK with formatted arguments
    segfaulted on the H200 machine's torch 2.11, 2026-11-27) raise, and name the value."""
    with pytest.raises(RuntimeError, match=message):
        _bad_call(ext, case)


def test_attention_layout_in_and_out(ext):
    """q, k, v as attention makes them ([B, S, H, D] memory seen as [B, H, S, D]) are read in
    place, and the output comes in that layout too, equal to the call on contiguous copies."""
    q, k, v, m_q, m_k, alpha = _inputs(2, 3, 77, 77, 64, torch.float16, True, 3)
    strided = [t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v)]
    out = ext.sma_forward(*strided, m_q, m_k, alpha)
    assert out.shape == q.shape and out.stride() == (77 * 3 * 64, 64, 3 * 64, 1)
    assert torch.equal(out, ext.sma_forward(q, k, v, m_q, m_k, alpha))


def test_rows_farther_apart_than_32_bit_offsets_reach(ext):
    """The kernel's tile offsets are 32-bit: q with rows 2^22 elements apart is copied first, and
    the result equals the call on a contiguous q."""
    q, k, v, m_q, m_k, alpha = _inputs(1, 1, 3, 3, 64, torch.float16, False, 5)
    row = 1 << 22
    buffer = torch.zeros(2 * row + 64, device="cuda", dtype=torch.float16)
    far = buffer.as_strided((1, 1, 3, 64), (3 * row, 3 * row, row, 1))
    far.copy_(q)
    assert torch.equal(ext.sma_forward(far, k, v, m_q, m_k, alpha), ext.sma_forward(q, k, v, m_q, m_k, alpha))


def test_the_kernel_form_compiles_into_one_graph(ext):
    """`--sma kernel` is a torch custom op: torch.compile keeps it whole (fullgraph fails on a graph
    break), with the output layout its fake implementation promises."""
    q, k, v, m_q, m_k, alpha = (
        t.transpose(1, 2).contiguous().transpose(1, 2) if t.dim() == 4 else t
        for t in _inputs(2, 3, 77, 77, 64, torch.float16, True, 4)
    )

    def attention(q, k, v, m_q, m_k, alpha):
        out = sma.BACKENDS["kernel"](q, k, v, m_q, m_k, alpha)
        return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1) * 2

    eager = attention(q, k, v, m_q, m_k, alpha)
    compiled = torch.compile(attention, fullgraph=True)(q, k, v, m_q, m_k, alpha)
    torch.testing.assert_close(compiled, eager, rtol=0, atol=0)


def test_batch_five_sdxl_heads(ext):
    _check(ext, 5, 10, 256, 256, 64, "float16", soft=True, seed=5)


def test_rejects_bad_head_dim(ext):
    q, k, v, m_q, m_k, alpha = _inputs(1, 1, 8, 8, 36, torch.float16, False, 0)
    with pytest.raises(RuntimeError, match="head_dim must be a multiple of 8"):
        ext.sma_forward(q, k, v, m_q, m_k, alpha)


def test_the_reference_unet_runs_the_kernel_form(ext):
    """`TorchBackend(..., sma_form="kernel")` (mild-bench --sma kernel): the tiny UNet in fp16 with the
    kernel stays as close to float64 as the same UNet with PyTorch's own SMA in fp16."""
    from reference.backend import TorchBackend
    from tests.conftest import make_trained_tiny, unet_inputs

    model = make_trained_tiny(seed=6)
    inputs = unet_inputs(model, n=3, side=16, seed=2)
    exact = TorchBackend(model.double(), "cuda").run(
        "unet", {k: v.cuda().double() for k, v in inputs.items()}
    )
    half = {k: v.cuda().half() for k, v in inputs.items()}
    model = model.half()
    torch_half = TorchBackend(model, "cuda").run("unet", half)
    ours = TorchBackend(model, "cuda", sma_form="kernel").run("unet", half)
    tol = SMA.tolerances["float16"]
    for name in ("eps_fg", "eps_bg"):
        err = (ours[name].double() - exact[name]).abs().max().item()
        theirs = (torch_half[name].double() - exact[name]).abs().max().item()
        assert err <= tol.factor * theirs + tol.atol, f"{name}: {err:.3g} > {tol.factor} x {theirs:.3g}"

"""The PyTorch deployment backend: the merged model, its precision, CUDA graphs of the UNet.

On a CPU: parity with the reference at its noise floor, the merge done once, the refusals and the
CLI wiring. On a GPU: graph replays equal eager calls per shape set, and a capture that fails
falls back to eager calls with the reason logged.
"""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from diffusers.models.attention_processor import Attention

from mild_export.bench.backends import BenchOptions, make_target
from mild_export.bench.weights import stored_bytes
from mild_export.cli.erase import make_backend, parse_args
from mild_export.engine.sma_torch_ext import prepare_form
from mild_export.export.branch_weights import BranchWeights
from mild_export.golden import psnr
from mild_export.runtime.context_kv import ContextKVBackend
from mild_export.runtime.prompt_cache import PromptCache
from mild_export.runtime.torch_backend import CastBackend, GraphedBackend, backend_model, torch_backend
from reference.backend import TorchBackend
from reference.branch_attention import FUSED, PROJECTIONS, BranchLinear, LowRankBranchLinear
from reference.merge import is_merged, merge_model
from reference.model import load_model
from tests.conftest import make_trained_tiny, requires_gpu, unet_inputs


def psnr_of_images(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR of decoded images in [-1, 1], as the pipeline scores [0, 1] composites."""
    return psnr((ours.numpy() + 1) / 2, (ref.numpy() + 1) / 2)


def unet(backend, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    out = backend.run("unet", inputs)
    return torch.cat([out["eps_fg"], out["eps_bg"]])


@pytest.mark.parametrize("bg_weights", list(BranchWeights), ids=lambda f: f.value)
def test_the_merged_model_in_fp32_sits_at_the_references_noise_floor(bg_weights):
    model = make_trained_tiny(seed=7)  # random LoRA B, scales and SMA alphas: merging matters
    inputs = unet_inputs(model, n=3, side=8, seed=1)
    truth = unet(TorchBackend(copy.deepcopy(model).double()), {k: v.double() for k, v in inputs.items()})
    reference_err = (unet(TorchBackend(model), inputs).double() - truth).abs().max()
    ours = torch_backend(copy.deepcopy(model), torch.device("cpu"), "fp32", "fold", bg_weights=bg_weights)
    assert isinstance(ours.inner, ContextKVBackend)
    assert isinstance(ours.inner.inner, TorchBackend) and is_merged(ours.inner.inner.model)  # no cast, graphs
    attentions = [m for m in backend_model(ours).unet.modules() if isinstance(m, Attention)]
    kinds = {type(getattr(attn, name)) for attn in attentions for name in PROJECTIONS}
    assert kinds == {LowRankBranchLinear if bg_weights is BranchWeights.LOW_RANK else BranchLinear}
    ours_err = (unet(ours, inputs).double() - truth).abs().max()
    assert ours_err <= 10 * reference_err + 1e-6, (ours_err, reference_err)
    assert truth.abs().max() > 1000 * ours_err  # the outputs are not near zero


def test_the_low_rank_form_holds_the_unet_in_less_memory():
    """The default holds the bg Q/K/V as factors of their difference from the fg set, as the
    export does: here the bytes it saves are the whole bg sets less those factors."""
    full, low = (
        torch_backend(make_trained_tiny(seed=7), torch.device("cpu"), "fp32", "fold", bg_weights=form)
        for form in (BranchWeights.FULL, BranchWeights.LOW_RANK)
    )
    full_unet, low_unet = backend_model(full).unet, backend_model(low).unet
    bg_sets = sum(m.weight_bg.numel() for m in full_unet.modules() if type(m) is BranchLinear)
    factors = sum(m.up.numel() + m.down.numel() for m in low_unet.modules() if type(m) is LowRankBranchLinear)
    assert 0 < factors < bg_sets / 2
    groups = [g for attn in low_unet.modules() for g in getattr(attn, FUSED, ())]
    zeros = sum(g.up.numel() - g.width * g.up.shape[1] // len(g.sizes) for g in groups)  # off the diagonal
    zeros += sum(g.bias.numel() - g.width for g in groups if g.bias is not None)  # the down rows' biases
    assert stored_bytes(low_unet) == stored_bytes(full_unet) - 4 * (bg_sets - factors - zeros)


def test_a_merged_model_is_used_as_it_is():
    merged = merge_model(make_trained_tiny(seed=2))
    backend = torch_backend(merged, torch.device("cpu"), "fp32", "fold")
    assert backend_model(backend) is merged


def test_half_precision_is_cast_at_the_boundary():
    backend = torch_backend(make_trained_tiny(), torch.device("cpu"), "bf16", "fold")
    cast = backend.inner.inner
    assert isinstance(cast, CastBackend) and cast.dtype == torch.bfloat16
    assert {p.dtype for p in cast.inner.model.unet.parameters()} == {torch.bfloat16}


def test_an_sdxl_vae_decodes_in_fp32_under_fp16():
    """SDXL's VAE overflows fp16 (NaN images): under fp16 the backend keeps it fp32, as diffusers'
    SDXL pipelines do, unless its config says it is the fp16-safe kind."""
    model = load_model("tiny-xl")
    with torch.no_grad():
        model.vae.decoder.conv_in.weight.mul_(1e5)  # activations past fp16's 65504, normalised after
    latents = {"latents": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    upcast = torch_backend(copy.deepcopy(model), torch.device("cpu"), "fp16", "fold")
    assert torch.isfinite(upcast.run("vae_decoder", latents)["images"]).all()
    model.config = model.config.replace(vae={**model.config.vae, "force_upcast": False})
    fp16 = torch_backend(model, torch.device("cpu"), "fp16", "fold")
    assert not torch.isfinite(fp16.run("vae_decoder", latents)["images"]).all()  # what the upcast is for
    assert {p.dtype for p in backend_model(upcast).vae.parameters()} == {torch.float32}


def test_a_bf16_upcast_keeps_the_sdxl_vae_finite_and_near_fp32():
    """bf16 (what the backend upcasts to on a GPU that has it) has fp32's range: the overflowing
    decoder stays finite, and its images stay near the fp32 VAE's (the 8-bit mantissa's error)."""
    model = load_model("tiny-xl")
    with torch.no_grad():
        model.vae.decoder.conv_in.weight.mul_(1e5)
    latents = {"latents": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    fp32 = TorchBackend(copy.deepcopy(model)).run("vae_decoder", latents)["images"]
    bf16 = CastBackend(TorchBackend(model.cast(torch.float16, torch.bfloat16)), torch.float16, torch.bfloat16)
    assert bf16.dtypes["vae_decoder"] == bf16.dtypes["vae_encoder"] == torch.bfloat16
    assert bf16.dtypes["unet"] == torch.float16
    images = bf16.run("vae_decoder", latents)["images"]
    assert torch.isfinite(images).all()
    assert psnr_of_images(images, fp32) > 40  # 58.7 dB on the CPU


class Counting:
    """Records the graphs its inner backend is asked to run."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def run(self, graph, inputs):
        self.calls.append(graph)
        return self.inner.run(graph, inputs)


def test_the_text_encoder_runs_once_per_prompt():
    backend = torch_backend(make_trained_tiny(), torch.device("cpu"), "fp32", "fold")
    street, park = backend.tokenize(["a street"]), backend.tokenize(["a park"])
    counting = backend.inner = Counting(backend.inner)
    first = backend.run("text_encoder", street)
    again = backend.run("text_encoder", street)
    other = backend.run("text_encoder", park)
    assert counting.calls == ["text_encoder", "text_encoder"]
    assert again.keys() == first.keys() and all(again[n] is first[n] for n in first)
    assert all(not torch.equal(other[n], first[n]) for n in first)


def test_the_prompt_cache_forgets_the_least_recently_used():
    cache = PromptCache(size=2)
    ids = [{"input_ids": torch.tensor([[k, 7]])} for k in range(3)]
    encoded = []

    def encode(k):
        encoded.append(k)
        return {"text_embeds": torch.full((1,), float(k))}

    for k in range(3):
        cache.encodings(ids[k], lambda k=k: encode(k))
        if k == 1:
            assert (
                cache.encodings(ids[0], lambda: encode(0))["text_embeds"].item() == 0
            )  # used: now the newest
    assert encoded == [0, 1, 2] and len(cache) == 2
    assert cache.encodings(ids[0], lambda: encode(0))["text_embeds"].item() == 0  # kept
    assert cache.encodings(ids[2], lambda: encode(2))["text_embeds"].item() == 2  # kept
    assert encoded == [0, 1, 2]
    cache.encodings(ids[1], lambda: encode(1))  # forgotten: encoded again
    assert encoded == [0, 1, 2, 1]


def test_an_unknown_precision_is_named():
    with pytest.raises(ValueError, match=r"precision 'fp8': choose one of fp32, fp16, bf16"):
        torch_backend(make_trained_tiny(), torch.device("cpu"), "fp8", "fold")


def test_bench_builds_it_with_the_fold_form_on_a_cpu():
    target = make_target("torch", BenchOptions("tiny", None, torch.device("cpu"), None))
    assert (target.name, target.precision, target.sma) == ("torch", "fp32", "fold")
    assert is_merged(backend_model(target.backend))


@pytest.mark.slow  # Inductor compiles the tiny UNet's and VAE's C++ kernels: about 2 minutes on 2 cores
def test_the_compiled_model_equals_the_eager_one():
    model = make_trained_tiny(seed=5)
    images = {"images": torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1}
    eager = torch_backend(copy.deepcopy(model), torch.device("cpu"), "fp32", "fold")
    compiled = torch_backend(copy.deepcopy(model), torch.device("cpu"), "fp32", "fold", compile_model=True)
    ours = backend_model(compiled)
    parts = ours.unet, ours.vae.encoder, ours.vae.decoder
    assert all(p._compiled_call_impl is not None for p in parts)  # nn.Module.compile: in place
    # fp32 both; Inductor reorders and fuses sums, so equal to a few float32 roundings. Two images
    # of one shape: the second context's K/V go into the first's buffers, which the compiled UNet
    # must read as inputs, not as constants
    for seed in (3, 4):
        inputs = unet_inputs(model, n=2, side=8, seed=seed)
        want = unet(eager, inputs)
        assert (unet(compiled, inputs) - want).abs().max() <= 1e-5 * want.abs().max(), seed
    for graph, inputs in (("vae_encoder", images), ("vae_decoder", eager.run("vae_encoder", images))):
        want, got = eager.run(graph, inputs), compiled.run(graph, inputs)
        (name,) = want
        assert (got[name] - want[name]).abs().max() <= 1e-5 * want[name].abs().max(), graph


def test_bench_compiles_only_the_torch_backend():
    options = BenchOptions("tiny", None, torch.device("cpu"), None, compile_model=True)
    with pytest.raises(ValueError, match=r"--compile compiles the merged model of --backend torch, not "):
        make_target("reference", options)


def test_bench_refuses_engines_for_it(tmp_path):
    with pytest.raises(ValueError, match=r"--backend torch runs a model: give --model, not --engines"):
        make_target("torch", BenchOptions("tiny", tmp_path, torch.device("cpu"), None))


def test_erase_builds_it_and_takes_sma(tmp_path):
    args = parse_args(
        ["--demo", "--backend", "torch", "--device", "cpu", "--sma", "reference", "--out", str(tmp_path)]
    )
    backend = make_backend(args, torch.device("cpu"))
    assert is_merged(backend_model(backend)) and backend.inner.inner.sma_form == "reference"


# --- on a GPU: CUDA graphs -----------------------------------------------------------------------------


def on_gpu(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.cuda().half() for k, v in inputs.items()}


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("sma_form", ["fold", "kernel"])  # kernel: the plugin's, built on first use
def test_replays_equal_eager_calls_per_shape_set(caplog, sma_form):
    caplog.set_level(logging.INFO, logger="mild")
    model = make_trained_tiny(seed=4).cuda().half()
    eager = TorchBackend(
        merge_model(model), torch.device("cuda"), prepare_form(sma_form, torch.device("cuda"))
    )
    graphed = GraphedBackend(eager)
    for n, seed in ((2, 1), (2, 2), (2, 3), (3, 4), (2, 5)):  # new inputs each call, two shape sets
        inputs = on_gpu(unet_inputs(model, n=n, side=8, seed=seed, timestep=100.0 * seed))
        want = unet(eager, inputs).float()
        got = unet(graphed, inputs).float()
        # the same kernels replayed: equal up to fp16 rounding of the same sums
        assert (got - want).abs().max() <= 1e-3 * want.abs().max(), (n, seed)
    assert graphed.off_reason is None and len(graphed.captures) == 2
    assert sum("captured into a CUDA graph" in r.message for r in caplog.records) == 2


@pytest.mark.gpu
@requires_gpu
def test_an_sdxl_vae_runs_in_bf16_under_fp16_on_a_gpu_that_has_it():
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("this GPU has no bf16 tensor cores (before sm_80): the VAE stays fp32 there")
    model = load_model("tiny-xl")
    latents = {"latents": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    want = TorchBackend(copy.deepcopy(model)).run("vae_decoder", latents)["images"]
    backend = torch_backend(model, torch.device("cuda"), "fp16", "fold")
    assert {p.dtype for p in backend_model(backend).vae.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in backend_model(backend).unet.parameters()} == {torch.float16}
    got = backend.run("vae_decoder", latents)["images"].cpu()
    assert psnr_of_images(got, want) > 40  # 46.5 dB in bf16 on the CPU


@pytest.mark.gpu
@pytest.mark.slow
@requires_gpu
@pytest.mark.parametrize("sma_form", ["fold", "kernel"])
def test_the_compiled_model_replays_its_unet_as_a_cuda_graph(caplog, sma_form):
    caplog.set_level(logging.INFO, logger="mild")
    model = make_trained_tiny(seed=4)
    cuda = torch.device("cuda")
    eager = torch_backend(copy.deepcopy(model), cuda, "fp16", prepare_form(sma_form, cuda), cuda_graph=False)
    compiled = torch_backend(copy.deepcopy(model), cuda, "fp16", sma_form, compile_model=True)
    for seed in (1, 2):
        inputs = unet_inputs(model, n=2, side=8, seed=seed, timestep=300.0 * seed)
        want = unet(eager, inputs)
        assert (unet(compiled, inputs) - want).abs().max() <= 1e-2 * want.abs().max(), seed
        latents = {"latents": inputs["sample_bg"][:, :4]}
        want = eager.run("vae_decoder", latents)["images"]
        got = compiled.run("vae_decoder", latents)["images"]
        assert (got - want).abs().max() <= 1e-2 * want.abs().max(), seed
    assert sum("captured into a CUDA graph" in r.message for r in caplog.records) == 1
    assert "runs without CUDA graphs" not in caplog.text


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("bg_weights", list(BranchWeights), ids=lambda f: f.value)
@pytest.mark.parametrize("cuda_graph", [False, True], ids=["eager", "graphed"])
def test_the_kernel_reads_the_fused_projections_in_place(bg_weights, cuda_graph):
    """With fused projections Q, K and V are slices of one GEMM output (the bg rows' low-rank term
    added in place), which the kernel reads without copies: the backend agrees with the unfused
    merged model with SMA by the fold form. Inputs come from the host, as users give them. Two
    images of one shape: the second's cross-attention K/V are projected into the first's buffers
    (by the projections' own CUDA graph), which the replayed UNet graph must read."""
    model = make_trained_tiny(seed=6)
    cuda = torch.device("cuda")
    options = {"cuda_graph": cuda_graph, "bg_weights": bg_weights}
    ours = torch_backend(copy.deepcopy(model), cuda, "fp16", prepare_form("kernel", cuda), **options)
    assert any(hasattr(m, FUSED) for m in backend_model(ours).unet.modules())
    unfused = TorchBackend(merge_model(model.cuda().half()), cuda, "fold")
    for seed in (2, 3):
        inputs = unet_inputs(model, n=3, side=8, seed=seed)
        want = unet(unfused, on_gpu(inputs)).float()
        assert (unet(ours, inputs) - want).abs().max() <= 1e-2 * want.abs().max(), seed
    context_kv = ours.inner
    assert isinstance(context_kv, ContextKVBackend) and len(context_kv.projected) == 1
    assert all(p.graph is not None for p in context_kv.projected.values())


class SyncsInTheUNet:
    """A backend whose UNet reads a value back to the host: not capturable."""

    def __init__(self, inner: TorchBackend):
        self.inner, self.config, self.device = inner, inner.config, inner.device

    def tokenize(self, prompts):
        return self.inner.tokenize(prompts)

    def run(self, graph, inputs):
        if graph == "unet" and inputs["timestep"][0].item() < 0:  # never true: only the sync matters
            raise AssertionError
        return self.inner.run(graph, inputs)


@pytest.mark.gpu
@requires_gpu
def test_a_failed_capture_falls_back_to_eager_calls(caplog):
    model = make_trained_tiny(seed=4).cuda().half()
    eager = TorchBackend(merge_model(model), torch.device("cuda"), "fold")
    graphed = GraphedBackend(SyncsInTheUNet(eager))
    inputs = on_gpu(unet_inputs(model, n=2, side=8, seed=1))
    want = unet(eager, inputs).float()
    assert (unet(graphed, inputs).float() - want).abs().max() <= 1e-3 * want.abs().max()
    assert graphed.off_reason is not None and graphed.off_reason.startswith("capture failed")
    assert "unet runs without CUDA graphs: capture failed" in caplog.text
    assert (unet(graphed, inputs).float() - want).abs().max() <= 1e-3 * want.abs().max()  # still runs

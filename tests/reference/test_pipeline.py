"""The whole tiny pipeline on CPU: N+1 branches, one UNet call per step, composition."""

import pytest
import torch

from reference import sma
from reference.backend import TorchBackend
from reference.compose import ComposeMode
from reference.ddim import DDIM
from reference.model import load_model
from reference.pipeline import ErasePipeline
from reference.sampler import BranchInputs, denoise
from tests.conftest import make_trained_tiny, unet_inputs


class CountingBackend:
    """Wraps a backend and records each graph call's batch sizes."""

    def __init__(self, inner):
        self.inner, self.config, self.device = inner, inner.config, inner.device
        self.calls = []

    def tokenize(self, prompts):
        return self.inner.tokenize(prompts)

    def run(self, graph, inputs):
        self.calls.append((graph, {k: tuple(v.shape) for k, v in inputs.items()}))
        return self.inner.run(graph, inputs)


@pytest.fixture(scope="module")
def backend():
    return TorchBackend(load_model("tiny"))


def scene(n, size=64, seed=0):
    """n side-by-side rectangular people on a random image."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, size, size, generator=g)
    masks = torch.zeros(n, size, size)
    width = size // n
    for k in range(n):
        masks[k, 8 : size - 8, k * width + 1 : (k + 1) * width - 1] = 1
    return image, masks


@pytest.mark.parametrize("n", [1, 2, 5])
def test_tiny_pipeline_runs_one_unet_call_per_step(backend, n):
    counting = CountingBackend(backend)
    image, masks = scene(n)
    out = ErasePipeline(counting).erase(image, masks, steps=3, seed=1, all_layers=True)
    unet_calls = [shapes for graph, shapes in counting.calls if graph == "unet"]
    assert len(unet_calls) == 3
    assert unet_calls[0]["sample_fg"] == (n, 9, 8, 8) and unet_calls[0]["sample_bg"] == (1, 9, 8, 8)
    assert out.composite.shape == (3, 64, 64) and out.background.shape == (3, 64, 64)
    assert sorted(out.layers) == list(range(n))
    assert torch.isfinite(out.composite).all() and out.composite.min() >= 0 and out.composite.max() <= 1
    outside = masks.sum(0) == 0  # copy-outside keeps every pixel outside the removed masks
    torch.testing.assert_close(out.composite[:, outside], image[:, outside])
    inside = ~outside
    torch.testing.assert_close(out.composite[:, inside], out.background[:, inside])


def test_same_seed_same_result_other_seed_differs(backend):
    image, masks = scene(2)
    pipe = ErasePipeline(backend)
    a = pipe.erase(image, masks, steps=2, seed=3).background
    b = pipe.erase(image, masks, steps=2, seed=3).background
    c = pipe.erase(image, masks, steps=2, seed=4).background
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


def test_decodes_only_the_layers_the_composite_needs(backend):
    counting = CountingBackend(backend)
    image, masks = scene(3)
    pipe = ErasePipeline(counting)
    pipe.erase(image, masks, remove=[1], steps=1, compose_mode=ComposeMode.COPY_OUTSIDE)
    decodes = [s["latents"][0] for g, s in counting.calls if g == "vae_decoder"]
    assert decodes == [1]  # masks do not overlap: only the background is read
    counting.calls.clear()
    pipe.erase(image, masks, remove=[1], steps=1, compose_mode=ComposeMode.EQ6)
    assert [s["latents"][0] for g, s in counting.calls if g == "vae_decoder"] == [3]  # 2 kept + bg


def test_guidance_doubles_the_rows(backend):
    counting = CountingBackend(backend)
    image, masks = scene(2)
    ErasePipeline(counting).erase(image, masks, steps=1, guidance=4.0, prompt="a street")
    (unet,) = [s for g, s in counting.calls if g == "unet"]
    assert unet["sample_fg"][0] == 4 and unet["sample_bg"][0] == 2 and unet["timestep"] == (6,)


def test_batched_branches_follow_the_same_trajectories_as_alone(backend):
    g = torch.Generator().manual_seed(0)
    n, L, C = 3, backend.config.context_length, backend.config.cross_attention_dim
    rows = BranchInputs(
        cond_fg=torch.randn(n, 5, 8, 8, generator=g),
        cond_bg=torch.randn(1, 5, 8, 8, generator=g),
        mask_fg=(torch.rand(n, 1, 8, 8, generator=g) > 0.5).float(),
        mask_bg=torch.ones(1, 1, 8, 8),
        context_fg=torch.randn(n, L, C, generator=g),
        context_bg=torch.randn(1, L, C, generator=g),
    )
    noise = torch.randn(1, 4, 8, 8, generator=g)
    ddim = DDIM.create(backend.config.scheduler, 4)
    together = denoise(backend, ddim, noise, rows, n, guidance=1.0)
    for k in range(n):
        alone = BranchInputs(
            rows.cond_fg[k : k + 1],
            rows.cond_bg,
            rows.mask_fg[k : k + 1],
            rows.mask_bg,
            rows.context_fg[k : k + 1],
            rows.context_bg,
        )
        z = denoise(backend, ddim, noise, alone, 1, guidance=1.0)
        torch.testing.assert_close(z[0], together[k], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(z[1], together[n], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"remove": [3]}, r"remove=\[3\] must be distinct instance indices in 0..1"),
        ({"remove": [0, 0]}, r"remove=\[0, 0\] must be distinct instance indices in 0..1"),
        ({"steps": 0}, "steps must be at least 1, got 0"),
        ({"guidance": -1.0}, r"guidance must be >= 0 and finite \(1 disables it\), got -1.0"),
    ],
)
def test_rejects_bad_arguments(backend, kwargs, message):
    image, masks = scene(2)
    with pytest.raises(ValueError, match=message):
        ErasePipeline(backend).erase(image, masks, **kwargs)


def test_rejects_images_not_divisible_by_8(backend):
    image, masks = torch.rand(3, 60, 64), torch.ones(1, 60, 64)
    with pytest.raises(ValueError, match=r"image size \[60, 64\] must be divisible by 8"):
        ErasePipeline(backend).erase(image, masks)


def test_the_backend_runs_the_sma_form_it_was_given(monkeypatch):
    """Every SMA call of the UNet goes to the chosen form; fold gives the reference's noise."""
    model = make_trained_tiny(seed=4)  # nonzero alphas, so SMA's bias matters
    calls = []

    def counted(*args):
        calls.append(args[0].shape)
        return sma.attention_fold(*args)

    monkeypatch.setitem(sma.BACKENDS, "counted", counted)
    inputs = unet_inputs(model, n=2, side=8, seed=1)
    reference = TorchBackend(model).run("unet", inputs)
    fold = TorchBackend(model, sma_form="counted").run("unet", inputs)
    sma_layers = sum(1 for m in model.modules() if getattr(m, "sma_alpha", None) is not None)
    assert sma_layers == 7 and len(calls) == sma_layers  # tiny: one self-attention per transformer block
    assert all(shape[0] == 3 for shape in calls)  # 2 fg rows and the bg row in one call
    for name in ("eps_fg", "eps_bg"):  # fp32, the same math up to summation order
        torch.testing.assert_close(fold[name], reference[name], rtol=1e-5, atol=1e-5)


def test_an_unknown_sma_form_is_named():
    with pytest.raises(ValueError, match="unknown SMA form 'flash': choose one of reference, fold"):
        TorchBackend(load_model("tiny"), sma_form="flash")

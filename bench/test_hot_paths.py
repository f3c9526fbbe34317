"""pytest-benchmark over the small hot paths the runtime repeats per step or per image.

    python -m pytest bench/ --benchmark-enable          # times them (the default run only checks them)

Shapes are the paper's setting: 512x512 images (64x64 latents), N = 4 people, SDXL-like heads.
"""

import pytest
import torch

from reference import sma
from reference.compose import ComposeMode, compose
from reference.config import SchedulerConfig
from reference.ddim import DDIM

N, SIDE, LATENT = 4, 512, 64


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def test_ddim_step(benchmark, gen):
    """One DDIM update over all N + 1 branch latents (runs 25 times per image)."""
    ddim = DDIM.create(SchedulerConfig(), 25)
    z, eps = (torch.randn(N + 1, 4, LATENT, LATENT, generator=gen) for _ in range(2))
    out = benchmark(ddim.step, 10, z, eps)
    assert out.shape == z.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("mode", list(ComposeMode), ids=lambda m: m.value)
def test_compose_512(benchmark, gen, mode):
    """Eq. 6 over a 512x512 image with two of four people removed (once per image)."""
    background, image = (torch.rand(3, SIDE, SIDE, generator=gen) for _ in range(2))
    layers = {k: torch.rand(3, SIDE, SIDE, generator=gen) for k in range(N)}
    masks = torch.zeros(N, SIDE, SIDE)
    for k in range(N):
        masks[k, 64 + 80 * k : 256 + 80 * k, 40 + 100 * k : 200 + 100 * k] = 1  # overlapping people
    out = benchmark(compose, background, layers, masks, [0, 2], mode, image)
    assert out.shape == (3, SIDE, SIDE)


@pytest.mark.parametrize("form", ["reference", "fold"])
def test_sma_attention_s256(benchmark, gen, form):
    """Spatially-modulated attention at S = 256 tokens (the 16x16 level of a 512px SDXL UNet)."""
    b, h, s, d = N + 1, 10, 256, 64
    q, k, v = (torch.randn(b, h, s, d, generator=gen) for _ in range(3))
    m_q, m_k = ((torch.rand(b, s, generator=gen) > 0.5).float() for _ in range(2))
    alpha = torch.randn(h, 2, 2, generator=gen)
    fn = sma.attention_reference if form == "reference" else sma.attention_fold
    out = benchmark(fn, q, k, v, m_q, m_k, alpha)
    assert out.shape == q.shape

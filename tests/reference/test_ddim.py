"""Our DDIM equals diffusers' DDIMScheduler with Stable Diffusion's settings, step by step."""

import pytest
import torch
from diffusers import DDIMScheduler

from reference.config import SchedulerConfig
from reference.ddim import DDIM, add_noise


def diffusers_ddim(steps):
    s = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    s.set_timesteps(steps)
    return s


@pytest.mark.parametrize("steps", [1, 7, 25, 50])
def test_matches_diffusers_step_by_step(steps):
    ref, ours = diffusers_ddim(steps), DDIM.create(SchedulerConfig(), steps)
    assert torch.equal(ref.timesteps, ours.timesteps)
    g = torch.Generator().manual_seed(steps)
    x = torch.randn(2, 4, 8, 8, generator=g)
    y = x.clone()
    for i, t in enumerate(ours.timesteps):
        eps = torch.randn(x.shape, generator=g)
        x = ref.step(eps, t, x).prev_sample
        y = ours.step(i, y, eps)
        torch.testing.assert_close(y, x, rtol=1e-6, atol=1e-6)


def test_add_noise_matches_diffusers():
    ref = diffusers_ddim(25)
    z0, eps = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    t = torch.tensor([0, 500, 999])
    torch.testing.assert_close(add_noise(z0, eps, t, SchedulerConfig()), ref.add_noise(z0, eps, t))


@pytest.mark.parametrize("steps", [0, 1001])
def test_rejects_step_counts_out_of_range(steps):
    with pytest.raises(ValueError, match=f"steps must be in 1..1000, got {steps}"):
        DDIM.create(SchedulerConfig(), steps)

// DDIM with eta = 0 on Stable Diffusion's schedule, and the initial noise: host-side numbers that
// must equal reference/ddim.py and the Python pipeline's torch.randn draw.
//
//     symbol     code
//     t          timesteps[i]: the training step whose noise level the latent is at
//     ᾱ_t        alpha_t[i]
//     ᾱ_prev     alpha_prev[i]: ᾱ at the timestep the step lands on
//     z_t        the latents; ε_θ the UNet's noise prediction; ẑ_0 the clean latent they imply
#pragma once

#include "manifest.hpp"

#include <cstdint>
#include <vector>

namespace mild::detail {

struct DdimStep {
    int64_t timestep;
    double alpha_t, alpha_prev;
    // z_{t-Δ} = c_z · z_t + c_eps · ε, folding the three DDIM lines into one multiply-add:
    //   1. ẑ_0 = (z_t - sqrt(1 - ᾱ_t) ε) / sqrt(ᾱ_t)
    //   2. direction = sqrt(1 - ᾱ_prev) ε                       (eta = 0: no noise term)
    //   3. z_{t-Δ} = sqrt(ᾱ_prev) ẑ_0 + direction
    double c_z() const;
    double c_eps() const;
};

// Steps in sampling order (timesteps descending): "leading" spacing, steps_offset, ᾱ_0 for the
// last step's target (set_alpha_to_one False), as diffusers' DDIMScheduler with SD's settings.
std::vector<DdimStep> ddim_schedule(const Scheduler& s, int steps);

// torch.Generator().manual_seed(seed); torch.randn(n) on the CPU (n >= 16): mt19937, 24-bit
// uniforms, Box-Muller over blocks of 16 with the last block redrawn when n % 16 != 0.
std::vector<float> torch_randn(uint64_t seed, size_t n);

}  // namespace mild::detail

#include "schedule.hpp"

#include <cmath>
#include <random>

namespace mild::detail {

double DdimStep::c_z() const { return std::sqrt(alpha_prev) / std::sqrt(alpha_t); }

double DdimStep::c_eps() const {
    return std::sqrt(1.0 - alpha_prev) - std::sqrt(alpha_prev) * std::sqrt(1.0 - alpha_t) / std::sqrt(alpha_t);
}

std::vector<DdimStep> ddim_schedule(const Scheduler& s, int steps) {
    const int T = s.num_train_timesteps;
    // ᾱ_t = prod_{i <= t} (1 - β_i), β from sqrt-linear spacing ("scaled_linear")
    std::vector<double> alphas_cumprod(T);
    double a = 1.0, lo = std::sqrt(s.beta_start), hi = std::sqrt(s.beta_end);
    for (int t = 0; t < T; ++t) {
        double root = T == 1 ? lo : lo + (hi - lo) * t / (T - 1);
        a *= 1.0 - root * root;
        alphas_cumprod[t] = a;
    }
    const int ratio = T / steps;
    std::vector<DdimStep> out;
    out.reserve(steps);
    for (int i = 0; i < steps; ++i) {
        int64_t t = static_cast<int64_t>(steps - 1 - i) * ratio + s.steps_offset;
        int64_t prev = t - ratio;
        out.push_back({t, alphas_cumprod[t], prev >= 0 ? alphas_cumprod[prev] : alphas_cumprod[0]});
    }
    return out;
}

std::vector<float> torch_randn(uint64_t seed, size_t n) {
    std::mt19937 engine(static_cast<uint32_t>(seed));  // torch seeds its mt19937 with the low 32 bits
    auto uniform = [&engine] {  // 24 random bits scaled by 2^-24, as torch's uniform_real for float
        return static_cast<float>(engine() & ((1u << 24) - 1)) * (1.0f / (1u << 24));
    };
    auto box_muller_16 = [](float* d) {
        for (int j = 0; j < 8; ++j) {
            const float u1 = 1 - d[j];
            const float u2 = d[j + 8];
            const float radius = std::sqrt(-2 * std::log(u1));
            const float theta = 2.0f * static_cast<float>(M_PI) * u2;
            d[j] = radius * std::cos(theta);
            d[j + 8] = radius * std::sin(theta);
        }
    };
    std::vector<float> data(n);
    for (float& v : data) v = uniform();
    for (size_t i = 0; i + 16 <= n; i += 16) box_muller_16(data.data() + i);
    if (n % 16 != 0 && n >= 16) {
        float* tail = data.data() + n - 16;
        for (int i = 0; i < 16; ++i) tail[i] = uniform();
        box_muller_16(tail);
    }
    return data;
}

}  // namespace mild::detail

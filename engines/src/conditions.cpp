#include "conditions.hpp"

#include <algorithm>
#include <cmath>

namespace mild::detail {

namespace {

// Adaptive average pooling bounds (PyTorch's): output cell i covers [floor(i·in/out), ceil((i+1)·in/out)).
int pool_start(int i, int in, int out) { return static_cast<int>((static_cast<int64_t>(i) * in) / out); }
int pool_end(int i, int in, int out) { return static_cast<int>((static_cast<int64_t>(i + 1) * in + out - 1) / out); }

// Average of `value(y, x)` (0 or 1) over each pooling cell, via a summed-area table.
template <typename F>
void pool_binary(int height, int width, int size, F value, float* out) {
    std::vector<int64_t> sat(static_cast<size_t>(height + 1) * (width + 1), 0);
    for (int y = 0; y < height; ++y) {
        int64_t row = 0;
        for (int x = 0; x < width; ++x) {
            row += value(y, x) ? 1 : 0;
            sat[(y + 1) * static_cast<size_t>(width + 1) + x + 1] = sat[y * static_cast<size_t>(width + 1) + x + 1] + row;
        }
    }
    auto at = [&](int y, int x) { return sat[y * static_cast<size_t>(width + 1) + x]; };
    for (int i = 0; i < size; ++i) {
        int y0 = pool_start(i, height, size), y1 = pool_end(i, height, size);
        for (int j = 0; j < size; ++j) {
            int x0 = pool_start(j, width, size), x1 = pool_end(j, width, size);
            int64_t sum = at(y1, x1) - at(y0, x1) - at(y1, x0) + at(y0, x0);
            out[i * size + j] = static_cast<float>(static_cast<double>(sum) / ((y1 - y0) * (x1 - x0)));
        }
    }
}

}  // namespace

std::vector<float> mask_maps(const MaskSet& m, int size) {
    // per pixel: how many instances cover it, so "any other mask" is count - own > 0
    std::vector<uint16_t> count(static_cast<size_t>(m.height) * m.width, 0);
    for (int k = 0; k < m.n; ++k) {
        for (size_t p = 0; p < count.size(); ++p) count[p] += m.bits[k * count.size() + p];
    }
    const size_t plane = static_cast<size_t>(size) * size;
    std::vector<float> out((m.n + 1) * plane);
    for (int k = 0; k <= m.n; ++k) {
        pool_binary(m.height, m.width, size, [&](int y, int x) {
            size_t p = static_cast<size_t>(y) * m.width + x;
            return k < m.n ? count[p] - m.bits[k * count.size() + p] > 0 : count[p] > 0;
        }, out.data() + k * plane);
    }
    return out;
}

std::vector<float> pose_maps(const float* keypoints, int n, int height, int width, int size, double sigma) {
    const size_t plane = static_cast<size_t>(size) * size;
    std::vector<float> out(kPoseChannels * plane, 0.0f);
    if (keypoints == nullptr) return out;
    const float inv = static_cast<float>(1.0 / (2.0 * sigma * sigma));
    std::vector<float> dx2(size), dy2(size);
    for (int k = 0; k < n; ++k) {
        for (int c = 0; c < kPoseChannels; ++c) {
            const float* kp = keypoints + (static_cast<size_t>(k) * kPoseChannels + c) * 3;
            if (!(kp[2] > 0)) continue;
            const float x = kp[0] / width, y = kp[1] / height;
            for (int i = 0; i < size; ++i) {
                float centre = (static_cast<float>(i) + 0.5f) / size;
                dx2[i] = ((centre - x) * size) * ((centre - x) * size);
                dy2[i] = ((centre - y) * size) * ((centre - y) * size);
            }
            float* map = out.data() + c * plane;
            for (int i = 0; i < size; ++i) {
                for (int j = 0; j < size; ++j) {
                    map[i * size + j] = std::max(map[i * size + j], std::exp(-(dy2[i] + dx2[j]) * inv));
                }
            }
        }
    }
    return out;
}

std::vector<float> parsing_maps(const uint8_t* parsing, int height, int width, int size) {
    const size_t plane = static_cast<size_t>(size) * size;
    std::vector<float> out(kParsingClasses * plane, 0.0f);
    if (parsing == nullptr) return out;
    for (int c = 0; c < kParsingClasses; ++c) {
        pool_binary(height, width, size, [&](int y, int x) {
            return parsing[static_cast<size_t>(y) * width + x] == c;
        }, out.data() + c * plane);
    }
    return out;
}

std::vector<int> layers_needed(const MaskSet& m, const std::vector<int>& removed, bool eq6) {
    std::vector<int> kept;
    for (int k = 0; k < m.n; ++k) {
        if (std::find(removed.begin(), removed.end(), k) == removed.end()) kept.push_back(k);
    }
    if (eq6 || kept.empty()) return kept;
    if (removed.empty()) return {};
    const size_t plane = static_cast<size_t>(m.height) * m.width;
    std::vector<uint8_t> in_union(plane, 0);
    for (int r : removed) {
        for (size_t p = 0; p < plane; ++p) in_union[p] |= m.bits[r * plane + p];
    }
    std::vector<int> out;
    for (int k : kept) {
        const uint8_t* bits = m.bits.data() + k * plane;
        for (size_t p = 0; p < plane; ++p) {
            if (bits[p] && in_union[p]) {
                out.push_back(k);
                break;
            }
        }
    }
    return out;
}

std::vector<int64_t> byte_tokenize(const std::string& prompt, int length) {
    constexpr int64_t bos = 256, eos = 257, pad = 258;
    std::vector<int64_t> ids{bos};
    for (size_t i = 0; i < prompt.size() && static_cast<int>(i) < length - 2; ++i) {
        ids.push_back(static_cast<unsigned char>(prompt[i]));
    }
    ids.push_back(eos);
    ids.resize(std::max<size_t>(ids.size(), length), pad);
    return ids;
}

}  // namespace mild::detail

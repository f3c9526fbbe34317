// How one image's masks, pose and parsing become the conditioner's inputs, and which layers the
// composite reads: the host-side twins of reference/conditions.py, reference/hmg.py and
// reference/compose.py (layers_needed). Masks here are binary bytes (non-zero = person).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mild::detail {

constexpr int kPoseChannels = 18;    // OpenPose-18 keypoints
constexpr int kParsingClasses = 20;  // LIP / SCHP label ids 0..19
constexpr int kLatentFactor = 8;

struct MaskSet {
    int n = 0, height = 0, width = 0;
    std::vector<uint8_t> bits;  // [n][height][width], 0 or 1
    bool at(int k, int y, int x) const { return bits[(static_cast<size_t>(k) * height + y) * width + x] != 0; }
};

// Eq. 7 context masks rendered to the map grid: fg k gets M_others(k) = any mask but k, the bg
// branch gets M_all; each area-averaged to [size][size] (adaptive average pooling).
// -> [(n + 1)][size][size]
std::vector<float> mask_maps(const MaskSet& masks, int size);

// keypoints [n][18][3] (x, y in pixels, confidence) or nullptr -> Gaussian heatmaps [18][size][size],
// max over instances; confidence 0 draws nothing.
std::vector<float> pose_maps(const float* keypoints, int n, int height, int width, int size, double sigma);

// parsing [height][width] label ids or nullptr -> per-class coverage [20][size][size].
std::vector<float> parsing_maps(const uint8_t* parsing, int height, int width, int size);

// The fg layers the composite reads (ascending), as reference/compose.py layers_needed.
std::vector<int> layers_needed(const MaskSet& masks, const std::vector<int>& removed, bool eq6);

// The byte tokenizer of the tiny models (reference/text.py ByteTokenizer): [bos, utf-8 bytes, eos,
// pad...] of `length` ids.
std::vector<int64_t> byte_tokenize(const std::string& prompt, int length);

}  // namespace mild::detail

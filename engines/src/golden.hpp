// Golden files written by mild_export/golden.py: the reference's inputs, DDIM schedule, condition
// maps, noise, per-step UNet noise and images, read here so that the C++ tests check the runtime's
// host code against the same numbers as the Python tests (the layout is in golden.py's docstring).
//
//     Golden g = Golden::read("n3.mildgold");     // throws naming the file (and both versions)
//     std::vector<float> noise = g.floats("noise");
//     int steps = static_cast<int>(g.meta().at("steps").integer("steps"));
#pragma once

#include "json.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace mild::detail {

constexpr uint32_t kGoldenFormatVersion = 1;  // mild_export/golden.py FORMAT_VERSION

struct GoldenTensor {
    std::string name, dtype;  // dtype: float32 float16 float64 int64 int32 uint8
    std::vector<int64_t> shape;
    size_t offset = 0, nbytes = 0;  // offset from the start of the file
    size_t count() const;
};

class Golden {
public:
    // Throws std::runtime_error naming the file: unreadable, no MILDGOLD magic, another format
    // version (naming it and kGoldenFormatVersion), a bad table of contents or a short file.
    static Golden read(const std::string& path);

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    const Json& meta() const { return meta_; }
    const std::vector<GoldenTensor>& tensors() const { return tensors_; }  // in file order

    bool has(const std::string& name) const;
    const GoldenTensor& tensor(const std::string& name) const;  // throws naming file and tensor
    // Values converted from the stored type (float16 included), in C order.
    std::vector<float> floats(const std::string& name) const;
    std::vector<double> doubles(const std::string& name) const;
    std::vector<int64_t> integers(const std::string& name) const;  // integer types only
    std::vector<uint8_t> bytes(const std::string& name) const;     // uint8 only

private:
    std::string path_;
    uint32_t version_ = 0;
    Json meta_;
    std::vector<GoldenTensor> tensors_;
    std::vector<char> data_;
};

}  // namespace mild::detail

#include "golden.hpp"

#include <cmath>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace mild::detail {

namespace {

const char kMagic[8] = {'M', 'I', 'L', 'D', 'G', 'O', 'L', 'D'};
const char* const kRegenerate = "regenerate it with `python -m mild_export.golden write --engines DIR`";

size_t item_size(const std::string& dtype) {
    if (dtype == "float32" || dtype == "int32") return 4;
    if (dtype == "float64" || dtype == "int64") return 8;
    if (dtype == "float16") return 2;
    if (dtype == "uint8") return 1;
    return 0;
}

uint32_t read_u32(const char* p) {  // little-endian, whatever the host
    const auto* b = reinterpret_cast<const unsigned char*>(p);
    return static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8 | static_cast<uint32_t>(b[2]) << 16 |
           static_cast<uint32_t>(b[3]) << 24;
}

template <typename T>
T load_le(const char* p) {
    unsigned char b[sizeof(T)];
    std::memcpy(b, p, sizeof(T));
    uint64_t bits = 0;
    for (size_t i = 0; i < sizeof(T); ++i) bits |= static_cast<uint64_t>(b[i]) << (8 * i);
    T value;
    if constexpr (sizeof(T) == 8) {
        std::memcpy(&value, &bits, 8);
    } else if constexpr (sizeof(T) == 4) {
        const auto narrow = static_cast<uint32_t>(bits);
        std::memcpy(&value, &narrow, 4);
    } else if constexpr (sizeof(T) == 2) {
        const auto narrow = static_cast<uint16_t>(bits);
        std::memcpy(&value, &narrow, 2);
    } else {
        value = static_cast<T>(bits);
    }
    return value;
}

double half_to_double(uint16_t h) {
    const int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    const double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (exponent == 0) return sign * std::ldexp(mantissa, -24);
    if (exponent == 31) return mantissa ? NAN : sign * INFINITY;
    return sign * std::ldexp(mantissa + 1024, exponent - 25);
}

}  // namespace

size_t GoldenTensor::count() const {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    return n;
}

Golden Golden::read(const std::string& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) throw std::runtime_error(path + ": cannot read the golden file");
    Golden g;
    g.path_ = path;
    g.data_.resize(static_cast<size_t>(f.tellg()));
    f.seekg(0);
    f.read(g.data_.data(), static_cast<std::streamsize>(g.data_.size()));
    const size_t size = g.data_.size();
    if (size < 8 || std::memcmp(g.data_.data(), kMagic, 8) != 0)
        throw std::runtime_error(path + " is not a golden file (no MILDGOLD magic at its start)");
    if (size < 16) throw std::runtime_error(path + " is truncated: " + kRegenerate);
    g.version_ = read_u32(g.data_.data() + 8);
    if (g.version_ != kGoldenFormatVersion) {
        throw std::runtime_error(path + " is golden format version " + std::to_string(g.version_) +
                                 ", but this reader reads version " + std::to_string(kGoldenFormatVersion) + ": " +
                                 kRegenerate);
    }
    const size_t n = read_u32(g.data_.data() + 12);
    if (16 + n > size) throw std::runtime_error(path + ": its table of contents is cut off: " + kRegenerate);
    Json toc;
    try {
        toc = Json::parse(std::string(g.data_.data() + 16, n));
        g.meta_ = toc.at("meta");
        for (const Json& e : toc.at("tensors").array("tensors")) {
            GoldenTensor t;
            t.name = e.at("name").string("name");
            t.dtype = e.at("dtype").string("dtype");
            for (const Json& d : e.at("shape").array("shape")) t.shape.push_back(d.integer("shape"));
            t.offset = 16 + n + static_cast<size_t>(e.at("offset").integer("offset"));
            t.nbytes = static_cast<size_t>(e.at("nbytes").integer("nbytes"));
            if (item_size(t.dtype) == 0) throw std::runtime_error("tensor " + t.name + " has dtype " + t.dtype);
            if (t.nbytes != t.count() * item_size(t.dtype) || t.offset + t.nbytes > size)
                throw std::runtime_error("tensor " + t.name + " lies outside the file or has the wrong size");
            g.tensors_.push_back(std::move(t));
        }
    } catch (const std::runtime_error& e) {
        throw std::runtime_error(path + ": " + e.what() + ": " + kRegenerate);
    }
    return g;
}

bool Golden::has(const std::string& name) const {
    for (const GoldenTensor& t : tensors_)
        if (t.name == name) return true;
    return false;
}

const GoldenTensor& Golden::tensor(const std::string& name) const {
    for (const GoldenTensor& t : tensors_)
        if (t.name == name) return t;
    throw std::runtime_error(path_ + " has no tensor '" + name + "'");
}

std::vector<double> Golden::doubles(const std::string& name) const {
    const GoldenTensor& t = tensor(name);
    const char* p = data_.data() + t.offset;
    std::vector<double> out(t.count());
    const size_t step = item_size(t.dtype);
    for (size_t i = 0; i < out.size(); ++i, p += step) {
        if (t.dtype == "float32") out[i] = load_le<float>(p);
        else if (t.dtype == "float64") out[i] = load_le<double>(p);
        else if (t.dtype == "float16") out[i] = half_to_double(load_le<uint16_t>(p));
        else if (t.dtype == "int64") out[i] = static_cast<double>(load_le<int64_t>(p));
        else if (t.dtype == "int32") out[i] = load_le<int32_t>(p);
        else out[i] = static_cast<unsigned char>(*p);
    }
    return out;
}

std::vector<float> Golden::floats(const std::string& name) const {
    const std::vector<double> d = doubles(name);
    return std::vector<float>(d.begin(), d.end());
}

std::vector<int64_t> Golden::integers(const std::string& name) const {
    const GoldenTensor& t = tensor(name);
    if (t.dtype != "int64" && t.dtype != "int32" && t.dtype != "uint8")
        throw std::runtime_error(path_ + ": tensor " + name + " is " + t.dtype + ", not an integer type");
    const char* p = data_.data() + t.offset;
    std::vector<int64_t> out(t.count());
    for (size_t i = 0; i < out.size(); ++i) {
        if (t.dtype == "int64") out[i] = load_le<int64_t>(p + 8 * i);
        else if (t.dtype == "int32") out[i] = load_le<int32_t>(p + 4 * i);
        else out[i] = static_cast<unsigned char>(p[i]);
    }
    return out;
}

std::vector<uint8_t> Golden::bytes(const std::string& name) const {
    const GoldenTensor& t = tensor(name);
    if (t.dtype != "uint8") throw std::runtime_error(path_ + ": tensor " + name + " is " + t.dtype + ", not uint8");
    const auto* p = reinterpret_cast<const uint8_t*>(data_.data() + t.offset);
    return std::vector<uint8_t>(p, p + t.nbytes);
}

}  // namespace mild::detail

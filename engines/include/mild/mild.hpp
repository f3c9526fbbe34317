// mild.hpp: header-only C++ wrapper over mild.h. One owner per context (move-only), errors as
// mild::Error carrying the status and the library's message.
//
//     mild::Context ctx(mild::Context::Params().model_dir("engines/tiny"));
//     mild::EraseParams p;
//     p.raw.steps = 25;
//     std::vector<uint8_t> out = ctx.erase(image, masks, p);
#ifndef MILD_MILD_HPP
#define MILD_MILD_HPP

#include "mild/mild.h"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mild {

class Error : public std::runtime_error {
public:
    Error(mild_status status, const std::string& message)
        : std::runtime_error(std::string(mild_status_string(status)) + ": " + message), status_(status) {}
    mild_status status() const noexcept { return status_; }

private:
    mild_status status_;
};

inline void check(mild_status status) {
    if (status != MILD_OK) throw Error(status, mild_last_error());
}

// Defaults from mild_erase_params_init; fields of `raw` may be set directly.
struct EraseParams {
    mild_erase_params raw;
    std::vector<int> remove;  // used when set_remove was called
    bool remove_set = false;

    EraseParams() { mild_erase_params_init(&raw); }
    EraseParams& set_remove(std::vector<int> indices) {
        remove = std::move(indices);
        remove_set = true;
        return *this;
    }
    mild_erase_params finish() const {
        mild_erase_params p = raw;
        if (remove_set) {
            p.remove = remove.data();
            p.n_remove = static_cast<int>(remove.size());
        }
        return p;
    }
};

class Context {
public:
    struct Params {
        mild_context_params raw;
        std::string dir, plugin;
        Params() { mild_context_params_init(&raw); }
        Params& model_dir(std::string d) { dir = std::move(d); return *this; }
        Params& plugin_library(std::string p) { plugin = std::move(p); return *this; }
        Params& lazy_load(bool lazy) { raw.lazy_load = lazy ? 1 : 0; return *this; }
        Params& device(int d) { raw.device = d; return *this; }
    };

    explicit Context(const Params& params) {
        mild_context_params p = params.raw;
        if (!params.dir.empty()) p.model_dir = params.dir.c_str();
        if (!params.plugin.empty()) p.plugin_library = params.plugin.c_str();
        check(mild_context_create(&p, &ctx_));
    }
    ~Context() { mild_context_free(ctx_); }
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;
    Context(Context&& other) noexcept : ctx_(std::exchange(other.ctx_, nullptr)) {}
    Context& operator=(Context&& other) noexcept {
        if (this != &other) {
            mild_context_free(ctx_);
            ctx_ = std::exchange(other.ctx_, nullptr);
        }
        return *this;
    }

    mild_context* get() const noexcept { return ctx_; }
    int max_instances(bool guided) const { return mild_context_max_instances(ctx_, guided ? 1 : 0); }

    // Erase into a caller-owned image (width, height, 3 channels, data set).
    void erase(const mild_image& image, const std::vector<mild_mask>& masks, const EraseParams& params,
               mild_image& out) {
        mild_erase_params p = params.finish();
        check(mild_erase(ctx_, &image, masks.data(), static_cast<int>(masks.size()), &p, &out));
    }

    // Erase and return the composite as tightly packed RGB bytes.
    std::vector<uint8_t> erase(const mild_image& image, const std::vector<mild_mask>& masks,
                               const EraseParams& params) {
        if (image.width <= 0 || image.height <= 0) {
            throw Error(MILD_ERROR_INVALID_ARGUMENT, "image has no pixels");
        }
        std::vector<uint8_t> pixels(static_cast<size_t>(image.width) * image.height * 3);
        mild_image out{image.width, image.height, 3, 0, pixels.data()};
        erase(image, masks, params, out);
        return pixels;
    }

private:
    mild_context* ctx_ = nullptr;
};

inline std::string tensorrt_version() { return mild_runtime_tensorrt_version(); }

}  // namespace mild

#endif  // MILD_MILD_HPP

// The C boundary: every entry point catches everything, returns a status and keeps the message
// in a thread-local last error. Nothing here does work of its own.
#include "error.hpp"
#include "pipeline.hpp"
#include "schedule.hpp"
#include "trt.hpp"

#include <NvInferVersion.h>

#include <new>
#include <string>

#ifndef MILD_RUNTIME_VERSION
#define MILD_RUNTIME_VERSION "0.0.0"
#endif
#ifndef MILD_RUNTIME_TENSORRT_LIBRARY
#define MILD_RUNTIME_TENSORRT_LIBRARY "?"
#endif

struct mild_context {
    std::unique_ptr<mild::detail::Pipeline> pipeline;
};

namespace {

thread_local std::string g_last_error;

mild_status set_error(mild_status status, const std::string& message) {
    g_last_error = message;
    return status;
}

// Runs `body`, turning every exception into a status and the last error.
template <typename F>
mild_status guarded(const char* function, F&& body) noexcept {
    try {
        body();
        return MILD_OK;
    } catch (const mild::detail::Failure& f) {
        return set_error(f.status(), std::string(function) + ": " + f.what());
    } catch (const std::bad_alloc&) {
        return set_error(MILD_ERROR_OUT_OF_MEMORY, std::string(function) + ": out of host memory");
    } catch (const std::exception& e) {
        return set_error(MILD_ERROR_INTERNAL, std::string(function) + ": internal error: " + e.what());
    } catch (...) {
        return set_error(MILD_ERROR_INTERNAL, std::string(function) + ": internal error (unknown exception)");
    }
}

std::string tensorrt_description() {
#if defined(TRT_MAJOR_RTX)
    std::string s = "TensorRT-RTX " + std::to_string(TRT_MAJOR_RTX) + "." + std::to_string(TRT_MINOR_RTX) + "." +
                    std::to_string(TRT_PATCH_RTX);
#else
    std::string s = "TensorRT " + std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." +
                    std::to_string(NV_TENSORRT_PATCH);
#endif
    return s + " (linked: " MILD_RUNTIME_TENSORRT_LIBRARY ")";
}

}  // namespace

extern "C" {

MILD_API const char* mild_status_string(mild_status status) {
    switch (status) {
        case MILD_OK: return "MILD_OK";
        case MILD_ERROR_INVALID_ARGUMENT: return "MILD_ERROR_INVALID_ARGUMENT";
        case MILD_ERROR_UNSUPPORTED_SHAPE: return "MILD_ERROR_UNSUPPORTED_SHAPE";
        case MILD_ERROR_MANIFEST: return "MILD_ERROR_MANIFEST";
        case MILD_ERROR_NO_CUDA_DEVICE: return "MILD_ERROR_NO_CUDA_DEVICE";
        case MILD_ERROR_TENSORRT_MISMATCH: return "MILD_ERROR_TENSORRT_MISMATCH";
        case MILD_ERROR_ENGINE: return "MILD_ERROR_ENGINE";
        case MILD_ERROR_CUDA: return "MILD_ERROR_CUDA";
        case MILD_ERROR_OUT_OF_MEMORY: return "MILD_ERROR_OUT_OF_MEMORY";
        case MILD_ERROR_CANCELLED: return "MILD_ERROR_CANCELLED";
        case MILD_ERROR_INTERNAL: return "MILD_ERROR_INTERNAL";
    }
    return "MILD_ERROR_UNKNOWN_STATUS";
}

MILD_API const char* mild_last_error(void) { return g_last_error.c_str(); }

MILD_API const char* mild_runtime_version(void) { return MILD_RUNTIME_VERSION; }

MILD_API const char* mild_runtime_tensorrt_version(void) {
    static const std::string text = tensorrt_description();
    return text.c_str();
}

MILD_API mild_status mild_runtime_check_tensorrt(void) {
    return guarded("mild_runtime_check_tensorrt", [] { mild::detail::check_tensorrt(); });
}

MILD_API void mild_context_params_init(mild_context_params* params) {
    if (params == nullptr) return;
    *params = mild_context_params{};
    params->model_dir = nullptr;
    params->plugin_library = nullptr;
    params->device = 0;
    params->lazy_load = 0;
    params->log_level = MILD_LOG_WARNING;
    params->log = nullptr;
    params->log_user = nullptr;
}

MILD_API void mild_erase_params_init(mild_erase_params* params) {
    if (params == nullptr) return;
    *params = mild_erase_params{};
    params->remove = nullptr;
    params->n_remove = MILD_REMOVE_ALL;
    params->steps = 25;
    params->guidance = 1.0f;
    params->seed = 0;
    params->compose = MILD_COMPOSE_COPY_OUTSIDE;
    params->prompt = "";
    params->prompt_source = MILD_PROMPT_AUTO;
}

MILD_API mild_status mild_context_create(const mild_context_params* params, mild_context** out) {
    using mild::detail::fail;
    if (out != nullptr) *out = nullptr;
    return guarded("mild_context_create", [&] {
        if (out == nullptr) fail(MILD_ERROR_INVALID_ARGUMENT, "out is NULL: pass the address of a mild_context*");
        if (params == nullptr) {
            fail(MILD_ERROR_INVALID_ARGUMENT, "params is NULL: fill one with mild_context_params_init");
        }
        if (params->model_dir == nullptr) {
            fail(MILD_ERROR_INVALID_ARGUMENT, "params->model_dir is NULL: give a mild-export output folder");
        }
        if (params->device < 0) fail(MILD_ERROR_INVALID_ARGUMENT, "params->device is ", params->device, ": give >= 0");
        if (params->log_level < MILD_LOG_ERROR || params->log_level > MILD_LOG_VERBOSE) {
            fail(MILD_ERROR_INVALID_ARGUMENT, "params->log_level is ", static_cast<int>(params->log_level),
                 ": give MILD_LOG_ERROR, MILD_LOG_WARNING, MILD_LOG_INFO or MILD_LOG_VERBOSE");
        }
        auto ctx = std::make_unique<mild_context>();
        ctx->pipeline = std::make_unique<mild::detail::Pipeline>(*params);
        *out = ctx.release();
    });
}

MILD_API void mild_context_free(mild_context* ctx) {
    try {
        delete ctx;
    } catch (...) {  // destructors release CUDA memory; nothing may escape
    }
}

MILD_API int mild_context_max_instances(const mild_context* ctx, int guided) {
    if (ctx == nullptr) {
        set_error(MILD_ERROR_INVALID_ARGUMENT, "mild_context_max_instances: ctx is NULL");
        return 0;
    }
    try {
        return ctx->pipeline->max_instances(guided ? 2 : 1);
    } catch (const std::exception& e) {
        set_error(MILD_ERROR_MANIFEST, std::string("mild_context_max_instances: ") + e.what());
        return 0;
    }
}

MILD_API mild_status mild_erase(mild_context* ctx, const mild_image* image, const mild_mask* masks, int n_masks,
                                const mild_erase_params* params, mild_image* out_composite) {
    return guarded("mild_erase", [&] {
        if (ctx == nullptr) {
            mild::detail::fail(MILD_ERROR_INVALID_ARGUMENT, "ctx is NULL: create one with mild_context_create");
        }
        ctx->pipeline->erase(image, masks, n_masks, params, out_composite);
    });
}

MILD_API mild_status mild_initial_noise(uint64_t seed, int width, int height, float* out, size_t n_out) {
    using mild::detail::fail;
    return guarded("mild_initial_noise", [&] {
        if (out == nullptr) {
            fail(MILD_ERROR_INVALID_ARGUMENT, "out is NULL: pass a buffer of 4 x (height / 8) x (width / 8) floats");
        }
        if (width <= 0 || height <= 0 || width % 8 || height % 8) {
            fail(MILD_ERROR_INVALID_ARGUMENT, "image size ", width, "x", height, " must be positive multiples of 8");
        }
        const size_t n = 4 * static_cast<size_t>(width / 8) * (height / 8);
        if (n_out < n) {
            fail(MILD_ERROR_INVALID_ARGUMENT, "n_out is ", n_out, " but the noise has ", n,
                 " values: pass a buffer of ", n, " floats");
        }
        const std::vector<float> noise = mild::detail::torch_randn(seed, n);
        std::copy(noise.begin(), noise.end(), out);
    });
}

}  // extern "C"

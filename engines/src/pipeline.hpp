// The MILD pipeline on TensorRT engines, as named stages (reference/pipeline.py):
//
//   check_inputs -> encode_text -> encode_conditions -> prepare_mask_latents -> prepare_latents
//   -> denoise (one UNet call per step over N fg rows + 1 bg row, x2 with guidance) -> decode -> compose
//
// check_inputs runs on the host only, so every bad argument is reported without a GPU.
#pragma once

#include "conditions.hpp"
#include "kernels.cuh"
#include "manifest.hpp"
#include "mild/mild.h"
#include "trt.hpp"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mild::detail {

// One erase call's arguments after checking: everything the GPU stages need, host-side.
struct ErasePlan {
    int n = 0, height = 0, width = 0, h = 0, w = 0, copies = 1;
    std::vector<int> removed, needed;  // removal set R; fg layers the composite reads
    bool eq6 = false;
    int steps = 25;
    float guidance = 1.0f;
    mild_erase_params params{};
    std::vector<std::string> prompts;  // one per copy: [prompt, ""][:copies]
    std::vector<bool> prompt_cached;   // per copy: from the cache (else the text engine)
    MaskSet masks;
    const mild_image* image = nullptr;
    mild_image* out = nullptr;
};

// A device allocation that grows when a larger shape arrives and is reused otherwise.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    ~DeviceBuffer();
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    void* reserve(size_t bytes);
    void* get() const { return ptr_; }

private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

// params->plugin_library, when it is a path, names a file (validate.cpp). Throws Failure.
void check_plugin_library(const char* path);

class Pipeline {
public:
    explicit Pipeline(const mild_context_params& params);  // manifest, files; engines unless lazy
    ~Pipeline();

    int max_instances(int copies) const { return manifest_.max_instances(copies); }
    void erase(const mild_image* image, const mild_mask* masks, int n_masks, const mild_erase_params* params,
               mild_image* out);

    // Host-only argument checks (validate.cpp). Throws Failure naming the culprit.
    ErasePlan check_inputs(const mild_image* image, const mild_mask* masks, int n_masks,
                           const mild_erase_params* params, mild_image* out) const;

private:
    mild_context_params params_;
    std::string model_dir_, plugin_library_;
    Manifest manifest_;
    std::unique_ptr<Runtime> runtime_;
    std::map<std::string, std::unique_ptr<Engine>> engines_;
    std::map<std::string, DeviceBuffer> buffers_;
    std::map<std::string, std::vector<float>> prompt_cache_host_;  // read on first use
    cudaStream_t stream_ = nullptr;

    bool text_engine_usable(std::string* why) const;
    void ensure_loaded();
    Engine& engine(const std::string& name);
    void* buffer(const std::string& name, size_t bytes) { return buffers_[name].reserve(bytes); }
    void* upload(const std::string& name, const void* host, size_t bytes);
    void* as_type(const std::string& name, const float* device_f32, size_t count, DType type);
    const std::vector<float>& cached_prompt(const std::string& prompt, const std::string& tensor);

    // stages
    void encode_text(const ErasePlan& plan, float* text, float* pooled);
    void encode_conditions(const ErasePlan& plan, const float* text, const float* pooled);
    void prepare_mask_latents(const ErasePlan& plan);
    void prepare_latents(const ErasePlan& plan, float* z);
    void denoise(const ErasePlan& plan, float* z);
    void decode(const ErasePlan& plan, const float* z);
    void compose(const ErasePlan& plan);
};

}  // namespace mild::detail

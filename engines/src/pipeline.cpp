#include "pipeline.hpp"

#include "error.hpp"
#include "schedule.hpp"

#include <cstring>
#include <dlfcn.h>
#include <fstream>

namespace mild::detail {

namespace {

void cuda_check(cudaError_t err, const char* what) {
    if (err == cudaSuccess) return;
    fail(err == cudaErrorMemoryAllocation ? MILD_ERROR_OUT_OF_MEMORY : MILD_ERROR_CUDA, what, ": ",
         cudaGetErrorName(err), " (", cudaGetErrorString(err), ")");
}

size_t product(const std::vector<int64_t>& shape) {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    return n;
}

IndexList index_list(const std::vector<int>& values) {
    // a longer list would leave list.n past the end of list.idx, which the kernels then read
    if (values.size() > static_cast<size_t>(kMaxIndices)) {
        fail(MILD_ERROR_INTERNAL, "an index list of ", values.size(), " entries exceeds the kernels' ", kMaxIndices);
    }
    IndexList list;
    list.n = static_cast<int>(values.size());
    for (size_t i = 0; i < values.size() && i < static_cast<size_t>(kMaxIndices); ++i) list.idx[i] = values[i];
    return list;
}

const char* const kGraphs[] = {"text_encoder", "conditioner", "vae_encoder", "vae_decoder", "unet"};

// The CUDA current device belongs to the calling thread and is whatever was set last: on a thread
// other than the one that loaded the engines, or after a context on another GPU was created, it is
// not this context's. cudaMalloc, the kernels and the engine stream must all be on params->device,
// so an erase makes it current for its duration and gives the caller's back afterwards.
class CurrentDevice {
public:
    explicit CurrentDevice(int device) {
        if (cudaGetDevice(&saved_) != cudaSuccess) saved_ = -1;
        cuda_check(cudaSetDevice(device), "cudaSetDevice");
    }
    ~CurrentDevice() {
        if (saved_ >= 0) cudaSetDevice(saved_);
    }
    CurrentDevice(const CurrentDevice&) = delete;
    CurrentDevice& operator=(const CurrentDevice&) = delete;

private:
    int saved_ = -1;
};

}  // namespace

DeviceBuffer::~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
}

void* DeviceBuffer::reserve(size_t bytes) {
    if (bytes <= bytes_ && ptr_ != nullptr) return ptr_;
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
    cuda_check(cudaMalloc(&ptr_, bytes == 0 ? 1 : bytes), "cudaMalloc");
    bytes_ = bytes;
    return ptr_;
}

Pipeline::Pipeline(const mild_context_params& params) : params_(params) {
    model_dir_ = params.model_dir;
    params_.model_dir = model_dir_.c_str();
    check_plugin_library(params.plugin_library);
    manifest_ = read_manifest(model_dir_);
    // engines of `mild-export --sma function|fold` have no plugin layers and no plugin_library entry
    plugin_library_ = params.plugin_library != nullptr ? params.plugin_library : manifest_.plugin_library;
    params_.plugin_library = plugin_library_.c_str();
    check_engine_files(manifest_, /*need_text=*/manifest_.prompt_cache.empty());
    if (!params.lazy_load) ensure_loaded();
}

Pipeline::~Pipeline() {
    // an erase that failed mid-way (an enqueue or kernel error) can leave work queued that reads the
    // engines' contexts and our buffers: let it finish before either is released
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    engines_.clear();
    buffers_.clear();
    runtime_.reset();
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void Pipeline::ensure_loaded() {
    if (runtime_) return;
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        cudaGetLastError();  // clear the sticky error for the next attempt
        void* driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
        const std::string why = driver == nullptr ? "no NVIDIA driver (libcuda.so.1 is not loadable)"
                                : err == cudaSuccess ? "the driver sees 0 devices"
                                                     : std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
        if (driver != nullptr) dlclose(driver);
        fail(MILD_ERROR_NO_CUDA_DEVICE, "no CUDA device: ", why, ". The engines of ", model_dir_,
             " need an NVIDIA GPU and its driver");
    }
    if (params_.device >= count) {
        fail(MILD_ERROR_NO_CUDA_DEVICE, "params->device is ", params_.device, " but there are ", count,
             " CUDA devices (0..", count - 1, ")");
    }
    cuda_check(cudaSetDevice(params_.device), "cudaSetDevice");
    auto runtime = std::make_unique<Runtime>(params_.log, params_.log_user, params_.log_level, plugin_library_);
    // On any failure below, the engines already deserialised must go before `runtime` does (it is
    // a local until the end): NvInferRuntime.h documents destroying an IRuntime before its engines
    // as undefined behaviour, and ~Pipeline (or the next lazy ensure_loaded) would otherwise delete
    // them after it. The unet, the largest engine and the one with plugin layers, loads last, so
    // this is the ordinary "an engine does not load" path (out of memory, a plugin), not a corner.
    try {
        for (const char* name : kGraphs) {
            if (!manifest_.has_graph(name)) continue;
            const GraphInfo& g = manifest_.graph(name);
            if (std::string(name) == "text_encoder") {
                std::ifstream probe(g.engine_path);
                if (!probe) continue;  // prompts come from the cache
            }
            engines_[name] = runtime->load(name, g.engine_path, g.built_with);
        }
        // the engines' own profiles must serve what the manifest promises (check_inputs relies on it)
        const int64_t fg_max = engines_.at("unet")->profile_max("sample_fg", 0);
        if (fg_max < manifest_.graph("unet").symbol("batch_fg").max) {
            fail(MILD_ERROR_ENGINE, "engine ", manifest_.graph("unet").engine_path, " serves at most ", fg_max,
                 " fg rows but the manifest says ", manifest_.graph("unet").symbol("batch_fg").max,
                 ": build the engines again from this manifest");
        }
        cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    } catch (...) {
        engines_.clear();
        throw;
    }
    runtime_ = std::move(runtime);
}

Engine& Pipeline::engine(const std::string& name) {
    auto it = engines_.find(name);
    if (it == engines_.end()) fail(MILD_ERROR_ENGINE, "no ", name, " engine is loaded from ", model_dir_);
    return *it->second;
}

void* Pipeline::upload(const std::string& name, const void* host, size_t bytes) {
    void* dst = buffer(name, bytes);
    cuda_check(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpy to the device");
    return dst;
}

void* Pipeline::as_type(const std::string& name, const float* device_f32, size_t count, DType type) {
    if (type == DType::F32) return const_cast<float*>(device_f32);
    void* dst = buffer(name, count * dtype_size(type));
    launch_convert(device_f32, DType::F32, dst, type, count, stream_);
    return dst;
}

const std::vector<float>& Pipeline::cached_prompt(const std::string& prompt, const std::string& tensor) {
    const std::string key = prompt + '\0' + tensor;
    auto hit = prompt_cache_host_.find(key);
    if (hit != prompt_cache_host_.end()) return hit->second;
    const PromptEntry& entry = manifest_.prompt_cache.at(prompt);
    auto t = entry.tensors.find(tensor);
    if (t == entry.tensors.end()) {
        fail(MILD_ERROR_MANIFEST, "the prompt cache entry for \"", prompt, "\" has no ", tensor);
    }
    std::vector<float> values(product(t->second.shape));
    std::ifstream file(manifest_.prompt_cache_file, std::ios::binary);
    file.seekg(static_cast<std::streamoff>(t->second.offset * sizeof(float)));
    file.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(float)));
    if (!file) {
        fail(MILD_ERROR_MANIFEST, "prompt cache ", manifest_.prompt_cache_file, " is shorter than its manifest entry for \"",
             prompt, "\" says: write the cache again");
    }
    return prompt_cache_host_[key] = std::move(values);
}

// text [c][T][C] and pooled [c][P] (SDXL) as float32 on the device, row c from the cache or the text engine.
void Pipeline::encode_text(const ErasePlan& plan, float* text, float* pooled) {
    const size_t row = static_cast<size_t>(manifest_.text_length) * manifest_.cross_attention_dim;
    for (int c = 0; c < plan.copies; ++c) {
        if (plan.prompt_cached[c]) {
            const auto& embeds = cached_prompt(plan.prompts[c], "prompt_embeds");
            if (embeds.size() != row) fail(MILD_ERROR_MANIFEST, "cached prompt_embeds have ", embeds.size(), " values, expected ", row);
            cuda_check(cudaMemcpyAsync(text + c * row, embeds.data(), row * sizeof(float), cudaMemcpyHostToDevice, stream_), "prompt upload");
            if (manifest_.added_conditions) {
                const auto& p = cached_prompt(plan.prompts[c], "pooled_prompt_embeds");
                cuda_check(cudaMemcpyAsync(pooled + c * p.size(), p.data(), p.size() * sizeof(float), cudaMemcpyHostToDevice, stream_), "prompt upload");
            }
            continue;
        }
        Engine& e = engine("text_encoder");
        const std::vector<int64_t> ids = byte_tokenize(plan.prompts[c], manifest_.text_length);
        const std::vector<int64_t> shape{1, manifest_.text_length};
        for (int i = 0; i < manifest_.n_text_encoders; ++i) {
            const std::string input = i == 0 ? "input_ids" : "input_ids_" + std::to_string(i + 1);
            void* staged = upload(input + "_i64", ids.data(), ids.size() * sizeof(int64_t));
            void* typed = staged;
            if (e.dtype(input) != DType::I64) {
                typed = buffer(input, ids.size() * dtype_size(e.dtype(input)));
                launch_convert(staged, DType::I64, typed, e.dtype(input), ids.size(), stream_);
            }
            e.set_input(input, shape, typed);
        }
        const std::vector<std::string> outputs = manifest_.added_conditions
            ? std::vector<std::string>{"prompt_embeds", "pooled_prompt_embeds"} : std::vector<std::string>{"prompt_embeds"};
        std::vector<void*> outs;
        for (const std::string& o : outputs) {
            outs.push_back(buffer("text." + o, product(e.output_shape(o)) * dtype_size(e.dtype(o))));
            e.set_output(o, outs.back());
        }
        e.enqueue(stream_);
        launch_convert(outs[0], e.dtype("prompt_embeds"), text + c * row, DType::F32, row, stream_);
        if (manifest_.added_conditions) {
            launch_convert(outs[1], e.dtype("pooled_prompt_embeds"), pooled + c * manifest_.pooled_dim, DType::F32,
                           manifest_.pooled_dim, stream_);
        }
    }
}

// Branch k's tokens are [text; pose; parsing; mask_k] (Sec. 3.2); SDXL's added conditions per row.
void Pipeline::encode_conditions(const ErasePlan& plan, const float* text, const float* pooled) {
    Engine& e = engine("conditioner");
    const int S = manifest_.map_size, n = plan.n;
    const std::vector<float> pose = pose_maps(plan.params.keypoints, n, plan.height, plan.width, S, manifest_.pose_sigma);
    const std::vector<float> parsing = parsing_maps(plan.params.parsing, plan.height, plan.width, S);
    const std::vector<float> masks = mask_maps(plan.masks, S);
    struct Input { const char* name; const std::vector<float>* host; std::vector<int64_t> shape; };
    for (const Input& in : {Input{"pose_maps", &pose, {1, kPoseChannels, S, S}},
                            Input{"parsing_maps", &parsing, {1, kParsingClasses, S, S}},
                            Input{"mask_maps", &masks, {n + 1, 1, S, S}}}) {
        const float* staged = static_cast<const float*>(upload(std::string(in.name) + "_f32", in.host->data(), in.host->size() * sizeof(float)));
        e.set_input(in.name, in.shape, as_type(in.name, staged, in.host->size(), e.dtype(in.name)));
    }
    void* hmg = buffer("hmg_tokens", product(e.output_shape("hmg_tokens")) * dtype_size(e.dtype("hmg_tokens")));
    void* mask_tokens = buffer("mask_tokens", product(e.output_shape("mask_tokens")) * dtype_size(e.dtype("mask_tokens")));
    const int64_t hmg_count = e.output_shape("hmg_tokens")[1], mask_count = e.output_shape("mask_tokens")[1];
    e.set_output("hmg_tokens", hmg);
    e.set_output("mask_tokens", mask_tokens);
    e.enqueue(stream_);

    Engine& unet = engine("unet");
    const int C = manifest_.cross_attention_dim, L = manifest_.context_length, c = plan.copies;
    const DType ctx_type = unet.dtype("context_fg");
    ContextArgs a{text, DType::F32, manifest_.text_length, hmg, e.dtype("hmg_tokens"), static_cast<int>(hmg_count),
                  mask_tokens, e.dtype("mask_tokens"), static_cast<int>(mask_count), C,
                  buffer("context_fg", static_cast<size_t>(c) * n * L * C * dtype_size(ctx_type)),
                  buffer("context_bg", static_cast<size_t>(c) * L * C * dtype_size(ctx_type)), ctx_type};
    if (manifest_.text_length + hmg_count + mask_count != L) {
        fail(MILD_ERROR_ENGINE, "conditioner tokens (", hmg_count, " + ", mask_count, ") and ", manifest_.text_length,
             " text tokens do not add up to the UNet's context length ", L);
    }
    launch_contexts(a, n, c, stream_);
    if (manifest_.added_conditions) {  // text_embeds: pooled per row (fg rows copy-major, then bg); time_ids
        const int P = manifest_.pooled_dim, rows = c * (n + 1);
        std::vector<float> host_pooled(static_cast<size_t>(c) * P), embeds, ids;
        cuda_check(cudaMemcpyAsync(host_pooled.data(), pooled, host_pooled.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_), "pooled download");
        cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
        for (int r = 0; r < rows; ++r) {
            const int copy = r < c * n ? r / n : r - c * n;
            embeds.insert(embeds.end(), host_pooled.begin() + copy * P, host_pooled.begin() + (copy + 1) * P);
            for (float v : {plan.height, plan.width, 0, 0, plan.height, plan.width}) ids.push_back(v);
        }
        const float* e32 = static_cast<const float*>(upload("text_embeds_f32", embeds.data(), embeds.size() * sizeof(float)));
        const float* i32 = static_cast<const float*>(upload("time_ids_f32", ids.data(), ids.size() * sizeof(float)));
        unet.set_input("text_embeds", {rows, P}, as_type("text_embeds", e32, embeds.size(), unet.dtype("text_embeds")));
        unet.set_input("time_ids", {rows, 6}, as_type("time_ids", i32, ids.size(), unet.dtype("time_ids")));
    }
}

// fg k: [M_k, E(x (1 - M_k))]; bg: [M_all, E(x (1 - M_all))] (DESIGN.md section 1).
void Pipeline::prepare_mask_latents(const ErasePlan& plan) {
    const int n = plan.n, H = plan.height, W = plan.width, hw = plan.h * plan.w;
    const int in_channels = plan.image->channels;
    const int in_stride = plan.image->stride ? plan.image->stride : plan.image->width * in_channels;
    // rows are `in_stride` apart but the last one is only width x channels long: the caller's buffer
    // (a view into a larger image, say) need not extend a whole stride past it
    const size_t image_bytes = static_cast<size_t>(in_stride) * (H - 1) + static_cast<size_t>(plan.image->width) * in_channels;
    const uint8_t* image = static_cast<const uint8_t*>(upload("image", plan.image->data, image_bytes));
    const uint8_t* masks = static_cast<const uint8_t*>(upload("masks", plan.masks.bits.data(), plan.masks.bits.size()));
    Engine& enc = engine("vae_encoder");
    const DType img_type = enc.dtype("images");
    void* images = buffer("images", static_cast<size_t>(n + 1) * 3 * H * W * dtype_size(img_type));
    launch_masked_images(image, in_channels, in_stride, masks, n, H, W, images, img_type, stream_);
    enc.set_input("images", {n + 1, 3, H, W}, images);
    enc.set_output("latents", buffer("latents", static_cast<size_t>(n + 1) * 4 * hw * dtype_size(enc.dtype("latents"))));
    enc.enqueue(stream_);

    float* latent_masks = static_cast<float*>(buffer("latent_masks", static_cast<size_t>(n + 1) * hw * sizeof(float)));
    launch_latent_masks(masks, n, H, W, latent_masks, stream_);
    Engine& unet = engine("unet");
    const DType t = unet.dtype("mask_fg");
    const int c = plan.copies;
    void* fg = buffer("mask_fg", static_cast<size_t>(c) * n * hw * dtype_size(t));
    void* bg = buffer("mask_bg", static_cast<size_t>(c) * hw * dtype_size(t));
    launch_branch_masks(latent_masks, n, c, hw, fg, bg, t, stream_);
}

// One noise draw shared by every branch (the seeded draw equals the Python pipeline's).
void Pipeline::prepare_latents(const ErasePlan& plan, float* z) {
    const size_t count = 4 * static_cast<size_t>(plan.h) * plan.w;
    std::vector<float> noise;
    const float* src = plan.params.initial_noise;
    if (src == nullptr) {
        noise = torch_randn(plan.params.seed, count);
        src = noise.data();
    }
    for (int b = 0; b <= plan.n; ++b) {
        cuda_check(cudaMemcpyAsync(z + b * count, src, count * sizeof(float), cudaMemcpyHostToDevice, stream_), "noise upload");
    }
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");  // `noise` leaves scope
}

void Pipeline::denoise(const ErasePlan& plan, float* z) {
    Engine& unet = engine("unet");
    Engine& enc = engine("vae_encoder");
    const int n = plan.n, c = plan.copies, hw = plan.h * plan.w, rows = c * (n + 1);
    const DType st = unet.dtype("sample_fg"), et = unet.dtype("eps_fg");
    void* sample_fg = buffer("sample_fg", static_cast<size_t>(c) * n * 9 * hw * dtype_size(st));
    void* sample_bg = buffer("sample_bg", static_cast<size_t>(c) * 9 * hw * dtype_size(st));
    void* timestep = buffer("timestep", rows * dtype_size(unet.dtype("timestep")));
    const int L = manifest_.context_length, C = manifest_.cross_attention_dim;
    unet.set_input("sample_fg", {c * n, 9, plan.h, plan.w}, sample_fg);
    unet.set_input("sample_bg", {c, 9, plan.h, plan.w}, sample_bg);
    unet.set_input("mask_fg", {c * n, 1, plan.h, plan.w}, buffers_.at("mask_fg").get());
    unet.set_input("mask_bg", {c, 1, plan.h, plan.w}, buffers_.at("mask_bg").get());
    unet.set_input("context_fg", {c * n, L, C}, buffers_.at("context_fg").get());
    unet.set_input("context_bg", {c, L, C}, buffers_.at("context_bg").get());
    unet.set_input("timestep", {rows}, timestep);
    void* eps_fg = buffer("eps_fg", static_cast<size_t>(c) * n * 4 * hw * dtype_size(et));
    void* eps_bg = buffer("eps_bg", static_cast<size_t>(c) * 4 * hw * dtype_size(et));
    unet.set_output("eps_fg", eps_fg);
    unet.set_output("eps_bg", eps_bg);
    const std::vector<DdimStep> schedule = ddim_schedule(manifest_.scheduler, plan.steps);
    for (int i = 0; i < plan.steps; ++i) {
        const DdimStep& s = schedule[i];
        launch_samples(z, static_cast<const float*>(buffers_.at("latent_masks").get()), buffers_.at("latents").get(),
                       enc.dtype("latents"), n, c, hw, sample_fg, sample_bg, st, stream_);
        launch_fill(timestep, unet.dtype("timestep"), rows, static_cast<double>(s.timestep), stream_);
        unet.enqueue(stream_);
        launch_guide_ddim(eps_fg, eps_bg, et, z, n, c, hw, plan.guidance, static_cast<float>(s.c_z()),
                          static_cast<float>(s.c_eps()), stream_);
        cuda_check(cudaGetLastError(), "a denoising kernel");
        if (plan.params.progress != nullptr) {
            cuda_check(cudaStreamSynchronize(stream_), "denoising step");
            if (plan.params.progress(i + 1, plan.steps, plan.params.user) != 0) {
                fail(MILD_ERROR_CANCELLED, "cancelled by the progress callback after step ", i + 1, " of ", plan.steps);
            }
        }
    }
}

// Decode the needed fg layers and the background (rows `needed`, then N).
void Pipeline::decode(const ErasePlan& plan, const float* z) {
    Engine& dec = engine("vae_decoder");
    std::vector<int> rows = plan.needed;
    rows.push_back(plan.n);
    const int k = static_cast<int>(rows.size()), hw = plan.h * plan.w;
    void* latents = buffer("decode_latents", static_cast<size_t>(k) * 4 * hw * dtype_size(dec.dtype("latents")));
    launch_gather_latents(z, index_list(rows), hw, latents, dec.dtype("latents"), stream_);
    dec.set_input("latents", {k, 4, plan.h, plan.w}, latents);
    dec.set_output("images", buffer("decoded", static_cast<size_t>(k) * 3 * plan.height * plan.width *
                                                   dtype_size(dec.dtype("images"))));
    dec.enqueue(stream_);
}

void Pipeline::compose(const ErasePlan& plan) {
    const int out_stride = plan.out->stride ? plan.out->stride : plan.width * 3;
    uint8_t* out = static_cast<uint8_t*>(buffer("composite", static_cast<size_t>(plan.width) * 3 * plan.height));
    ComposeArgs a{};
    a.decoded = buffers_.at("decoded").get();
    a.decoded_type = engine("vae_decoder").dtype("images");
    a.needed = index_list(plan.needed);
    a.removed = index_list(plan.removed);
    a.copy_outside = !plan.eq6;
    a.masks = static_cast<const uint8_t*>(buffers_.at("masks").get());
    a.n = plan.n;
    a.image = static_cast<const uint8_t*>(buffers_.at("image").get());
    a.image_channels = plan.image->channels;
    a.image_stride = plan.image->stride ? plan.image->stride : plan.width * plan.image->channels;
    a.out = out;
    a.out_stride = plan.width * 3;
    a.height = plan.height;
    a.width = plan.width;
    launch_compose(a, stream_);
    cuda_check(cudaMemcpy2DAsync(plan.out->data, out_stride, out, plan.width * 3, plan.width * 3, plan.height,
                                 cudaMemcpyDeviceToHost, stream_), "composite download");
    cuda_check(cudaStreamSynchronize(stream_), "the erase");
}

void Pipeline::erase(const mild_image* image, const mild_mask* masks, int n_masks, const mild_erase_params* params,
                     mild_image* out) {
    const ErasePlan plan = check_inputs(image, masks, n_masks, params, out);  // host only
    ensure_loaded();
    const CurrentDevice device(params_.device);
    const size_t row = static_cast<size_t>(manifest_.text_length) * manifest_.cross_attention_dim;
    float* text = static_cast<float*>(buffer("text_f32", plan.copies * row * sizeof(float)));
    float* pooled = static_cast<float*>(buffer("pooled_f32", plan.copies * std::max(manifest_.pooled_dim, 1) * sizeof(float)));
    float* z = static_cast<float*>(buffer("z", static_cast<size_t>(plan.n + 1) * 4 * plan.h * plan.w * sizeof(float)));
    encode_text(plan, text, pooled);
    encode_conditions(plan, text, pooled);
    prepare_mask_latents(plan);
    prepare_latents(plan, z);
    denoise(plan, z);
    decode(plan, z);
    compose(plan);
}

}  // namespace mild::detail

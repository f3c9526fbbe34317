#include "kernels.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace mild::detail {

size_t dtype_size(DType t) {
    switch (t) {
        case DType::F32: case DType::I32: return 4;
        case DType::F16: case DType::BF16: return 2;
        case DType::I64: return 8;
    }
    return 0;
}

const char* dtype_name(DType t) {
    switch (t) {
        case DType::F32: return "float32";
        case DType::F16: return "float16";
        case DType::BF16: return "bfloat16";
        case DType::I32: return "int32";
        case DType::I64: return "int64";
    }
    return "?";
}

namespace {

constexpr int kThreads = 256;

unsigned blocks_for(size_t count) { return static_cast<unsigned>((count + kThreads - 1) / kThreads); }

// Engine tensors in their own type; the switch is uniform across a launch.
__device__ __forceinline__ float load(const void* p, DType t, size_t i) {
    switch (t) {
        case DType::F16: return __half2float(static_cast<const __half*>(p)[i]);
        case DType::BF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
        case DType::I32: return static_cast<float>(static_cast<const int32_t*>(p)[i]);
        case DType::I64: return static_cast<float>(static_cast<const int64_t*>(p)[i]);
        default: return static_cast<const float*>(p)[i];
    }
}

__device__ __forceinline__ void store(void* p, DType t, size_t i, float v) {
    switch (t) {
        case DType::F16: static_cast<__half*>(p)[i] = __float2half_rn(v); break;
        case DType::BF16: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v); break;
        case DType::I32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); break;
        case DType::I64: static_cast<int64_t*>(p)[i] = static_cast<int64_t>(v); break;
        default: static_cast<float*>(p)[i] = v;
    }
}

__device__ __forceinline__ bool any_mask(const uint8_t* masks, int n, size_t plane, size_t p) {
    for (int k = 0; k < n; ++k) {
        if (masks[k * plane + p]) return true;
    }
    return false;
}

__global__ void masked_images_kernel(const uint8_t* image, int channels, int stride, const uint8_t* masks, int n,
                                     int height, int width, void* out, DType type) {
    const size_t plane = static_cast<size_t>(height) * width;
    const size_t total = (n + 1) * 3 * plane;
    for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        const size_t p = i % plane;
        const int c = static_cast<int>((i / plane) % 3);
        const int b = static_cast<int>(i / (3 * plane));
        const int y = static_cast<int>(p / width), x = static_cast<int>(p % width);
        const bool inside = b < n ? masks[b * plane + p] != 0 : any_mask(masks, n, plane, p);
        const float value = static_cast<float>(image[static_cast<size_t>(y) * stride + x * channels + c]) / 255.0f;
        store(out, type, i, inside ? 0.0f : value * 2.0f - 1.0f);
    }
}

__global__ void latent_masks_kernel(const uint8_t* masks, int n, int height, int width, float* out) {
    const int h = height / 8, w = width / 8;
    const size_t plane = static_cast<size_t>(height) * width;
    const size_t total = static_cast<size_t>(n + 1) * h * w;
    for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        const int x = static_cast<int>(i % w), y = static_cast<int>((i / w) % h), b = static_cast<int>(i / (h * w));
        bool hit = false;
        for (int dy = 0; dy < 8 && !hit; ++dy) {
            for (int dx = 0; dx < 8 && !hit; ++dx) {
                const size_t p = static_cast<size_t>(y * 8 + dy) * width + x * 8 + dx;
                hit = b < n ? masks[b * plane + p] != 0 : any_mask(masks, n, plane, p);
            }
        }
        out[i] = hit ? 1.0f : 0.0f;
    }
}

__global__ void branch_masks_kernel(const float* latent, int n, int copies, int hw, void* fg, void* bg, DType type) {
    const size_t fg_total = static_cast<size_t>(copies) * n * hw, total = fg_total + static_cast<size_t>(copies) * hw;
    for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        if (i < fg_total) {
            const int k = static_cast<int>((i / hw) % n);
            store(fg, type, i, latent[static_cast<size_t>(k) * hw + i % hw]);
        } else {
            const size_t j = i - fg_total;
            store(bg, type, j, latent[static_cast<size_t>(n) * hw + j % hw]);
        }
    }
}

__global__ void contexts_kernel(ContextArgs a, int n, int copies) {
    const int L = a.text_tokens + a.hmg_tokens + a.mask_token_count, C = a.width;
    const size_t row = static_cast<size_t>(L) * C;
    const size_t total = static_cast<size_t>(copies) * (n + 1) * row;
    for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        const int r = static_cast<int>(i / row);  // fg rows first (c·N of them), then the c bg rows
        const bool is_fg = r < copies * n;
        const int copy = is_fg ? r / n : r - copies * n;
        const int k = is_fg ? r % n : n;
        const int l = static_cast<int>((i % row) / C), ch = static_cast<int>(i % C);
        float v;
        if (l < a.text_tokens) {
            v = load(a.text, a.text_type, (static_cast<size_t>(copy) * a.text_tokens + l) * C + ch);
        } else if (l < a.text_tokens + a.hmg_tokens) {
            v = load(a.hmg, a.hmg_type, static_cast<size_t>(l - a.text_tokens) * C + ch);
        } else {
            const int m = l - a.text_tokens - a.hmg_tokens;
            v = load(a.mask_tokens, a.mask_type, (static_cast<size_t>(k) * a.mask_token_count + m) * C + ch);
        }
        if (is_fg) store(a.out_fg, a.out_type, i, v);
        else store(a.out_bg, a.out_type, i - static_cast<size_t>(copies) * n * row, v);
    }
}

__global__ void samples_kernel(const float* z, const float* latent_masks, const void* latents, DType latents_type,
                               int n, int copies, int hw, void* fg, void* bg, DType type) {
    const size_t per_row = 9 * static_cast<size_t>(hw);
    const size_t fg_total = static_cast<size_t>(copies) * n * per_row;
    const size_t total = fg_total + static_cast<size_t>(copies) * per_row;
    for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        const bool is_fg = i < fg_total;
        const size_t j = is_fg ? i : i - fg_total;
        const int r = static_cast<int>(j / per_row);
        const int b = is_fg ? r % n : n;  // the branch this row belongs to
        const int c = static_cast<int>((j / hw) % 9);
        const size_t p = j % hw;
        float v;
        if (c < 4) v = z[(static_cast<size_t>(b) * 4 + c) * hw + p];
        else if (c == 4) v = latent_masks[static_cast<size_t>(b) * hw + p];
        else v = load(latents, latents_type, (static_cast<size_t>(b) * 4 + (c - 5)) * hw + p);
        store(is_fg ? fg : bg, type, j, v);
    }
}

__global__ void fill_kernel(void* out, DType type, size_t count, float value) {
    for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += gridDim.x * blockDim.x) {
        store(out, type, i, value);
    }
}

__global__ void guide_ddim_kernel(const void* eps_fg, const void* eps_bg, DType type, float* z, int n, int copies,
                                  int hw, float guidance, float c_z, float c_eps) {
    const size_t per_branch = 4 * static_cast<size_t>(hw);
    const size_t total = static_cast<size_t>(n + 1) * per_branch;
    for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        const int b = static_cast<int>(i / per_branch);
        const size_t e = i % per_branch;
        const void* src = b < n ? eps_fg : eps_bg;
        const int rows = b < n ? n : 1, row = b < n ? b : 0;  // cond row; the uncond row is `rows` later
        float eps = load(src, type, static_cast<size_t>(row) * per_branch + e);
        if (copies == 2) {
            const float uncond = load(src, type, static_cast<size_t>(row + rows) * per_branch + e);
            eps = uncond + guidance * (eps - uncond);
        }
        z[i] = c_z * z[i] + c_eps * eps;
    }
}

__global__ void gather_latents_kernel(const float* z, IndexList rows, int hw, void* out, DType type) {
    const size_t per_row = 4 * static_cast<size_t>(hw);
    const size_t total = rows.n * per_row;
    for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        const int r = static_cast<int>(i / per_row);
        store(out, type, i, z[rows.idx[r] * per_row + i % per_row]);
    }
}

__global__ void convert_kernel(const void* src, DType src_type, void* dst, DType dst_type, size_t count) {
    for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += gridDim.x * blockDim.x) {
        if (src_type == DType::I64 && dst_type == DType::I32) {
            static_cast<int32_t*>(dst)[i] = static_cast<int32_t>(static_cast<const int64_t*>(src)[i]);
        } else if (src_type == DType::I64 && dst_type == DType::I64) {
            static_cast<int64_t*>(dst)[i] = static_cast<const int64_t*>(src)[i];
        } else {
            store(dst, dst_type, i, load(src, src_type, i));
        }
    }
}

__device__ __forceinline__ float to_unit(float v) { return fminf(fmaxf((v + 1.0f) * 0.5f, 0.0f), 1.0f); }

__global__ void compose_kernel(ComposeArgs a) {
    const size_t plane = static_cast<size_t>(a.height) * a.width;
    for (size_t p = blockIdx.x * blockDim.x + threadIdx.x; p < plane; p += gridDim.x * blockDim.x) {
        const int y = static_cast<int>(p / a.width), x = static_cast<int>(p % a.width);
        uint8_t* dst = a.out + static_cast<size_t>(y) * a.out_stride + x * 3;
        const uint8_t* src = a.image + static_cast<size_t>(y) * a.image_stride + x * a.image_channels;
        bool in_removed = false;
        for (int r = 0; r < a.removed.n; ++r) in_removed |= a.masks[a.removed.idx[r] * plane + p] != 0;
        if (a.copy_outside && !in_removed) {
            dst[0] = src[0]; dst[1] = src[1]; dst[2] = src[2];
            continue;
        }
        const int K = a.needed.n;
        float kept = 0.0f;  // sum of the kept masks at p
        for (int j = 0; j < K; ++j) kept += a.masks[a.needed.idx[j] * plane + p] ? 1.0f : 0.0f;
        for (int c = 0; c < 3; ++c) {
            float v = (1.0f - kept) * to_unit(load(a.decoded, a.decoded_type, (static_cast<size_t>(K) * 3 + c) * plane + p));
            for (int j = 0; j < K; ++j) {  // Eq. 6
                if (a.masks[a.needed.idx[j] * plane + p]) {
                    v += to_unit(load(a.decoded, a.decoded_type, (static_cast<size_t>(j) * 3 + c) * plane + p));
                }
            }
            dst[c] = static_cast<uint8_t>(rintf(fminf(fmaxf(v, 0.0f), 1.0f) * 255.0f));
        }
    }
}

unsigned grid(size_t count) {
    unsigned b = blocks_for(count);
    return b == 0 ? 1 : (b > 65535u * 8 ? 65535u * 8 : b);
}

}  // namespace

void launch_masked_images(const uint8_t* image, int channels, int stride, const uint8_t* masks, int n, int height,
                          int width, void* out, DType out_type, cudaStream_t stream) {
    size_t total = static_cast<size_t>(n + 1) * 3 * height * width;
    masked_images_kernel<<<grid(total), kThreads, 0, stream>>>(image, channels, stride, masks, n, height, width, out,
                                                                  out_type);
}

void launch_latent_masks(const uint8_t* masks, int n, int height, int width, float* out, cudaStream_t stream) {
    size_t total = static_cast<size_t>(n + 1) * (height / 8) * (width / 8);
    latent_masks_kernel<<<grid(total), kThreads, 0, stream>>>(masks, n, height, width, out);
}

void launch_branch_masks(const float* latent_masks, int n, int copies, int hw, void* mask_fg, void* mask_bg,
                         DType type, cudaStream_t stream) {
    size_t total = static_cast<size_t>(copies) * (n + 1) * hw;
    branch_masks_kernel<<<grid(total), kThreads, 0, stream>>>(latent_masks, n, copies, hw, mask_fg, mask_bg, type);
}

void launch_contexts(const ContextArgs& a, int n, int copies, cudaStream_t stream) {
    size_t total = static_cast<size_t>(copies) * (n + 1) * (a.text_tokens + a.hmg_tokens + a.mask_token_count) * a.width;
    contexts_kernel<<<grid(total), kThreads, 0, stream>>>(a, n, copies);
}

void launch_samples(const float* z, const float* latent_masks, const void* latents, DType latents_type, int n,
                    int copies, int hw, void* sample_fg, void* sample_bg, DType sample_type, cudaStream_t stream) {
    size_t total = static_cast<size_t>(copies) * (n + 1) * 9 * hw;
    samples_kernel<<<grid(total), kThreads, 0, stream>>>(z, latent_masks, latents, latents_type, n, copies, hw,
                                                           sample_fg, sample_bg, sample_type);
}

void launch_fill(void* out, DType type, size_t count, double value, cudaStream_t stream) {
    fill_kernel<<<grid(count), kThreads, 0, stream>>>(out, type, count, static_cast<float>(value));
}

void launch_guide_ddim(const void* eps_fg, const void* eps_bg, DType eps_type, float* z, int n, int copies, int hw,
                       float guidance, float c_z, float c_eps, cudaStream_t stream) {
    size_t total = static_cast<size_t>(n + 1) * 4 * hw;
    guide_ddim_kernel<<<grid(total), kThreads, 0, stream>>>(eps_fg, eps_bg, eps_type, z, n, copies, hw, guidance, c_z,
                                                              c_eps);
}

void launch_gather_latents(const float* z, IndexList rows, int hw, void* out, DType out_type, cudaStream_t stream) {
    size_t total = static_cast<size_t>(rows.n) * 4 * hw;
    gather_latents_kernel<<<grid(total), kThreads, 0, stream>>>(z, rows, hw, out, out_type);
}

void launch_convert(const void* src, DType src_type, void* dst, DType dst_type, size_t count, cudaStream_t stream) {
    convert_kernel<<<grid(count), kThreads, 0, stream>>>(src, src_type, dst, dst_type, count);
}

void launch_compose(const ComposeArgs& a, cudaStream_t stream) {
    compose_kernel<<<grid(static_cast<size_t>(a.height) * a.width), kThreads, 0, stream>>>(a);
}

}  // namespace mild::detail

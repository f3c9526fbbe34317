// The runtime's small CUDA kernels: everything between engine calls (9-channel input assembly,
// latent masks, contexts, guidance + DDIM, composition). Engine tensors may be fp32, fp16 or
// bf16 (the export's precision); the latents z stay fp32 on the device for the whole loop.
//
// Layouts (NCHW, rows as the engine contract wants them, DESIGN.md section 4):
//   fg rows r = copy · N + k (k = 0..N-1), bg rows r = copy; copy 0 conditional, 1 unconditional
//   z            float [N + 1][4][h][w]: fg layers, then the background
//   masks        uint8 [N][H][W], 0 or 1, packed
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

namespace mild::detail {

enum class DType : int { F32 = 0, F16 = 1, BF16 = 2, I32 = 3, I64 = 4 };
size_t dtype_size(DType t);
const char* dtype_name(DType t);

constexpr int kMaxIndices = 64;  // instances per image the kernels' index lists hold
struct IndexList {
    int n = 0;
    int idx[kMaxIndices] = {};
};

// VAE encoder inputs [N + 1][3][H][W]: (2x - 1) · (1 - M_b), M_b = M_k for fg k, M_all for bg.
void launch_masked_images(const uint8_t* image, int channels, int stride, const uint8_t* masks, int n,
                          int height, int width, void* out, DType out_type, cudaStream_t stream);

// Branch masks max-pooled by 8 (a latent pixel touching the mask is inside): float [N + 1][h][w].
void launch_latent_masks(const uint8_t* masks, int n, int height, int width, float* out, cudaStream_t stream);

// mask_fg [c·N][1][h][w] and mask_bg [c][1][h][w] from the latent masks.
void launch_branch_masks(const float* latent_masks, int n, int copies, int hw, void* mask_fg, void* mask_bg,
                         DType type, cudaStream_t stream);

// Conditioning tokens C_k = [text; pose; parsing; mask_k] (Sec. 3.2): text [c][T][C],
// hmg [1][2G][C], mask_tokens [N + 1][G][C] -> context_fg [c·N][L][C], context_bg [c][L][C].
struct ContextArgs {
    const void* text; DType text_type; int text_tokens;
    const void* hmg; DType hmg_type; int hmg_tokens;
    const void* mask_tokens; DType mask_type; int mask_token_count;
    int width;  // C
    void* out_fg; void* out_bg; DType out_type;
};
void launch_contexts(const ContextArgs& a, int n, int copies, cudaStream_t stream);

// The 9-channel UNet inputs of one step: [z_t, latent mask, E(x (1 - M))] per row.
void launch_samples(const float* z, const float* latent_masks, const void* latents, DType latents_type, int n,
                    int copies, int hw, void* sample_fg, void* sample_bg, DType sample_type, cudaStream_t stream);

// out[i] = value for i < count.
void launch_fill(void* out, DType type, size_t count, double value, cudaStream_t stream);

// Classifier-free guidance ε = ε_u + g (ε_c - ε_u) (copies 2; copies 1 takes ε as is), then the
// DDIM update z <- c_z z + c_eps ε (schedule.hpp), for all N + 1 branches in place.
void launch_guide_ddim(const void* eps_fg, const void* eps_bg, DType eps_type, float* z, int n, int copies,
                       int hw, float guidance, float c_z, float c_eps, cudaStream_t stream);

// Decoder input: rows `rows` of z -> out [rows.n][4][h][w].
void launch_gather_latents(const float* z, IndexList rows, int hw, void* out, DType out_type, cudaStream_t stream);

// Eq. 6 over the decoded layers, then copy-outside (optional), to 8-bit RGB.
// decoded [K + 1][3][H][W] in [-1, 1]: the layers of `needed` (K of them), then the background.
struct ComposeArgs {
    const void* decoded; DType decoded_type;
    IndexList needed;   // instance index of each decoded fg layer
    IndexList removed;  // the removal set R
    bool copy_outside;
    const uint8_t* masks; int n;
    const uint8_t* image; int image_channels; int image_stride;
    uint8_t* out; int out_stride;
    int height, width;
};
void launch_compose(const ComposeArgs& a, cudaStream_t stream);

}  // namespace mild::detail

namespace mild::detail {
// dst[i] = src[i] converted between tensor types, for i < count.
void launch_convert(const void* src, DType src_type, void* dst, DType dst_type, size_t count, cudaStream_t stream);
}  // namespace mild::detail

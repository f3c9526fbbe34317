// The SMA kernel's one parameter block and its launcher. Plain C++ and CUDA runtime types only:
// the TensorRT plugin and the PyTorch extension of bench/ both fill this struct and call launch().
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace mild
{
namespace sma
{

enum class DataType : int32_t
{
    kFloat32 = 0,
    kFloat16 = 1,
    kBFloat16 = 2,
};

// out[b,h,i,:] = sum_j softmax_j(scale * q_i.k_j + beta_h(m_q[b,i]) * m_k[b,j]) v[b,h,j,:]
// beta_h(m) = (a01 - a00) + m * (a11 - a10 - a01 + a00), a_st = alpha[h,s,t] (DESIGN.md section 5).
// Every tensor has the element type `dtype`; the last dimension is contiguous.
struct Params
{
    void const* q;     // [B, H, Sq, D]
    void const* k;     // [B, H, Sk, D]
    void const* v;     // [B, H, Sk, D]
    void const* m_q;   // [B, Sq], values in [0, 1]
    void const* m_k;   // [B, Sk]
    void const* alpha; // [H, 2, 2], contiguous
    void* out;         // [B, H, Sq, D]

    int32_t batch;
    int32_t heads;
    int32_t seqlen_q;
    int32_t seqlen_k;
    int32_t head_dim; // a multiple of 8, at most kMaxHeadDim

    // strides in elements
    int64_t q_batch_stride, q_head_stride, q_row_stride;
    int64_t k_batch_stride, k_head_stride, k_row_stride;
    int64_t v_batch_stride, v_head_stride, v_row_stride;
    int64_t out_batch_stride, out_head_stride, out_row_stride;
    int64_t m_q_batch_stride, m_k_batch_stride;

    float scale; // softmax scale, 1/sqrt(D) for the model
    DataType dtype;
};

constexpr int32_t kMaxHeadDim = 256;
// A tile of at most 256 rows keeps its offsets in 32 bits below this row stride (elements).
constexpr int64_t kMaxRowStride = int64_t{1} << 22;

// Fills the strides of contiguous [B, H, S, D] tensors and [B, S] masks, scale = 1/sqrt(D).
Params contiguousParams(DataType dtype, int32_t batch, int32_t heads, int32_t seqlen_q, int32_t seqlen_k,
    int32_t head_dim);

// nullptr when the kernel can run these parameters, else a sentence naming what is wrong.
char const* checkParams(Params const& params);

// Which fp16/bf16 kernel runs, and how it brings K and V in. kWarpgroup is Hopper's wgmma kernel
// (sma_kernel_sm90.cuh): fp16/bf16, head_dim <= 64, an sm_90 GPU, and a library linking
// sma_kernel_sm90.cu compiled for sm_90a (MILD_SMA_SM90A); 1.1-1.4x faster than the mma.sync kernel
// on an H200 (bench/RESULTS.md), so kAuto takes it wherever it runs. Elsewhere kAuto takes the
// mma.sync kernel (sma_kernel.cuh) with two K/V stages where two CTAs still fit an SM (sm_80,
// sm_90) and one elsewhere; kOneStage and kTwoStages force the mma.sync kernel with one or two, so
// that the GPU tests check it on whatever GPU they run. fp32 ignores the pipeline (except
// kWarpgroup, which it cannot run).
enum class Pipeline : int32_t
{
    kAuto = 0,
    kOneStage = 1,
    kTwoStages = 2,
    kWarpgroup = 3,
};

// Whether launch(params, stream, Pipeline::kWarpgroup) can run here: see kWarpgroup.
bool warpgroupRuns(Params const& params);

// Enqueues the kernel on `stream`. Returns cudaErrorInvalidValue when checkParams() objects or when
// a forced pipeline needs more shared memory than this GPU gives a block; cudaErrorNotSupported for
// kWarpgroup where warpgroupRuns() is false.
cudaError_t launch(Params const& params, cudaStream_t stream, Pipeline pipeline = Pipeline::kAuto);

} // namespace sma
} // namespace mild

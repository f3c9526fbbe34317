// Host side of the SMA kernel: parameter checks, the dtype/head-dim switch, the launch.
#include <atomic>
#include <cmath>

#include "sma_kernel.cuh"
#include "sma_kernel_fp32.cuh"
#include "sma_kernel_sm90.cuh"
#include "sma_params.h"
#include "static_switch.h"

namespace mild
{
namespace sma
{
namespace
{

// MILD_SMA_SM90A: the build links sma_kernel_sm90.cu compiled for sm_90a (the plugin's CMake where
// its architectures include 90, the PyTorch extension on an sm_90 GPU), where the wgmma kernel
// has a body.
#if defined(MILD_SMA_SM90A)
constexpr bool kWarpgroupBuilt = true;
#else
constexpr bool kWarpgroupBuilt = false;
#endif

// A device attribute read once per device (atomics: engines may enqueue from several threads); -1
// when it cannot be read. `cache` holds the value + 1, so 0 means not read yet.
int deviceAttribute(cudaDeviceAttr attribute, std::atomic<int> (&cache)[64])
{
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64)
    {
        return -1;
    }
    int const cached = cache[device].load(std::memory_order_relaxed);
    if (cached != 0)
    {
        return cached - 1;
    }
    int value = 0;
    if (cudaDeviceGetAttribute(&value, attribute, device) != cudaSuccess)
    {
        return -1;
    }
    cache[device].store(value + 1, std::memory_order_relaxed);
    return value;
}

// Whether this GPU holds two CTAs of `smemBytes` shared memory an SM (sm_80: 164 KB, sm_90:
// 228 KB; sm_86/89/120: 100 KB).
bool twoCtasFit(int smemBytes)
{
    static std::atomic<int> smemPerSm[64] = {};
    int const perSm = deviceAttribute(cudaDevAttrMaxSharedMemoryPerMultiprocessor, smemPerSm);
    return perSm >= 2 * (smemBytes + 1024); // the driver reserves 1 KB a CTA
}

bool isSm90()
{
    static std::atomic<int> major[64] = {};
    static std::atomic<int> minor[64] = {};
    return deviceAttribute(cudaDevAttrComputeCapabilityMajor, major) == 9
        && deviceAttribute(cudaDevAttrComputeCapabilityMinor, minor) == 0;
}

template <typename T, int kHeadDim>
cudaError_t launchMma(Params const& p, cudaStream_t stream, Pipeline pipeline)
{
    // two 16-row tiles a warp while O fits beside them in registers, and fewer keys a tile as D
    // grows, so the scores and O stay in registers (no spills: check with -Xptxas -v); two K/V
    // stages where two CTAs an SM still fit (bench/sma_tile_sweep.cu measures the alternatives)
    constexpr int kMTiles = kHeadDim <= 128 ? 2 : 1;
    constexpr int kBlockN = kHeadDim <= 96 || kHeadDim == 160 ? 64 : 32;
    using OneStage = detail::MmaConfig<kHeadDim, kBlockN, kMTiles, 4, 1>;
    using TwoStages = detail::MmaConfig<kHeadDim, kBlockN, kMTiles, 4, 2>;
    bool const two = pipeline == Pipeline::kAuto ? twoCtasFit(TwoStages::kSmemBytes) : pipeline == Pipeline::kTwoStages;
    return two ? detail::launchMmaConfig<T, TwoStages>(p, stream) : detail::launchMmaConfig<T, OneStage>(p, stream);
}

cudaError_t launchFp32(Params const& p, cudaStream_t stream)
{
    using Cfg = detail::Fp32Config;
    int const smem = Cfg::smemBytes(p.head_dim);
    if (smem > 48 * 1024)
    {
        static std::atomic<uint64_t> configured{0};
        cudaError_t const status = detail::allowSharedMemory(
            reinterpret_cast<void const*>(detail::smaForwardFp32<Cfg>), Cfg::smemBytes(kMaxHeadDim), configured);
        if (status != cudaSuccess)
        {
            return status;
        }
    }
    dim3 const grid((p.seqlen_q + Cfg::kRows - 1) / Cfg::kRows, p.heads, p.batch);
    detail::smaForwardFp32<Cfg><<<grid, Cfg::kThreads, smem, stream>>>(p);
    return cudaGetLastError();
}

bool aligned16(void const* ptr)
{
    return reinterpret_cast<uintptr_t>(ptr) % 16 == 0;
}

} // namespace

Params contiguousParams(
    DataType dtype, int32_t batch, int32_t heads, int32_t seqlen_q, int32_t seqlen_k, int32_t head_dim)
{
    Params p{};
    p.dtype = dtype;
    p.batch = batch;
    p.heads = heads;
    p.seqlen_q = seqlen_q;
    p.seqlen_k = seqlen_k;
    p.head_dim = head_dim;
    p.q_row_stride = p.k_row_stride = p.v_row_stride = p.out_row_stride = head_dim;
    p.q_head_stride = p.out_head_stride = static_cast<int64_t>(seqlen_q) * head_dim;
    p.k_head_stride = p.v_head_stride = static_cast<int64_t>(seqlen_k) * head_dim;
    p.q_batch_stride = p.out_batch_stride = p.q_head_stride * heads;
    p.k_batch_stride = p.v_batch_stride = p.k_head_stride * heads;
    p.m_q_batch_stride = seqlen_q;
    p.m_k_batch_stride = seqlen_k;
    p.scale = 1.f / std::sqrt(static_cast<float>(head_dim));
    return p;
}

char const* checkParams(Params const& p)
{
    if (p.dtype != DataType::kFloat32 && p.dtype != DataType::kFloat16 && p.dtype != DataType::kBFloat16)
    {
        return "SMA kernel: dtype must be float32, float16 or bfloat16";
    }
    if (p.head_dim <= 0 || p.head_dim % 8 != 0 || p.head_dim > kMaxHeadDim)
    {
        return "SMA kernel: head_dim must be a multiple of 8 between 8 and 256";
    }
    if (p.batch <= 0 || p.heads <= 0 || p.seqlen_q <= 0 || p.seqlen_k <= 0)
    {
        return "SMA kernel: batch, heads and sequence lengths must be positive";
    }
    if (!(p.scale > 0.f) || std::isinf(p.scale))
    {
        return "SMA kernel: the softmax scale must be positive and finite";
    }
    if (p.batch > 65535 || p.heads > 65535)
    {
        return "SMA kernel: batch and heads must be at most 65535 (grid limits)";
    }
    if (!p.q || !p.k || !p.v || !p.m_q || !p.m_k || !p.alpha || !p.out)
    {
        return "SMA kernel: a tensor pointer is null";
    }
    if (p.dtype != DataType::kFloat32)
    {
        // 16-byte vector loads: 8 elements per vector
        int64_t const strides[] = {p.q_batch_stride, p.q_head_stride, p.q_row_stride, p.k_batch_stride,
            p.k_head_stride, p.k_row_stride, p.v_batch_stride, p.v_head_stride, p.v_row_stride};
        for (int64_t s : strides)
        {
            if (s % 8 != 0)
            {
                return "SMA kernel: q/k/v strides must be multiples of 8 elements for fp16/bf16";
            }
        }
        if (p.q_row_stride >= kMaxRowStride || p.k_row_stride >= kMaxRowStride || p.v_row_stride >= kMaxRowStride)
        {
            return "SMA kernel: q/k/v row strides must be below 2^22 elements (offsets in a tile are 32-bit)";
        }
        if (!aligned16(p.q) || !aligned16(p.k) || !aligned16(p.v) || !aligned16(p.out))
        {
            return "SMA kernel: q, k, v and out must be 16-byte aligned for fp16/bf16";
        }
        if (p.out_row_stride % 2 != 0 || p.out_head_stride % 2 != 0 || p.out_batch_stride % 2 != 0)
        {
            return "SMA kernel: out strides must be even for fp16/bf16";
        }
    }
    return nullptr;
}

bool warpgroupRuns(Params const& p)
{
    return kWarpgroupBuilt && p.dtype != DataType::kFloat32 && p.head_dim <= 64 && isSm90();
}

cudaError_t launch(Params const& p, cudaStream_t stream, Pipeline pipeline)
{
    if (checkParams(p) != nullptr || pipeline < Pipeline::kAuto || pipeline > Pipeline::kWarpgroup)
    {
        return cudaErrorInvalidValue;
    }
    if (pipeline == Pipeline::kWarpgroup && !warpgroupRuns(p))
    {
        return cudaErrorNotSupported;
    }
#if defined(MILD_SMA_SM90A)
    if (pipeline == Pipeline::kWarpgroup || (pipeline == Pipeline::kAuto && warpgroupRuns(p)))
    {
        return detail::launchWgmma(p, stream);
    }
#endif
    if (p.dtype == DataType::kFloat32)
    {
        return launchFp32(p, stream);
    }
    return MILD_HALF_TYPE_SWITCH(p.dtype, T,
        [&] { return MILD_HEAD_DIM_SWITCH(p.head_dim, kHeadDim, [&] { return launchMma<T, kHeadDim>(p, stream, pipeline); }); });
}

} // namespace sma
} // namespace mild

// The fp32 SMA kernel: SIMT, one warp per query row, fp32 FMA throughout (no TF32), so fp32
// engines stay fp32-accurate; also the reference the tile sweep checks the tensor-core kernels by.
#pragma once

#include <cmath>

#include "sma_device.cuh"

namespace mild
{
namespace sma
{
namespace detail
{

// fp32: one warp per query row, 8 rows per CTA, 32 keys per tile (one key per lane for the scores,
// lanes split the channels for P V). Shared memory is sized from the runtime head dim.
struct Fp32Config
{
    static constexpr int kRows = 8;
    static constexpr int kThreads = kRows * 32;
    static constexpr int kBlockN = 32;
    static constexpr int kMaxPerLane = kMaxHeadDim / 32;

    static int smemBytes(int headDim)
    {
        return (kRows * headDim + kBlockN * (headDim + 1) + kBlockN * headDim + kBlockN) * 4;
    }
};

// A template, like the mma kernel, so that this header can be included by more than one
// translation unit (bench/sma_tile_sweep.cu links sma_kernel.cu beside its own instantiations).
template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads) smaForwardFp32(Params const p)
{
    extern __shared__ __align__(16) unsigned char smemRaw[];
    int const headDim = p.head_dim;
    float* qs = reinterpret_cast<float*>(smemRaw);
    float* ks = qs + Cfg::kRows * headDim; // row stride headDim + 1: lanes read different keys
    float* vs = ks + Cfg::kBlockN * (headDim + 1);
    float* mks = vs + Cfg::kBlockN * headDim;

    int const warp = threadIdx.x / 32;
    int const lane = threadIdx.x % 32;
    int const i = blockIdx.x * Cfg::kRows + warp;

    HeadTensors<float> const head(p, blockIdx.z, blockIdx.y);
    float const beta = head.beta(i, p.seqlen_q) * kLog2e;
    float const scaleLog2 = p.scale * kLog2e;

    for (int d = lane; d < headDim; d += 32)
    {
        qs[warp * headDim + d] = i < p.seqlen_q ? head.q[i * p.q_row_stride + d] : 0.f;
    }

    float acc[Cfg::kMaxPerLane];
#pragma unroll
    for (int x = 0; x < Cfg::kMaxPerLane; ++x)
    {
        acc[x] = 0.f;
    }
    float rowMax = -INFINITY;
    float rowSum = 0.f;

    for (int n0 = 0; n0 < p.seqlen_k; n0 += Cfg::kBlockN)
    {
        __syncthreads();
        for (int x = threadIdx.x; x < Cfg::kBlockN * headDim; x += Cfg::kThreads)
        {
            int const j = x / headDim;
            int const d = x % headDim;
            bool const valid = n0 + j < p.seqlen_k;
            ks[j * (headDim + 1) + d] = valid ? head.k[(n0 + j) * p.k_row_stride + d] : 0.f;
            vs[j * headDim + d] = valid ? head.v[(n0 + j) * p.v_row_stride + d] : 0.f;
        }
        if (threadIdx.x < Cfg::kBlockN)
        {
            mks[threadIdx.x] = n0 + threadIdx.x < p.seqlen_k ? head.mk[n0 + threadIdx.x] : 0.f;
        }
        __syncthreads();

        float dot = 0.f;
        for (int d = 0; d < headDim; ++d)
        {
            dot = fmaf(qs[warp * headDim + d], ks[lane * (headDim + 1) + d], dot);
        }
        float x = n0 + lane < p.seqlen_k ? dot * scaleLog2 + beta * mks[lane] : -INFINITY;
        float tileMax = x;
#pragma unroll
        for (int off = 16; off > 0; off /= 2)
        {
            tileMax = fmaxf(tileMax, __shfl_xor_sync(0xffffffffu, tileMax, off));
        }
        float const newMax = fmaxf(rowMax, tileMax);
        float const correction = exp2f(rowMax - newMax);
        float const prob = exp2f(x - newMax);
        float tileSum = prob;
#pragma unroll
        for (int off = 16; off > 0; off /= 2)
        {
            tileSum += __shfl_xor_sync(0xffffffffu, tileSum, off);
        }
        rowSum = rowSum * correction + tileSum;
        rowMax = newMax;
#pragma unroll
        for (int x2 = 0; x2 < Cfg::kMaxPerLane; ++x2)
        {
            acc[x2] *= correction;
        }
        for (int j = 0; j < Cfg::kBlockN; ++j)
        {
            float const pj = __shfl_sync(0xffffffffu, prob, j);
#pragma unroll
            for (int x2 = 0; x2 < Cfg::kMaxPerLane; ++x2)
            {
                int const d = lane + 32 * x2;
                if (d < headDim)
                {
                    acc[x2] = fmaf(pj, vs[j * headDim + d], acc[x2]);
                }
            }
        }
    }

    if (i < p.seqlen_q)
    {
        float const inv = 1.f / rowSum;
#pragma unroll
        for (int x2 = 0; x2 < Cfg::kMaxPerLane; ++x2)
        {
            int const d = lane + 32 * x2;
            if (d < headDim)
            {
                head.out[i * p.out_row_stride + d] = acc[x2] * inv;
            }
        }
    }
}

} // namespace detail
} // namespace sma
} // namespace mild

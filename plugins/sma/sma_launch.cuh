// Host side of every SMA kernel's launch: the grid over query blocks, heads and batches, and the
// opt-in to more than 48 KB of shared memory, once per device.
#pragma once

#include <atomic>
#include <cstdint>

#include <cuda_runtime.h>

#include "sma_params.h"

namespace mild
{
namespace sma
{
namespace detail
{

// Lets `kernel` take `bytes` of dynamic shared memory on the current device: a host call that
// would otherwise run at every launch, so once per device (`configured`: a bit per device, owned
// by the launch site of that kernel).
inline cudaError_t allowSharedMemory(void const* kernel, int bytes, std::atomic<uint64_t>& configured)
{
    int device = 0;
    cudaError_t status = cudaGetDevice(&device);
    if (status != cudaSuccess)
    {
        return status;
    }
    uint64_t const bit = device < 64 ? uint64_t{1} << device : 0; // past 64 devices: every launch
    if ((configured.load(std::memory_order_relaxed) & bit) != 0)
    {
        return cudaSuccess;
    }
    status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (status == cudaSuccess)
    {
        configured.fetch_or(bit, std::memory_order_relaxed);
    }
    return status;
}

// Enqueues kKernel(p, args...) over (query blocks of Cfg::kBlockM rows, heads, batches) with Cfg's
// threads and shared memory, opting in past 48 KB once per device (`configured` is kKernel's own).
template <class Cfg, auto kKernel, class... Args>
cudaError_t launchBlocks(Params const& p, cudaStream_t stream, Args const&... args)
{
    if constexpr (Cfg::kSmemBytes > 48 * 1024)
    {
        static std::atomic<uint64_t> configured{0};
        cudaError_t const status = allowSharedMemory(reinterpret_cast<void const*>(kKernel), Cfg::kSmemBytes, configured);
        if (status != cudaSuccess)
        {
            return status;
        }
    }
    dim3 const grid((p.seqlen_q + Cfg::kBlockM - 1) / Cfg::kBlockM, p.heads, p.batch);
    kKernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(p, args...);
    return cudaGetLastError();
}


} // namespace detail
} // namespace sma
} // namespace mild

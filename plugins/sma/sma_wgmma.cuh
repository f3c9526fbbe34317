// Hopper's warpgroup MMA (wgmma, sm_90a) for the SMA kernel of sma_kernel_sm90.cuh: tiles of
// 128-byte rows in shared memory with the 128-byte swizzle wgmma reads without bank conflicts
// (their offsets and a thread's share of loading them by cp.async), the shared-memory matrix
// descriptors, the fences and waits that order wgmma against the registers and shared memory it
// reads, and the instructions themselves by inline PTX. The instructions exist only where the
// compilation targets sm_90a (__CUDA_ARCH_FEAT_SM90_ALL).
#pragma once

#include <cstdint>

#include "sma_device.cuh"

namespace mild
{
namespace sma
{
namespace detail
{

// The byte offset of 16-byte chunk `chunk` of row `row` in a tile of 128-byte rows, 128-byte swizzle.
__device__ __forceinline__ uint32_t swizzledOffset(int row, int chunk)
{
    return static_cast<uint32_t>(row * 128 + ((chunk ^ (row & 7)) << 4));
}

// The byte offset of key `key`'s row in a stage of the bias step's B tile (BiasBy::kWgmma): 16
// channels a key, K-major without swizzle, in core matrices of 8 keys x 16 bytes: channels 0..7 of
// keys 8i..8i+7 at 256i, a key a 16-byte row; their channels 8..15, zeros, 128 bytes further.
__device__ __forceinline__ uint32_t biasTileOffset(int key)
{
    return static_cast<uint32_t>((key / 8) * 256 + (key % 8) * 16);
}

// One thread's share of copying tiles of kRows rows x channels [0, 64) of [S, D] matrices into
// swizzled shared-memory tiles, zero-filling rows >= seqlen and channels >= head_dim, tile after
// tile. A thread's 16-byte chunks sit at the same place in every tile (one channel chunk, rows
// kThreads / 8 apart), so where they go is worked out once and a tile costs an address and a
// bound check a chunk (ptxas had redone each chunk's 64-bit address arithmetic at every tile).
// One loader serves every matrix of the same head dim (K and V): it holds no stride, so no
// register more a matrix. The caller commits.
template <typename T, int kRows, int kThreads>
struct SwizzledTileLoader
{
    static constexpr int kChunks = kRows * 8; // 8 x 16 bytes a row
    static constexpr int kRowStep = kThreads / 8;
    static_assert(kRowStep % 8 == 0, "a thread's chunks share their swizzle (it repeats every 8 rows)");

    int row;       // the first chunk's row in a tile
    int channel;   // its first channel
    uint32_t smem; // its byte offset in a swizzled tile
    bool inHead;   // its channels are within the head dim

    __device__ __forceinline__ explicit SwizzledTileLoader(int headDim)
        : row(static_cast<int>(threadIdx.x) / 8)
        , channel(static_cast<int>(threadIdx.x) % 8 * 8)
        , smem(swizzledOffset(row, channel / 8))
        , inHead(channel < headDim)
    {
    }

    // `rows` rows (kRows at most are read) from `first` (`rowStride` elements a row) into `tile`
    __device__ __forceinline__ void load(unsigned char* tile, T const* first, int64_t rowStride, int rows) const
    {
        int const stride = static_cast<int>(rowStride);
        int const element = row * stride + channel;
#pragma unroll
        for (int j = 0; j * kThreads < kChunks; ++j)
        {
            int const r = row + j * kRowStep;
            if (kChunks % kThreads == 0 || r < kRows)
            {
                copyAsync16(tile + smem + j * kRowStep * 128, first + (element + j * kRowStep * stride),
                    inHead && r < rows);
            }
        }
    }
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

// A shared-memory matrix descriptor (PTX ISA 9.7.15.5.1.2.2) for a swizzled tile of 128-byte rows:
// start address, leading and stride byte offsets (each >> 4), 128-byte swizzle (mode 1), base offset
// 0 (the tiles are 1024-byte aligned). Both offsets are 1024, the step between groups of 8 rows: the
// stride offset for K-major Q and K, and for the MN-major V the offset between 8-key groups; the
// leading offset is unused at 64 channels in either form.
__device__ __forceinline__ uint64_t tileDescriptor(void const* tile)
{
    uint64_t const address = static_cast<uint32_t>(__cvta_generic_to_shared(tile));
    constexpr uint64_t kEightRows = 1024 >> 4;
    return ((address & 0x3FFFF) >> 4) | (kEightRows << 16) | (kEightRows << 32) | (uint64_t{1} << 62);
}

// The descriptor of a stage of the bias step's B tile (biasTileOffset): no swizzle (mode 0), the
// leading byte offset 128 (the next 8 channels), the stride byte offset 256 (the next 8 keys).
__device__ __forceinline__ uint64_t biasTileDescriptor(void const* tile)
{
    uint64_t const address = static_cast<uint32_t>(__cvta_generic_to_shared(tile));
    return ((address & 0x3FFFF) >> 4) | (uint64_t{128 >> 4} << 16) | (uint64_t{256 >> 4} << 32);
}

__device__ __forceinline__ void wgmmaFence()
{
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

__device__ __forceinline__ void wgmmaCommit()
{
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

// Makes this thread's shared-memory writes (cp.async lands through the generic proxy) visible to
// the async proxy that wgmma reads through; a barrier after it covers the other threads' writes.
__device__ __forceinline__ void fenceProxyAsync()
{
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Keeps the compiler from moving reads or writes of accumulator registers across the points
// where wgmma owns them (between issue and wait).
template <int kCount>
__device__ __forceinline__ void fenceRegisters(float (&r)[kCount])
{
#pragma unroll
    for (int i = 0; i < kCount; ++i)
    {
        asm volatile("" : "+f"(r[i])::"memory");
    }
}

template <int kRows>
__device__ __forceinline__ void fenceRegisters(uint32_t (&r)[kRows][4])
{
#pragma unroll
    for (int i = 0; i < kRows; ++i)
    {
#pragma unroll
        for (int x = 0; x < 4; ++x)
        {
            asm volatile("" : "+r"(r[i][x])::"memory");
        }
    }
}

// Waits until at most `kPending` of this warpgroup's committed wgmma groups are still running
// (groups complete in the order they were committed).
template <int kPending>
__device__ __forceinline__ void wgmmaWait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

template <typename T>
struct WgmmaType;
template <>
struct WgmmaType<__half>
{
    static constexpr bool kHalf = true;
};
template <>
struct WgmmaType<__nv_bfloat16>
{
    static constexpr bool kHalf = false;
};

#define MILD_ACC8(d, i)                                                                                                \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]),        \
        "+f"(d[i + 7])
#define MILD_ACC32(d) MILD_ACC8(d, 0), MILD_ACC8(d, 8), MILD_ACC8(d, 16), MILD_ACC8(d, 24)
#define MILD_ACC64(d) MILD_ACC32(d), MILD_ACC8(d, 32), MILD_ACC8(d, 40), MILD_ACC8(d, 48), MILD_ACC8(d, 56)
#define MILD_REGS32                                                                                                    \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "  \
    "%24, %25, %26, %27, %28, %29, %30, %31"
#define MILD_REGS64                                                                                                    \
    MILD_REGS32 ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, "   \
                "%51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

// S (64 x 64 or 64 x 128, fp32) = A B^T (+ S unless `accumulate` is 0): A, B K-major in shared
// memory (Q rows, K rows). Accumulator layout (warp w of the group, g = lane / 4, t = lane % 4):
// d[4i + e] is row 16w + g + 8 * (e / 2), column 8i + 2t + e % 2. SHAPE is the instruction's shape,
// A, B and ACCUMULATE its operand numbers after the accumulators.
#define MILD_WGMMA_SS(SHAPE, REGS, OPERANDS, A, B, ACCUMULATE, TYPE)                                                 \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " ACCUMULATE ", 0;\n"                                             \
                 "wgmma.mma_async.sync.aligned." SHAPE ".f32." TYPE "." TYPE " {" REGS "}, " A ", " B                  \
                 ", p, 1, 1, 0, 0;\n}\n"                                                                               \
                 : OPERANDS                                                                                            \
                 : "l"(a), "l"(b), "r"(accumulate))

template <typename T, int kN>
__device__ __forceinline__ void wgmmaQK(float (&d)[kN / 2], uint64_t a, uint64_t b, int accumulate)
{
    if constexpr (kN == 64)
    {
        if constexpr (WgmmaType<T>::kHalf)
        {
            MILD_WGMMA_SS("m64n64k16", MILD_REGS32, MILD_ACC32(d), "%32", "%33", "%34", "f16");
        }
        else
        {
            MILD_WGMMA_SS("m64n64k16", MILD_REGS32, MILD_ACC32(d), "%32", "%33", "%34", "bf16");
        }
    }
    else
    {
        if constexpr (WgmmaType<T>::kHalf)
        {
            MILD_WGMMA_SS("m64n128k16", MILD_REGS64, MILD_ACC64(d), "%64", "%65", "%66", "f16");
        }
        else
        {
            MILD_WGMMA_SS("m64n128k16", MILD_REGS64, MILD_ACC64(d), "%64", "%65", "%66", "bf16");
        }
    }
}

// S += A B^T for one 16-channel step, A from registers (each warp's 16 rows as mma.m16n8k16's A
// fragment) and B K-major in shared memory: the bias step of BiasBy::kWgmma.
#define MILD_WGMMA_RS_K(SHAPE, REGS, OPERANDS, A, B, TYPE)                                                           \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"                                                          \
                 "wgmma.mma_async.sync.aligned." SHAPE ".f32." TYPE "." TYPE " {" REGS "}, {" A "}, " B             \
                 ", p, 1, 1, 0;\n}\n"                                                                                \
                 : OPERANDS                                                                                            \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b))

template <typename T, int kN>
__device__ __forceinline__ void wgmmaBias(float (&d)[kN / 2], uint32_t const (&a)[4], uint64_t b)
{
    if constexpr (kN == 64)
    {
        if constexpr (WgmmaType<T>::kHalf)
        {
            MILD_WGMMA_RS_K("m64n64k16", MILD_REGS32, MILD_ACC32(d), "%32, %33, %34, %35", "%36", "f16");
        }
        else
        {
            MILD_WGMMA_RS_K("m64n64k16", MILD_REGS32, MILD_ACC32(d), "%32, %33, %34, %35", "%36", "bf16");
        }
    }
    else
    {
        if constexpr (WgmmaType<T>::kHalf)
        {
            MILD_WGMMA_RS_K("m64n128k16", MILD_REGS64, MILD_ACC64(d), "%64, %65, %66, %67", "%68", "f16");
        }
        else
        {
            MILD_WGMMA_RS_K("m64n128k16", MILD_REGS64, MILD_ACC64(d), "%64, %65, %66, %67", "%68", "bf16");
        }
    }
}

// O (64 x 64, fp32) += P V for 16 keys: P's A fragment in registers (a0: row g, keys 2t..2t+1; a1:
// row g + 8; a2, a3: keys + 8, as mma.m16n8k16), V MN-major in shared memory (imm-trans-b 1).
#define MILD_WGMMA_RS(TYPE)                                                                                            \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"                                                          \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " {" MILD_REGS32                         \
                 "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"                                                      \
                 : MILD_ACC32(d)                                                                                       \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b))

template <typename T>
__device__ __forceinline__ void wgmmaPV(float (&d)[32], uint32_t const (&a)[4], uint64_t b)
{
    if constexpr (WgmmaType<T>::kHalf)
    {
        MILD_WGMMA_RS("f16");
    }
    else
    {
        MILD_WGMMA_RS("bf16");
    }
}

#undef MILD_WGMMA_RS
#undef MILD_WGMMA_RS_K
#undef MILD_WGMMA_SS
#undef MILD_REGS64
#undef MILD_REGS32
#undef MILD_ACC64
#undef MILD_ACC32
#undef MILD_ACC8

#endif // __CUDA_ARCH_FEAT_SM90_ALL

} // namespace detail
} // namespace sma
} // namespace mild

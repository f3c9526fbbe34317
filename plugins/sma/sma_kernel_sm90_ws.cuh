// Hopper's SMA forward in flash-attention 3's structure: a producer warpgroup loads Q, K and V by
// TMA into stages guarded by mbarriers, and consumer warpgroups of 64 query rows each run the math
// of sma_kernel_sm90.cuh (Q K^T and P V by wgmma, the bias and the online softmax in registers).
//
// Why: the wgmma kernel's best shape (sma_kernel_sm90.cuh, LauncherWgmmaConfig) takes 1.32-1.41x
// SDPA's device time at S >= 1024 on an H200, where SDPA runs cuDNN's Hopper kernel, built this
// way (bench/RESULTS.md, call E). There every thread issues cp.async for the next tiles and the
// whole CTA meets at a barrier each tile; here one warp issues three TMA copies a tile, the
// consumers wait only for their own stage, give their registers to the math (setmaxnreg: 240 each
// against the producer's 24 with two consumers), and with kPingpong take turns issuing their
// wgmma (two named barriers), so one warpgroup's softmax runs while the other's GEMMs do; with
// kOverlap each consumer also runs its softmax beside its own P V (at 64-key tiles: at 128 that
// schedule spills at 240 registers).
//
// - TMA: 4-d tensor maps over q, k and v as the Params strides describe them (channels, then rows
//   and heads in the order of their strides: [B, H, S, D] and attention's [B, S, H, D] memory),
//   boxes of 64 channels x rows, the 128-byte swizzle that wgmma's descriptors read
//   (sma_kernel_sm90.cuh); rows past S and channels past D arrive as zeros, so tails need no code.
// - Stages: kStages of K, V and key masks. full K (the producer's expect_tx and its warp's 32 mask
//   stores), full V, and empty (every consumer thread, after its P V) per stage; Q once.
// - The key masks: the producer warp converts a tile's masks to float into the stage (the masks'
//   batch stride need not be the 16 bytes a tensor map's strides are multiples of).
//
// Written on 2026-11-27 without a GPU and right the first time it ran (37 GPU tests, the sweep's
// parity at every shape; H200, call F): Pipeline::kWarpSpecialised runs it (the GPU tests,
// bench/sma_kernel_harness.py) and bench/sma_tile_sweep.cu times its shapes. kAuto does not take
// it: only at the longest sequences is it faster than the wgmma kernel (bench/RESULTS.md). A wait on an mbarrier that outlasts
// kWatchdogPolls polls traps (a CUDA error instead of a hung GPU session).
#pragma once

#include <type_traits>

#include <cuda.h>
#include <cudaTypedefs.h>

#include "sma_kernel_sm90.cuh"

namespace mild
{
namespace sma
{
namespace detail
{

// kConsumers warpgroups of 64 query rows and one producer warpgroup; kBlockN keys a tile; kStages
// K/V stages; kPingpong: the two consumers issue their wgmma in turns; kOverlap: each consumer's
// softmax of tile n runs beside its P_{n-1} V_{n-1} (sma_kernel_sm90.cuh's overlapped schedule,
// which holds a stage one tile longer: three stages at least).
template <int kConsumers_, int kBlockN_, int kStages_, bool kPingpong_ = false, bool kOverlap_ = false>
struct WgmmaWsConfig
{
    static constexpr int kHeadDim = 64;
    static constexpr int kConsumers = kConsumers_;
    static constexpr int kBlockN = kBlockN_;
    static constexpr int kStages = kStages_;
    static constexpr bool kPingpong = kPingpong_;
    static constexpr bool kOverlap = kOverlap_;
    static constexpr int kThreads = (kConsumers + 1) * 128;
    static constexpr int kBlockM = kConsumers * 64;
    static constexpr int kRowBytes = 128;
    static constexpr int kQBytes = kBlockM * kRowBytes;
    static constexpr int kKvBytes = kBlockN * kRowBytes; // one K or V stage
    static constexpr int kBarriers = 1 + 3 * kStages;     // full Q; full K, full V, empty a stage
    // 1024 bytes of slack to align the tiles, Q, K and V stages, mask stages, barriers
    static constexpr int kSmemBytes = 1024 + kQBytes + 2 * kStages * kKvBytes + kStages * kBlockN * 4 + 8 * kBarriers;
    // registers a thread after setmaxnreg (multiples of 8; 128 x 24 + 256 x 240 = 64512 of an SM's
    // 65536 with two consumers); 0: no setmaxnreg (one consumer: the launch bounds give 255 already)
    static constexpr int kProducerRegisters = 24;
    static constexpr int kConsumerRegisters = kConsumers == 1 ? 0 : kConsumers == 2 ? 240 : 160;
    static_assert(kBlockN == 64 || kBlockN == 128, "Q K^T is m64n64k16 or m64n128k16");
    static_assert(kConsumers >= 1 && kConsumers <= 3, "a TMA box holds at most 256 rows; 65536 registers an SM");
    static_assert(!kPingpong || kConsumers == 2, "turns between two consumers");
    static_assert(kStages >= (kOverlap ? 3 : 2), "a stage loads while the consumers hold the others");
    static_assert(kSmemBytes <= 227 * 1024, "an sm_90 block gets at most 227 KB of shared memory");
};

constexpr uint32_t kWatchdogPolls = 1u << 22; // seconds of polling: far past any load

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ uint32_t sharedAddress(void const* p)
{
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbarrierInit(uint32_t barrier, uint32_t count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(barrier), "r"(count) : "memory");
}

// One arrival that also announces `bytes` the TMA copies will complete on the barrier.
__device__ __forceinline__ void mbarrierArriveExpectTx(uint32_t barrier, uint32_t bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(barrier), "r"(bytes) : "memory");
}

// One arrival (release: this thread's shared-memory writes and reads before it are done for whoever
// waits on the phase it completes)
__device__ __forceinline__ void mbarrierArrive(uint32_t barrier)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(barrier) : "memory");
}

// Waits until the barrier's phase of parity `parity` has completed (acquire).
__device__ __forceinline__ void mbarrierWait(uint32_t barrier, uint32_t parity)
{
    for (uint32_t poll = 0;; ++poll)
    {
        uint32_t done = 0;
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(barrier), "r"(parity)
            : "memory");
        if (done != 0)
        {
            return;
        }
        if (poll == kWatchdogPolls)
        {
            __trap();
        }
    }
}

// A box of the tensor map from channel 0 of `row` of `head` of `batch` into `destination`,
// completing its bytes on `barrier`; `headsFirst`: the map's second dimension is the heads'.
__device__ __forceinline__ void tmaLoad(
    void* destination, CUtensorMap const* map, bool headsFirst, int row, int head, int batch, uint32_t barrier)
{
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], "
        "[%6];\n" ::"r"(sharedAddress(destination)),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(0), "r"(headsFirst ? head : row), "r"(headsFirst ? row : head),
        "r"(batch), "r"(barrier)
        : "memory");
}

template <int kRegisters>
__device__ __forceinline__ void setRegistersDown()
{
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}

template <int kRegisters>
__device__ __forceinline__ void setRegistersUp()
{
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}

// Turns between two consumers issuing their wgmma (on when `on`): consumer c waits on named
// barrier 1 + c until the other has arrived there (256 = both warpgroups' threads), and arrives on
// the other's when its turn ends. Consumer 0 takes the first turn: consumer 1 arrives for it at
// the start, and leaves out the arrival of its own last turn, which nobody waits for.
struct Turns
{
    bool on;
    int consumer;

    __device__ __forceinline__ Turns(bool on_, int consumer_)
        : on(on_)
        , consumer(consumer_)
    {
        if (on && consumer == 1)
        {
            arrive();
        }
    }

    __device__ __forceinline__ void begin() const
    {
        if (on)
        {
            asm volatile("bar.sync %0, 256;\n" ::"r"(1 + consumer) : "memory");
        }
    }

    __device__ __forceinline__ void end(bool last) const
    {
        if (on && (consumer == 0 || !last))
        {
            arrive();
        }
    }

    __device__ __forceinline__ void arrive() const
    {
        asm volatile("bar.arrive %0, 256;\n" ::"r"(2 - consumer) : "memory");
    }
};

#endif // __CUDA_ARCH_FEAT_SM90_ALL

// q, k and v as TMA sees them: a tensor map each, and whether its second dimension is the heads'
// (bit 0: q, 1: k, 2: v)
struct HeadMaps
{
    CUtensorMap q, k, v;
    int headsFirst;
};

template <typename T, class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, 1) smaForwardWgmmaWs(Params const p, __grid_constant__ HeadMaps const maps)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int kBlockN = Cfg::kBlockN;
    constexpr int kStages = Cfg::kStages;
    constexpr int kKvBytes = Cfg::kKvBytes;

    extern __shared__ __align__(16) unsigned char smemRaw[]; // aligned to 1024 below
    uint32_t const rawAddress = sharedAddress(smemRaw);
    unsigned char* qs = smemRaw + ((1024 - rawAddress % 1024) % 1024); // the swizzle repeats every 1024 bytes
    unsigned char* ks = qs + Cfg::kQBytes;
    unsigned char* vs = ks + kStages * kKvBytes;
    float* mks = reinterpret_cast<float*>(vs + kStages * kKvBytes);
    uint32_t const barriers = sharedAddress(mks + kStages * kBlockN);
    uint32_t const fullQ = barriers;
    auto fullK = [&](int stage) { return barriers + 8 * (1 + stage); };
    auto fullV = [&](int stage) { return barriers + 8 * (1 + kStages + stage); };
    auto empty = [&](int stage) { return barriers + 8 * (1 + 2 * kStages + stage); };

    int const warpGroup = threadIdx.x / 128;
    int const warp = (threadIdx.x / 32) % 4;
    int const lane = threadIdx.x % 32;
    int const m0 = blockIdx.x * Cfg::kBlockM;
    int const seqlenK = p.seqlen_k;
    int const tiles = (seqlenK + kBlockN - 1) / kBlockN;
    HeadTensors<T> const head(p, blockIdx.z, blockIdx.y);

    if (threadIdx.x == 0)
    {
        mbarrierInit(fullQ, 1);
        for (int stage = 0; stage < kStages; ++stage)
        {
            mbarrierInit(fullK(stage), 1 + 32);
            mbarrierInit(fullV(stage), 1);
            mbarrierInit(empty(stage), Cfg::kConsumers * 128);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (warpGroup == 0) // the producer: its first warp works, the others leave
    {
        if constexpr (Cfg::kConsumerRegisters > 0)
        {
            setRegistersDown<Cfg::kProducerRegisters>();
        }
        if (warp != 0)
        {
            return;
        }
        if (lane == 0)
        {
            mbarrierArriveExpectTx(fullQ, Cfg::kQBytes);
            tmaLoad(qs, &maps.q, maps.headsFirst & 1, m0, blockIdx.y, blockIdx.z, fullQ);
        }
        for (int tile = 0; tile < tiles; ++tile)
        {
            int const stage = tile % kStages;
            if (tile >= kStages) // the consumers are done with the stage's last tile
            {
                mbarrierWait(empty(stage), ((tile / kStages) & 1) ^ 1);
            }
            if (lane == 0)
            {
                mbarrierArriveExpectTx(fullK(stage), kKvBytes);
                tmaLoad(ks + stage * kKvBytes, &maps.k, maps.headsFirst & 2, tile * kBlockN, blockIdx.y, blockIdx.z,
                    fullK(stage));
                mbarrierArriveExpectTx(fullV(stage), kKvBytes);
                tmaLoad(vs + stage * kKvBytes, &maps.v, maps.headsFirst & 4, tile * kBlockN, blockIdx.y, blockIdx.z,
                    fullV(stage));
            }
            for (int j = lane; j < kBlockN; j += 32)
            {
                mks[stage * kBlockN + j] = keyMask(head.mk, tile * kBlockN + j, seqlenK);
            }
            mbarrierArrive(fullK(stage));
        }
        return;
    }

    if constexpr (Cfg::kConsumerRegisters > 0)
    {
        setRegistersUp<Cfg::kConsumerRegisters>();
    }
    int const consumer = warpGroup - 1;
    int const g = lane / 4;
    int const t = lane % 4;
    int row[2];
    SoftmaxRows rows = startRows(head, p, m0 + consumer * 64 + warp * 16, g, row);
    float o[32];
#pragma unroll
    for (int i = 0; i < 32; ++i)
    {
        o[i] = 0.f;
    }
    float s[kBlockN / 2];
    uint32_t pa[kBlockN / 16][4];
    float correction[2];
    uint64_t const qDescriptor = tileDescriptor(qs + consumer * 64 * Cfg::kRowBytes);
    auto kDescriptor = [&](int tile) { return tileDescriptor(ks + (tile % kStages) * kKvBytes); };
    auto vDescriptor = [&](int tile) { return tileDescriptor(vs + (tile % kStages) * kKvBytes); };
    auto masks = [&](int tile) { return mks + (tile % kStages) * kBlockN; };
    auto phase = [](int tile) { return static_cast<uint32_t>((tile / kStages) & 1); };
    auto waitK = [&](int tile) { mbarrierWait(fullK(tile % kStages), phase(tile)); };
    auto waitV = [&](int tile) { mbarrierWait(fullV(tile % kStages), phase(tile)); };
    auto release = [&](int tile) { mbarrierArrive(empty(tile % kStages)); }; // its K, V and masks are read
    Turns const turns(Cfg::kPingpong, consumer);
    mbarrierWait(fullQ, 0);

    if constexpr (!Cfg::kOverlap)
    {
        for (int tile = 0; tile < tiles; ++tile)
        {
            waitK(tile);
            turns.begin();
            wgmmaFence();
            issueQK<T, kBlockN>(s, qDescriptor, kDescriptor(tile));
            turns.end(false);
            wgmmaWait<0>();
            fenceRegisters(s);
            rows.tile<0>(s, masks(tile), seqlenK - tile * kBlockN, t, correction);
            rescale(o, correction);
            packP<T, kBlockN>(s, pa);
            waitV(tile);
            turns.begin();
            fenceRegisters(o);
            wgmmaFence();
            issuePV<T, kBlockN>(o, pa, vDescriptor(tile));
            turns.end(tile + 1 == tiles);
            wgmmaWait<0>();
            fenceRegisters(o);
            release(tile);
        }
    }
    else
    {
        // sma_kernel_sm90.cuh's overlapped schedule, its loads replaced by waits on the stages:
        // tile n's turn issues Q K_n^T, waits for it and P_{n-2} V_{n-2} (whose stage goes back to
        // the producer), rescales O and issues P_{n-1} V_{n-1}; tile n's softmax runs after the
        // turn, beside P V
        waitK(0);
        turns.begin();
        wgmmaFence();
        issueQK<T, kBlockN>(s, qDescriptor, kDescriptor(0));
        turns.end(false);
        wgmmaWait<0>();
        fenceRegisters(s);
        rows.tile<0>(s, masks(0), seqlenK, t, correction);
        packP<T, kBlockN>(s, pa);
        uint32_t pb[kBlockN / 16][4];
        auto step = [&](int tile, uint32_t(&last)[kBlockN / 16][4], uint32_t(&next)[kBlockN / 16][4]) {
            waitK(tile);
            waitV(tile - 1);
            turns.begin();
            wgmmaFence();
            issueQK<T, kBlockN>(s, qDescriptor, kDescriptor(tile));
            wgmmaWait<0>(); // Q K_n^T and P_{n-2} V_{n-2}
            fenceRegisters(s);
            fenceRegisters(o);
            if (tile >= 2)
            {
                release(tile - 2);
            }
            rescale(o, correction);
            fenceRegisters(o);
            fenceRegisters(last);
            wgmmaFence();
            issuePV<T, kBlockN>(o, last, vDescriptor(tile - 1));
            turns.end(false);
            rows.tile<0>(s, masks(tile), seqlenK - tile * kBlockN, t, correction);
            packP<T, kBlockN>(s, next);
        };
        for (int tile = 1; tile < tiles; tile += 2) // two tiles a trip: the P buffers stay registers
        {
            step(tile, pa, pb);
            if (tile + 1 < tiles)
            {
                step(tile + 1, pb, pa);
            }
        }
        wgmmaWait<0>(); // the last but one P V
        fenceRegisters(o);
        if (tiles >= 2)
        {
            release(tiles - 2);
        }
        waitV(tiles - 1);
        turns.begin();
        issueLastPV<T, kBlockN>(o, correction, pa, pb, tiles - 1, vDescriptor(tiles - 1));
        turns.end(true);
        wgmmaWait<0>();
        fenceRegisters(o);
        release(tiles - 1);
    }
    storeRows(o, rows, row, head, p, t);
#endif // __CUDA_ARCH_FEAT_SM90_ALL
}

// cuTensorMapEncodeTiled from the driver, through the runtime (nothing links libcuda); nullptr where
// the driver has none.
inline PFN_cuTensorMapEncodeTiled_v12000 tensorMapEncoder()
{
    static PFN_cuTensorMapEncodeTiled_v12000 const encode = [] {
        void* function = nullptr;
        cudaDriverEntryPointQueryResult found{};
#if CUDART_VERSION >= 12050
        cudaError_t const status
            = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &function, 12000, cudaEnableDefault, &found);
#else // CUDA 13 removes the unversioned form
        cudaError_t const status = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &function, cudaEnableDefault, &found);
#endif
        return status == cudaSuccess && found == cudaDriverEntryPointSuccess
            ? reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(function)
            : nullptr;
    }();
    return encode;
}

// A tensor map over one of q, k, v ([B, H, S, D] with these element strides): channels, then rows
// and heads in the order of their strides (TMA takes each dimension's stride as covering the ones
// before it), batches; boxes of 64 channels x `rows`, 128-byte swizzle, zeros past S and D. False
// where the driver refuses (a stride not a multiple of 16 bytes). `headsFirst`: heads before rows.
template <typename T>
bool encodeHeadRows(CUtensorMap& map, bool& headsFirst, void const* tensor, Params const& p, int seqlen,
    int64_t batchStride, int64_t headStride, int64_t rowStride, int rows)
{
    PFN_cuTensorMapEncodeTiled_v12000 const encode = tensorMapEncoder();
    if (encode == nullptr)
    {
        return false;
    }
    headsFirst = headStride < rowStride;
    auto const size = static_cast<cuuint64_t>(sizeof(T));
    auto const length = static_cast<cuuint64_t>(seqlen);
    auto const heads = static_cast<cuuint64_t>(p.heads);
    cuuint64_t const dims[4] = {static_cast<cuuint64_t>(p.head_dim), headsFirst ? heads : length,
        headsFirst ? length : heads, static_cast<cuuint64_t>(p.batch)};
    cuuint64_t const strides[3] = {(headsFirst ? headStride : rowStride) * size,
        (headsFirst ? rowStride : headStride) * size, batchStride * size};
    cuuint32_t const box[4] = {64, headsFirst ? 1u : static_cast<cuuint32_t>(rows), headsFirst ? static_cast<cuuint32_t>(rows) : 1u, 1};
    cuuint32_t const elementStrides[4] = {1, 1, 1, 1};
    CUtensorMapDataType const type
        = std::is_same_v<T, __half> ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
    return encode(&map, type, 4, const_cast<void*>(tensor), dims, strides, box, elementStrides,
               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE)
        == CUDA_SUCCESS;
}

// Pipeline::kWarpSpecialised's tile shape: three consumers, 64-key tiles, three stages, the
// softmax beside P V; the fastest of the ten the H200 sweep timed (call F, bench/RESULTS.md), 5%
// faster than the launcher's wgmma kernel at B=3 H=10 S=4096 and 3-14% slower at the other SDXL
// shapes. Turns between two consumers gained nothing there.
using LauncherWsConfig = WgmmaWsConfig<3, 64, 3, false, true>;

// Enqueues smaForwardWgmmaWs with tile shape `Cfg` (fp16 or bf16, D <= 64, an sm_90 GPU: the
// caller checked); cudaErrorInvalidValue where a tensor map cannot describe q, k or v.
template <typename T, class Cfg>
cudaError_t launchWgmmaWsConfig(Params const& p, cudaStream_t stream)
{
    HeadMaps maps{};
    bool first[3] = {};
    if (!encodeHeadRows<T>(maps.q, first[0], p.q, p, p.seqlen_q, p.q_batch_stride, p.q_head_stride, p.q_row_stride,
            Cfg::kBlockM)
        || !encodeHeadRows<T>(maps.k, first[1], p.k, p, p.seqlen_k, p.k_batch_stride, p.k_head_stride,
            p.k_row_stride, Cfg::kBlockN)
        || !encodeHeadRows<T>(maps.v, first[2], p.v, p, p.seqlen_k, p.v_batch_stride, p.v_head_stride,
            p.v_row_stride, Cfg::kBlockN))
    {
        return cudaErrorInvalidValue;
    }
    maps.headsFirst = (first[0] ? 1 : 0) | (first[1] ? 2 : 0) | (first[2] ? 4 : 0);
    return launchBlocks<Cfg, smaForwardWgmmaWs<T, Cfg>>(p, stream, maps);
}

} // namespace detail
} // namespace sma
} // namespace mild

// Hopper's SMA forward: warpgroup MMA (wgmma, sm_90a) for the 64 head-dim bucket (D <= 64, SDXL's
// heads), fp16 and bf16. The mma.sync kernel of sma_kernel.cuh takes 1.75-1.95x SDPA's device time
// on an H200 (bench/RESULTS.md), and no mma.sync tile shape did better: sm_90's tensor cores reach
// their full rate only through wgmma.
//
// The math is the mma.sync kernel's: one key tile at a time, the bias beta(m_i) * m_j added in
// registers, online softmax in the log2 domain, P rounded to the input type before P V. What changes:
// - a CTA is kWarpGroups warpgroups of 128 threads, each owning 64 query rows; Q K^T is one
//   m64nBlockNk16 wgmma a 16-channel step with Q and K read from shared memory by descriptor, and
//   P V is m64n64k16 with P straight from the registers that held the scores (the accumulator's
//   layout is the A operand's for 16-bit types, so no shuffles) and V by descriptor, transposed by
//   the instruction;
// - tiles lie in shared memory in rows of 128 bytes (64 channels) with the 128-byte swizzle that
//   wgmma reads without bank conflicts: 16-byte chunk c of row r sits at chunk c ^ (r % 8), each
//   tile 1024-byte aligned (PTX ISA 9.7.15.5.1.2, "Shared Memory Matrix Layout");
// - K and V come by cp.async a tile ahead (K in two stages, V in three: P V reads a V tile into the
//   next tile), and a proxy fence makes them visible to wgmma, which reads shared memory through
//   the async proxy;
// - with WgmmaConfig's kOverlap the softmax of key tile n runs while P_{n-1} V_{n-1} is on the
//   tensor cores, since at D = 64 the exponentials cost the SFU about what the two GEMMs cost the
//   tensor cores; P lives in two register buffers, so nothing in the tile waits for P V. The
//   launcher takes it at 64-key tiles and two CTAs an SM (LauncherWgmmaConfig: measured).
// Row sums add the fp32 P in registers (the V tile has no padding column for the ones trick).
//
// The kernel has a body only where compiled for sm_90a (wgmma is an sm_90a feature): the launcher
// reaches it through launchWgmma, defined in sma_kernel_sm90.cu, which the builds compile for
// sm_90a alone and link where they define MILD_SMA_SM90A (kWarpgroupBuilt in sma_kernel.cu).
#pragma once

#include <cstdint>

#include "sma_device.cuh"
#include "sma_launch.cuh"
#include "sma_wgmma.cuh"

namespace mild
{
namespace sma
{
namespace detail
{

// Tile shapes of the wgmma kernel: head dim 64 (one 128-byte row a token), kWarpGroups x 64 query
// rows, kBlockN keys a tile, two K stages and three V stages. kOverlap: tile n's softmax runs while
// P_{n-1} V_{n-1} is on the tensor cores (flash-attention 3's intra-warpgroup overlap), with P in
// two register buffers so that packing P_n waits for nothing; without it, Q K^T, the softmax and
// P V take turns.
// kMinBlocks: the CTAs an SM must hold (the launch bounds' minimum), which caps the registers a
// thread: two CTAs of two warpgroups get 128 registers, so one CTA's softmax hides behind the
// other's tensor-core work.
// kBias: where the bias beta(m_i) * m_j joins the scores (BiasBy); kSumMma: the row sums by the
// tensor cores (one mma.sync of P by ones per 16 keys, SoftmaxRows::addRowSums) instead of one FADD
// a score. At D = 64 the ALU work a score is most of what a warp runs between its waits on the
// tensor cores (plugins/sma/README.md): the bias and the sum are each a fifth of it.
// kLazyMax: a row's running max moves only when a tile's passes it by 8 in log2 units (nextRowMax),
// so O's rescale, which sits between the wait for P_{n-2} V_{n-2} and the issue of P_{n-1} V_{n-1},
// is skipped on nearly every tile.

enum class BiasBy
{
    kFfma,    // one FFMA a score, the key masks as floats in shared memory
    kMmaSync, // one mma.sync per 8 keys of a warp's 16 rows on the scores (addBias in sma_device.cuh)
    kWgmma,   // a fifth 16-channel step of Q K^T's wgmma: beta's parts from registers (biasFragment)
              // times a tile of the keys' masks (biasTileOffset), asynchronous like the other four
};

template <int kWarpGroups_, int kBlockN_, bool kOverlap_ = true, int kMinBlocks_ = 1, BiasBy kBias_ = BiasBy::kFfma,
    bool kSumMma_ = false, bool kLazyMax_ = false>
struct WgmmaConfig
{
    static constexpr int kHeadDim = 64;
    static constexpr int kWarpGroups = kWarpGroups_;
    static constexpr int kBlockN = kBlockN_;
    static constexpr bool kOverlap = kOverlap_;
    static constexpr int kMinBlocks = kMinBlocks_;
    static constexpr BiasBy kBias = kBias_;
    static constexpr bool kSumMma = kSumMma_;
    static constexpr bool kLazyMax = kLazyMax_;
    static constexpr int kThreads = kWarpGroups * 128;
    static constexpr int kBlockM = kWarpGroups * 64;
    static constexpr int kRowBytes = 128;
    static constexpr int kQBytes = kBlockM * kRowBytes;
    static constexpr int kKvBytes = kBlockN * kRowBytes; // one K or V stage
    static constexpr int kBiasTileBytes = kBias == BiasBy::kWgmma ? kBlockN * 32 : 0; // a stage of biasTileOffset
    // 1024 bytes of slack to align the tiles, Q, two K stages, three V stages, two stages of key
    // masks, and with BiasBy::kWgmma two stages of the bias step's B tile
    static constexpr int kSmemBytes = 1024 + kQBytes + 5 * kKvBytes + 2 * kBlockN * 4 + 2 * kBiasTileBytes;
    static_assert(kBlockN == 64 || kBlockN == 128, "Q K^T is m64n64k16 or m64n128k16");
    static_assert(kBlockN <= kThreads, "one thread loads each key's mask");
    static_assert(kSmemBytes <= 227 * 1024, "an sm_90 block gets at most 227 KB of shared memory");
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

// S = Q K^T for one key tile: four 16-channel steps, each descriptor 32 bytes further along the
// rows; with BiasBy::kWgmma a fifth adds the bias (biasA: this thread's biasFragments, then zeros).
template <typename T, int kBlockN, BiasBy kBias>
__device__ __forceinline__ void issueQK(float (&s)[kBlockN / 2], uint64_t qDescriptor, uint64_t kDescriptor,
    uint32_t const (&biasA)[4], uint64_t biasDescriptor)
{
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
    {
        wgmmaQK<T, kBlockN>(s, qDescriptor + 2 * kk, kDescriptor + 2 * kk, kk > 0);
    }
    if constexpr (kBias == BiasBy::kWgmma)
    {
        wgmmaBias<T, kBlockN>(s, biasA, biasDescriptor);
    }
    wgmmaCommit();
}

// O += P V for one key tile: 16 keys a step, each V descriptor 16 rows (2048 bytes) further.
template <typename T, int kBlockN>
__device__ __forceinline__ void issuePV(float (&o)[32], uint32_t const (&pa)[kBlockN / 16][4], uint64_t vDescriptor)
{
#pragma unroll
    for (int kc = 0; kc < kBlockN / 16; ++kc)
    {
        wgmmaPV<T>(o, pa[kc], vDescriptor + kc * (2048 >> 4));
    }
    wgmmaCommit();
}

// This thread's share of the online softmax: rows g and g + 8 of its warp's 16. The logits stay in
// units of q.k until the exponential, x = q.k + (beta(m_i) / scale) * m_j (one FFMA a score, or a
// quarter of an mma.sync), and exp2((x - max) * scale * log2(e)) is one more FFMA before ex2 (the
// scale is positive: checkParams).
struct SoftmaxRows
{
    float beta[2];   // beta(m_i) / scale
    float max[2];    // running max of x
    float sum[2];    // running sum of P over this thread's columns (the quad adds them at the end), or
                     // with kSumMma the rows' whole sums
    float scaleLog2; // scale * log2(e)
    uint32_t biasA[2]; // BiasBy::kMmaSync or kWgmma: this thread's biasFragment of rows g and g + 8

    // s += beta_i m_j for the tile, 8 keys at a time (addBias; mTile holds keyMaskWord<T, true>).
    template <typename T, int kScores>
    __device__ __forceinline__ void addTileBias(float (&s)[kScores], uint32_t const* mTile, int g) const
    {
#pragma unroll
        for (int i8 = 0; i8 < kScores / 4; ++i8)
        {
            float c[4] = {s[4 * i8], s[4 * i8 + 1], s[4 * i8 + 2], s[4 * i8 + 3]};
            addBias<T>(c, biasA[0], biasA[1], mTile[i8 * 8 + g]);
#pragma unroll
            for (int e = 0; e < 4; ++e)
            {
                s[4 * i8 + e] = c[e];
            }
        }
    }

    // Turns one tile of scores into P in place (keys from `valid` on get none), folds the tile into
    // the running max and sums, and gives the factor O must be rescaled by (exactly 1 where a row's
    // max held). mTile: the tile's key masks (keyMaskWord); kBias and kSumMma as in WgmmaConfig
    // (with BiasBy::kWgmma the scores hold the bias already; with kSumMma the tile's P joins the
    // sums in addRowSums, once packed).
    template <typename T, BiasBy kBias, bool kSumMma, bool kLazyMax, int kScores>
    __device__ __forceinline__ void tile(
        float (&s)[kScores], uint32_t const* mTile, int valid, int g, int t, float (&correction)[2])
    {
        if constexpr (kBias == BiasBy::kMmaSync)
        {
            addTileBias<T>(s, mTile, g);
        }
        if (valid < 2 * kScores)
        {
#pragma unroll
            for (int i = 0; i < kScores; ++i)
            {
                s[i] = (i / 4) * 8 + 2 * t + (i & 1) < valid ? s[i] : -INFINITY;
            }
        }
        float tileMax[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int i8 = 0; i8 < kScores / 4; ++i8)
        {
            if constexpr (kBias == BiasBy::kFfma) // the bias by one FFMA a score, the masks as floats
            {
                float2 const mask = *reinterpret_cast<float2 const*>(mTile + i8 * 8 + 2 * t);
#pragma unroll
                for (int e = 0; e < 4; ++e)
                {
                    s[4 * i8 + e] = fmaf(beta[e >> 1], (e & 1) ? mask.y : mask.x, s[4 * i8 + e]);
                }
            }
#pragma unroll
            for (int e = 0; e < 4; ++e)
            {
                tileMax[e >> 1] = fmaxf(tileMax[e >> 1], s[4 * i8 + e]);
            }
        }
        float shift[2]; // -max * scale * log2(e)
#pragma unroll
        for (int r = 0; r < 2; ++r)
        {
            tileMax[r] = fmaxf(tileMax[r], __shfl_xor_sync(0xffffffffu, tileMax[r], 1));
            tileMax[r] = fmaxf(tileMax[r], __shfl_xor_sync(0xffffffffu, tileMax[r], 2));
            float const newMax = nextRowMax<kLazyMax>(max[r], tileMax[r], scaleLog2);
            correction[r] = exp2Fast((max[r] - newMax) * scaleLog2);
            max[r] = newMax;
            shift[r] = -newMax * scaleLog2;
        }
        float tileSum[2] = {0.f, 0.f};
#pragma unroll
        for (int i = 0; i < kScores; ++i)
        {
            float const x = fmaf(s[i], scaleLog2, shift[(i >> 1) & 1]);
            s[i] = exp2Fast(x);
            if constexpr (!kSumMma)
            {
                tileSum[(i >> 1) & 1] += s[i];
            }
        }
#pragma unroll
        for (int r = 0; r < 2; ++r)
        {
            sum[r] = kSumMma ? sum[r] * correction[r] : sum[r] * correction[r] + tileSum[r];
        }
    }

    // kSumMma: the rows' sums += P's, by P (packP's A fragments, the rounded P that P V sums) times
    // a 16 x 8 matrix of ones: every column of C is a row's whole sum, so the quad needs no shuffles
    // and only two of C's four registers outlive the tile.
    template <typename T, int kBlockN>
    __device__ __forceinline__ void addRowSums(uint32_t const (&pa)[kBlockN / 16][4])
    {
        uint32_t const ones[2] = {pack2<T>(1.f, 1.f), pack2<T>(1.f, 1.f)};
        float c[4] = {sum[0], sum[0], sum[1], sum[1]};
#pragma unroll
        for (int kc = 0; kc < kBlockN / 16; ++kc)
        {
            mma16816<T>(c, pa[kc], ones);
        }
        sum[0] = c[0];
        sum[1] = c[2];
    }

    // The whole sum of row g (r = 0) or g + 8 (r = 1).
    template <bool kSumMma>
    __device__ __forceinline__ float rowSum(int r) const
    {
        if constexpr (kSumMma)
        {
            return sum[r];
        }
        else
        {
            float total = sum[r];
            total += __shfl_xor_sync(0xffffffffu, total, 1);
            total += __shfl_xor_sync(0xffffffffu, total, 2);
            return total;
        }
    }
};

// O follows a rising max; once the rows' maxima settle (most tiles of a long sequence) the whole
// warp skips the multiplies.
__device__ __forceinline__ void rescale(float (&o)[32], float const (&correction)[2])
{
    if (__any_sync(0xffffffffu, correction[0] != 1.f || correction[1] != 1.f))
    {
#pragma unroll
        for (int i = 0; i < 32; ++i)
        {
            o[i] *= correction[(i >> 1) & 1];
        }
    }
}

// P in the input type as P V's A fragments, 16 keys each (score tiles 2kc and 2kc + 1): the
// accumulator's layout is the A operand's, so no value changes thread.
template <typename T, int kBlockN>
__device__ __forceinline__ void packP(float const (&s)[kBlockN / 2], uint32_t (&pa)[kBlockN / 16][4])
{
#pragma unroll
    for (int kc = 0; kc < kBlockN / 16; ++kc)
    {
#pragma unroll
        for (int x = 0; x < 4; ++x)
        {
            pa[kc][x] = pack2<T>(s[8 * kc + 2 * x], s[8 * kc + 2 * x + 1]);
        }
    }
}

// The softmax state of this thread's rows g and g + 8 of the 16 from `rowBase` (its warp's), and
// their indices in `row`; kFragments: their biasFragments too.
template <typename T, bool kFragments>
__device__ __forceinline__ SoftmaxRows startRows(
    HeadTensors<T> const& head, Params const& p, int rowBase, int g, int t, int (&row)[2])
{
    SoftmaxRows rows;
#pragma unroll
    for (int r = 0; r < 2; ++r)
    {
        row[r] = rowBase + g + 8 * r;
        rows.beta[r] = head.beta(row[r], p.seqlen_q) / p.scale;
        rows.max[r] = -INFINITY;
        rows.sum[r] = 0.f;
    }
    rows.scaleLog2 = p.scale * kLog2e;
#pragma unroll
    for (int r = 0; r < 2; ++r)
    {
        rows.biasA[r] = kFragments ? biasFragment<T>(rows.beta[r], t) : 0u;
    }
    return rows;
}

// O divided by its rows' sums, stored in the input type; rows past the queries and channels past
// the head dim are not stored.
template <typename T, bool kSumMma>
__device__ __forceinline__ void storeRows(
    float const (&o)[32], SoftmaxRows const& rows, int const (&row)[2], HeadTensors<T> const& head, Params const& p, int t)
{
#pragma unroll
    for (int r = 0; r < 2; ++r)
    {
        float const inv = 1.f / rows.rowSum<kSumMma>(r);
        if (row[r] < p.seqlen_q)
        {
            T* outRow = head.out + row[r] * p.out_row_stride;
#pragma unroll
            for (int i8 = 0; i8 < 8; ++i8)
            {
                int const col = i8 * 8 + 2 * t;
                if (col < p.head_dim)
                {
                    *reinterpret_cast<uint32_t*>(outRow + col)
                        = pack2<T>(o[4 * i8 + 2 * r] * inv, o[4 * i8 + 2 * r + 1] * inv);
                }
            }
        }
    }
}

// The overlapped schedule's last P V (its wait is the caller's): O rescaled by the last tile's
// correction, then the last tile's P, in pb after an odd tile and in pa after an even one.
template <typename T, int kBlockN>
__device__ __forceinline__ void issueLastPV(float (&o)[32], float const (&correction)[2],
    uint32_t const (&pa)[kBlockN / 16][4], uint32_t const (&pb)[kBlockN / 16][4], int lastTile, uint64_t vDescriptor)
{
    rescale(o, correction);
    fenceRegisters(o);
    wgmmaFence();
    if (lastTile & 1)
    {
        issuePV<T, kBlockN>(o, pb, vDescriptor);
    }
    else
    {
        issuePV<T, kBlockN>(o, pa, vDescriptor);
    }
}

// One CTA's key-tile stages in shared memory, after Q: two K stages, three V stages, two stages of
// key masks (with BiasBy::kWgmma the masks go to two stages of the bias step's B tile instead), and
// the loads that fill them. Both schedules load K and V tiles in order, so a tile's first row is the last one's plus a
// tile of rows: no 64-bit multiply a tile (launcher: 420 instructions a tile against 440).
template <typename T, class Cfg>
struct KeyTileStages
{
    static constexpr int kBlockN = Cfg::kBlockN;
    static constexpr int kKvBytes = Cfg::kKvBytes;
    static constexpr bool kBiasFragments = Cfg::kBias != BiasBy::kFfma;

    unsigned char* ks;  // two K stages
    unsigned char* vs;  // three V stages
    uint32_t* mks;      // two stages of key masks
    unsigned char* bs;  // BiasBy::kWgmma: two B tiles
    SwizzledTileLoader<T, kBlockN, Cfg::kThreads> const loader;
    T const* kNext;
    T const* vNext;
    HeadTensors<T> const& head;
    Params const& p;
    int const seqlenK;

    __device__ __forceinline__ KeyTileStages(
        unsigned char* afterQ, HeadTensors<T> const& head_, Params const& p_, int headDim, int seqlenK_)
        : ks(afterQ)
        , vs(ks + 2 * kKvBytes)
        , mks(reinterpret_cast<uint32_t*>(vs + 3 * kKvBytes))
        , bs(reinterpret_cast<unsigned char*>(mks + 2 * kBlockN))
        , loader(headDim)
        , kNext(head_.k)
        , vNext(head_.v)
        , head(head_)
        , p(p_)
        , seqlenK(seqlenK_)
    {
    }

    __device__ __forceinline__ void loadK(int tile)
    {
        loader.load(ks + (tile & 1) * kKvBytes, kNext, p.k_row_stride, seqlenK - tile * kBlockN);
        kNext += kBlockN * p.k_row_stride;
    }

    __device__ __forceinline__ void loadV(int tile)
    {
        loader.load(vs + (tile % 3) * kKvBytes, vNext, p.v_row_stride, seqlenK - tile * kBlockN);
        vNext += kBlockN * p.v_row_stride;
    }

    // a tile's key masks go to their stage after the barrier that freed it; read before it, here
    __device__ __forceinline__ uint32_t keyMasks(int tile) const
    {
        float const mask = threadIdx.x < kBlockN ? keyMask(head.mk, tile * kBlockN + threadIdx.x, seqlenK) : 0.f;
        return keyMaskWord<T, kBiasFragments>(mask);
    }

    __device__ __forceinline__ void storeKeyMasks(int tile, uint32_t masks)
    {
        if (threadIdx.x < kBlockN)
        {
            if constexpr (Cfg::kBias == BiasBy::kWgmma) // channels 0..3 of the key's row (A's k >= 3 are 0)
            {
                *reinterpret_cast<uint2*>(bs + (tile & 1) * Cfg::kBiasTileBytes + biasTileOffset(threadIdx.x))
                    = make_uint2(masks, masks);
            }
            else
            {
                mks[(tile & 1) * kBlockN + threadIdx.x] = masks;
            }
        }
    }

    // BiasBy::kWgmma: zeros where no mask goes (B times A's zeros must be 0), before any thread
    // writes masks into the B tiles
    __device__ __forceinline__ void clearBiasTiles()
    {
        if constexpr (Cfg::kBias == BiasBy::kWgmma)
        {
            for (int i = threadIdx.x; i < 2 * Cfg::kBiasTileBytes / 16; i += Cfg::kThreads)
            {
                reinterpret_cast<uint4*>(bs)[i] = make_uint4(0u, 0u, 0u, 0u);
            }
            __syncthreads();
        }
    }

    // makes the landed copies visible to wgmma (async proxy) and every thread's; frees the buffers
    // every warpgroup has waited out
    __device__ __forceinline__ static void landed()
    {
        waitAsync<0>();
        fenceProxyAsync();
        __syncthreads();
    }

    __device__ __forceinline__ uint32_t const* masks(int tile) const
    {
        return mks + (tile & 1) * kBlockN;
    }

    __device__ __forceinline__ uint64_t kDescriptor(int tile) const
    {
        return tileDescriptor(ks + (tile & 1) * kKvBytes);
    }

    __device__ __forceinline__ uint64_t vDescriptor(int tile) const
    {
        return tileDescriptor(vs + (tile % 3) * kKvBytes);
    }

    __device__ __forceinline__ uint64_t biasDescriptor(int tile) const
    {
        return biasTileDescriptor(bs + (tile & 1) * Cfg::kBiasTileBytes);
    }
};

// What a warpgroup holds through the key tiles: its Q tile's descriptor, the bias step's A
// fragment, its rows' softmax state and O (o[4i + e]: row g + 8 (e / 2), channel 8i + 2t + e % 2).
struct WarpgroupRows
{
    uint64_t qDescriptor;
    uint32_t biasA[4]; // this thread's biasFragments of rows g and g + 8, then zeros
    SoftmaxRows softmax;
    float o[32];
    int g;
    int t;
};

// Q K^T, the softmax and P V take turns, each tile's K and V loaded during the one before.
template <typename T, class Cfg>
__device__ __forceinline__ void runInTurns(KeyTileStages<T, Cfg>& stages, WarpgroupRows& w, int tiles)
{
    constexpr int kBlockN = Cfg::kBlockN;
    float s[kBlockN / 2];
    uint32_t pa[kBlockN / 16][4];
    float correction[2];
    for (int tile = 0; tile < tiles; ++tile)
    {
        stages.landed(); // K and V of this tile; every warpgroup is done with the last tile's
        bool const more = tile + 1 < tiles;
        if (more)
        {
            stages.loadK(tile + 1); // into the last tile's buffers: they land during all of this tile's math
            stages.loadV(tile + 1);
            commitAsync();
        }
        uint32_t const masksNext = stages.keyMasks(tile + 1);
        wgmmaFence();
        issueQK<T, kBlockN, Cfg::kBias>(
            s, w.qDescriptor, stages.kDescriptor(tile), w.biasA, stages.biasDescriptor(tile));
        if (more)
        {
            stages.storeKeyMasks(tile + 1, masksNext);
        }
        wgmmaWait<0>();
        fenceRegisters(s);
        w.softmax.tile<T, Cfg::kBias, Cfg::kSumMma, Cfg::kLazyMax>(
            s, stages.masks(tile), stages.seqlenK - tile * kBlockN, w.g, w.t, correction);
        rescale(w.o, correction);
        packP<T, kBlockN>(s, pa);
        if constexpr (Cfg::kSumMma)
        {
            w.softmax.addRowSums<T, kBlockN>(pa);
        }
        fenceRegisters(w.o);
        wgmmaFence();
        issuePV<T, kBlockN>(w.o, pa, stages.vDescriptor(tile));
        wgmmaWait<0>();
        fenceRegisters(w.o);
    }
}

// Tile n's softmax beside P_{n-1} V_{n-1} on the tensor cores (WgmmaConfig's kOverlap), P in two
// register buffers.
template <typename T, class Cfg>
__device__ __forceinline__ void runOverlapped(KeyTileStages<T, Cfg>& stages, WarpgroupRows& w, int tiles)
{
    constexpr int kBlockN = Cfg::kBlockN;
    float s[kBlockN / 2];
    uint32_t pa[kBlockN / 16][4];
    float correction[2];

    // tile 0: its scores and P (in pa); its V comes with the next K
    stages.landed();
    if (tiles > 1)
    {
        stages.loadK(1);
    }
    stages.loadV(0);
    commitAsync();
    stages.storeKeyMasks(1, stages.keyMasks(1)); // stage 1 is unused yet
    wgmmaFence();
    issueQK<T, kBlockN, Cfg::kBias>(s, w.qDescriptor, stages.kDescriptor(0), w.biasA, stages.biasDescriptor(0));
    wgmmaWait<0>();
    fenceRegisters(s);
    w.softmax.tile<T, Cfg::kBias, Cfg::kSumMma, Cfg::kLazyMax>(
        s, stages.masks(0), stages.seqlenK, w.g, w.t, correction);
    packP<T, kBlockN>(s, pa);
    if constexpr (Cfg::kSumMma)
    {
        w.softmax.addRowSums<T, kBlockN>(pa);
    }
    // tile n: Q K_n^T, then (it and P_{n-2} V_{n-2} done) O rescaled by tile n - 1's correction
    // and P_{n-1} V_{n-1} issued; tile n's softmax runs and P_n is packed into the buffer P V is
    // not reading, all beside P V, which only the next tile's wait covers. (A wait for P V within
    // the tile is scheduled by ptxas before the softmax, and a wait for one group of two before
    // O is read makes ptxas serialise every wgmma: both seen in the SASS.)
    uint32_t pb[kBlockN / 16][4];
    auto step = [&](int tile, uint32_t(&last)[kBlockN / 16][4], uint32_t(&next)[kBlockN / 16][4]) {
        stages.landed(); // K_n and V_{n-1}; every warpgroup is done with K_{n-1} and V_{n-3}
        if (tile + 1 < tiles)
        {
            stages.loadK(tile + 1); // K_{n-1}'s stage
        }
        stages.loadV(tile); // V_{n-3}'s stage
        commitAsync();
        uint32_t const masksNext = stages.keyMasks(tile + 1);
        wgmmaFence();
        issueQK<T, kBlockN, Cfg::kBias>(
            s, w.qDescriptor, stages.kDescriptor(tile), w.biasA, stages.biasDescriptor(tile));
        wgmmaWait<0>(); // Q K_n^T and P_{n-2} V_{n-2}
        fenceRegisters(s);
        fenceRegisters(w.o);
        rescale(w.o, correction);
        fenceRegisters(w.o);
        fenceRegisters(last);
        wgmmaFence();
        issuePV<T, kBlockN>(w.o, last, stages.vDescriptor(tile - 1));
        stages.storeKeyMasks(tile + 1, masksNext); // tile n - 1's masks, read before the barrier
        w.softmax.tile<T, Cfg::kBias, Cfg::kSumMma, Cfg::kLazyMax>(
            s, stages.masks(tile), stages.seqlenK - tile * kBlockN, w.g, w.t, correction);
        packP<T, kBlockN>(s, next);
        if constexpr (Cfg::kSumMma)
        {
            w.softmax.addRowSums<T, kBlockN>(next);
        }
    };
    for (int tile = 1; tile < tiles; tile += 2) // two tiles a trip: the P buffers stay registers
    {
        step(tile, pa, pb);
        if (tile + 1 < tiles)
        {
            step(tile + 1, pb, pa);
        }
    }
    stages.landed(); // the last V
    wgmmaWait<0>(); // the last but one P V
    fenceRegisters(w.o);
    issueLastPV<T, kBlockN>(w.o, correction, pa, pb, tiles - 1, stages.vDescriptor(tiles - 1));
    wgmmaWait<0>();
    fenceRegisters(w.o);
}

#endif // __CUDA_ARCH_FEAT_SM90_ALL

template <typename T, class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocks) smaForwardWgmma(Params const p)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(16) unsigned char smemRaw[]; // aligned to 1024 below
    uint32_t const rawAddress = static_cast<uint32_t>(__cvta_generic_to_shared(smemRaw));
    unsigned char* qs = smemRaw + ((1024 - rawAddress % 1024) % 1024); // the swizzle repeats every 1024 bytes

    // warp-uniform to ptxas by the shuffle: taken from threadIdx, the Q descriptor built from it was
    // rebuilt in per-thread registers and moved to uniform ones (R2UR) at every tile, 20 instructions
    int const warpGroup = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x / 128), 0);
    int const warp = (threadIdx.x / 32) % 4; // within its warpgroup: rows 16 warp .. 16 warp + 15
    int const lane = threadIdx.x % 32;
    WarpgroupRows w;
    w.g = lane / 4;
    w.t = lane % 4;
    int const m0 = blockIdx.x * Cfg::kBlockM;
    int const headDim = p.head_dim;
    int const seqlenK = p.seqlen_k;
    HeadTensors<T> const head(p, blockIdx.z, blockIdx.y);
    KeyTileStages<T, Cfg> stages(qs + Cfg::kQBytes, head, p, headDim, seqlenK);

    SwizzledTileLoader<T, Cfg::kBlockM, Cfg::kThreads>(headDim).load(
        qs, head.q + m0 * p.q_row_stride, p.q_row_stride, p.seqlen_q - m0);
    stages.loadK(0);
    if constexpr (!Cfg::kOverlap)
    {
        stages.loadV(0);
    }
    commitAsync();
    stages.clearBiasTiles();
    stages.storeKeyMasks(0, stages.keyMasks(0));

    int row[2];
    w.softmax = startRows<T, KeyTileStages<T, Cfg>::kBiasFragments>(
        head, p, m0 + warpGroup * 64 + warp * 16, w.g, w.t, row);
    w.biasA[0] = w.softmax.biasA[0];
    w.biasA[1] = w.softmax.biasA[1];
    w.biasA[2] = 0u;
    w.biasA[3] = 0u;
#pragma unroll
    for (int i = 0; i < 32; ++i)
    {
        w.o[i] = 0.f;
    }
    w.qDescriptor = tileDescriptor(qs + warpGroup * 64 * Cfg::kRowBytes);

    int const tiles = (seqlenK + Cfg::kBlockN - 1) / Cfg::kBlockN;
    if constexpr (Cfg::kOverlap)
    {
        runOverlapped<T, Cfg>(stages, w, tiles);
    }
    else
    {
        runInTurns<T, Cfg>(stages, w, tiles);
    }
    storeRows<T, Cfg::kSumMma>(w.o, w.softmax, row, head, p, w.t);
#endif // __CUDA_ARCH_FEAT_SM90_ALL
}

// The launcher's tile shape: two warpgroups, 64-key tiles, the softmax beside P V, two CTAs an SM
// (the launch bounds hold it to 128 registers, without spills). On an H200 (bench/RESULTS.md, calls
// E and F, 2026-11-27) it is the fastest shape at every SDXL shape or within 0.001 ms of it: 3-5%
// faster than the same tiles in turns at S >= 1024, 7-17% faster than the overlapped <2, 128>,
// whose 254 registers leave one CTA an SM.
using LauncherWgmmaConfig = WgmmaConfig<2, 64, true, 2>;

// Enqueues smaForwardWgmma<T, LauncherWgmmaConfig> for p's dtype (fp16 or bf16); the caller checked
// warpgroupRuns(p). Defined in sma_kernel_sm90.cu, compiled for sm_90a alone.
cudaError_t launchWgmma(Params const& p, cudaStream_t stream);

// Enqueues smaForwardWgmma with tile shape `Cfg`; the caller checked the GPU and the head dim.
template <typename T, class Cfg>
cudaError_t launchWgmmaConfig(Params const& p, cudaStream_t stream)
{
    return launchBlocks<Cfg, smaForwardWgmma<T, Cfg>>(p, stream);
}

} // namespace detail
} // namespace sma
} // namespace mild

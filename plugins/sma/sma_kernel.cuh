// The SMA forward on mma.sync tensor cores (sm_80 and newer), flash-attention style: scores live in
// registers one key tile at a time, the softmax runs online (running max and sum per row), and the
// bias beta(m_i) * m_j costs one multiply-add per score. Nothing of size Sq x Sk is ever stored.
//
// One CTA = 4 warps, each owning 32 query rows (16 past D = 128); Q K^T and P V are
// mma.sync.m16n8k16 instructions with fp32 accumulation, fed by ldmatrix from shared memory; K and
// V tiles arrive by cp.async while the math of the one before runs. The kernel below is the tile
// pipeline (loads, barriers); each step of a tile's math is a function above it.
#pragma once

#include <cstdint>

#include "sma_device.cuh"
#include "sma_launch.cuh"

namespace mild
{
namespace sma
{
namespace detail
{

// Whether channels [c, c + 16) of a head-dim bucket can hold any of the head's channels. Only the
// bucket's last 16 channels are checked at run time: earlier chunks are always computed (zeros
// where a head dim off the named sizes leaves more padding), so the unrolled loops keep one branch.
template <int kHeadDim>
__device__ __forceinline__ bool chunkInHead(int c, int headDim)
{
    return c + 16 < kHeadDim || c < headDim;
}

// One ldmatrix.x4 holds two B fragments (registers 0-1 and 2-3, for output tiles `tile` and
// `tile + 1`); each is multiplied with every row tile's A fragment into its accumulator.
template <typename T, int kMTiles, int kTiles>
__device__ __forceinline__ void mmaTilePair(
    float (&acc)[kMTiles][kTiles][4], uint32_t const (&a)[kMTiles][4], uint32_t const (&r)[4], int tile)
{
    uint32_t const b0[2] = {r[0], r[1]};
    uint32_t const b1[2] = {r[2], r[3]};
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
    {
        mma16816<T>(acc[mt][tile], a[mt], b0);
        mma16816<T>(acc[mt][tile + 1], a[mt], b1);
    }
}

// Starts copying rows [row0, row0 + kRows) x [0, kHeadDim) of a [S, D] matrix into shared memory
// in 16-byte pieces, zero-filling rows >= seqlen and columns >= head_dim. The caller commits.
// Offsets within the tile are 32-bit (checkParams bounds the row strides): one 64-bit multiply a
// tile instead of one a piece, and no address select for the pieces past the tensor.
template <typename T, int kRows, int kHeadDim, int kStride, int kThreads>
__device__ __forceinline__ void loadTileAsync(
    T* smem, T const* gmem, int64_t rowStride, int row0, int seqlen, int headDim)
{
    constexpr int kVec = 8; // 8 x 16-bit = 16 bytes
    constexpr int kChunksPerRow = kHeadDim / kVec;
    constexpr int kChunks = kRows * kChunksPerRow;
    T const* tile = gmem + row0 * rowStride;
    int const rows = seqlen - row0; // rows of this tile that exist
    int const stride = static_cast<int>(rowStride);
#pragma unroll
    for (int i0 = 0; i0 < kChunks; i0 += kThreads)
    {
        int const i = i0 + static_cast<int>(threadIdx.x);
        if (kChunks % kThreads == 0 || i < kChunks)
        {
            int const r = i / kChunksPerRow;
            int const c = (i % kChunksPerRow) * kVec;
            copyAsync16(smem + r * kStride + c, tile + (r * stride + c), r < rows && c < headDim);
        }
    }
}

// kWarps warps a CTA; each warp owns kMTiles x 16 query rows, so every K and V fragment it loads
// from shared memory feeds kMTiles mma instructions (at 16 rows a warp an ldmatrix.x4 feeds two
// mma, about as many shared-memory cycles as tensor-core cycles: two tiles halve the reads per
// mma). K and V tiles arrive by cp.async while the math runs, in one of two ways:
// - kStages 1, one K and one V buffer, as flash-attention 2 does: V lands while Q K^T and the
//   softmax run, the next K while P V runs; two barriers a tile. Fits the 100 KB of an
//   sm_86/89/120 SM twice at D = 64, and a block's 99 KB there at every head dim.
// - kStages 2, two of each: the next tile's K and V land during the whole of this tile's math,
//   one barrier a tile. Twice the K/V memory: for the 164/228 KB of sm_80/90.
// kBiasMma: the bias by the tensor cores (addBias: one mma a score tile) instead of one FFMA a score.
// kLazyMax: a row's max moves only past a slack (nextRowMax), so the rescale of O is mostly skipped.
template <int kHeadDim_, int kBlockN_, int kMTiles_, int kWarps_ = 4, int kStages_ = 1, bool kBiasMma_ = false,
    bool kLazyMax_ = false>
struct MmaConfig
{
    static constexpr int kHeadDim = kHeadDim_;
    static constexpr int kBlockN = kBlockN_;
    static constexpr int kMTiles = kMTiles_;
    static constexpr int kWarps = kWarps_;
    static constexpr int kStages = kStages_;
    static constexpr bool kBiasMma = kBiasMma_;
    static constexpr bool kLazyMax = kLazyMax_;
    static constexpr int kThreads = kWarps * 32;
    static constexpr int kWarpRows = kMTiles * 16;
    static constexpr int kBlockM = kWarps * kWarpRows;
    // padding against bank conflicts that keeps rows 16-byte aligned; in V it holds the ones column
    static constexpr int kStride = kHeadDim + 8;
    static constexpr int kKvElems = kBlockN * kStride; // one K or V buffer
    static constexpr int kSmemBytes = (kBlockM * kStride + 2 * kStages * kKvElems) * 2 + kStages * kBlockN * 4;
    static_assert(kStages == 1 || kStages == 2, "one or two K/V buffers");
    static_assert(kSmemBytes <= (kStages == 1 ? 99 : 163) * 1024,
        "a block gets at most 99 KB of shared memory on sm_86/89/120 and 163 KB on sm_80");
    static_assert(kHeadDim % 16 == 0 && kBlockN % 16 == 0, "tile sizes must be multiples of 16");
    static_assert(kBlockN <= kThreads, "one thread loads each key's mask");
};

// The keys from `valid` on of a score tile get -inf (the last key tile only).
template <int kMTiles, int kNTiles>
__device__ __forceinline__ void maskKeysFrom(float (&s)[kMTiles][kNTiles][4], int valid, int t)
{
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
    {
#pragma unroll
        for (int n = 0; n < kNTiles; ++n)
        {
#pragma unroll
            for (int e = 0; e < 4; ++e)
            {
                s[mt][n][e] = n * 8 + 2 * t + (e & 1) < valid ? s[mt][n][e] : -INFINITY;
            }
        }
    }
}

// This thread's share of its warp's query rows and their state in the online softmax: rows g and
// g + 8 of each of the kMTiles tiles of 16. The logits stay in units of q.k until the exponential,
// x = q.k + (beta(m_i) / scale) * m_j (one FFMA a score), and exp2((x - max) * scale * log2(e)) is
// one more FFMA before ex2 (the scale is positive: checkParams): three ALU instructions a score
// where the log2-domain order (scale, bias product, max, subtraction) took four.
template <class Cfg>
struct MmaRows
{
    static constexpr int kMTiles = Cfg::kMTiles;
    static constexpr int kDTiles = Cfg::kHeadDim / 8; // output tiles of 8 channels

    int row[kMTiles][2];
    float beta[kMTiles][2];       // beta(m_i) / scale
    uint32_t biasA[kMTiles][2];   // kBiasMma: their biasFragments
    float o[kMTiles][kDTiles][4]; // O before the division by the sums: mma's C fragments
    float max[kMTiles][2];        // running max of x
    float sum[kMTiles][4];        // P times V's column of ones: the sums of rows g and g + 8 in lanes t = 0
    float scaleLog2;              // scale * log2(e)
};

// The rows from `rowBase` (the warp's first) before the first key tile.
template <typename T, class Cfg>
__device__ __forceinline__ MmaRows<Cfg> startMmaRows(
    HeadTensors<T> const& head, Params const& p, int rowBase, int g, int t)
{
    MmaRows<Cfg> rows;
#pragma unroll
    for (int mt = 0; mt < Cfg::kMTiles; ++mt)
    {
#pragma unroll
        for (int r = 0; r < 2; ++r)
        {
            rows.row[mt][r] = rowBase + mt * 16 + g + 8 * r;
            rows.beta[mt][r] = head.beta(rows.row[mt][r], p.seqlen_q) / p.scale;
            rows.biasA[mt][r] = Cfg::kBiasMma ? biasFragment<T>(rows.beta[mt][r], t) : 0u;
        }
    }
    rows.scaleLog2 = p.scale * kLog2e;
#pragma unroll
    for (int mt = 0; mt < Cfg::kMTiles; ++mt)
    {
#pragma unroll
        for (int d = 0; d < MmaRows<Cfg>::kDTiles; ++d)
        {
            rows.o[mt][d][0] = rows.o[mt][d][1] = rows.o[mt][d][2] = rows.o[mt][d][3] = 0.f;
        }
        rows.max[mt][0] = rows.max[mt][1] = -INFINITY;
        rows.sum[mt][0] = rows.sum[mt][1] = rows.sum[mt][2] = rows.sum[mt][3] = 0.f;
    }
    return rows;
}

// S = Q K^T for the warp's rows and a tile of kBlockN keys (kBiasMma: plus the bias, first).
// qLane: this lane's row of Q's A fragments, one per 16 rows and 16 channels: matrices (rows
// +0..7, channels kk), (rows +8..15, kk), (rows +0..7, kk + 8), (rows +8..15, kk + 8).
template <typename T, class Cfg>
__device__ __forceinline__ void scoreTile(float (&s)[Cfg::kMTiles][Cfg::kBlockN / 8][4], T const* qLane,
    T const* kTile, uint32_t const* mTile, MmaRows<Cfg> const& rows, int lane, int headDim)
{
    constexpr int kMTiles = Cfg::kMTiles;
    constexpr int kStride = Cfg::kStride;
    int const g = lane / 4;
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
    {
#pragma unroll
        for (int n = 0; n < Cfg::kBlockN / 8; ++n)
        {
            s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
            if constexpr (Cfg::kBiasMma)
            {
                addBias<T>(s[mt][n], rows.biasA[mt][0], rows.biasA[mt][1], mTile[n * 8 + g]);
            }
        }
    }
#pragma unroll
    for (int kk = 0; kk < Cfg::kHeadDim; kk += 16)
    {
        if (chunkInHead<Cfg::kHeadDim>(kk, headDim)) // channels past D are zero: skip them
        {
            uint32_t a[kMTiles][4];
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt)
            {
                ldmatrixX4<false>(a[mt], qLane + mt * 16 * kStride + kk);
            }
            // two key tiles a load: matrices (keys n, channels kk), (n, kk + 8), (n + 1, kk), (n + 1, kk + 8)
#pragma unroll
            for (int n = 0; n < Cfg::kBlockN / 8; n += 2)
            {
                uint32_t r[4];
                ldmatrixX4<false>(r, kTile + (n * 8 + (lane >> 4) * 8 + (lane & 7)) * kStride + kk + (lane & 8));
                mmaTilePair<T>(s, a, r, n);
            }
        }
    }
}

// The online softmax of one tile, the four threads of a quad holding a row between them: the
// logits x = q.k + (beta(m_i) / scale) * m_j (unless kBiasMma added the bias; keys past Sk stay
// -inf), the rows' running max, and P = exp2((x - max) * scale * log2(e)) in place of the scores.
// `correction`: the factor O and the sums must be rescaled by (exactly 1 where a row's max held).
template <class Cfg>
__device__ __forceinline__ void softmaxTile(float (&s)[Cfg::kMTiles][Cfg::kBlockN / 8][4],
    MmaRows<Cfg>& rows, uint32_t const* mTile, int t, float (&correction)[Cfg::kMTiles][2])
{
#pragma unroll
    for (int mt = 0; mt < Cfg::kMTiles; ++mt)
    {
        float tileMax[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int n = 0; n < Cfg::kBlockN / 8; ++n)
        {
            if constexpr (!Cfg::kBiasMma) // the bias by one FFMA a score, the masks as floats
            {
                float2 const mask = *reinterpret_cast<float2 const*>(mTile + n * 8 + 2 * t);
#pragma unroll
                for (int e = 0; e < 4; ++e)
                {
                    s[mt][n][e] = fmaf(rows.beta[mt][e >> 1], (e & 1) ? mask.y : mask.x, s[mt][n][e]);
                }
            }
#pragma unroll
            for (int e = 0; e < 4; ++e)
            {
                tileMax[e >> 1] = fmaxf(tileMax[e >> 1], s[mt][n][e]);
            }
        }
        float shift[2]; // -max * scale * log2(e)
#pragma unroll
        for (int r = 0; r < 2; ++r)
        {
            tileMax[r] = fmaxf(tileMax[r], __shfl_xor_sync(0xffffffffu, tileMax[r], 1));
            tileMax[r] = fmaxf(tileMax[r], __shfl_xor_sync(0xffffffffu, tileMax[r], 2));
            float const newMax = nextRowMax<Cfg::kLazyMax>(rows.max[mt][r], tileMax[r], rows.scaleLog2);
            correction[mt][r] = exp2Fast((rows.max[mt][r] - newMax) * rows.scaleLog2);
            rows.max[mt][r] = newMax;
            shift[r] = -newMax * rows.scaleLog2;
        }
#pragma unroll
        for (int n = 0; n < Cfg::kBlockN / 8; ++n)
        {
#pragma unroll
            for (int e = 0; e < 4; ++e)
            {
                s[mt][n][e] = exp2Fast(fmaf(s[mt][n][e], rows.scaleLog2, shift[e >> 1]));
            }
        }
    }
}

// O and the row sums follow a rising max; once the rows' maxima settle (most tiles of a long
// sequence), the whole warp skips the multiplies, a factor of exactly 1.
template <class Cfg>
__device__ __forceinline__ void rescaleRows(MmaRows<Cfg>& rows, float const (&correction)[Cfg::kMTiles][2])
{
    bool rescale = false;
#pragma unroll
    for (int mt = 0; mt < Cfg::kMTiles; ++mt)
    {
        rescale |= correction[mt][0] != 1.f || correction[mt][1] != 1.f;
    }
    if (__any_sync(0xffffffffu, rescale))
    {
#pragma unroll
        for (int mt = 0; mt < Cfg::kMTiles; ++mt)
        {
#pragma unroll
            for (int d = 0; d < MmaRows<Cfg>::kDTiles; ++d)
            {
                rows.o[mt][d][0] *= correction[mt][0];
                rows.o[mt][d][1] *= correction[mt][0];
                rows.o[mt][d][2] *= correction[mt][1];
                rows.o[mt][d][3] *= correction[mt][1];
            }
            rows.sum[mt][0] *= correction[mt][0];
            rows.sum[mt][2] *= correction[mt][1];
        }
    }
}

// P in the input type, as P V's A fragments (two 8-key score tiles make one 16-key fragment):
// packed right after the softmax, so the fp32 scores' registers free up early.
template <typename T, int kMTiles, int kNTiles>
__device__ __forceinline__ void packScores(
    float const (&s)[kMTiles][kNTiles][4], uint32_t (&pa)[kNTiles / 2][kMTiles][4])
{
#pragma unroll
    for (int kc = 0; kc < kNTiles / 2; ++kc)
    {
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
        {
            pa[kc][mt][0] = pack2<T>(s[mt][2 * kc][0], s[mt][2 * kc][1]);
            pa[kc][mt][1] = pack2<T>(s[mt][2 * kc][2], s[mt][2 * kc][3]);
            pa[kc][mt][2] = pack2<T>(s[mt][2 * kc + 1][0], s[mt][2 * kc + 1][1]);
            pa[kc][mt][3] = pack2<T>(s[mt][2 * kc + 1][2], s[mt][2 * kc + 1][3]);
        }
    }
}

// O += P V for the tile, and the row sums += P times V's column of ones.
template <typename T, class Cfg>
__device__ __forceinline__ void accumulatePV(
    MmaRows<Cfg>& rows, uint32_t const (&pa)[Cfg::kBlockN / 16][Cfg::kMTiles][4], T const* vTile, int lane, int headDim)
{
    constexpr int kStride = Cfg::kStride;
#pragma unroll
    for (int kc = 0; kc < Cfg::kBlockN / 16; ++kc)
    {
        // two channel tiles a load, transposed: (keys +0..7, channels d), (keys +8..15, d),
        // (keys +0..7, d + 1), (keys +8..15, d + 1)
        T const* vLane = vTile + (kc * 16 + (lane & 8) + (lane & 7)) * kStride + (lane >> 4) * 8;
#pragma unroll
        for (int d = 0; d < Cfg::kHeadDim / 8; d += 2)
        {
            if (chunkInHead<Cfg::kHeadDim>(d * 8, headDim)) // tile d + 1 past D: zeros, never stored
            {
                uint32_t r[4];
                ldmatrixX4<true>(r, vLane + d * 8);
                mmaTilePair<T>(rows.o, pa[kc], r, d);
            }
        }
        // the row sums: (keys +0..7, the ones column), (keys +8..15, the ones column)
        uint32_t ones[2];
        ldmatrixX2Trans(ones, vTile + (kc * 16 + (lane & 15)) * kStride + Cfg::kHeadDim);
#pragma unroll
        for (int mt = 0; mt < Cfg::kMTiles; ++mt)
        {
            mma16816<T>(rows.sum[mt], pa[kc][mt], ones);
        }
    }
}

// O divided by its rows' sums, stored in the input type; rows past the queries and channels past
// the head dim are not stored.
template <typename T, class Cfg>
__device__ __forceinline__ void storeOutput(
    MmaRows<Cfg> const& rows, HeadTensors<T> const& head, Params const& p, int lane, int headDim)
{
    int const t = lane % 4;
#pragma unroll
    for (int mt = 0; mt < Cfg::kMTiles; ++mt)
    {
#pragma unroll
        for (int r = 0; r < 2; ++r)
        {
            float const sum = __shfl_sync(0xffffffffu, rows.sum[mt][2 * r], lane & ~3); // from lane t = 0
            float const inv = 1.f / sum;
            if (rows.row[mt][r] < p.seqlen_q)
            {
                T* outRow = head.out + rows.row[mt][r] * p.out_row_stride;
#pragma unroll
                for (int d = 0; d < Cfg::kHeadDim / 8; ++d)
                {
                    int const col = d * 8 + 2 * t;
                    if (col < headDim)
                    {
                        *reinterpret_cast<uint32_t*>(outRow + col)
                            = pack2<T>(rows.o[mt][d][2 * r] * inv, rows.o[mt][d][2 * r + 1] * inv);
                    }
                }
            }
        }
    }
}

template <typename T, class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads) smaForwardMma(Params const p)
{
    constexpr int kHeadDim = Cfg::kHeadDim;
    constexpr int kBlockN = Cfg::kBlockN;
    constexpr int kStride = Cfg::kStride;
    constexpr int kBlockM = Cfg::kBlockM;
    constexpr int kStages = Cfg::kStages;
    auto const loadTile = [](T* smem, T const* gmem, int64_t rowStride, int row0, int seqlen, int headDim) {
        loadTileAsync<T, kBlockN, kHeadDim, kStride, Cfg::kThreads>(smem, gmem, rowStride, row0, seqlen, headDim);
    };

    extern __shared__ __align__(16) unsigned char smemRaw[];
    T* qs = reinterpret_cast<T*>(smemRaw);
    T* ks = qs + kBlockM * kStride;          // kStages K buffers
    T* vs = ks + kStages * Cfg::kKvElems;   // kStages V buffers
    auto* mks = reinterpret_cast<uint32_t*>(vs + kStages * Cfg::kKvElems); // kStages x kBlockN keyMaskWords

    int const warp = threadIdx.x / 32;
    int const lane = threadIdx.x % 32;
    int const g = lane / 4;
    int const t = lane % 4;
    int const m0 = blockIdx.x * kBlockM;
    int const headDim = p.head_dim;
    HeadTensors<T> const head(p, blockIdx.z, blockIdx.y);

    // Q, the first K tile (and V tile, with two stages) and its key masks
    loadTileAsync<T, kBlockM, kHeadDim, kStride, Cfg::kThreads>(qs, head.q, p.q_row_stride, m0, p.seqlen_q, headDim);
    loadTile(ks, head.k, p.k_row_stride, 0, p.seqlen_k, headDim);
    if constexpr (kStages == 2)
    {
        loadTile(vs, head.v, p.v_row_stride, 0, p.seqlen_k, headDim);
    }
    commitAsync();
    if (threadIdx.x < kBlockN)
    {
        mks[threadIdx.x] = keyMaskWord<T, Cfg::kBiasMma>(keyMask(head.mk, threadIdx.x, p.seqlen_k));
    }
    // The row sums come out of P V: every V row gets a 1 in the first padding column (cp.async
    // never writes past kHeadDim), so P times that column is each row's sum of P, the same rounded
    // P the output sums, at one mma per 16 keys instead of an add per score.
#pragma unroll
    for (int i0 = 0; i0 < kStages * kBlockN; i0 += Cfg::kThreads)
    {
        int const i = i0 + static_cast<int>(threadIdx.x);
        if (i < kStages * kBlockN)
        {
            *reinterpret_cast<uint4*>(vs + i * kStride + kHeadDim) = make_uint4(pack2<T>(1.f, 0.f), 0u, 0u, 0u);
        }
    }

    MmaRows<Cfg> rows = startMmaRows<T, Cfg>(head, p, m0 + warp * Cfg::kWarpRows, g, t);
    T const* qLane = qs + (warp * Cfg::kWarpRows + (lane & 8) + (lane & 7)) * kStride + (lane >> 4) * 8;

    int const tiles = (p.seqlen_k + kBlockN - 1) / kBlockN;
    for (int tile = 0; tile < tiles; ++tile)
    {
        int const n0 = tile * kBlockN;
        bool const more = tile + 1 < tiles;
        int const stage = kStages == 1 ? 0 : tile & 1; // this tile's buffers
        T const* kTile = ks + stage * Cfg::kKvElems;
        T const* vTile = vs + stage * Cfg::kKvElems;
        uint32_t const* mTile = mks + stage * kBlockN;
        waitAsync<0>();
        __syncthreads(); // this tile's K (and V) and masks are visible; every warp is done with the last tile
        if constexpr (kStages == 1)
        {
            loadTile(vs, head.v, p.v_row_stride, n0, p.seqlen_k, headDim);
            commitAsync(); // lands while Q K^T and the softmax run
        }
        else if (more)
        {
            // into the buffers the last tile used: land during all of this tile's math
            int const next = (stage ^ 1) * Cfg::kKvElems;
            loadTile(ks + next, head.k, p.k_row_stride, n0 + kBlockN, p.seqlen_k, headDim);
            loadTile(vs + next, head.v, p.v_row_stride, n0 + kBlockN, p.seqlen_k, headDim);
            commitAsync();
        }
        // the next tile's masks, read now and stored once every warp is done with that buffer
        uint32_t const maskNext = keyMaskWord<T, Cfg::kBiasMma>(
            threadIdx.x < kBlockN ? keyMask(head.mk, n0 + kBlockN + threadIdx.x, p.seqlen_k) : 0.f);

        float s[Cfg::kMTiles][kBlockN / 8][4];
        scoreTile<T, Cfg>(s, qLane, kTile, mTile, rows, lane, headDim);
        if (n0 + kBlockN > p.seqlen_k)
        {
            maskKeysFrom(s, p.seqlen_k - n0, t);
        }
        float correction[Cfg::kMTiles][2];
        softmaxTile<Cfg>(s, rows, mTile, t, correction);
        rescaleRows(rows, correction);
        uint32_t pa[kBlockN / 16][Cfg::kMTiles][4];
        packScores<T>(s, pa);

        if constexpr (kStages == 1)
        {
            waitAsync<0>();
            __syncthreads(); // this V tile is visible; every warp is done with K and the masks
            if (more)
            {
                loadTile(ks, head.k, p.k_row_stride, n0 + kBlockN, p.seqlen_k, headDim);
                commitAsync(); // lands while P V runs
                if (threadIdx.x < kBlockN)
                {
                    mks[threadIdx.x] = maskNext;
                }
            }
        }
        else if (more && threadIdx.x < kBlockN)
        {
            mks[(stage ^ 1) * kBlockN + threadIdx.x] = maskNext; // the last tile's buffer, read before the barrier
        }

        accumulatePV<T, Cfg>(rows, pa, vTile, lane, headDim);
    }

    storeOutput<T, Cfg>(rows, head, p, lane, headDim);
}

// Enqueues smaForwardMma with tile shape `Cfg` (the launcher's choice, or bench/sma_tile_sweep.cu's).
template <typename T, class Cfg>
cudaError_t launchMmaConfig(Params const& p, cudaStream_t stream)
{
    return launchBlocks<Cfg, smaForwardMma<T, Cfg>>(p, stream);
}

} // namespace detail
} // namespace sma
} // namespace mild

// Fused SMA forward, flash-attention style: scores live in registers one key tile at a time, the
// softmax runs online (running max and sum per row), and the bias beta(m_i) * m_j costs one
// multiply-add per score. Nothing of size Sq x Sk is ever stored.
//
// fp16/bf16: one CTA = 4 warps, each owning 32 query rows (16 past D = 128); Q K^T and P V are
// mma.sync.m16n8k16 tensor-core instructions (sm_80+) with fp32 accumulation, fed by ldmatrix
// from shared memory; K and V tiles arrive by cp.async while the math of the one before runs.
// fp32: a SIMT kernel (one warp per query row, fp32 FMA throughout), so fp32 stays fp32-accurate.
#pragma once

#include <atomic>
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "sma_params.h"

namespace mild
{
namespace sma
{
namespace detail
{

constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ float toFloat(float x)
{
    return x;
}
__device__ __forceinline__ float toFloat(__half x)
{
    return __half2float(x);
}
__device__ __forceinline__ float toFloat(__nv_bfloat16 x)
{
    return __bfloat162float(x);
}

// Two floats as one 32-bit register of two 16-bit values, the lower index in the lower half.
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);

template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi)
{
    __half2 h = __floats2half2_rn(lo, hi); // .x = lo (low 16 bits), .y = hi
    return *reinterpret_cast<uint32_t*>(&h);
}

template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi)
{
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
}

// D (16x8, fp32) += A (16x16, row) * B (16x8, col). Fragment layout (PTX ISA, mma.m16n8k16),
// g = lane / 4, t = lane % 4:
//   a0: (row g, k 2t..2t+1)  a1: (row g+8, k 2t..)  a2: (row g, k 2t+8..)  a3: (row g+8, k 2t+8..)
//   b0: (k 2t..2t+1, col g)  b1: (k 2t+8..2t+9, col g)
//   c0,c1: (row g, col 2t, 2t+1)  c2,c3: (row g+8, col 2t, 2t+1)
template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], uint32_t const (&a)[4], uint32_t const (&b)[2]);

template <>
__device__ __forceinline__ void mma16816<__half>(float (&c)[4], uint32_t const (&a)[4], uint32_t const (&b)[2])
{
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(
    float (&c)[4], uint32_t const (&a)[4], uint32_t const (&b)[2])
{
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// The bias by mma.sync (MmaConfig::kBiasMma, WgmmaConfig's BiasBy::kMmaSync): for 8 keys of a
// warp's 16 query rows, one m16n8k8 adds beta_i m_j to the scores, whose registers are its C (the
// Q K^T accumulator layout of mma.sync and of wgmma alike). A holds beta / scale in k 0..2 as
// three parts of T (hi + mid + lo carry 24 mantissa bits or more: an fp32 FFMA's precision) and
// zeros past them; B holds the key's mask in every element, so no thread selects what it loads.
// fp16's range is kept by a factor 256 moved from beta to the masks, exact both ways (|beta| up to
// about 2e6 at D = 64; masks at most 1 stay below 256); bf16 has fp32's range. One mma a score
// tile instead of one FFMA a score.
template <typename T>
constexpr float kBiasShift = std::is_same_v<T, __half> ? 256.f : 1.f;

// x rounded to T and back: the parts of the three-way split.
template <typename T>
__device__ __forceinline__ float roundedTo(float x);
template <>
__device__ __forceinline__ float roundedTo<__half>(float x)
{
    return __half2float(__float2half_rn(x));
}
template <>
__device__ __forceinline__ float roundedTo<__nv_bfloat16>(float x)
{
    return __bfloat162float(__float2bfloat16_rn(x));
}

// This thread's register of the bias's A fragment for one row (a0 for row g, a1 for row g + 8):
// thread t holds k 2t, 2t + 1. `beta`: beta(m_i) / scale.
template <typename T>
__device__ __forceinline__ uint32_t biasFragment(float beta, int t)
{
    float const b = beta / kBiasShift<T>;
    float const hi = roundedTo<T>(b);
    float const mid = roundedTo<T>(b - hi);
    float const lo = b - hi - mid;
    return t == 0 ? pack2<T>(hi, mid) : t == 1 ? pack2<T>(lo, 0.f) : 0u;
}

// A key's mask as the kernels keep it in shared memory, one 32-bit word a key: the float for the
// FFMA bias, or B's pair (m_j, m_j) * kBiasShift in T for the bias by mma (exact: masks come in T).
template <typename T, bool kBiasMma>
__device__ __forceinline__ uint32_t keyMaskWord(float mask)
{
    if constexpr (kBiasMma)
    {
        return pack2<T>(mask * kBiasShift<T>, mask * kBiasShift<T>);
    }
    else
    {
        return __float_as_uint(mask);
    }
}

// c (16 rows x 8 keys of scores) += beta_i m_j: `rowG`, `rowG8` from biasFragment, `mask` the word
// of key g of the tile. One m16n8k8 (k 0..7 hold all of A's nonzeros): its A fragment is the two
// registers biasFragment gives (row g, row g + 8; k 2t, 2t + 1) and its B fragment the one mask word.
template <typename T>
__device__ __forceinline__ void addBias(float (&c)[4], uint32_t rowG, uint32_t rowG8, uint32_t mask)
{
    if constexpr (std::is_same_v<T, __half>)
    {
        asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5}, {%6}, "
                     "{%0, %1, %2, %3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(rowG), "r"(rowG8), "r"(mask));
    }
    else
    {
        asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5}, {%6}, "
                     "{%0, %1, %2, %3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(rowG), "r"(rowG8), "r"(mask));
    }
}

// Four 8x8 16-bit matrices from shared memory in one instruction: lane l gives the address of row
// l % 8 of matrix l / 8 (16-byte aligned), and register i receives this thread's share of matrix
// i: (row g, columns 2t, 2t+1), or with `kTrans` (column g, rows 2t, 2t+1). Those are mma's
// fragments: A of Q rows and B of K rows as they lie in shared memory, B of V rows transposed.
template <bool kTrans>
__device__ __forceinline__ void ldmatrixX4(uint32_t (&r)[4], void const* rowAddress)
{
    uint32_t const addr = static_cast<uint32_t>(__cvta_generic_to_shared(rowAddress));
    if constexpr (kTrans)
    {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(addr));
    }
    else
    {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(addr));
    }
}

// Two 8x8 16-bit matrices, transposed: lanes 0-15 give the row addresses (lane l: row l % 8 of
// matrix l / 8); register i receives this thread's share of matrix i, (column g, rows 2t, 2t+1).
__device__ __forceinline__ void ldmatrixX2Trans(uint32_t (&r)[2], void const* rowAddress)
{
    uint32_t const addr = static_cast<uint32_t>(__cvta_generic_to_shared(rowAddress));
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(addr));
}

// cp.async (sm_80+): 16 bytes from global to shared memory without passing through registers, so
// a K or V tile streams in while the warps do other math. With `valid` false the source size is 0:
// nothing is read (`gmem` may point past the tensor, as CUTLASS's zero-fill copies allow) and the
// 16 bytes are zero-filled.
__device__ __forceinline__ void copyAsync16(void* smem, void const* gmem, bool valid)
{
    uint32_t const addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    int const bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(gmem), "r"(bytes));
}

__device__ __forceinline__ void commitAsync()
{
    asm volatile("cp.async.commit_group;\n" ::);
}

// Waits until at most `kPending` of this thread's committed copy groups are still in flight.
template <int kPending>
__device__ __forceinline__ void waitAsync()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// 2^x by the SFU alone (ex2.approx.ftz: no denormal fix-up around it, which exp2f adds: three
// more instructions a score). Results below 2^-126 flush to zero, where they are nothing beside
// the row's largest term, 1. 2^-inf = 0.
__device__ __forceinline__ float exp2Fast(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

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

// The mask value of key `j` for the bias, 0 past the keys (those scores are -inf anyway).
template <typename T>
__device__ __forceinline__ float keyMask(T const* mk, int j, int seqlen)
{
    return j < seqlen ? toFloat(mk[j]) : 0.f;
}

// One (batch, head)'s tensors, and the bias as beta(m_i) = c0 + m_i * c1 (the 2x2 lookup with the
// terms that cancel in the softmax dropped: DESIGN.md section 5). Every kernel starts from this.
template <typename T>
struct HeadTensors
{
    T const* q;
    T const* k;
    T const* v;
    T const* mq;
    T const* mk;
    T* out;
    float c0;
    float c1;

    __device__ __forceinline__ HeadTensors(Params const& p, int b, int h)
        : q(static_cast<T const*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride)
        , k(static_cast<T const*>(p.k) + b * p.k_batch_stride + h * p.k_head_stride)
        , v(static_cast<T const*>(p.v) + b * p.v_batch_stride + h * p.v_head_stride)
        , mq(static_cast<T const*>(p.m_q) + b * p.m_q_batch_stride)
        , mk(static_cast<T const*>(p.m_k) + b * p.m_k_batch_stride)
        , out(static_cast<T*>(p.out) + b * p.out_batch_stride + h * p.out_head_stride)
    {
        T const* alpha = static_cast<T const*>(p.alpha) + h * 4;
        float const a00 = toFloat(alpha[0]), a01 = toFloat(alpha[1]), a10 = toFloat(alpha[2]), a11 = toFloat(alpha[3]);
        c0 = a01 - a00;
        c1 = a11 - a10 - a01 + a00;
    }

    // beta of query row `row` (0 past the queries, whose outputs are never stored)
    __device__ __forceinline__ float beta(int row, int seqlenQ) const
    {
        return row < seqlenQ ? c0 + toFloat(mq[row]) * c1 : 0.f;
    }
};

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
template <int kHeadDim_, int kBlockN_, int kMTiles_, int kWarps_ = 4, int kStages_ = 1, bool kBiasMma_ = false>
struct MmaConfig
{
    static constexpr int kHeadDim = kHeadDim_;
    static constexpr int kBlockN = kBlockN_;
    static constexpr int kMTiles = kMTiles_;
    static constexpr int kWarps = kWarps_;
    static constexpr int kStages = kStages_;
    static constexpr bool kBiasMma = kBiasMma_;
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

template <typename T, class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads) smaForwardMma(Params const p)
{
    constexpr int kHeadDim = Cfg::kHeadDim;
    constexpr int kBlockN = Cfg::kBlockN;
    constexpr int kMTiles = Cfg::kMTiles;
    constexpr int kStride = Cfg::kStride;
    constexpr int kBlockM = Cfg::kBlockM;
    constexpr int kNTiles = kBlockN / 8;   // score tiles of 8 keys
    constexpr int kDTiles = kHeadDim / 8;  // output tiles of 8 channels
    constexpr int kStages = Cfg::kStages;

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
    loadTileAsync<T, kBlockN, kHeadDim, kStride, Cfg::kThreads>(ks, head.k, p.k_row_stride, 0, p.seqlen_k, headDim);
    if constexpr (kStages == 2)
    {
        loadTileAsync<T, kBlockN, kHeadDim, kStride, Cfg::kThreads>(vs, head.v, p.v_row_stride, 0, p.seqlen_k, headDim);
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

    // The logits stay in units of q.k until the exponential, x = q.k + (beta(m_i) / scale) * m_j
    // (one FFMA a score), and exp2((x - max) * scale * log2(e)) is one more FFMA before ex2 (the
    // scale is positive: checkParams): three ALU instructions a score where the log2-domain order
    // (scale, bias product, max, subtraction) took four.
    int row[kMTiles][2];
    float beta[kMTiles][2];     // beta(m_i) / scale
    uint32_t biasA[kMTiles][2]; // kBiasMma: their biasFragments
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
    {
#pragma unroll
        for (int r = 0; r < 2; ++r)
        {
            row[mt][r] = m0 + warp * Cfg::kWarpRows + mt * 16 + g + 8 * r;
            beta[mt][r] = head.beta(row[mt][r], p.seqlen_q) / p.scale;
            biasA[mt][r] = Cfg::kBiasMma ? biasFragment<T>(beta[mt][r], t) : 0u;
        }
    }
    float const scaleLog2 = p.scale * kLog2e;

    float o[kMTiles][kDTiles][4];
    float rowMax[kMTiles][2]; // running max of x
    float rowSum[kMTiles][4]; // P times V's column of ones: the sums of rows g and g + 8 in lanes t = 0
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
    {
#pragma unroll
        for (int d = 0; d < kDTiles; ++d)
        {
            o[mt][d][0] = o[mt][d][1] = o[mt][d][2] = o[mt][d][3] = 0.f;
        }
        rowMax[mt][0] = rowMax[mt][1] = -INFINITY;
        rowSum[mt][0] = rowSum[mt][1] = rowSum[mt][2] = rowSum[mt][3] = 0.f;
    }

    // this warp's query rows as one A fragment per 16 rows and 16 channels: matrices (rows +0..7,
    // channels kk), (rows +8..15, kk), (rows +0..7, kk + 8), (rows +8..15, kk + 8)
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
            loadTileAsync<T, kBlockN, kHeadDim, kStride, Cfg::kThreads>(vs, head.v, p.v_row_stride, n0, p.seqlen_k, headDim);
            commitAsync(); // lands while Q K^T and the softmax run
        }
        else if (more)
        {
            // into the buffers the last tile used: land during all of this tile's math
            int const next = (stage ^ 1) * Cfg::kKvElems;
            loadTileAsync<T, kBlockN, kHeadDim, kStride, Cfg::kThreads>(
                ks + next, head.k, p.k_row_stride, n0 + kBlockN, p.seqlen_k, headDim);
            loadTileAsync<T, kBlockN, kHeadDim, kStride, Cfg::kThreads>(
                vs + next, head.v, p.v_row_stride, n0 + kBlockN, p.seqlen_k, headDim);
            commitAsync();
        }
        // the next tile's masks, read now and stored once every warp is done with that buffer
        uint32_t const maskNext = keyMaskWord<T, Cfg::kBiasMma>(
            threadIdx.x < kBlockN ? keyMask(head.mk, n0 + kBlockN + threadIdx.x, p.seqlen_k) : 0.f);

        // S = Q K^T for this warp's rows and kBlockN keys (kBiasMma: plus the bias, first)
        float s[kMTiles][kNTiles][4];
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
        {
#pragma unroll
            for (int n = 0; n < kNTiles; ++n)
            {
                s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
                if constexpr (Cfg::kBiasMma)
                {
                    addBias<T>(s[mt][n], biasA[mt][0], biasA[mt][1], mTile[n * 8 + g]);
                }
            }
        }
#pragma unroll
        for (int kk = 0; kk < kHeadDim; kk += 16)
        {
            if (chunkInHead<kHeadDim>(kk, headDim)) // channels past D are zero: skip them
            {
                uint32_t a[kMTiles][4];
#pragma unroll
                for (int mt = 0; mt < kMTiles; ++mt)
                {
                    ldmatrixX4<false>(a[mt], qLane + mt * 16 * kStride + kk);
                }
                // two key tiles a load: matrices (keys n, channels kk), (n, kk + 8), (n + 1, kk), (n + 1, kk + 8)
#pragma unroll
                for (int n = 0; n < kNTiles; n += 2)
                {
                    uint32_t r[4];
                    ldmatrixX4<false>(r, kTile + (n * 8 + (lane >> 4) * 8 + (lane & 7)) * kStride + kk + (lane & 8));
                    mmaTilePair<T>(s, a, r, n);
                }
            }
        }

        if (n0 + kBlockN > p.seqlen_k)
        {
            maskKeysFrom(s, p.seqlen_k - n0, t);
        }

        // logits x = q.k + (beta(m_i) / scale) * m_j (keys past Sk stay -inf); then the online
        // softmax, the four threads of a quad holding one row between them
        float correction[kMTiles][2];
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
        {
            float tileMax[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int n = 0; n < kNTiles; ++n)
            {
                if constexpr (!Cfg::kBiasMma) // the bias by one FFMA a score, the masks as floats
                {
                    float2 const mask = *reinterpret_cast<float2 const*>(mTile + n * 8 + 2 * t);
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                    {
                        s[mt][n][e] = fmaf(beta[mt][e >> 1], (e & 1) ? mask.y : mask.x, s[mt][n][e]);
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
                float const newMax = fmaxf(rowMax[mt][r], tileMax[r]); // finite: every tile has a valid key
                correction[mt][r] = exp2Fast((rowMax[mt][r] - newMax) * scaleLog2); // exactly 1 where the max holds
                rowMax[mt][r] = newMax;
                shift[r] = -newMax * scaleLog2;
            }
#pragma unroll
            for (int n = 0; n < kNTiles; ++n)
            {
#pragma unroll
                for (int e = 0; e < 4; ++e)
                {
                    s[mt][n][e] = exp2Fast(fmaf(s[mt][n][e], scaleLog2, shift[e >> 1]));
                }
            }
        }
        // O and the row sums follow a rising max; once the rows' maxima settle (most tiles of a long
        // sequence), the whole warp skips the multiplies, a factor of exactly 1
        bool rescale = false;
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
        {
            rescale |= correction[mt][0] != 1.f || correction[mt][1] != 1.f;
        }
        if (__any_sync(0xffffffffu, rescale))
        {
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt)
            {
#pragma unroll
                for (int d = 0; d < kDTiles; ++d)
                {
                    o[mt][d][0] *= correction[mt][0];
                    o[mt][d][1] *= correction[mt][0];
                    o[mt][d][2] *= correction[mt][1];
                    o[mt][d][3] *= correction[mt][1];
                }
                rowSum[mt][0] *= correction[mt][0];
                rowSum[mt][2] *= correction[mt][1];
            }
        }

        // P in the input type, as P V's A fragments (two 8-key score tiles make one 16-key
        // fragment): packed right after the softmax, so the fp32 scores' registers free up early
        uint32_t pa[kBlockN / 16][kMTiles][4];
#pragma unroll
        for (int kc = 0; kc < kBlockN / 16; ++kc)
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

        if constexpr (kStages == 1)
        {
            waitAsync<0>();
            __syncthreads(); // this V tile is visible; every warp is done with K and the masks
            if (more)
            {
                loadTileAsync<T, kBlockN, kHeadDim, kStride, Cfg::kThreads>(
                    ks, head.k, p.k_row_stride, n0 + kBlockN, p.seqlen_k, headDim);
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

        // O += P V
#pragma unroll
        for (int kc = 0; kc < kBlockN / 16; ++kc)
        {
            // two channel tiles a load, transposed: (keys +0..7, channels d), (keys +8..15, d),
            // (keys +0..7, d + 1), (keys +8..15, d + 1)
            T const* vLane = vTile + (kc * 16 + (lane & 8) + (lane & 7)) * kStride + (lane >> 4) * 8;
#pragma unroll
            for (int d = 0; d < kDTiles; d += 2)
            {
                if (chunkInHead<kHeadDim>(d * 8, headDim)) // tile d + 1 past D: zeros, never stored
                {
                    uint32_t r[4];
                    ldmatrixX4<true>(r, vLane + d * 8);
                    mmaTilePair<T>(o, pa[kc], r, d);
                }
            }
            // the row sums: (keys +0..7, the ones column), (keys +8..15, the ones column)
            uint32_t ones[2];
            ldmatrixX2Trans(ones, vTile + (kc * 16 + (lane & 15)) * kStride + kHeadDim);
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt)
            {
                mma16816<T>(rowSum[mt], pa[kc][mt], ones);
            }
        }
    }

#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
    {
#pragma unroll
        for (int r = 0; r < 2; ++r)
        {
            float const sum = __shfl_sync(0xffffffffu, rowSum[mt][2 * r], lane & ~3); // from lane t = 0
            float const inv = 1.f / sum;
            if (row[mt][r] < p.seqlen_q)
            {
                T* outRow = head.out + row[mt][r] * p.out_row_stride;
#pragma unroll
                for (int d = 0; d < kDTiles; ++d)
                {
                    int const col = d * 8 + 2 * t;
                    if (col < headDim)
                    {
                        *reinterpret_cast<uint32_t*>(outRow + col)
                            = pack2<T>(o[mt][d][2 * r] * inv, o[mt][d][2 * r + 1] * inv);
                    }
                }
            }
        }
    }
}

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

// Enqueues smaForwardMma with tile shape `Cfg` (the launcher's choice, or bench/sma_tile_sweep.cu's).
template <typename T, class Cfg>
cudaError_t launchMmaConfig(Params const& p, cudaStream_t stream)
{
    return launchBlocks<Cfg, smaForwardMma<T, Cfg>>(p, stream);
}

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

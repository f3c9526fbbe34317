// Device building blocks the SMA kernels share: conversions and packing of the 16-bit types, the
// mma.sync, ldmatrix and cp.async instructions by inline PTX, the SFU's exponential, the bias by
// the tensor cores, and one (batch, head)'s tensors with its bias coefficients. The mma.sync kernel
// (sma_kernel.cuh), the wgmma kernel (sma_kernel_sm90.cuh) and the fp32 kernel
// (sma_kernel_fp32.cuh) are written in these terms.
#pragma once

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

// A row's running max after a tile whose max is `tileMax` (finite: every tile has a valid key), in
// units of x with exp2((x - max) * scaleLog2). With kLazyMax (flash-attention 4's conditional
// rescale) it moves only when the tile's passes it by kMaxSlackLog2 in log2 units (the first tile's
// always does: it is infinitely past -inf): P is then at most 2^8, held by fp16, bf16 and the fp32
// sums to the same relative precision as P <= 1, and O and the sums share the stale max, so the
// output is the same, while O's rescale, which the kernels skip where no row of a warp moved, is
// skipped on nearly every tile. With an exact max a warp rescales whenever one of its rows meets a
// new max: on over half the tiles at S = 4096 for random scores.
constexpr float kMaxSlackLog2 = 8.f;

template <bool kLazyMax>
__device__ __forceinline__ float nextRowMax(float max, float tileMax, float scaleLog2)
{
    if constexpr (kLazyMax)
    {
        return (tileMax - max) * scaleLog2 > kMaxSlackLog2 ? tileMax : max;
    }
    else
    {
        return fmaxf(max, tileMax);
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

} // namespace detail
} // namespace sma
} // namespace mild

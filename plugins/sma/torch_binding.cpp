// The SMA kernel as a thin PyTorch extension, for the GPU tests and bench/ (not part of the
// plugin library). Built with torch.utils.cpp_extension.load over this file and sma_kernel.cu.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include "sma_params.h"

namespace
{

mild::sma::DataType kernelType(at::ScalarType type)
{
    switch (type)
    {
    case at::kFloat: return mild::sma::DataType::kFloat32;
    case at::kHalf: return mild::sma::DataType::kFloat16;
    case at::kBFloat16: return mild::sma::DataType::kBFloat16;
    default: TORCH_CHECK(false, "sma_forward: q must be float32, float16 or bfloat16, got ", type);
    }
}

// The kernel reads any batch, head and row strides in place when channels are adjacent, the
// strides are whole 16-byte vectors and the start is 16-byte aligned: attention's q, k and v are
// [B, S, H, D] memory seen as [B, H, S, D] (slices of one fused Q/K/V output, even), and copying
// them contiguous would cost three copies a call. Any other layout is copied, and so are rows
// farther apart than the kernel's 32-bit tile offsets reach (mild::sma::kMaxRowStride).
torch::Tensor kernelLayout(torch::Tensor t)
{
    bool const readable = t.stride(3) == 1 && t.stride(0) % 8 == 0 && t.stride(1) % 8 == 0
        && t.stride(2) % 8 == 0 && t.stride(2) < mild::sma::kMaxRowStride
        && reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
    return readable ? t : t.contiguous();
}

void setStrides(torch::Tensor const& t, int64_t& batch, int64_t& head, int64_t& row)
{
    batch = t.stride(0);
    head = t.stride(1);
    row = t.stride(2);
}

// The output is [B, S, H, D] memory seen as [B, H, S, D], the layout attention's output projection
// reads after its transpose, so that transpose and reshape copy nothing. `out` (optional) is
// written in place, so callers can poison it first. `stages` 0 lets the launcher choose the K/V
// pipeline for this GPU; 1 or 2 force one (mild::sma::Pipeline), for the tests.
torch::Tensor smaForward(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor mq, torch::Tensor mk,
    torch::Tensor alpha, c10::optional<torch::Tensor> out, int64_t stages)
{
    TORCH_CHECK(stages >= 0 && stages <= 2, "sma_forward: stages must be 0 (the GPU's choice), 1 or 2, not ", stages);
    TORCH_CHECK(q.is_cuda(), "sma_forward: tensors must be on a CUDA device");
    TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "sma_forward: q, k, v must be [B, H, S, D]");
    TORCH_CHECK(mq.dim() == 2 && mk.dim() == 2 && alpha.dim() == 3, "sma_forward: masks [B, S], alpha [H, 2, 2]");
    c10::cuda::CUDAGuard guard(q.device());
    auto const dtype = q.scalar_type();
    q = kernelLayout(q);
    k = kernelLayout(k.to(dtype));
    v = kernelLayout(v.to(dtype));
    mq = mq.to(dtype).contiguous();
    mk = mk.to(dtype).contiguous();
    alpha = alpha.to(dtype).contiguous();
    TORCH_CHECK(k.sizes() == v.sizes() && q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3),
        "sma_forward: q ", q.sizes(), " and k/v ", k.sizes(), " disagree");
    TORCH_CHECK(mq.size(0) == q.size(0) && mq.size(1) == q.size(2) && mk.size(0) == k.size(0)
            && mk.size(1) == k.size(2) && alpha.size(0) == q.size(1) && alpha.size(1) == 2 && alpha.size(2) == 2,
        "sma_forward: mask or alpha shape does not match q/k");
    torch::Tensor result = out.has_value()
        ? *out
        : torch::empty({q.size(0), q.size(2), q.size(1), q.size(3)}, q.options()).transpose(1, 2);
    TORCH_CHECK(result.sizes() == q.sizes() && result.scalar_type() == dtype && result.stride(3) == 1,
        "sma_forward: out must be shaped and typed like q, with adjacent channels");

    mild::sma::Params p = mild::sma::contiguousParams(kernelType(dtype), q.size(0), q.size(1), q.size(2), k.size(2),
        q.size(3));
    setStrides(q, p.q_batch_stride, p.q_head_stride, p.q_row_stride);
    setStrides(k, p.k_batch_stride, p.k_head_stride, p.k_row_stride);
    setStrides(v, p.v_batch_stride, p.v_head_stride, p.v_row_stride);
    setStrides(result, p.out_batch_stride, p.out_head_stride, p.out_row_stride);
    p.q = q.data_ptr();
    p.k = k.data_ptr();
    p.v = v.data_ptr();
    p.m_q = mq.data_ptr();
    p.m_k = mk.data_ptr();
    p.alpha = alpha.data_ptr();
    p.out = result.data_ptr();
    char const* problem = mild::sma::checkParams(p);
    TORCH_CHECK(problem == nullptr, problem);
    cudaError_t const status = mild::sma::launch(
        p, c10::cuda::getCurrentCUDAStream().stream(), static_cast<mild::sma::Pipeline>(stages));
    TORCH_CHECK(status == cudaSuccess, "sma_forward: launch failed: ", cudaGetErrorString(status));
    return result;
}

} // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("sma_forward", &smaForward, "Fused spatially-modulated attention (forward)", py::arg("q"), py::arg("k"),
        py::arg("v"), py::arg("m_q"), py::arg("m_k"), py::arg("alpha"), py::arg("out") = py::none(), py::arg("stages") = 0);
}

// The SMA kernel as a thin PyTorch extension, for the GPU tests and bench/ (not part of the
// plugin library). Built with torch.utils.cpp_extension.load over this file and sma_kernel.cu.
#include <cstdarg>
#include <cstdio>
#include <string>

#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include "sma_params.h"

namespace
{

// Every error leaves as TORCH_CHECK with one C string, formatted here. TORCH_CHECK with formatted
// arguments hands libc10 a std::string, and on the H200 machine's torch 2.11 (cu130, extension by
// g++ 13) that call segfaulted, where one C string raised a RuntimeError (2026-11-27,
// bench/RESULTS.md).
[[noreturn]] void fail(char const* format, ...)
{
    char message[512];
    va_list args;
    va_start(args, format);
    std::vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    TORCH_CHECK(false, static_cast<char const*>(message));
}

std::string shape(torch::Tensor const& t)
{
    char text[96];
    std::snprintf(text, sizeof(text), "[%lld, %lld, %lld, %lld]", static_cast<long long>(t.size(0)),
        static_cast<long long>(t.size(1)), static_cast<long long>(t.size(2)), static_cast<long long>(t.size(3)));
    return text;
}

void check(bool condition, char const* message)
{
    TORCH_CHECK(condition, message);
}

mild::sma::DataType kernelType(at::ScalarType type)
{
    switch (type)
    {
    case at::kFloat: return mild::sma::DataType::kFloat32;
    case at::kHalf: return mild::sma::DataType::kFloat16;
    case at::kBFloat16: return mild::sma::DataType::kBFloat16;
    default: fail("sma_forward: q must be float32, float16 or bfloat16, got %s", c10::toString(type));
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
// written in place, so callers can poison it first. `pipeline` is mild::sma::Pipeline: 0 lets the
// launcher choose for this GPU; 1 or 2 force the mma.sync kernel's K/V stages, 3 the wgmma kernel,
// for the tests and bench/.
torch::Tensor smaForward(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor mq, torch::Tensor mk,
    torch::Tensor alpha, c10::optional<torch::Tensor> out, int64_t pipeline)
{
    if (pipeline < 0 || pipeline > 3)
    {
        fail("sma_forward: pipeline must be 0 (the GPU's choice), 1 or 2 (K/V stages) or 3 (wgmma), not %lld",
            static_cast<long long>(pipeline));
    }
    check(q.is_cuda(), "sma_forward: tensors must be on a CUDA device");
    check(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "sma_forward: q, k, v must be [B, H, S, D]");
    check(mq.dim() == 2 && mk.dim() == 2 && alpha.dim() == 3, "sma_forward: masks [B, S], alpha [H, 2, 2]");
    c10::cuda::CUDAGuard guard(q.device());
    auto const dtype = q.scalar_type();
    q = kernelLayout(q);
    k = kernelLayout(k.to(dtype));
    v = kernelLayout(v.to(dtype));
    mq = mq.to(dtype).contiguous();
    mk = mk.to(dtype).contiguous();
    alpha = alpha.to(dtype).contiguous();
    if (k.sizes() != v.sizes() || q.size(0) != k.size(0) || q.size(1) != k.size(1) || q.size(3) != k.size(3))
    {
        fail("sma_forward: q %s and k/v %s disagree", shape(q).c_str(), shape(k).c_str());
    }
    check(mq.size(0) == q.size(0) && mq.size(1) == q.size(2) && mk.size(0) == k.size(0)
            && mk.size(1) == k.size(2) && alpha.size(0) == q.size(1) && alpha.size(1) == 2 && alpha.size(2) == 2,
        "sma_forward: mask or alpha shape does not match q/k");
    torch::Tensor result = out.has_value()
        ? *out
        : torch::empty({q.size(0), q.size(2), q.size(1), q.size(3)}, q.options()).transpose(1, 2);
    check(result.sizes() == q.sizes() && result.scalar_type() == dtype && result.stride(3) == 1,
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
    check(problem == nullptr, problem);
    auto const chosen = static_cast<mild::sma::Pipeline>(pipeline);
    check(chosen != mild::sma::Pipeline::kWarpgroup || mild::sma::warpgroupRuns(p),
        "sma_forward: pipeline 3 (wgmma) runs fp16/bf16 with head_dim <= 64 on an sm_90 GPU, from an extension "
        "compiled for sm_90a");
    cudaError_t const status = mild::sma::launch(p, c10::cuda::getCurrentCUDAStream().stream(), chosen);
    if (status != cudaSuccess)
    {
        fail("sma_forward: launch failed: %s", cudaGetErrorString(status));
    }
    return result;
}

bool wgmmaRuns(int64_t headDim, at::ScalarType dtype)
{
    mild::sma::Params p{};
    p.head_dim = static_cast<int32_t>(headDim);
    p.dtype = kernelType(dtype);
    return mild::sma::warpgroupRuns(p);
}

} // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("sma_forward", &smaForward, "Fused spatially-modulated attention (forward)", py::arg("q"), py::arg("k"),
        py::arg("v"), py::arg("m_q"), py::arg("m_k"), py::arg("alpha"), py::arg("out") = py::none(),
        py::arg("pipeline") = 0);
    m.def("wgmma_runs", &wgmmaRuns, "Whether pipeline 3 (wgmma) runs here for this head_dim and dtype",
        py::arg("head_dim"), py::arg("dtype"));
}

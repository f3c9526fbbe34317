// Hopper's wgmma SMA kernel at the launcher's tile shape, in a translation unit of its own: the
// builds compile it for sm_90a alone (CMake's mild_sma_sm90, the PyTorch extension on an sm_90
// GPU), where sma_kernel.cu is compiled for every architecture of the build.
#include "sma_kernel_sm90.cuh"
#include "static_switch.h"

namespace mild
{
namespace sma
{
namespace detail
{

cudaError_t launchWgmma(Params const& p, cudaStream_t stream)
{
    return MILD_HALF_TYPE_SWITCH(
        p.dtype, T, [&] { return launchWgmmaConfig<T, LauncherWgmmaConfig>(p, stream); });
}

} // namespace detail
} // namespace sma
} // namespace mild

// Tile-shape sweep of the SMA kernel (GPU): which MmaConfig runs a head-dim bucket fastest here.
//
// launchMma (plugins/sma/sma_kernel.cu) picks one tile shape per bucket; this program times the
// alternatives at the SDXL and SD1.5 shapes, each checked against the fp32 kernel on the same
// inputs (outputs poisoned first), so a shape is only worth taking if its row also says "ok". The
// first row of each shape is the launcher's own choice (mild::sma::launch). From the repository root:
//
//   nvcc -std=c++17 -O3 -arch=sm_90a -DMILD_SMA_SM90A -Iplugins/sma bench/sma_tile_sweep.cu \
//       plugins/sma/sma_kernel.cu plugins/sma/sma_kernel_sm90.cu -o /tmp/sma_tile_sweep && /tmp/sma_tile_sweep
//
// With sm_90a and MILD_SMA_SM90A (an H100/H200) it also times the wgmma kernel's tile shapes
// (sma_kernel_sm90.cuh), and the launcher's row is the wgmma kernel at D <= 64; on other GPUs build
// with their -arch and without the define.
//
// Columns: registers and spilled bytes a thread (ptxas), CTAs an SM can hold (occupancy API),
// median time of one launch over 3 x 20 launches, fp16 tensor rate, error relative to max|ref|. A
// second table closes a timed run: each shape's fastest right variant against the launcher's choice.
//
// Options narrow it for a profiler: `--shape B,H,S,D` that shape alone, `--only TEXT` the variants
// whose name holds TEXT, `--once` one untimed launch a variant (its parity still checked), so that
// `ncu -k regex:smaForward(Wgmma|Mma) sma_tile_sweep --once ...` profiles each variant once (the
// fp32 reference is smaForwardFp32).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "sma_kernel.cuh"
#include "sma_kernel_fp32.cuh"
#include "sma_kernel_sm90.cuh"
#include "sma_params.h"

namespace
{

using mild::sma::Params;

void check(cudaError_t status, char const* what)
{
    if (status != cudaSuccess)
    {
        std::fprintf(stderr, "sma_tile_sweep: %s: %s\n", what, cudaGetErrorString(status));
        std::exit(1);
    }
}

struct Shape
{
    int batch, heads, seqlen, headDim;
};

// One way to run the kernel; `launch` enqueues it on the default stream.
struct Variant
{
    std::string name;
    cudaError_t (*launch)(Params const&);
    int regs = 0, spill = 0, ctasPerSm = 0;
};

// `v` with its kernel's registers, spills and CTAs an SM (Cfg's threads and shared memory)
template <class Cfg, class Kernel>
Variant withResources(Variant v, Kernel kernel)
{
    cudaFuncAttributes attr{};
    check(cudaFuncGetAttributes(&attr, kernel), "cudaFuncGetAttributes");
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes),
        "cudaFuncSetAttribute");
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&v.ctasPerSm, kernel, Cfg::kThreads, Cfg::kSmemBytes),
        "occupancy");
    v.regs = attr.numRegs;
    v.spill = static_cast<int>(attr.localSizeBytes);
    return v;
}

template <class Cfg>
cudaError_t launchConfig(Params const& p)
{
    return mild::sma::detail::launchMmaConfig<__half, Cfg>(p, nullptr);
}

template <int kHeadDim, int kBlockN, int kMTiles, int kWarps, int kStages = 1, bool kBiasMma = false,
    bool kLazyMax = false>
Variant variant()
{
    using Cfg = mild::sma::detail::MmaConfig<kHeadDim, kBlockN, kMTiles, kWarps, kStages, kBiasMma, kLazyMax>;
    auto kernel = mild::sma::detail::smaForwardMma<__half, Cfg>;
    Variant v{"D" + std::to_string(kHeadDim) + " keys " + std::to_string(kBlockN) + ", rows/warp "
            + std::to_string(16 * kMTiles) + ", warps " + std::to_string(kWarps) + ", stages "
            + std::to_string(kStages) + (kBiasMma ? ", bias by mma" : "") + (kLazyMax ? ", lazy max" : ""),
        &launchConfig<Cfg>};
    return withResources<Cfg>(v, kernel);
}

#if defined(MILD_SMA_SM90A)
template <class Cfg>
cudaError_t launchWgmma(Params const& p)
{
    return mild::sma::detail::launchWgmmaConfig<__half, Cfg>(p, nullptr);
}

using mild::sma::detail::BiasBy;

std::string biasLabel(BiasBy bias)
{
    return bias == BiasBy::kMmaSync ? ", bias by mma.sync" : bias == BiasBy::kWgmma ? ", bias by wgmma" : "";
}

template <int kWarpGroups, int kBlockN, bool kOverlap = true, int kMinBlocks = 1, BiasBy kBias = BiasBy::kFfma,
    bool kSumMma = false, bool kLazyMax = false>
Variant wgmmaVariant()
{
    using Cfg = mild::sma::detail::WgmmaConfig<kWarpGroups, kBlockN, kOverlap, kMinBlocks, kBias, kSumMma, kLazyMax>;
    auto kernel = mild::sma::detail::smaForwardWgmma<__half, Cfg>;
    Variant v{"wgmma: keys " + std::to_string(kBlockN) + ", warpgroups " + std::to_string(kWarpGroups)
            + (kOverlap ? ", softmax beside P V" : ", in turns")
            + (kMinBlocks > 1 ? ", at least " + std::to_string(kMinBlocks) + " CTAs an SM" : "")
            + biasLabel(kBias) + (kSumMma ? ", row sums by mma.sync" : "") + (kLazyMax ? ", lazy max" : ""),
        &launchWgmma<Cfg>};
    return withResources<Cfg>(v, kernel);
}
#endif

bool isSm90()
{
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    return prop.major == 9 && prop.minor == 0; // sm_90a code runs on sm_90 only
}

// The launcher's choice, then the other tile shapes for this head dim and GPU.
std::vector<Variant> variantsFor(int headDim)
{
    std::vector<Variant> vs{{"launcher's choice (mild::sma::launch)",
        [](Params const& p) { return mild::sma::launch(p, nullptr); }}};
    if (headDim <= 64)
    {
        // the launcher's two mma.sync shapes with the bias by the tensor cores first, its two-stage one
        // with the lazy max
        for (Variant v : {variant<64, 64, 2, 4, 2, true>(), variant<64, 64, 2, 4, 1, true>(),
                 variant<64, 64, 2, 4, 2, false, true>(), variant<64, 64, 2, 4>(),
                 variant<64, 32, 2, 4>(), variant<64, 128, 2, 4>(),
                 variant<64, 64, 1, 4>(), variant<64, 128, 1, 4>(), variant<64, 64, 1, 8>(),
                 variant<64, 128, 1, 8>(), variant<64, 64, 2, 8>(), variant<64, 32, 2, 8>(),
                 variant<64, 64, 2, 4, 2>(), variant<64, 32, 2, 4, 2>(), variant<64, 128, 2, 4, 2>(),
                 variant<64, 64, 1, 4, 2>(), variant<64, 128, 1, 4, 2>(), variant<64, 64, 1, 8, 2>(),
                 variant<64, 64, 2, 8, 2>()})
        {
            vs.push_back(v);
        }
#if defined(MILD_SMA_SM90A)
        if (isSm90())
        {
            // the launcher's first (the softmax beside P V at two CTAs an SM: 128 registers, no
            // spills; at 128-key tiles that spills 728 bytes and serialises the wgmma: not swept),
            // then the same with the lazy max (alone and with the bias by wgmma), with the bias (by
            // mma.sync or by a fifth wgmma step), the row sums or both by the tensor cores, then the
            // shapes calls E-F measured within 10% of it
            constexpr BiasBy kSync = BiasBy::kMmaSync;
            constexpr BiasBy kStep = BiasBy::kWgmma;
            constexpr BiasBy kFfma = BiasBy::kFfma;
            for (Variant v : {wgmmaVariant<2, 64, true, 2>(), wgmmaVariant<2, 64, true, 2, kFfma, false, true>(),
                     wgmmaVariant<2, 64, true, 2, kStep, false, true>(), wgmmaVariant<2, 64, true, 2, kSync>(),
                     wgmmaVariant<2, 64, true, 2, kStep>(), wgmmaVariant<2, 64, true, 2, kFfma, true>(),
                     wgmmaVariant<2, 64, true, 2, kSync, true>(), wgmmaVariant<2, 64, true, 2, kStep, true>(),
                     wgmmaVariant<2, 64, false, 1, kSync>(), wgmmaVariant<2, 64, false, 1, kStep>(),
                     wgmmaVariant<2, 64, false, 1, kSync, true>(), wgmmaVariant<2, 64, false, 1, kStep, true>(),
                     wgmmaVariant<2, 128, true, 1, kSync, true>(), wgmmaVariant<2, 128, true, 1, kStep, true>(),
                     wgmmaVariant<2, 64, false>(), wgmmaVariant<2, 128>(), wgmmaVariant<3, 128, false>(),
                     wgmmaVariant<4, 64, false>(), wgmmaVariant<1, 64, true>()})
            {
                vs.push_back(v);
            }
        }
#endif
    }
    else
    {
        for (Variant v : {variant<96, 64, 2, 4, 2, true>(), variant<96, 64, 2, 4, 1, true>(),
                 variant<96, 64, 2, 4, 2, false, true>(), variant<96, 64, 2, 4>(),
                 variant<96, 32, 2, 4>(), variant<96, 64, 1, 4>(),
                 variant<96, 64, 1, 8>(), variant<96, 32, 2, 8>(), variant<96, 64, 2, 4, 2>(),
                 variant<96, 32, 2, 4, 2>(), variant<96, 64, 1, 4, 2>()})
        {
            vs.push_back(v);
        }
    }
    return vs;
}

template <typename T>
T* upload(std::vector<T> const& host)
{
    T* device = nullptr;
    check(cudaMalloc(&device, host.size() * sizeof(T)), "cudaMalloc");
    check(cudaMemcpy(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
    return device;
}

// Inputs of one shape in fp16 and the same values in fp32, the reference's output, an fp16 output
// (device buffers live until the program exits). Soft masks (uniform in [0, 1)): every bias value
// beta(m_i) * m_j differs, which binary masks would not test.
struct Problem
{
    Params half{}, single{};
    std::vector<float> reference;
    __half* out = nullptr;
    size_t outCount = 0;

    explicit Problem(Shape const& s)
    {
        std::mt19937 rng(1234);
        std::normal_distribution<float> normal;
        std::uniform_real_distribution<float> uniform;
        size_t const qkv = static_cast<size_t>(s.batch) * s.heads * s.seqlen * s.headDim;
        size_t const masks = static_cast<size_t>(s.batch) * s.seqlen;
        std::vector<__half> hq(qkv), hk(qkv), hv(qkv), hm(masks), ha(4 * s.heads);
        for (auto* t : {&hq, &hk, &hv})
        {
            for (auto& x : *t)
            {
                x = __float2half(normal(rng));
            }
        }
        for (auto& x : hm)
        {
            x = __float2half(uniform(rng));
        }
        for (auto& x : ha)
        {
            x = __float2half(2.f * normal(rng));
        }
        auto widen = [](std::vector<__half> const& h)
        {
            std::vector<float> f(h.size());
            std::transform(h.begin(), h.end(), f.begin(), [](__half x) { return __half2float(x); });
            return f;
        };
        half = mild::sma::contiguousParams(
            mild::sma::DataType::kFloat16, s.batch, s.heads, s.seqlen, s.seqlen, s.headDim);
        single = mild::sma::contiguousParams(
            mild::sma::DataType::kFloat32, s.batch, s.heads, s.seqlen, s.seqlen, s.headDim);
        half.q = upload(hq);
        half.k = upload(hk);
        half.v = upload(hv);
        half.m_q = half.m_k = upload(hm);
        half.alpha = upload(ha);
        single.q = upload(widen(hq));
        single.k = upload(widen(hk));
        single.v = upload(widen(hv));
        single.m_q = single.m_k = upload(widen(hm));
        single.alpha = upload(widen(ha));
        outCount = qkv;
        check(cudaMalloc(&out, qkv * sizeof(__half)), "cudaMalloc out");
        half.out = out;
        float* refOut = nullptr;
        check(cudaMalloc(&refOut, qkv * sizeof(float)), "cudaMalloc reference");
        single.out = refOut;
        check(mild::sma::launch(single, nullptr), "fp32 reference launch");
        reference.resize(qkv);
        check(cudaMemcpy(reference.data(), refOut, qkv * sizeof(float), cudaMemcpyDeviceToHost), "download");
        check(cudaFree(refOut), "cudaFree");
    }

    // max |out - reference| / max |reference| after one launch into a NaN-poisoned output
    double error(Variant const& v) const
    {
        check(cudaMemset(out, 0xFF, outCount * sizeof(__half)), "poison");
        check(v.launch(half), v.name.c_str());
        std::vector<__half> got(outCount);
        check(cudaMemcpy(got.data(), out, outCount * sizeof(__half), cudaMemcpyDeviceToHost), "download");
        double worst = 0.0, scale = 0.0;
        for (size_t i = 0; i < outCount; ++i)
        {
            double const diff = std::fabs(static_cast<double>(__half2float(got[i])) - reference[i]);
            worst = std::isnan(diff) ? INFINITY : std::max(worst, diff);
            scale = std::max(scale, std::fabs(static_cast<double>(reference[i])));
        }
        return worst / scale;
    }

    double milliseconds(Variant const& v) const
    {
        cudaEvent_t start, stop;
        check(cudaEventCreate(&start), "event");
        check(cudaEventCreate(&stop), "event");
        std::vector<float> runs;
        for (int repeat = 0; repeat < 3; ++repeat)
        {
            check(v.launch(half), "warm-up");
            check(cudaEventRecord(start), "record");
            for (int i = 0; i < 20; ++i)
            {
                v.launch(half);
            }
            check(cudaEventRecord(stop), "record");
            check(cudaEventSynchronize(stop), v.name.c_str());
            float ms = 0.f;
            check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
            runs.push_back(ms / 20);
        }
        std::sort(runs.begin(), runs.end());
        return runs[1];
    }
};

// The SDXL shapes (S = 256, 1024, 4096 at D = 64) and SD1.5's head dims, a query and key tail first
// (300 = 2 x 128 + 44 = 4 x 64 + 44): parity where the tiles end.
std::vector<Shape> const kShapes{{3, 4, 300, 64}, {3, 20, 256, 64}, {3, 10, 256, 64}, {6, 20, 256, 64},
    {3, 10, 4096, 64}, {6, 10, 4096, 64}, {3, 20, 1024, 64}, {6, 20, 1024, 64}, {3, 8, 4096, 40}, {3, 8, 1024, 80}};

struct Options
{
    std::vector<Shape> shapes = kShapes;
    std::string only; // variants whose name holds this; empty: all
    bool once = false;
};

[[noreturn]] void usage(std::string const& problem)
{
    std::fprintf(stderr,
        "sma_tile_sweep: %s\nusage: sma_tile_sweep [--shape B,H,S,D] [--only TEXT] [--once]\n"
        "  e.g. --shape 3,10,4096,64 --only 'bias by wgmma' --once\n",
        problem.c_str());
    std::exit(2);
}

Shape parseShape(std::string const& text)
{
    Shape s{};
    char c1 = 0, c2 = 0, c3 = 0;
    std::istringstream in(text);
    if (!(in >> s.batch >> c1 >> s.heads >> c2 >> s.seqlen >> c3 >> s.headDim) || c1 != ',' || c2 != ','
        || c3 != ',' || !in.eof() || s.batch < 1 || s.heads < 1 || s.seqlen < 1 || s.headDim < 8 || s.headDim > 96
        || s.headDim % 8 != 0)
    {
        // the sweep's tile shapes are the 64 and 96 buckets' (variantsFor)
        usage("--shape '" + text + "' must be four positive integers B,H,S,D with D a multiple of 8 up to 96");
    }
    return s;
}

Options parse(int argc, char** argv)
{
    Options o;
    for (int i = 1; i < argc; ++i)
    {
        std::string const arg = argv[i];
        bool const hasValue = i + 1 < argc;
        if (arg == "--once")
        {
            o.once = true;
        }
        else if (arg == "--shape" && hasValue)
        {
            o.shapes = {parseShape(argv[++i])};
        }
        else if (arg == "--only" && hasValue)
        {
            o.only = argv[++i];
        }
        else
        {
            usage("unknown or incomplete option '" + arg + "'");
        }
    }
    return o;
}

// "ms | TFLOP/s" of one launch taking `ms`
std::string timing(double ms, double flops)
{
    char cell[64];
    std::snprintf(cell, sizeof cell, "%.3f | %.0f", ms, flops / ms / 1e9);
    return cell;
}

// A shape's fastest right variant beside the launcher's choice: what a session reads first to
// decide whether a launcher config should change.
struct Fastest
{
    Shape shape;
    std::string name;
    double ms = INFINITY;
    double launcherMs = NAN;
};

void printFastest(std::vector<Fastest> const& rows)
{
    std::printf("\n| B H S D | fastest right variant | ms | launcher's ms | launcher / fastest |\n");
    std::printf("| --- | --- | --- | --- | --- |\n");
    for (Fastest const& f : rows)
    {
        std::printf("| %d %d %d %d | %s | %.3f | %.3f | %.2f |\n", f.shape.batch, f.shape.heads, f.shape.seqlen,
            f.shape.headDim, f.name.c_str(), f.ms, f.launcherMs, f.launcherMs / f.ms);
    }
}

} // namespace

int main(int argc, char** argv)
{
    Options const options = parse(argc, argv);
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    std::printf("# SMA tile sweep on %s (sm_%d%d, %d SMs), fp16, soft masks\n\n", prop.name, prop.major,
        prop.minor, prop.multiProcessorCount);
    std::printf("| B H S D | tile shape | regs | spill B | CTAs/SM | ms | TFLOP/s | err/max|ref| | ok |\n");
    std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    std::vector<Fastest> fastest;
    for (Shape const& s : options.shapes)
    {
        Problem const problem(s);
        double const flops = 4.0 * s.batch * s.heads * static_cast<double>(s.seqlen) * s.seqlen * s.headDim;
        std::vector<Variant> const variants = variantsFor(s.headDim); // the launcher's choice first
        Fastest best{s};
        for (size_t i = 0; i < variants.size(); ++i)
        {
            Variant const& v = variants[i];
            if (v.name.find(options.only) == std::string::npos)
            {
                continue;
            }
            double const err = problem.error(v);
            bool const right = err < 5e-3;
            double const ms = options.once ? NAN : problem.milliseconds(v);
            best.launcherMs = i == 0 ? ms : best.launcherMs;
            if (right && ms < best.ms)
            {
                best.name = v.name;
                best.ms = ms;
            }
            std::string const timed = options.once ? "- | -" : timing(ms, flops);
            std::string const resources = v.regs == 0 ? "- | - | -"
                                                      : std::to_string(v.regs) + " | " + std::to_string(v.spill)
                    + " | " + std::to_string(v.ctasPerSm);
            std::printf("| %d %d %d %d | %s | %s | %s | %.1e | %s |\n", s.batch, s.heads, s.seqlen, s.headDim,
                v.name.c_str(), resources.c_str(), timed.c_str(), err, right ? "ok" : "WRONG");
            std::fflush(stdout);
        }
        fastest.push_back(best);
    }
    if (!options.once)
    {
        printFastest(fastest);
    }
    return 0;
}

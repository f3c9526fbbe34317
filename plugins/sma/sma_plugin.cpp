// SpatiallyModulatedAttention as a TensorRT IPluginV3 (core, build, runtime) with its creator.
//
// Errors: every noexcept override catches everything. A failed check throws PluginError, which is
// written to stderr with the layer name and returned to TensorRT as a failure status. The plugin
// never calls ILogger or IPluginRegistry methods: their virtual tables differ between the
// TensorRT 10.14 headers this builds against and TensorRT for RTX (DESIGN.md section 7).
#include "sma_plugin.h"

#include <cstdio>
#include <exception>
#include <sstream>
#include <stdexcept>

#include "sma_params.h"

using namespace nvinfer1;

namespace mild
{
namespace plugin
{
namespace
{

char const* const kInputNames[SmaPlugin::kNbInputs] = {"q", "k", "v", "m_q", "m_k", "alpha"};
char const* const kInputLayouts[SmaPlugin::kNbInputs]
    = {"[B, H, Sq, D]", "[B, H, Sk, D]", "[B, H, Sk, D]", "[B, Sq]", "[B, Sk]", "[H, 2, 2]"};
int32_t const kInputRanks[SmaPlugin::kNbInputs] = {4, 4, 4, 2, 2, 3};
enum Input : int32_t
{
    kQ = 0,
    kK = 1,
    kV = 2,
    kMaskQ = 3,
    kMaskK = 4,
    kAlpha = 5
};

class PluginError : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

char const* typeName(DataType type)
{
    switch (type)
    {
    case DataType::kFLOAT: return "FLOAT";
    case DataType::kHALF: return "HALF";
    case DataType::kBF16: return "BF16";
    case DataType::kINT8: return "INT8";
    case DataType::kINT32: return "INT32";
    case DataType::kINT64: return "INT64";
    case DataType::kBOOL: return "BOOL";
    case DataType::kUINT8: return "UINT8";
    case DataType::kFP8: return "FP8";
    default: return "an unsupported type";
    }
}

bool supportedType(DataType type)
{
    return type == DataType::kFLOAT || type == DataType::kHALF || type == DataType::kBF16;
}

std::string input(int32_t i)
{
    return "input " + std::to_string(i) + " (" + kInputNames[i] + ")";
}

void report(std::string const& layer, char const* where, char const* what) noexcept
{
    std::fprintf(stderr, "[mild_plugins] ERROR: %s layer '%s' (%s): %s\n", MILD_SMA_PLUGIN_NAME, layer.c_str(), where,
        what);
    std::fflush(stderr);
}

// Runs `body`, turning any exception into a report and `failure`.
template <typename R, typename F>
R guarded(std::string const& layer, char const* where, R failure, F&& body) noexcept
{
    try
    {
        return body();
    }
    catch (std::exception const& e)
    {
        report(layer, where, e.what());
    }
    catch (...)
    {
        report(layer, where, "unknown exception");
    }
    return failure;
}

void checkCount(char const* what, int32_t got, int32_t want)
{
    if (got != want)
    {
        std::ostringstream msg;
        msg << "expects " << want << " " << what << ", got " << got;
        throw PluginError(msg.str());
    }
}

void checkRanks(Dims const* const* dims)
{
    for (int32_t i = 0; i < SmaPlugin::kNbInputs; ++i)
    {
        if (dims[i]->nbDims != kInputRanks[i])
        {
            std::ostringstream msg;
            msg << input(i) << " must have rank " << kInputRanks[i] << " " << kInputLayouts[i] << ", got rank "
                << dims[i]->nbDims;
            throw PluginError(msg.str());
        }
    }
}

// Two extents that must agree; -1 (dynamic at build time) agrees with anything.
void checkSame(Dims const* const* dims, int32_t i, int32_t di, int32_t j, int32_t dj, char const* meaning)
{
    int64_t const a = dims[i]->d[di];
    int64_t const b = dims[j]->d[dj];
    if (a >= 0 && b >= 0 && a != b)
    {
        std::ostringstream msg;
        msg << meaning << " differs: " << input(i) << " dim " << di << " is " << a << " but " << input(j) << " dim "
            << dj << " is " << b;
        throw PluginError(msg.str());
    }
}

// Shape rules of the op (sma_schema.json): ranks, shared B/H/S/D, alpha [H, 2, 2], D a multiple of 8 <= 256.
void checkShapes(Dims const* const* dims)
{
    checkRanks(dims);
    for (int32_t i : {kK, kV, kMaskQ, kMaskK})
    {
        checkSame(dims, kQ, 0, i, 0, "batch size B");
    }
    checkSame(dims, kQ, 1, kK, 1, "head count H");
    checkSame(dims, kQ, 1, kV, 1, "head count H");
    checkSame(dims, kQ, 1, kAlpha, 0, "head count H");
    checkSame(dims, kQ, 2, kMaskQ, 1, "query length Sq");
    checkSame(dims, kK, 2, kV, 2, "key length Sk");
    checkSame(dims, kK, 2, kMaskK, 1, "key length Sk");
    checkSame(dims, kQ, 3, kK, 3, "head dim D");
    checkSame(dims, kQ, 3, kV, 3, "head dim D");
    for (int32_t d : {1, 2})
    {
        int64_t const extent = dims[kAlpha]->d[d];
        if (extent >= 0 && extent != 2)
        {
            throw PluginError(input(kAlpha) + " must be [H, 2, 2], dim " + std::to_string(d) + " is "
                + std::to_string(extent));
        }
    }
    int64_t const headDim = dims[kQ]->d[3];
    if (headDim < 0)
    {
        throw PluginError(input(kQ) + " head dim D must be known at build time, got a dynamic extent");
    }
    if (headDim % 8 != 0 || headDim > sma::kMaxHeadDim || headDim == 0)
    {
        throw PluginError("head dim D = " + std::to_string(headDim) + " of " + input(kQ)
            + " is not supported: it must be a multiple of 8 between 8 and 256");
    }
}

void checkTypes(DataType const* types, int32_t nbInputs)
{
    checkCount("inputs", nbInputs, SmaPlugin::kNbInputs);
    if (!supportedType(types[kQ]))
    {
        throw PluginError(input(kQ) + " has type " + typeName(types[kQ])
            + "; SpatiallyModulatedAttention supports FLOAT, HALF and BF16");
    }
    for (int32_t i = 1; i < SmaPlugin::kNbInputs; ++i)
    {
        if (types[i] != types[kQ])
        {
            throw PluginError(input(i) + " has type " + typeName(types[i]) + " but q has " + typeName(types[kQ])
                + "; all inputs share q's type (the ONNX op's type constraint T)");
        }
    }
}

sma::DataType kernelType(DataType type)
{
    switch (type)
    {
    case DataType::kFLOAT: return sma::DataType::kFloat32;
    case DataType::kHALF: return sma::DataType::kFloat16;
    case DataType::kBF16: return sma::DataType::kBFloat16;
    default: throw PluginError(std::string("no kernel for type ") + typeName(type));
    }
}

template <typename Desc>
void checkDescs(Desc const* in, int32_t nbInputs, int32_t nbOutputs, Dims const& (*dimsOf)(Desc const&),
    DataType (*typeOf)(Desc const&))
{
    checkCount("inputs", nbInputs, SmaPlugin::kNbInputs);
    checkCount("outputs", nbOutputs, 1);
    Dims const* dims[SmaPlugin::kNbInputs];
    DataType types[SmaPlugin::kNbInputs];
    for (int32_t i = 0; i < SmaPlugin::kNbInputs; ++i)
    {
        dims[i] = &dimsOf(in[i]);
        types[i] = typeOf(in[i]);
    }
    checkTypes(types, nbInputs);
    checkShapes(dims);
}

Dims const& dynDims(DynamicPluginTensorDesc const& d)
{
    return d.desc.dims;
}
DataType dynType(DynamicPluginTensorDesc const& d)
{
    return d.desc.type;
}
Dims const& staticDims(PluginTensorDesc const& d)
{
    return d.dims;
}
DataType staticType(PluginTensorDesc const& d)
{
    return d.type;
}

} // namespace

SmaPlugin::SmaPlugin(std::string layerName)
    : mLayerName(std::move(layerName))
{
}

IPluginCapability* SmaPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* SmaPlugin::clone() noexcept
{
    return guarded<IPluginV3*>(mLayerName, "clone", nullptr, [&] { return new SmaPlugin(*this); });
}

char const* SmaPlugin::getPluginName() const noexcept
{
    return MILD_SMA_PLUGIN_NAME;
}

char const* SmaPlugin::getPluginVersion() const noexcept
{
    return MILD_SMA_PLUGIN_VERSION;
}

char const* SmaPlugin::getPluginNamespace() const noexcept
{
    return MILD_SMA_PLUGIN_NAMESPACE;
}

int32_t SmaPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t SmaPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    return guarded<int32_t>(mLayerName, "getOutputDataTypes", -1, [&] {
        checkCount("outputs", nbOutputs, 1);
        checkTypes(inputTypes, nbInputs);
        outputTypes[0] = inputTypes[kQ];
        return 0;
    });
}

int32_t SmaPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& /*exprBuilder*/) noexcept
{
    return guarded<int32_t>(mLayerName, "getOutputShapes", -1, [&] {
        checkCount("inputs", nbInputs, kNbInputs);
        checkCount("outputs", nbOutputs, 1);
        for (int32_t i = 0; i < kNbInputs; ++i)
        {
            if (inputs[i].nbDims != kInputRanks[i])
            {
                throw PluginError(input(i) + " must have rank " + std::to_string(kInputRanks[i]) + " "
                    + kInputLayouts[i] + ", got rank " + std::to_string(inputs[i].nbDims));
            }
        }
        outputs[0] = inputs[kQ]; // out: [B, H, Sq, D]
        return 0;
    });
}

bool SmaPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    // Called for candidate combinations, so a `false` here is not an error: type errors are
    // reported by getOutputDataTypes, which sees the network's real types.
    return guarded<bool>(mLayerName, "supportsFormatCombination", false, [&] {
        checkCount("inputs", nbInputs, kNbInputs);
        checkCount("outputs", nbOutputs, 1);
        PluginTensorDesc const& desc = inOut[pos].desc;
        if (desc.format != TensorFormat::kLINEAR)
        {
            return false;
        }
        return pos == 0 ? supportedType(desc.type) : desc.type == inOut[0].desc.type;
    });
}

int32_t SmaPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    return guarded<int32_t>(mLayerName, "configurePlugin", -1, [&] {
        checkDescs<DynamicPluginTensorDesc>(in, nbInputs, nbOutputs, dynDims, dynType);
        return 0;
    });
}

size_t SmaPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    return 0;
}

int32_t SmaPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    return guarded<int32_t>(mLayerName, "onShapeChange", -1, [&] {
        checkDescs<PluginTensorDesc>(in, nbInputs, nbOutputs, staticDims, staticType);
        return 0;
    });
}

int32_t SmaPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    return guarded<int32_t>(mLayerName, "enqueue", -1, [&] {
        Dims const& q = inputDesc[kQ].dims;
        Dims const& k = inputDesc[kK].dims;
        sma::Params p = sma::contiguousParams(kernelType(inputDesc[kQ].type), static_cast<int32_t>(q.d[0]),
            static_cast<int32_t>(q.d[1]), static_cast<int32_t>(q.d[2]), static_cast<int32_t>(k.d[2]),
            static_cast<int32_t>(q.d[3]));
        p.q = inputs[kQ];
        p.k = inputs[kK];
        p.v = inputs[kV];
        p.m_q = inputs[kMaskQ];
        p.m_k = inputs[kMaskK];
        p.alpha = inputs[kAlpha];
        p.out = outputs[0];
        if (char const* problem = sma::checkParams(p))
        {
            throw PluginError(problem);
        }
        cudaError_t const status = sma::launch(p, stream);
        if (status != cudaSuccess)
        {
            throw PluginError(std::string("kernel launch failed: ") + cudaGetErrorString(status));
        }
        return 0;
    });
}

IPluginV3* SmaPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* SmaPlugin::getFieldsToSerialize() noexcept
{
    return &mNoFields; // the op has no attributes: alpha is an input
}

IPluginV3* SmaPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* /*fc*/, TensorRTPhase /*phase*/) noexcept
{
    // Fields are ignored: the op has no attributes (an ONNX node's extra ones are harmless).
    std::string const layer = name != nullptr ? name : "";
    return guarded<IPluginV3*>(layer, "createPlugin", nullptr, [&] { return new SmaPlugin(layer); });
}

PluginFieldCollection const* SmaPluginCreator::getFieldNames() noexcept
{
    return &mNoFields;
}

char const* SmaPluginCreator::getPluginName() const noexcept
{
    return MILD_SMA_PLUGIN_NAME;
}

char const* SmaPluginCreator::getPluginVersion() const noexcept
{
    return MILD_SMA_PLUGIN_VERSION;
}

char const* SmaPluginCreator::getPluginNamespace() const noexcept
{
    return MILD_SMA_PLUGIN_NAMESPACE;
}

} // namespace plugin
} // namespace mild

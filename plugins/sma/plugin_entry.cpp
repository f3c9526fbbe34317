// The library's only two exported symbols, the form TensorRT's load_library looks for.
// No REGISTER_TENSORRT_PLUGIN and no registry calls (DESIGN.md section 7).
#include <NvInferRuntime.h>

#include "sma_plugin.h"

#define MILD_PLUGIN_EXPORT __attribute__((visibility("default")))

namespace
{
// Kept for the interface only: calling findLogger() or an ILogger built by TensorRT for RTX through
// the 10.14 headers would use the wrong virtual-table slots.
nvinfer1::ILoggerFinder* gLoggerFinder = nullptr;
} // namespace

extern "C" MILD_PLUGIN_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    gLoggerFinder = finder;
}

extern "C" MILD_PLUGIN_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static mild::plugin::SmaPluginCreator smaCreator;
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&smaCreator};
    nbCreators = static_cast<int32_t>(sizeof(creators) / sizeof(creators[0]));
    return creators;
}

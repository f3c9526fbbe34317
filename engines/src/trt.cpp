#include "trt.hpp"

#include "error.hpp"

#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <dlfcn.h>
#include <fstream>
#include <iterator>
#include <sstream>

namespace mild::detail {

namespace {

#if defined(TRT_MAJOR_RTX)
constexpr bool kHeadersRtx = true;
constexpr int kHeadersMajor = TRT_MAJOR_RTX, kHeadersMinor = TRT_MINOR_RTX, kHeadersPatch = TRT_PATCH_RTX;
#else
constexpr bool kHeadersRtx = false;
constexpr int kHeadersMajor = NV_TENSORRT_MAJOR, kHeadersMinor = NV_TENSORRT_MINOR, kHeadersPatch = NV_TENSORRT_PATCH;
#endif

std::string version_text(bool rtx, int major, int minor, int patch) {
    std::ostringstream s;
    s << (rtx ? "TensorRT-RTX " : "TensorRT ") << major << "." << minor << "." << patch;
    return s.str();
}

std::string library_file() {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&getInferLibVersion), &info) != 0 && info.dli_fname != nullptr) {
        return info.dli_fname;
    }
    return "";
}

}  // namespace

TensorRTVersions tensorrt_versions() {
    TensorRTVersions v;
    v.headers = version_text(kHeadersRtx, kHeadersMajor, kHeadersMinor, kHeadersPatch);
    const std::string file = library_file();
    const std::string base = file.substr(file.find_last_of('/') + 1);
    // the file name tells the kinds apart (libtensorrt_rtx.so.1 vs libnvinfer.so.10); RTX majors
    // are small (1.x) and full TensorRT's are 8 or more, which decides when dladdr cannot tell
    const int major = getInferLibMajorVersion();
    const bool rtx = base.empty() ? major < 5 : base.find("rtx") != std::string::npos;
    v.library = version_text(rtx, major, getInferLibMinorVersion(), getInferLibPatchVersion()) +
                (file.empty() ? "" : " (" + file + ")");
    v.compatible = rtx == kHeadersRtx && major == kHeadersMajor;
    return v;
}

void check_tensorrt() {
    TensorRTVersions v = tensorrt_versions();
    if (!v.compatible) {
        fail(MILD_ERROR_TENSORRT_MISMATCH, "libmild_runtime was compiled against ", v.headers,
             " headers but this process runs ", v.library,
             ": their ILogger ABIs differ (DESIGN.md section 7), so no TensorRT runtime is created. "
             "Rebuild engines/ with -DMILD_RUNTIME_TENSORRT_INCLUDE_DIR=<include folder of the TensorRT "
             "you run> (and the matching MILD_RUNTIME_TENSORRT_RTX setting)");
    }
}

// The ILogger of the TensorRT the headers describe: forwards to the user's callback and keeps the
// errors of the current operation for the status message.
class Logger : public nvinfer1::ILogger {
public:
    Logger(mild_log_fn fn, void* user, mild_log_level level) : fn_(fn), user_(user), level_(level) {}

    void log(Severity severity, const char* msg) noexcept override {
        try {
            mild_log_level level = MILD_LOG_VERBOSE;
            switch (severity) {
                case Severity::kINTERNAL_ERROR:
                case Severity::kERROR: level = MILD_LOG_ERROR; break;
                case Severity::kWARNING: level = MILD_LOG_WARNING; break;
                case Severity::kINFO: level = MILD_LOG_INFO; break;
                default: break;
            }
            if (level == MILD_LOG_ERROR) {
                std::lock_guard<std::mutex> lock(mutex_);
                if (!errors_.empty()) errors_ += "; ";
                errors_ += msg;
            }
            if (fn_ != nullptr && level <= level_) fn_(level, msg, user_);
        } catch (...) {  // nothing may escape into TensorRT
        }
    }

    std::string take_errors() {
        std::lock_guard<std::mutex> lock(mutex_);
        std::string out;
        out.swap(errors_);
        return out;
    }

private:
    mild_log_fn fn_;
    void* user_;
    mild_log_level level_;
    std::mutex mutex_;
    std::string errors_;
};

Runtime::Runtime(mild_log_fn log, void* user, mild_log_level level, const std::string& plugin_library) {
    check_tensorrt();
    logger_ = std::make_unique<Logger>(log, user, level);
    runtime_.reset(nvinfer1::createInferRuntime(*logger_));
    if (runtime_ == nullptr) {
        fail(MILD_ERROR_ENGINE, "TensorRT could not create a runtime: ", logger_->take_errors());
    }
    // mild-export embeds the plugin library in the engines (plugins_to_serialize): an engine with
    // host code deserialises only where that is allowed (as the Python backend allows it). The
    // manifest's hash check is what vouches for the file.
    runtime_->setEngineHostCodeAllowed(true);
    if (!plugin_library.empty()) {
        // dlopen first for a readable error (missing file, unresolved symbol); TensorRT then takes
        // its creators through getCreators
        plugin_handle_.reset(dlopen(plugin_library.c_str(), RTLD_NOW | RTLD_LOCAL));
        if (plugin_handle_ == nullptr) {
            const char* why = dlerror();
            fail(MILD_ERROR_ENGINE, "the plugin library ", plugin_library, " did not load (", why ? why : "?",
                 "): build it (cmake --build build, target mild_plugins) and pass its path as "
                 "params->plugin_library");
        }
        if (runtime_->getPluginRegistry().loadLibrary(plugin_library.c_str()) == nullptr) {
            fail(MILD_ERROR_ENGINE, "TensorRT did not accept the plugin library ", plugin_library, ": ", logger_->take_errors());
        }
    }
}

Runtime::~Runtime() = default;

void Runtime::LibraryCloser::operator()(void* handle) const {
    dlclose(handle);
}

std::unique_ptr<Engine> Runtime::load(const std::string& name, const std::string& path, const std::string& built_with) {
    std::ifstream file(path, std::ios::binary);
    if (!file) fail(MILD_ERROR_MANIFEST, "engine ", path, " cannot be opened");
    std::vector<char> blob((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    logger_->take_errors();
    std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (engine == nullptr) {
        std::string errors = logger_->take_errors();
        fail(MILD_ERROR_ENGINE, "engine ", path, " did not deserialise with ", tensorrt_versions().library,
             built_with.empty() ? "" : " (the manifest says it was built with " + built_with + ")",
             errors.empty() ? "" : ": " + errors,
             ". An engine runs only on the GPU kind and TensorRT version it was built for: build the "
             "engines again on this machine");
    }
    std::unique_ptr<nvinfer1::IExecutionContext> context(engine->createExecutionContext());
    if (context == nullptr) {
        fail(MILD_ERROR_OUT_OF_MEMORY, "engine ", path, ": no execution context (", logger_->take_errors(), ")");
    }
    return std::make_unique<Engine>(name, std::move(engine), std::move(context));
}

Engine::Engine(std::string name, std::unique_ptr<nvinfer1::ICudaEngine> engine,
               std::unique_ptr<nvinfer1::IExecutionContext> context)
    : name_(std::move(name)), engine_(std::move(engine)), context_(std::move(context)) {}

Engine::~Engine() = default;

bool Engine::has_tensor(const std::string& tensor) const {
    for (int i = 0; i < engine_->getNbIOTensors(); ++i) {
        if (tensor == engine_->getIOTensorName(i)) return true;
    }
    return false;
}

DType Engine::dtype(const std::string& tensor) const {
    if (!has_tensor(tensor)) fail(MILD_ERROR_ENGINE, "engine ", name_, " has no tensor ", tensor);
    switch (engine_->getTensorDataType(tensor.c_str())) {
        case nvinfer1::DataType::kFLOAT: return DType::F32;
        case nvinfer1::DataType::kHALF: return DType::F16;
        case nvinfer1::DataType::kBF16: return DType::BF16;
        case nvinfer1::DataType::kINT32: return DType::I32;
        case nvinfer1::DataType::kINT64: return DType::I64;
        default: fail(MILD_ERROR_ENGINE, "engine ", name_, ": tensor ", tensor, " has a type this runtime does not handle");
    }
}

int64_t Engine::profile_max(const std::string& input, int axis) const {
    nvinfer1::Dims d = engine_->getProfileShape(input.c_str(), 0, nvinfer1::OptProfileSelector::kMAX);
    if (axis >= d.nbDims) fail(MILD_ERROR_ENGINE, "engine ", name_, ": input ", input, " has no axis ", axis);
    return d.d[axis];
}

void Engine::set_input(const std::string& tensor, const std::vector<int64_t>& shape, const void* data) {
    nvinfer1::Dims d{};
    d.nbDims = static_cast<int32_t>(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) d.d[i] = shape[i];
    if (!context_->setInputShape(tensor.c_str(), d)) {
        std::ostringstream s;
        for (size_t i = 0; i < shape.size(); ++i) s << (i ? "x" : "") << shape[i];
        fail(MILD_ERROR_UNSUPPORTED_SHAPE, "engine ", name_, " rejects input ", tensor, " of shape ", s.str(),
             ": it is outside the engine's optimisation profile");
    }
    if (!context_->setTensorAddress(tensor.c_str(), const_cast<void*>(data))) {
        fail(MILD_ERROR_ENGINE, "engine ", name_, " rejects the address of ", tensor);
    }
}

std::vector<int64_t> Engine::output_shape(const std::string& tensor) const {
    nvinfer1::Dims d = context_->getTensorShape(tensor.c_str());
    if (d.nbDims < 0) fail(MILD_ERROR_ENGINE, "engine ", name_, ": output ", tensor, " has no shape");
    return std::vector<int64_t>(d.d, d.d + d.nbDims);
}

void Engine::set_output(const std::string& tensor, void* data) {
    if (!context_->setTensorAddress(tensor.c_str(), data)) {
        fail(MILD_ERROR_ENGINE, "engine ", name_, " rejects the address of ", tensor);
    }
}

void Engine::enqueue(cudaStream_t stream) {
    if (!context_->enqueueV3(stream)) fail(MILD_ERROR_CUDA, "engine ", name_, ": enqueueV3 failed");
}

}  // namespace mild::detail

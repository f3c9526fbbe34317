// TensorRT behind a few calls: the version check that guards the ILogger ABI, the runtime with
// its logger and plugin library, and one engine with its execution context.
//
// The library is compiled against one TensorRT's headers (MILD_RUNTIME_TENSORRT_INCLUDE_DIR) and
// implements that TensorRT's ILogger. TensorRT-RTX's ILogger derives from IVersionedInterface, so
// its virtual table differs from TensorRT 10's (DESIGN.md section 7): handing one to the other
// crashes at the first log message. Runtime::create therefore refuses to run when the loaded
// TensorRT library is not the kind and major version the headers describe.
#pragma once

#include "kernels.cuh"
#include "mild/mild.h"

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace nvinfer1 {
class IRuntime;
class ICudaEngine;
class IExecutionContext;
}  // namespace nvinfer1

namespace mild::detail {

struct TensorRTVersions {
    std::string headers;  // "TensorRT 10.14.1" / "TensorRT-RTX 1.7.1"
    std::string library;  // the same for the library in this process, with its file name
    bool compatible = false;
};

TensorRTVersions tensorrt_versions();
// Throws Failure(MILD_ERROR_TENSORRT_MISMATCH) with both versions and the fix.
void check_tensorrt();

class Logger;

class Engine {
public:
    Engine(std::string name, std::unique_ptr<nvinfer1::ICudaEngine> engine,
           std::unique_ptr<nvinfer1::IExecutionContext> context);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    const std::string& name() const { return name_; }
    bool has_tensor(const std::string& tensor) const;
    DType dtype(const std::string& tensor) const;  // throws naming the engine and the tensor
    // The engine's profile 0 maximum along `axis` of an input.
    int64_t profile_max(const std::string& input, int axis) const;

    void set_input(const std::string& tensor, const std::vector<int64_t>& shape, const void* data);
    std::vector<int64_t> output_shape(const std::string& tensor) const;  // after every input is set
    void set_output(const std::string& tensor, void* data);
    void enqueue(cudaStream_t stream);

private:
    std::string name_;
    std::unique_ptr<nvinfer1::ICudaEngine> engine_;
    std::unique_ptr<nvinfer1::IExecutionContext> context_;  // declared last: destroyed before its engine
};

class Runtime {
public:
    // Checks the TensorRT ABI, creates the IRuntime, loads the plugin library ("" = none).
    Runtime(mild_log_fn log, void* user, mild_log_level level, const std::string& plugin_library);
    ~Runtime();
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    // Deserialises `path`; failure (another GPU, another TensorRT version, a missing plugin) throws
    // Failure(MILD_ERROR_ENGINE) with TensorRT's own messages.
    std::unique_ptr<Engine> load(const std::string& name, const std::string& path, const std::string& built_with);

private:
    struct LibraryCloser {
        void operator()(void* handle) const;
    };
    // destroyed in reverse: the runtime first, then the plugin library it used, then its logger; a
    // constructor that throws destroys what it had built the same way
    std::unique_ptr<Logger> logger_;
    std::unique_ptr<void, LibraryCloser> plugin_handle_;
    std::unique_ptr<nvinfer1::IRuntime> runtime_;
};

}  // namespace mild::detail

// DIR/manifest.json as the C++ runtime needs it: the model's configuration, each graph's symbol
// ranges (the engines' optimisation profiles) and the engines section (engine files, plugin
// library, prompt cache). Written by mild-export (mild_export/export/manifest.py).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mild::detail {

struct Range {
    int64_t min = 0, opt = 0, max = 0, multiple = 1;
    bool contains(int64_t v) const { return v >= min && v <= max && v % multiple == 0; }
};

struct Scheduler {
    int num_train_timesteps = 1000;
    double beta_start = 0.00085, beta_end = 0.012;
    int steps_offset = 1;
};

struct GraphInfo {
    std::string name;
    std::string engine_path;  // DIR/<file> from engines.<name>.file, else DIR/<name>.plan
    bool engine_listed = false;
    std::string built_with;   // engines.<name>.tensorrt, if recorded
    std::map<std::string, Range> symbols;
    std::vector<std::string> outputs;

    const Range& symbol(const std::string& s) const;  // throws naming graph and symbol
};

struct PromptTensor {
    std::vector<int64_t> shape;
    int64_t offset = 0;  // in float32 elements from the start of the cache file
};

struct PromptEntry {
    std::map<std::string, PromptTensor> tensors;  // prompt_embeds (and pooled_prompt_embeds)
};

struct Manifest {
    std::string dir, path;
    std::string model, precision;
    // config
    std::string tokenizer;  // "byte" or "clip"
    int text_length = 0, n_text_encoders = 1, pooled_dim = 0;
    bool added_conditions = false;  // SDXL: text_embeds and time_ids inputs
    int cross_attention_dim = 0, context_length = 0, token_grid = 0, map_size = 0;
    double pose_sigma = 1.0;
    Scheduler scheduler;
    // graphs and engines
    std::map<std::string, GraphInfo> graphs;
    std::string plugin_library;  // engines.plugin_library resolved against DIR, or ""
    std::string prompt_cache_file;
    std::map<std::string, PromptEntry> prompt_cache;

    bool has_graph(const std::string& name) const { return graphs.count(name) != 0; }
    const GraphInfo& graph(const std::string& name) const;  // throws MILD_ERROR_MANIFEST

    // The most instances the engines serve with `copies` rows per branch (1, or 2 with guidance);
    // 0 when they cannot run that way at all. `reason` says which profile limits it.
    int max_instances(int copies, std::string* reason = nullptr) const;
};

// Throws Failure(MILD_ERROR_MANIFEST) naming the file and what is wrong with it.
Manifest read_manifest(const std::string& dir);

}  // namespace mild::detail

namespace mild::detail {
// Throws Failure(MILD_ERROR_MANIFEST) naming the first engine file that is missing.
void check_engine_files(const Manifest& m, bool need_text);
}  // namespace mild::detail

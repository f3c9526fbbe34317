#include "manifest.hpp"

#include "error.hpp"
#include "json.hpp"

#include <fstream>
#include <sstream>
#include <sys/stat.h>

namespace mild::detail {

namespace {

constexpr int kFormatVersion = 1;  // mild_export/export/manifest.py FORMAT_VERSION
const char* const kRequiredGraphs[] = {"conditioner", "vae_encoder", "vae_decoder", "unet"};

bool is_file(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_dir(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string join(const std::string& dir, const std::string& file) {
    if (!file.empty() && file[0] == '/') return file;
    return dir + "/" + file;
}

Range read_range(const Json& j) {
    Range r;
    r.min = j.at("min").integer("min");
    r.opt = j.at("opt").integer("opt");
    r.max = j.at("max").integer("max");
    if (const Json* m = j.find("multiple")) r.multiple = m->integer("multiple");
    if (r.multiple < 1 || r.min > r.max) throw std::runtime_error("bad range");
    return r;
}

std::map<std::string, Range> read_symbols(const Json& j) {
    std::map<std::string, Range> out;
    for (const auto& [name, value] : j.object("symbols")) out[name] = read_range(value);
    return out;
}

void read_config(const Json& config, Manifest& m) {
    const Json& text = config.at("text");
    m.tokenizer = text.at("tokenizer").string("config.text.tokenizer");
    m.text_length = static_cast<int>(text.at("max_length").integer("config.text.max_length"));
    const auto& encoders = text.at("encoders").array("config.text.encoders");
    m.n_text_encoders = static_cast<int>(encoders.size());
    if (!encoders.empty()) {
        if (const Json* p = encoders.back().find("projection")) m.pooled_dim = static_cast<int>(p->integer("projection"));
    }
    const Json& unet = config.at("unet");
    const Json* added = unet.find("addition_embed_type");
    m.added_conditions = added != nullptr && added->is_string() && added->string("") == "text_time";
    m.cross_attention_dim = static_cast<int>(unet.at("cross_attention_dim").integer("config.unet.cross_attention_dim"));
    const Json& hmg = config.at("hmg");
    m.token_grid = static_cast<int>(hmg.at("token_grid").integer("config.hmg.token_grid"));
    m.map_size = static_cast<int>(hmg.at("map_size").integer("config.hmg.map_size"));
    m.pose_sigma = hmg.at("pose_sigma").number("config.hmg.pose_sigma");
    m.context_length = m.text_length + 3 * m.token_grid * m.token_grid;  // ModelConfig.context_length
    const Json& s = config.at("scheduler");
    m.scheduler.num_train_timesteps = static_cast<int>(s.at("num_train_timesteps").integer("num_train_timesteps"));
    m.scheduler.beta_start = s.at("beta_start").number("beta_start");
    m.scheduler.beta_end = s.at("beta_end").number("beta_end");
    m.scheduler.steps_offset = static_cast<int>(s.at("steps_offset").integer("steps_offset"));
}

void read_prompt_cache(const Json& cache, Manifest& m) {
    m.prompt_cache_file = join(m.dir, cache.at("file").string("engines.prompt_cache.file"));
    if (const Json* dtype = cache.find("dtype"); dtype && dtype->string("dtype") != "float32") {
        throw std::runtime_error("engines.prompt_cache.dtype is " + dtype->string("dtype") + ", expected float32");
    }
    for (const Json& entry : cache.at("entries").array("engines.prompt_cache.entries")) {
        PromptEntry e;
        for (const auto& [name, t] : entry.at("tensors").object("tensors")) {
            PromptTensor pt;
            for (const Json& d : t.at("shape").array("shape")) pt.shape.push_back(d.integer("shape"));
            pt.offset = t.at("offset").integer("offset");
            e.tensors[name] = pt;
        }
        m.prompt_cache[entry.at("prompt").string("prompt")] = e;
    }
}

void read_engines(const Json& engines, Manifest& m) {
    for (const auto& [key, value] : engines.object("engines")) {
        if (key == "plugin_library") {
            const std::string& lib = value.string("engines.plugin_library");
            // a bare name goes through the loader's search path; a relative path is under DIR
            m.plugin_library = lib.find('/') == std::string::npos && !is_file(join(m.dir, lib)) ? lib : join(m.dir, lib);
        } else if (key == "prompt_cache") {
            read_prompt_cache(value, m);
        } else if (auto it = m.graphs.find(key); it != m.graphs.end() && value.is_object()) {
            GraphInfo& g = it->second;
            g.engine_listed = true;
            if (const Json* f = value.find("file")) g.engine_path = join(m.dir, f->string("file"));
            if (const Json* t = value.find("tensorrt"); t && t->is_string()) g.built_with = t->string("");
            if (const Json* s = value.find("symbols")) g.symbols = read_symbols(*s);  // the engine's own profile
        }
    }
}

}  // namespace

const Range& GraphInfo::symbol(const std::string& s) const {
    auto it = symbols.find(s);
    if (it == symbols.end()) fail(MILD_ERROR_MANIFEST, "graph ", name, " has no symbol ", s, " in the manifest");
    return it->second;
}

const GraphInfo& Manifest::graph(const std::string& name) const {
    auto it = graphs.find(name);
    if (it == graphs.end()) fail(MILD_ERROR_MANIFEST, path, " has no graph \"", name, "\": export again");
    return it->second;
}

int Manifest::max_instances(int copies, std::string* reason) const {
    const GraphInfo& unet = graph("unet");
    const GraphInfo& cond = graph("conditioner");
    const GraphInfo& enc = graph("vae_encoder");
    const GraphInfo& dec = graph("vae_decoder");
    if (!unet.symbol("batch_bg").contains(copies)) {
        if (reason) *reason = "the unet engine's batch_bg profile does not include " + std::to_string(copies);
        return 0;
    }
    struct Limit { const char* what; int64_t value; };
    const Limit limits[] = {
        {"unet batch_fg", unet.symbol("batch_fg").max / copies},
        {"unet rows", unet.symbol("rows").max / copies - 1},
        {"conditioner branches", cond.symbol("branches").max - 1},
        {"vae_encoder branches", enc.symbol("branches").max - 1},
        {"vae_decoder layers", dec.symbol("layers").max - 1},
    };
    int64_t best = limits[0].value;
    const char* by = limits[0].what;
    for (const Limit& l : limits) {
        if (l.value < best) { best = l.value; by = l.what; }
    }
    if (reason) *reason = std::string("the ") + by + " profile";
    return static_cast<int>(best < 0 ? 0 : best);
}

namespace {

// A mild-merge model folder has a manifest.json too; without this it read as a broken export
// ("export again with --force"), which sends the user to rebuild a folder mild-export never made.
void check_not_merged(const Json& root, const std::string& dir) {
    const Json* kind = root.find("kind");
    if (kind != nullptr && kind->is_string() && kind->string("kind") == "mild-merged") {
        fail(MILD_ERROR_MANIFEST, "model_dir ", dir, " is a mild-merge model folder, not a mild-export output: run ",
             "mild-export --model ", dir, " --out DIR and give DIR");
    }
}

}  // namespace

Manifest read_manifest(const std::string& dir) {
    if (dir.empty()) fail(MILD_ERROR_INVALID_ARGUMENT, "params->model_dir is empty: give a mild-export output folder");
    if (!is_dir(dir)) fail(MILD_ERROR_MANIFEST, "model_dir ", dir, " is not a folder: give a mild-export output folder");
    Manifest m;
    m.dir = dir;
    m.path = join(dir, "manifest.json");
    std::ifstream file(m.path, std::ios::binary);
    if (!file) {
        fail(MILD_ERROR_MANIFEST, m.path, " not found: ", dir, " is not a mild-export output folder (run mild-export)");
    }
    std::stringstream text;
    text << file.rdbuf();
    try {
        Json root = Json::parse(text.str());
        check_not_merged(root, dir);
        int64_t format = root.at("format").integer("format");
        if (format != kFormatVersion) {
            fail(MILD_ERROR_MANIFEST, m.path, " has format ", format, " (this runtime reads ", kFormatVersion,
                 "): export again with this version of mild-export");
        }
        m.model = root.at("model").string("model");
        m.precision = root.at("precision").string("precision");
        read_config(root.at("config"), m);
        for (const auto& [name, g] : root.at("graphs").object("graphs")) {
            GraphInfo info;
            info.name = name;
            info.engine_path = join(dir, name + ".plan");
            info.symbols = read_symbols(g.at("symbols"));
            for (const Json& o : g.at("outputs").array("outputs")) info.outputs.push_back(o.string("outputs"));
            m.graphs[name] = info;
        }
        if (const Json* engines = root.find("engines")) read_engines(*engines, m);
    } catch (const Failure&) {
        throw;
    } catch (const std::exception& err) {
        fail(MILD_ERROR_MANIFEST, m.path, " is unreadable (", err.what(), "): export again with --force");
    }
    for (const char* name : kRequiredGraphs) {
        if (!m.has_graph(name)) fail(MILD_ERROR_MANIFEST, m.path, " lists no \"", name, "\" graph: export again");
    }
    return m;
}

// Engine files: each required graph's plan must exist (the text encoder's only when used).
void check_engine_files(const Manifest& m, bool need_text) {
    for (const auto& [name, g] : m.graphs) {
        if (name == "text_encoder" && !need_text) continue;
        if (!is_file(g.engine_path)) {
            fail(MILD_ERROR_MANIFEST, "engine ", g.engine_path, " for graph \"", name, "\" is missing",
                 g.engine_listed ? "" : " (the manifest's engines section does not list it)",
                 ": build the TensorRT engines of ", m.dir, " first");
        }
    }
}

}  // namespace mild::detail

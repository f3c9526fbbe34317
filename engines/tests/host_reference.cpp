// The runtime's host-side numbers, printed for tests/engines/test_c_api.py to compare with the
// Python reference (reference/ddim.py, torch.randn, reference/hmg.py, reference/compose.py,
// reference/text.py) and the manifest reader with mild_export's manifest.json. No GPU.
//
//   mild_host_reference schedule STEPS                      -> JSON {timesteps, alpha_t, alpha_prev}
//   mild_host_reference noise SEED COUNT OUT.f32
//   mild_host_reference maps DIR N H W SIZE SIGMA REMOVE MODE   (REMOVE "0,2" or "-", MODE eq6|copy)
//        reads DIR/masks.u8 [N][H][W] (and DIR/keypoints.f32, DIR/parsing.u8 when present), writes
//        DIR/out_{mask,pose,parsing}_maps.f32, prints JSON {needed}
//   mild_host_reference tokens PROMPT LENGTH                -> JSON [ids]
//   mild_host_reference manifest DIR                        -> JSON summary of what the runtime read
//   mild_host_reference golden FILE                         -> JSON {version, tensors (table of contents),
//        checks}: the schedule, noise, condition maps and DDIM loop (over the file's own per-step noise)
//        computed here from the file's inputs, each as its largest difference from the file's values
#include "conditions.hpp"
#include "error.hpp"
#include "golden.hpp"
#include "manifest.hpp"
#include "schedule.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

using namespace mild::detail;

namespace {

template <typename T>
std::vector<T> read_file(const std::string& path, bool required) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) {
        if (required) throw std::runtime_error("cannot read " + path);
        return {};
    }
    std::vector<T> out(static_cast<size_t>(f.tellg()) / sizeof(T));
    f.seekg(0);
    f.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size() * sizeof(T)));
    return out;
}

void write_file(const std::string& path, const std::vector<float>& v) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
}

template <typename T>
std::string json_list(const std::vector<T>& v) {
    std::ostringstream s;
    s.precision(17);
    s << "[";
    for (size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
    return s.str() + "]";
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
    if (a.size() != b.size()) throw std::runtime_error("sizes differ: " + std::to_string(a.size()) + " vs " +
                                                       std::to_string(b.size()));
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
    return m;
}

double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
    double scale = 0;
    for (double v : b) scale = std::max(scale, std::abs(v));
    return max_abs_diff(a, b) / (scale > 0 ? scale : 1.0);
}

// The file's inputs through the host code; each check is the largest difference from the file.
std::string golden_checks(const Golden& g) {
    const Json& config = g.meta().at("config");
    const Json& s = config.at("scheduler");
    Scheduler sched;
    sched.num_train_timesteps = static_cast<int>(s.at("num_train_timesteps").integer("num_train_timesteps"));
    sched.beta_start = s.at("beta_start").number("beta_start");
    sched.beta_end = s.at("beta_end").number("beta_end");
    sched.steps_offset = static_cast<int>(s.at("steps_offset").integer("steps_offset"));
    const int steps = static_cast<int>(g.meta().at("steps").integer("steps"));
    const std::vector<DdimStep> ddim = ddim_schedule(sched, steps);
    std::vector<double> t, a, p;
    for (const DdimStep& step : ddim) {
        t.push_back(static_cast<double>(step.timestep));
        a.push_back(step.alpha_t);
        p.push_back(step.alpha_prev);
    }
    std::ostringstream out;
    out.precision(6);
    out << "{\"timesteps\": " << max_abs_diff(t, g.doubles("timesteps"))
        << ", \"alpha_t\": " << max_rel_diff(a, g.doubles("alpha_t"))
        << ", \"alpha_prev\": " << max_rel_diff(p, g.doubles("alpha_prev"));

    const GoldenTensor& noise = g.tensor("noise");  // [1, 4, h, w]
    const auto seed = static_cast<uint64_t>(g.meta().at("seed").integer("seed"));
    const std::vector<float> z0 = torch_randn(seed, noise.count());
    out << ", \"noise\": " << max_abs_diff(std::vector<double>(z0.begin(), z0.end()), g.doubles("noise"));

    const GoldenTensor& masks = g.tensor("masks");  // [N, H, W] uint8
    MaskSet m;
    m.n = static_cast<int>(masks.shape[0]);
    m.height = static_cast<int>(masks.shape[1]);
    m.width = static_cast<int>(masks.shape[2]);
    m.bits = g.bytes("masks");
    const Json& hmg = config.at("hmg");
    const int size = static_cast<int>(hmg.at("map_size").integer("map_size"));
    const std::vector<float> kp = g.has("keypoints") ? g.floats("keypoints") : std::vector<float>{};
    const std::vector<uint8_t> parsing = g.has("parsing") ? g.bytes("parsing") : std::vector<uint8_t>{};
    const auto as_double = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
    out << ", \"mask_maps\": " << max_abs_diff(as_double(mask_maps(m, size)), g.doubles("mask_maps"))
        << ", \"pose_maps\": "
        << max_abs_diff(as_double(pose_maps(kp.empty() ? nullptr : kp.data(), m.n, m.height, m.width, size,
                                            hmg.at("pose_sigma").number("pose_sigma"))),
                        g.doubles("pose_maps"))
        << ", \"parsing_maps\": "
        << max_abs_diff(as_double(parsing_maps(parsing.empty() ? nullptr : parsing.data(), m.height, m.width, size)),
                        g.doubles("parsing_maps"));

    // The DDIM loop on the file's own noise predictions: every branch starts from the same noise,
    // guidance mixes the [conditional; unconditional] rows, then z <- c_z z + c_eps eps per step.
    const double scale = g.meta().at("guidance").number("guidance");
    const int copies = scale == 1.0 ? 1 : 2, n = m.n;
    const size_t plane = noise.count();
    const std::vector<double> eps_fg = g.doubles("eps_fg"), eps_bg = g.doubles("eps_bg"), zn = g.doubles("noise");
    std::vector<double> z(static_cast<size_t>(n + 1) * plane);
    for (int r = 0; r <= n; ++r) std::copy(zn.begin(), zn.end(), z.begin() + static_cast<std::ptrdiff_t>(r * plane));
    for (int i = 0; i < steps; ++i) {
        for (int r = 0; r <= n; ++r) {
            const bool bg = r == n;
            const std::vector<double>& e = bg ? eps_bg : eps_fg;
            const size_t rows = static_cast<size_t>(copies) * (bg ? 1 : n), row = bg ? 0 : r;
            const double* cond = e.data() + (static_cast<size_t>(i) * rows + row) * plane;
            const double* uncond = cond + (rows / copies) * plane;
            for (size_t j = 0; j < plane; ++j) {
                const double eps = copies == 1 ? cond[j] : uncond[j] + scale * (cond[j] - uncond[j]);
                double& zj = z[r * plane + j];
                zj = ddim[i].c_z() * zj + ddim[i].c_eps() * eps;
            }
        }
    }
    out << ", \"latents\": " << max_rel_diff(z, g.doubles("latents")) << "}";
    return out.str();
}

std::string golden_summary(const std::string& path) {
    const Golden g = Golden::read(path);
    std::ostringstream out;
    out << "{\"version\": " << g.version() << ", \"tensors\": [";
    for (size_t i = 0; i < g.tensors().size(); ++i) {
        const GoldenTensor& t = g.tensors()[i];
        out << (i ? ", " : "") << "{\"name\": \"" << t.name << "\", \"dtype\": \"" << t.dtype
            << "\", \"shape\": " << json_list(t.shape) << "}";
    }
    out << "], \"checks\": " << golden_checks(g) << "}";
    return out.str();
}

int run(int argc, char** argv) {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "schedule" && argc == 3) {
        std::vector<int64_t> t;
        std::vector<double> a, p;
        for (const DdimStep& s : ddim_schedule(Scheduler{}, std::stoi(argv[2]))) {
            t.push_back(s.timestep);
            a.push_back(s.alpha_t);
            p.push_back(s.alpha_prev);
        }
        std::cout << "{\"timesteps\": " << json_list(t) << ", \"alpha_t\": " << json_list(a)
                  << ", \"alpha_prev\": " << json_list(p) << "}\n";
        return 0;
    }
    if (cmd == "noise" && argc == 5) {
        write_file(argv[4], torch_randn(std::stoull(argv[2]), std::stoull(argv[3])));
        return 0;
    }
    if (cmd == "maps" && argc == 10) {
        const std::string dir = argv[2];
        MaskSet m;
        m.n = std::stoi(argv[3]);
        m.height = std::stoi(argv[4]);
        m.width = std::stoi(argv[5]);
        const int size = std::stoi(argv[6]);
        m.bits = read_file<uint8_t>(dir + "/masks.u8", true);
        const std::vector<float> kp = read_file<float>(dir + "/keypoints.f32", false);
        const std::vector<uint8_t> parsing = read_file<uint8_t>(dir + "/parsing.u8", false);
        write_file(dir + "/out_mask_maps.f32", mask_maps(m, size));
        write_file(dir + "/out_pose_maps.f32",
                   pose_maps(kp.empty() ? nullptr : kp.data(), m.n, m.height, m.width, size, std::stod(argv[7])));
        write_file(dir + "/out_parsing_maps.f32",
                   parsing_maps(parsing.empty() ? nullptr : parsing.data(), m.height, m.width, size));
        std::vector<int> removed;
        std::stringstream list(argv[8]);
        for (std::string item; std::getline(list, item, ',');) {
            if (item != "-" && !item.empty()) removed.push_back(std::stoi(item));
        }
        std::cout << "{\"needed\": " << json_list(layers_needed(m, removed, std::string(argv[9]) == "eq6")) << "}\n";
        return 0;
    }
    if (cmd == "tokens" && argc == 4) {
        std::cout << json_list(byte_tokenize(argv[2], std::stoi(argv[3]))) << "\n";
        return 0;
    }
    if (cmd == "manifest" && argc == 3) {
        Manifest m = read_manifest(argv[2]);
        std::cout << "{\"max_instances\": [" << m.max_instances(1) << ", " << m.max_instances(2) << "], "
                  << "\"context_length\": " << m.context_length << ", \"text_length\": " << m.text_length
                  << ", \"cross_attention_dim\": " << m.cross_attention_dim << ", \"map_size\": " << m.map_size
                  << ", \"added_conditions\": " << (m.added_conditions ? "true" : "false")
                  << ", \"latent_height\": [" << m.graph("unet").symbol("height").min << ", "
                  << m.graph("unet").symbol("height").max << "], \"prompts\": " << m.prompt_cache.size() << "}\n";
        return 0;
    }
    if (cmd == "golden" && argc == 3) {
        std::cout << golden_summary(argv[2]) << "\n";
        return 0;
    }
    std::cerr << "usage: see the comment at the top of engines/tests/host_reference.cpp\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "mild_host_reference: " << e.what() << "\n";
        return 1;
    }
}

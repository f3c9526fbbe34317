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
#include "conditions.hpp"
#include "error.hpp"
#include "manifest.hpp"
#include "schedule.hpp"

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

// mild_erase_app: erase people from a PNG with the engines of a mild-export folder.
//
//   mild_erase_app --engines DIR --image photo.png --mask person0.png [--mask person1.png ...]
//                  --out composite.png [--remove 1,2] [--steps 25] [--guidance 1] [--seed 0]
//                  [--prompt TEXT] [--compose copy-outside|eq6] [--plugin libmild_plugins.so]
//                  [--noise noise.f32] [--quiet]
//
// Options mean what they mean for mild-erase (--remove counts instances from 1, in --mask order).
// Masks are read like mild-erase reads them: white (or any bright colour) is the person, values
// are binarised at 0.5, a mask holding only 0 and 1 takes 1 as the person, transparency is black.
#include "mild/mild.hpp"

#include <png.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace {

struct Png {
    int width = 0, height = 0;
    std::vector<uint8_t> rgba;
};

Png read_png(const std::string& path) {
    png_image image;
    std::memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&image, path.c_str())) {
        throw std::runtime_error("cannot read " + path + ": " + image.message);
    }
    image.format = PNG_FORMAT_RGBA;  // colour, grey, palette and 16-bit files all come as 8-bit RGBA
    Png out;
    out.width = static_cast<int>(image.width);
    out.height = static_cast<int>(image.height);
    out.rgba.resize(PNG_IMAGE_SIZE(image));
    if (!png_image_finish_read(&image, nullptr, out.rgba.data(), 0, nullptr)) {
        std::string why = image.message;
        png_image_free(&image);
        throw std::runtime_error("cannot decode " + path + ": " + why);
    }
    return out;
}

void write_png(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb) {
    png_image image;
    std::memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
    image.width = static_cast<png_uint_32>(width);
    image.height = static_cast<png_uint_32>(height);
    image.format = PNG_FORMAT_RGB;
    const std::string tmp = path + ".tmp";
    if (!png_image_write_to_file(&image, tmp.c_str(), 0, rgb.data(), 0, nullptr)) {
        throw std::runtime_error("cannot write " + path + ": " + image.message);
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename " + tmp + " to " + path);
}

// The brightest channel times alpha, binarised at 0.5; a mask of only 0 and 1 takes 1 as the person.
std::vector<uint8_t> mask_bits(const Png& png) {
    const size_t n = static_cast<size_t>(png.width) * png.height;
    std::vector<int> value(n);
    int top = 0;
    for (size_t i = 0; i < n; ++i) {
        const uint8_t* p = &png.rgba[i * 4];
        int bright = std::max(p[0], std::max(p[1], p[2]));
        value[i] = bright * p[3] / 255;
        top = std::max(top, value[i]);
    }
    std::vector<uint8_t> bits(n);
    for (size_t i = 0; i < n; ++i) bits[i] = top == 1 ? value[i] == 1 : value[i] >= 128;
    return bits;
}

// A whole-string number: std::stoi alone takes "5x" as 5 and says only "stoi" for "abc". Ranges are
// the library's to check (its message names the limit that applies to these engines).
template <typename T, typename Convert>
T parse_whole(const std::string& option, const std::string& text, Convert convert, const std::string& want) {
    size_t used = 0;
    T v{};
    try {
        v = convert(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != text.size()) throw std::invalid_argument(option + " is '" + text + "': give " + want);
    return v;
}

int parse_int(const std::string& option, const std::string& text) {
    return parse_whole<int>(option, text, [](const std::string& t, size_t* used) { return std::stoi(t, used); },
                            "an integer");
}

float parse_float(const std::string& option, const std::string& text) {
    return parse_whole<float>(option, text, [](const std::string& t, size_t* used) { return std::stof(t, used); },
                              "a number");
}

// 0..2^64-1 like the library's seed; std::stoull alone would take "-1" as 2^64-1
uint64_t parse_seed(const std::string& text) {
    auto digits_only = [](const std::string& t, size_t* used) -> uint64_t {
        return !t.empty() && t[0] >= '0' && t[0] <= '9' ? std::stoull(t, used) : 0;
    };
    return parse_whole<uint64_t>("--seed", text, digits_only, "an integer in 0..18446744073709551615");
}

// "1,3" -> {1, 3}, as typed (1-based); checked against the number of masks once all are known
std::vector<int> parse_list(const std::string& text) {
    std::vector<int> out;
    std::stringstream s(text);
    std::string item;
    while (std::getline(s, item, ',')) {
        if (!item.empty()) out.push_back(parse_int("--remove", item));
    }
    return out;
}

// The library counts instances from 0; this app, like mild-erase, from 1 in --mask order.
std::vector<int> zero_based(const std::vector<int>& remove, size_t n_masks) {
    std::vector<int> out;
    for (int k : remove) {
        if (k < 1 || k > static_cast<int>(n_masks)) {
            throw std::invalid_argument("--remove " + std::to_string(k) + ": the masks are numbered 1.." +
                                        std::to_string(n_masks) + ", in --mask order");
        }
        out.push_back(k - 1);
    }
    return out;
}

// The folder of --out must exist before the engines run, not after a whole erase.
void check_output_folder(const std::string& path) {
    const size_t slash = path.find_last_of('/');
    const std::string folder = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    struct stat st {};
    if (::stat(folder.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        throw std::invalid_argument("--out " + path + ": the folder " + folder + " does not exist (create it first)");
    }
}

const char kUsage[] =
    "usage: mild_erase_app --engines DIR --image IMAGE.png --mask MASK.png [--mask ...] --out OUT.png\n"
    "       [--remove 1,2] [--steps 25] [--guidance 1] [--seed 0] [--prompt TEXT]\n"
    "       [--compose copy-outside|eq6] [--plugin LIB] [--noise FILE.f32] [--quiet]\n";

int usage(const std::string& why) {
    std::cerr << "mild_erase_app: error: " << why << "\n" << kUsage;
    return 2;
}

int print_progress(int step, int steps, void*) {
    std::fprintf(stderr, "\rdenoising %d/%d", step, steps);
    if (step == steps) std::fprintf(stderr, "\n");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::string engines, image_path, out_path, prompt, compose = "copy-outside", plugin, noise_path;
    std::vector<std::string> mask_paths;
    std::vector<int> remove;
    mild::EraseParams params;
    bool quiet = false, remove_set = false;
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string arg = argv[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
                return argv[++i];
            };
            if (arg == "--help" || arg == "-h") {
                std::cout << kUsage;
                return 0;
            }
            if (arg == "--engines") engines = value();
            else if (arg == "--image") image_path = value();
            else if (arg == "--mask") mask_paths.push_back(value());
            else if (arg == "--out") out_path = value();
            else if (arg == "--remove") {
                remove = parse_list(value());
                remove_set = true;
            }
            else if (arg == "--steps") params.raw.steps = parse_int(arg, value());
            else if (arg == "--guidance") params.raw.guidance = parse_float(arg, value());
            else if (arg == "--seed") params.raw.seed = parse_seed(value());
            else if (arg == "--prompt") prompt = value();
            else if (arg == "--compose") compose = value();
            else if (arg == "--plugin") plugin = value();
            else if (arg == "--noise") noise_path = value();
            else if (arg == "--quiet") quiet = true;
            else return usage("unknown argument " + arg);
        }
        if (engines.empty() || image_path.empty() || mask_paths.empty() || out_path.empty()) {
            return usage("--engines, --image, at least one --mask and --out are required");
        }
        if (compose != "copy-outside" && compose != "eq6") return usage("--compose is copy-outside or eq6");
        if (remove_set) params.set_remove(zero_based(remove, mask_paths.size()));
        check_output_folder(out_path);
    } catch (const std::exception& e) {
        return usage(e.what());
    }
    params.raw.compose = compose == "eq6" ? MILD_COMPOSE_EQ6 : MILD_COMPOSE_COPY_OUTSIDE;
    params.raw.prompt = prompt.c_str();
    if (!quiet) params.raw.progress = print_progress;

    try {
        Png photo = read_png(image_path);
        std::vector<std::vector<uint8_t>> bits;
        std::vector<mild_mask> masks;
        for (const std::string& path : mask_paths) {
            Png m = read_png(path);
            bits.push_back(mask_bits(m));
            masks.push_back(mild_mask{m.width, m.height, 0, nullptr});
        }
        for (size_t k = 0; k < masks.size(); ++k) masks[k].data = bits[k].data();
        std::vector<float> noise;
        if (!noise_path.empty()) {
            std::ifstream f(noise_path, std::ios::binary | std::ios::ate);
            if (!f) throw std::runtime_error("cannot read " + noise_path);
            noise.resize(static_cast<size_t>(f.tellg()) / sizeof(float));
            f.seekg(0);
            f.read(reinterpret_cast<char*>(noise.data()), static_cast<std::streamsize>(noise.size() * sizeof(float)));
            if (noise.size() != 4u * (photo.width / 8) * (photo.height / 8)) {
                throw std::runtime_error(noise_path + " does not hold 4 x (H/8) x (W/8) float32 values");
            }
            params.raw.initial_noise = noise.data();
        }
        mild::Context::Params cp;
        cp.model_dir(engines).lazy_load(true);  // bad masks are reported before the engines load
        if (!plugin.empty()) cp.plugin_library(plugin);
        mild::Context ctx(cp);
        mild_image image{photo.width, photo.height, 4, 0, photo.rgba.data()};
        std::vector<uint8_t> composite = ctx.erase(image, masks, params);
        write_png(out_path, photo.width, photo.height, composite);
        if (!quiet) std::cerr << "wrote " << out_path << "\n";
    } catch (const mild::Error& e) {
        std::cerr << "mild_erase_app: error: " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "mild_erase_app: error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}

// check_inputs: every argument of mild_erase checked on the host, before any GPU work, with a
// message that names the argument and the fix (reference/pipeline.py check_inputs).
#include "error.hpp"
#include "pipeline.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sys/stat.h>

namespace mild::detail {

namespace {

void check_image(const mild_image* image) {
    if (image == nullptr) fail(MILD_ERROR_INVALID_ARGUMENT, "image is NULL: pass the photo to erase from");
    if (image->data == nullptr) fail(MILD_ERROR_INVALID_ARGUMENT, "image->data is NULL: point it at the image's pixel rows");
    if (image->width <= 0 || image->height <= 0) {
        fail(MILD_ERROR_INVALID_ARGUMENT, "image is ", image->width, "x", image->height, ": it has no pixels");
    }
    if (image->channels != 3 && image->channels != 4) {
        fail(MILD_ERROR_INVALID_ARGUMENT, "image->channels is ", image->channels, ": give 3 (RGB) or 4 (RGBA)");
    }
    if (image->stride != 0 && image->stride < image->width * image->channels) {
        fail(MILD_ERROR_INVALID_ARGUMENT, "image->stride is ", image->stride, ", less than width x channels = ",
             image->width * image->channels, ": give the bytes from one row to the next, or 0 for packed rows");
    }
}

void check_output(const mild_image* out, const mild_image* image) {
    if (out == nullptr) fail(MILD_ERROR_INVALID_ARGUMENT, "out_composite is NULL: pass an image to write into");
    if (out->data == nullptr) {
        fail(MILD_ERROR_INVALID_ARGUMENT, "out_composite->data is NULL: allocate width x height x 3 bytes");
    }
    if (out->width != image->width || out->height != image->height) {
        fail(MILD_ERROR_INVALID_ARGUMENT, "out_composite is ", out->width, "x", out->height, " but the image is ",
             image->width, "x", image->height, ": give it the image's size");
    }
    if (out->channels != 3) fail(MILD_ERROR_INVALID_ARGUMENT, "out_composite->channels is ", out->channels, ": give 3");
    if (out->stride != 0 && out->stride < out->width * 3) {
        fail(MILD_ERROR_INVALID_ARGUMENT, "out_composite->stride is ", out->stride, ", less than width x 3 = ",
             out->width * 3, ": give the bytes from one row to the next, or 0 for packed rows");
    }
}

void check_removal(const mild_erase_params& p, int n, std::vector<int>& removed) {
    if (p.n_remove == MILD_REMOVE_ALL) {
        for (int k = 0; k < n; ++k) removed.push_back(k);
        return;
    }
    if (p.n_remove < 0) {
        fail(MILD_ERROR_INVALID_ARGUMENT, "params->n_remove is ", p.n_remove, ": give a count >= 0 or MILD_REMOVE_ALL");
    }
    if (p.n_remove > 0 && p.remove == nullptr) {
        fail(MILD_ERROR_INVALID_ARGUMENT, "params->remove is NULL but params->n_remove is ", p.n_remove,
             ": point remove at n_remove 0-based indices, or set n_remove to MILD_REMOVE_ALL");
    }
    for (int i = 0; i < p.n_remove; ++i) {
        int k = p.remove[i];
        if (k < 0 || k >= n) {
            fail(MILD_ERROR_INVALID_ARGUMENT, "params->remove[", i, "] is ", k, ": there are ", n, " instances (0..",
                 n - 1, ")");
        }
        if (std::find(removed.begin(), removed.end(), k) != removed.end()) {
            fail(MILD_ERROR_INVALID_ARGUMENT, "params->remove[", i, "] = ", k, " appears twice in the removal set");
        }
        removed.push_back(k);
    }
}

void check_shape(const Manifest& m, int width, int height) {
    if (width % kLatentFactor || height % kLatentFactor) {
        fail(MILD_ERROR_INVALID_ARGUMENT, "image is ", width, "x", height, ": both sides must be multiples of ",
             kLatentFactor, " (pad the image)");
    }
    const GraphInfo& unet = m.graph("unet");
    for (const char* axis : {"height", "width"}) {
        const Range& r = unet.symbol(axis);
        const int side = (axis[0] == 'h' ? height : width);
        if (!r.contains(side / kLatentFactor)) {
            fail(MILD_ERROR_UNSUPPORTED_SHAPE, "image ", axis, " ", side, " is outside what the engines in ", m.dir,
                 " serve (", r.min * kLatentFactor, "..", r.max * kLatentFactor, " pixels, multiples of ",
                 r.multiple * kLatentFactor, "): resize the image or export again with --resolution");
        }
    }
}

MaskSet read_masks(const mild_mask* masks, int n, int width, int height) {
    MaskSet set;
    set.n = n;
    set.width = width;
    set.height = height;
    set.bits.assign(static_cast<size_t>(n) * width * height, 0);
    for (int k = 0; k < n; ++k) {
        const mild_mask& m = masks[k];
        if (m.data == nullptr) {
            fail(MILD_ERROR_INVALID_ARGUMENT, "masks[", k,
                 "].data is NULL: point it at the mask's rows, one byte a pixel");
        }
        if (m.width != width || m.height != height) {
            fail(MILD_ERROR_INVALID_ARGUMENT, "masks[", k, "] is ", m.width, "x", m.height, " but the image is ", width,
                 "x", height, ": resize the mask to the image size (nearest neighbour)");
        }
        if (m.stride != 0 && m.stride < width) {
            fail(MILD_ERROR_INVALID_ARGUMENT, "masks[", k, "].stride is ", m.stride, ", less than the width ", width,
                 ": give the bytes from one row to the next, or 0 for packed rows");
        }
        const int stride = m.stride ? m.stride : width;
        bool any = false;
        uint8_t* dst = set.bits.data() + static_cast<size_t>(k) * width * height;
        for (int y = 0; y < height; ++y) {
            for (int x = 0; x < width; ++x) {
                uint8_t v = m.data[static_cast<size_t>(y) * stride + x] ? 1 : 0;
                dst[static_cast<size_t>(y) * width + x] = v;
                any |= v != 0;
            }
        }
        if (!any) fail(MILD_ERROR_INVALID_ARGUMENT, "masks[", k, "] is empty (all zero): draw the person non-zero");
    }
    return set;
}

bool file_exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

void check_plugin_library(const char* path) {
    // a bare name is the dynamic loader's to find; a path that names no file would only fail when
    // the engines load, after the GPU checks, so on a machine without a GPU it would never show
    if (path == nullptr || std::strchr(path, '/') == nullptr) return;
    struct stat st {};
    if (::stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        fail(MILD_ERROR_INVALID_ARGUMENT, "params->plugin_library ", path,
             " is not a file: give the libmild_plugins.so that mild-export copied beside the engines, "
             "or NULL to use it");
    }
}

bool Pipeline::text_engine_usable(std::string* why) const {
    if (!manifest_.has_graph("text_encoder")) {
        *why = "the manifest has no text_encoder graph";
        return false;
    }
    if (manifest_.tokenizer != "byte") {
        *why = "the model uses a " + manifest_.tokenizer +
               " tokenizer, which the C runtime does not implement (only the tiny models' byte tokenizer)";
        return false;
    }
    if (!file_exists(manifest_.graph("text_encoder").engine_path)) {
        *why = "the text engine " + manifest_.graph("text_encoder").engine_path + " is missing";
        return false;
    }
    return true;
}

ErasePlan Pipeline::check_inputs(const mild_image* image, const mild_mask* masks, int n_masks,
                                 const mild_erase_params* params, mild_image* out) const {
    ErasePlan plan;
    check_image(image);
    if (n_masks <= 0) fail(MILD_ERROR_INVALID_ARGUMENT, "n_masks is ", n_masks, ": give at least one instance mask");
    if (masks == nullptr) {
        fail(MILD_ERROR_INVALID_ARGUMENT, "masks is NULL but n_masks is ", n_masks,
             ": pass an array of n_masks mild_mask, one per person");
    }
    check_output(out, image);
    if (params == nullptr) {
        mild_erase_params_init(&plan.params);
    } else {
        plan.params = *params;
    }
    const mild_erase_params& p = plan.params;
    const int T = manifest_.scheduler.num_train_timesteps;
    if (p.steps < 1 || p.steps > T) {
        fail(MILD_ERROR_INVALID_ARGUMENT, "params->steps is ", p.steps, ": give 1..", T, " DDIM steps");
    }
    if (!std::isfinite(p.guidance) || p.guidance < 0) {
        fail(MILD_ERROR_INVALID_ARGUMENT, "params->guidance is ", p.guidance, ": give a scale >= 0 (1 disables it)");
    }
    if (p.compose != MILD_COMPOSE_COPY_OUTSIDE && p.compose != MILD_COMPOSE_EQ6) {
        fail(MILD_ERROR_INVALID_ARGUMENT, "params->compose is ", static_cast<int>(p.compose),
             ": give MILD_COMPOSE_COPY_OUTSIDE or MILD_COMPOSE_EQ6");
    }
    if (p.prompt_source != MILD_PROMPT_AUTO && p.prompt_source != MILD_PROMPT_CACHE &&
        p.prompt_source != MILD_PROMPT_TEXT_ENGINE) {
        fail(MILD_ERROR_INVALID_ARGUMENT, "params->prompt_source is ", static_cast<int>(p.prompt_source),
             ": give MILD_PROMPT_AUTO, MILD_PROMPT_CACHE or MILD_PROMPT_TEXT_ENGINE");
    }
    plan.n = n_masks;
    plan.width = image->width;
    plan.height = image->height;
    plan.h = plan.height / kLatentFactor;
    plan.w = plan.width / kLatentFactor;
    plan.copies = p.guidance == 1.0f ? 1 : 2;
    plan.guidance = p.guidance;
    plan.steps = p.steps;
    plan.eq6 = p.compose == MILD_COMPOSE_EQ6;
    check_shape(manifest_, plan.width, plan.height);

    std::string limit;
    const int most = manifest_.max_instances(plan.copies, &limit);
    if (most == 0) {
        fail(MILD_ERROR_UNSUPPORTED_SHAPE, "params->guidance is ", p.guidance, " but the engines in ", manifest_.dir,
             " were built without guidance (", limit, "): use guidance 1 or export again with --guidance");
    }
    // the decoder's row list holds the N fg rows and the background: N + 1 <= kMaxIndices
    if (n_masks > most || n_masks > kMaxIndices - 1) {
        fail(MILD_ERROR_UNSUPPORTED_SHAPE, "n_masks is ", n_masks, " but the engines in ", manifest_.dir,
             " serve at most ", std::min(most, kMaxIndices - 1), " instances", plan.copies == 2 ? " with guidance" : "",
             " (", limit, "): erase fewer people per call or export again with --max-instances ", n_masks);
    }
    check_removal(p, n_masks, plan.removed);
    plan.masks = read_masks(masks, n_masks, plan.width, plan.height);
    if (p.parsing != nullptr) {
        for (int y = 0; y < plan.height; ++y) {
            for (int x = 0; x < plan.width; ++x) {
                const int label = p.parsing[static_cast<size_t>(y) * plan.width + x];
                if (label >= kParsingClasses) {
                    fail(MILD_ERROR_INVALID_ARGUMENT, "params->parsing has label ", label, " at (", x, ", ", y,
                         "): LIP label ids are 0..", kParsingClasses - 1);
                }
            }
        }
    }
    plan.needed = layers_needed(plan.masks, plan.removed, plan.eq6);

    // prompt rows: [prompt, ""][:copies], each from the cache or the text engine
    const std::string prompt = p.prompt ? p.prompt : "";
    for (int c = 0; c < plan.copies; ++c) {
        const std::string text = c == 0 ? prompt : "";
        const bool cached = manifest_.prompt_cache.count(text) != 0;
        std::string why;
        if (p.prompt_source == MILD_PROMPT_CACHE && !cached) {
            fail(MILD_ERROR_INVALID_ARGUMENT, "prompt \"", text, "\" is not in the prompt cache of ", manifest_.path,
                 ": export again with mild-export --prompt \"", text, "\" (it writes the cache), or use MILD_PROMPT_AUTO");
        }
        const bool use_cache = cached && p.prompt_source != MILD_PROMPT_TEXT_ENGINE;
        if (!use_cache && !text_engine_usable(&why)) {
            fail(MILD_ERROR_INVALID_ARGUMENT, "prompt \"", text, "\" needs the text engine", cached ? "" : " (it is not in the prompt cache)",
                 " but ", why, ": export again with mild-export --prompt \"", text, "\" to cache it in ", manifest_.dir);
        }
        plan.prompts.push_back(text);
        plan.prompt_cached.push_back(use_cache);
    }
    plan.image = image;
    plan.out = out;
    return plan;
}

}  // namespace mild::detail

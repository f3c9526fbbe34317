/*
 * The C API's input validation, with no GPU: every bad argument gives its status and a message
 * naming the culprit, and nothing crashes. Run by tests/engines/test_c_api.py, which writes the
 * fixture folders from the Python contracts (ROOT/good: tiny model, 64x64, at most 2 instances, no
 * guidance, dummy engine files; ROOT/empty, ROOT/broken, ROOT/no_engines).
 *
 *   mild_c_api_validation ROOT EXPECTED_LOAD_STATUS EXPECTED_TENSORRT_STATUS
 *
 * EXPECTED_LOAD_STATUS: what valid arguments end in once the engines are loaded on this machine
 * (MILD_ERROR_NO_CUDA_DEVICE without a GPU). Prints "N passed, M failed"; exits 1 on a failure.
 */
#include "mild/mild.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_passed = 0, g_failed = 0;

static void expect(const char* name, mild_status got, mild_status want, const char* needle) {
    const char* message = mild_last_error();
    int ok = got == want && (needle == NULL || strstr(message, needle) != NULL);
    if (ok) {
        ++g_passed;
        printf("ok    %-44s %s: %s\n", name, mild_status_string(got), message);
    } else {
        ++g_failed;
        printf("FAIL  %-44s got %s (want %s, message containing \"%s\"): %s\n", name, mild_status_string(got),
               mild_status_string(want), needle ? needle : "", message);
    }
}

static void check(const char* name, int condition) {
    if (condition) {
        ++g_passed;
        printf("ok    %s\n", name);
    } else {
        ++g_failed;
        printf("FAIL  %s\n", name);
    }
}

/* what the message of an expected load failure must mention */
static const char* load_needle(mild_status s) {
    switch (s) {
        case MILD_ERROR_NO_CUDA_DEVICE: return "no CUDA device";
        case MILD_ERROR_TENSORRT_MISMATCH: return "ILogger";
        default: return NULL;
    }
}

static mild_status status_named(const char* name) {
    int s;
    for (s = 0; s <= MILD_ERROR_INTERNAL; ++s) {
        if (strcmp(mild_status_string((mild_status)s), name) == 0) return (mild_status)s;
    }
    fprintf(stderr, "unknown status %s\n", name);
    exit(2);
}

static void* other_thread(void* arg) {
    *(int*)arg = mild_last_error()[0] == '\0';
    return NULL;
}

#define W 64
#define H 64

int main(int argc, char** argv) {
    char path[4096], plugin[4096];
    const char* root;
    mild_status want_load, want_trt;
    mild_context_params cp;
    mild_erase_params ep;
    mild_context* ctx = (mild_context*)0x1;
    static uint8_t pixels[W * H * 3], out_pixels[W * H * 3], bits[3][W * H], small_bits[32 * 32], blank[W * H];
    static uint8_t parsing[W * H], wide[128 * 128 * 3], wide_out[128 * 128 * 3], wide_bits[128 * 128];
    mild_image image = {W, H, 3, 0, pixels}, out = {W, H, 3, 0, out_pixels};
    mild_mask masks[3];
    int i, removal[2], fresh = 0;
    float noise[4 * 8 * 8];
    pthread_t thread;

    if (argc != 4) {
        fprintf(stderr, "usage: %s ROOT EXPECTED_LOAD_STATUS EXPECTED_TENSORRT_STATUS\n", argv[0]);
        return 2;
    }
    root = argv[1];
    want_load = status_named(argv[2]);
    want_trt = status_named(argv[3]);
    for (i = 0; i < W * H * 3; ++i) pixels[i] = (uint8_t)(i * 7);
    for (i = 0; i < W * H; ++i) {
        bits[0][i] = (i % W) < 20;                    /* left stripe */
        bits[1][i] = (i % W) >= 40;                   /* right stripe */
        bits[2][i] = (i / W) < 10;                    /* top band */
        wide_bits[i] = 1;
    }
    memset(small_bits, 1, sizeof small_bits);
    for (i = 0; i < 3; ++i) {
        masks[i].width = W; masks[i].height = H; masks[i].stride = 0; masks[i].data = bits[i];
    }

    /* ---- enums, strings, defaults ---- */
    check("last error starts empty", mild_last_error()[0] == '\0');
    check("status strings", strcmp(mild_status_string(MILD_OK), "MILD_OK") == 0 &&
          strcmp(mild_status_string(MILD_ERROR_TENSORRT_MISMATCH), "MILD_ERROR_TENSORRT_MISMATCH") == 0 &&
          strcmp(mild_status_string((mild_status)99), "MILD_ERROR_UNKNOWN_STATUS") == 0);
    check("tensorrt version names TensorRT", strstr(mild_runtime_tensorrt_version(), "TensorRT") != NULL);
    printf("      runtime %s, %s\n", mild_runtime_version(), mild_runtime_tensorrt_version());
    mild_context_params_init(NULL);
    mild_erase_params_init(NULL);
    memset(&cp, 0xAB, sizeof cp);
    mild_context_params_init(&cp);
    check("context defaults", cp.model_dir == NULL && cp.plugin_library == NULL && cp.device == 0 &&
          cp.lazy_load == 0 && cp.log_level == MILD_LOG_WARNING && cp.log == NULL && cp.log_user == NULL);
    memset(&ep, 0xAB, sizeof ep);
    mild_erase_params_init(&ep);
    check("erase defaults", ep.remove == NULL && ep.n_remove == MILD_REMOVE_ALL && ep.steps == 25 &&
          ep.guidance == 1.0f && ep.seed == 0 && ep.compose == MILD_COMPOSE_COPY_OUTSIDE && ep.prompt != NULL &&
          ep.prompt[0] == '\0' && ep.prompt_source == MILD_PROMPT_AUTO && ep.keypoints == NULL &&
          ep.parsing == NULL && ep.initial_noise == NULL && ep.progress == NULL && ep.user == NULL);
    mild_context_free(NULL);
    check("mild_context_free(NULL)", 1);

    /* ---- context creation ---- */
    expect("create: params NULL", mild_context_create(NULL, &ctx), MILD_ERROR_INVALID_ARGUMENT, "params is NULL");
    check("create: *out set to NULL on failure", ctx == NULL);
    expect("create: out NULL", mild_context_create(&cp, NULL), MILD_ERROR_INVALID_ARGUMENT, "out is NULL");
    expect("create: model_dir NULL", mild_context_create(&cp, &ctx), MILD_ERROR_INVALID_ARGUMENT, "model_dir");
    snprintf(path, sizeof path, "%s/does-not-exist", root);
    cp.model_dir = path;
    expect("create: missing folder", mild_context_create(&cp, &ctx), MILD_ERROR_MANIFEST, "does-not-exist");
    snprintf(path, sizeof path, "%s/empty", root);
    expect("create: no manifest.json", mild_context_create(&cp, &ctx), MILD_ERROR_MANIFEST, "manifest.json not found");
    snprintf(path, sizeof path, "%s/broken", root);
    expect("create: broken manifest", mild_context_create(&cp, &ctx), MILD_ERROR_MANIFEST, "unreadable");
    snprintf(path, sizeof path, "%s/no_engines", root);
    expect("create: engine file missing", mild_context_create(&cp, &ctx), MILD_ERROR_MANIFEST, ".plan");
    snprintf(path, sizeof path, "%s/merged", root);
    expect("create: a mild-merge folder", mild_context_create(&cp, &ctx), MILD_ERROR_MANIFEST,
           "merged is a mild-merge model folder, not a mild-export output: run mild-export --model ");
    snprintf(path, sizeof path, "%s/good", root);
    cp.device = -1;
    expect("create: device -1", mild_context_create(&cp, &ctx), MILD_ERROR_INVALID_ARGUMENT, "device");
    cp.device = 0;
    cp.log_level = (mild_log_level)9;
    expect("create: log level 9", mild_context_create(&cp, &ctx), MILD_ERROR_INVALID_ARGUMENT,
           "params->log_level is 9: give MILD_LOG_ERROR, MILD_LOG_WARNING, MILD_LOG_INFO or MILD_LOG_VERBOSE");
    cp.log_level = MILD_LOG_WARNING;
    expect("create: engines load (this machine)", mild_context_create(&cp, &ctx), want_load, load_needle(want_load));
    check("create: no context after a load failure", (want_load == MILD_OK) == (ctx != NULL));
    mild_context_free(ctx);
    ctx = NULL;
    expect("tensorrt headers vs library", mild_runtime_check_tensorrt(), want_trt,
           want_trt == MILD_OK ? NULL : "ILogger");
    cp.lazy_load = 1;
    snprintf(plugin, sizeof plugin, "%s/no-such-folder/libmild_plugins.so", root);
    cp.plugin_library = plugin;
    expect("create: plugin library path missing (lazy)", mild_context_create(&cp, &ctx), MILD_ERROR_INVALID_ARGUMENT,
           "params->plugin_library");
    check("create: no context after a bad plugin path", ctx == NULL);
    cp.plugin_library = NULL;
    expect("create: lazy", mild_context_create(&cp, &ctx), MILD_OK, NULL);
    if (ctx == NULL) {
        printf("%d passed, %d failed\n", g_passed, g_failed + 1);
        return 1;
    }
    check("max instances from the profile (2, none guided)",
          mild_context_max_instances(ctx, 0) == 2 && mild_context_max_instances(ctx, 1) == 0);
    check("max instances of NULL is 0", mild_context_max_instances(NULL, 0) == 0);

    /* ---- mild_erase: every argument ---- */
    expect("erase: ctx NULL", mild_erase(NULL, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "ctx is NULL");
    expect("erase: image NULL", mild_erase(ctx, NULL, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "image is NULL");
    image.data = NULL;
    expect("erase: image data NULL", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "image->data is NULL: point it at the image's pixel rows");
    image.data = pixels;
    image.channels = 2;
    expect("erase: image channels 2", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "channels");
    image.channels = 3;
    image.width = 0;
    expect("erase: image width 0", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "no pixels");
    image.width = W;
    image.stride = 100;
    expect("erase: image stride too small", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT,
           "image->stride is 100, less than width x channels = 192: give the bytes from one row to the next, or 0");
    image.stride = 0;
    out.stride = 100;
    expect("erase: out stride too small", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT,
           "out_composite->stride is 100, less than width x 3 = 192: give the bytes from one row to the next");
    out.stride = 0;
    masks[1].stride = 10;
    expect("erase: mask stride too small", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT,
           "masks[1].stride is 10, less than the width 64: give the bytes from one row to the next");
    masks[1].stride = 0;
    expect("erase: masks NULL", mild_erase(ctx, &image, NULL, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "masks is NULL but n_masks is 2: pass an array of n_masks mild_mask");
    expect("erase: zero masks", mild_erase(ctx, &image, masks, 0, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "n_masks is 0");
    expect("erase: out NULL", mild_erase(ctx, &image, masks, 2, &ep, NULL), MILD_ERROR_INVALID_ARGUMENT, "out_composite is NULL");
    out.width = 32;
    expect("erase: out of another size", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "out_composite is 32x64");
    out.width = W;
    out.data = NULL;
    expect("erase: out data NULL", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "out_composite->data");
    out.data = out_pixels;
    ep.steps = 0;
    expect("erase: steps 0", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "params->steps is 0");
    ep.steps = 5000;
    expect("erase: steps 5000", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "1..1000");
    ep.steps = 2;
    ep.guidance = -1.0f;
    expect("erase: guidance -1", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "guidance");
    ep.guidance = (float)NAN;
    expect("erase: guidance NaN", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "guidance");
    ep.guidance = 7.5f;
    expect("erase: guidance, engines without", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_UNSUPPORTED_SHAPE, "--guidance");
    ep.guidance = 1.0f;
    ep.compose = (mild_compose_mode)7;
    expect("erase: compose mode 7", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "compose");
    ep.compose = MILD_COMPOSE_EQ6;
    expect("erase: more instances than the profile", mild_erase(ctx, &image, masks, 3, &ep, &out),
           MILD_ERROR_UNSUPPORTED_SHAPE, "--max-instances 3");
    masks[1].width = 32; masks[1].height = 32; masks[1].data = small_bits;
    expect("erase: mask of the wrong size", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "masks[1] is 32x32");
    masks[1].width = W; masks[1].height = H; masks[1].data = NULL;
    expect("erase: mask data NULL", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "masks[1].data is NULL: point it at the mask's rows");
    masks[1].data = blank;
    expect("erase: empty mask", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "masks[1] is empty");
    masks[1].data = bits[1];
    image.width = 60; out.width = 60; masks[0].width = 60; masks[1].width = 60;
    expect("erase: image side not a multiple of 8", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "multiples of 8");
    image.width = W; out.width = W; masks[0].width = W; masks[1].width = W;
    {
        mild_image big = {128, 128, 3, 0, wide}, big_out = {128, 128, 3, 0, wide_out};
        mild_mask big_masks[1] = {{128, 128, 0, wide_bits}};
        expect("erase: resolution not exported", mild_erase(ctx, &big, big_masks, 1, &ep, &big_out),
               MILD_ERROR_UNSUPPORTED_SHAPE, "--resolution");
    }
    removal[0] = 2; removal[1] = 0;
    ep.remove = removal; ep.n_remove = 1;
    expect("erase: remove index out of range", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "params->remove[0] is 2");
    removal[0] = 1; removal[1] = 1; ep.n_remove = 2;
    expect("erase: remove index twice", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "twice");
    ep.remove = NULL; ep.n_remove = 1;
    expect("erase: remove NULL with a count", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "params->remove is NULL but params->n_remove is 1: point remove at n_remove");
    ep.n_remove = -5;
    expect("erase: n_remove -5", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "n_remove");
    ep.n_remove = MILD_REMOVE_ALL;
    memset(parsing, 0, sizeof parsing);
    parsing[3 * W + 5] = 25;
    ep.parsing = parsing;
    expect("erase: parsing label 25", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT, "label 25 at (5, 3)");
    ep.parsing = NULL;
    ep.prompt = "a quiet street";
    ep.prompt_source = MILD_PROMPT_CACHE;
    expect("erase: prompt not in the cache", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT,
           "is not in the prompt cache of " /* then the folder */);
    expect("erase: the fix for a prompt not in the cache", mild_erase(ctx, &image, masks, 2, &ep, &out),
           MILD_ERROR_INVALID_ARGUMENT, "export again with mild-export --prompt \"a quiet street\"");
    ep.prompt_source = (mild_prompt_source)9;
    expect("erase: prompt source 9", mild_erase(ctx, &image, masks, 2, &ep, &out), MILD_ERROR_INVALID_ARGUMENT,
           "params->prompt_source is 9: give MILD_PROMPT_AUTO, MILD_PROMPT_CACHE or MILD_PROMPT_TEXT_ENGINE");
    ep.prompt_source = MILD_PROMPT_AUTO;

    /* ---- valid arguments reach the engines, which need this machine's GPU ---- */
    expect("erase: valid arguments, then the engines", mild_erase(ctx, &image, masks, 2, &ep, &out), want_load,
           load_needle(want_load));
    ep.prompt = NULL;
    ep.progress = NULL;
    expect("erase: NULL params are the defaults", mild_erase(ctx, &image, masks, 2, NULL, &out), want_load, NULL);
    pthread_create(&thread, NULL, other_thread, &fresh);
    pthread_join(thread, NULL);
    check("last error is per thread", fresh);
    mild_context_free(ctx);

    /* ---- the initial noise (CPU) ---- */
    expect("noise: out NULL", mild_initial_noise(0, 64, 64, NULL, 0), MILD_ERROR_INVALID_ARGUMENT, "out is NULL: pass a buffer of 4 x (height / 8) x (width / 8) floats");
    expect("noise: size 60", mild_initial_noise(0, 60, 64, noise, 256), MILD_ERROR_INVALID_ARGUMENT, "multiples of 8");
    expect("noise: buffer too small", mild_initial_noise(0, 64, 64, noise, 10), MILD_ERROR_INVALID_ARGUMENT, "n_out is 10 but the noise has 256 values: pass a buffer of 256 floats");
    expect("noise: seed 0", mild_initial_noise(0, 64, 64, noise, 256), MILD_OK, NULL);
    check("noise: torch.randn(1, 4, 8, 8) of seed 0 starts -1.1258",
          fabsf(noise[0] + 1.1258398f) < 1e-5f && fabsf(noise[1] + 1.1523602f) < 1e-5f);

    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

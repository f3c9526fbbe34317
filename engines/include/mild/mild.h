/*
 * mild.h: the C API of the MILD runtime (libmild_runtime.so).
 *
 * Erases people from a photo with the TensorRT engines of a mild-export output folder: N instance
 * masks in, one composite out. Every step of the denoising loop is one batched UNet call over the
 * N foreground branches and the background branch (DESIGN.md sections 4 and 6).
 *
 *     mild_context_params cp;
 *     mild_context_params_init(&cp);
 *     cp.model_dir = "engines/tiny";
 *     mild_context* ctx = NULL;
 *     if (mild_context_create(&cp, &ctx) != MILD_OK) fprintf(stderr, "%s\n", mild_last_error());
 *     mild_erase_params ep;
 *     mild_erase_params_init(&ep);
 *     ep.steps = 25;
 *     mild_status s = mild_erase(ctx, &image, masks, n_masks, &ep, &composite);
 *     mild_context_free(ctx);
 *
 * Rules that hold for every function here:
 *   - a function returning mild_status sets the calling thread's last error on failure
 *     (mild_last_error()), naming the argument at fault and what to do about it;
 *   - no C++ exception leaves the library;
 *   - arguments are checked before any GPU work, so bad input gives a status on any machine;
 *   - *_free(NULL) does nothing;
 *   - a context may be used from one thread at a time (different contexts: any threads); the
 *     functions that take no context may be called from any thread at any time;
 *   - pointers passed in (strings, images, masks, arrays) are read during the call only: nothing
 *     keeps them afterwards, except the log callback and its user pointer (until mild_context_free);
 *   - the caller owns every buffer; the library allocates nothing the caller must free except the
 *     context (mild_context_free).
 */
#ifndef MILD_MILD_H
#define MILD_MILD_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#if defined(MILD_RUNTIME_BUILD)
#define MILD_API __declspec(dllexport)
#else
#define MILD_API __declspec(dllimport)
#endif
#else
#define MILD_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define MILD_API_VERSION 1

/* ---- status ---------------------------------------------------------------------------------- */

typedef enum mild_status {
    MILD_OK = 0,
    MILD_ERROR_INVALID_ARGUMENT = 1,  /* NULL pointer, bad size or value: the message names it */
    MILD_ERROR_UNSUPPORTED_SHAPE = 2, /* valid input the engines were not built for (instances,
                                         resolution, guidance): export again with wider shapes */
    MILD_ERROR_MANIFEST = 3,          /* model folder, manifest.json or an engine file missing or
                                         unreadable */
    MILD_ERROR_NO_CUDA_DEVICE = 4,    /* no CUDA driver or no GPU */
    MILD_ERROR_TENSORRT_MISMATCH = 5, /* the TensorRT library loaded is not the one whose headers
                                         this library was compiled against (ILogger ABI) */
    MILD_ERROR_ENGINE = 6,            /* an engine did not deserialise (built for another GPU or
                                         TensorRT version), or the plugin library did not load */
    MILD_ERROR_CUDA = 7,              /* a CUDA call or an engine execution failed */
    MILD_ERROR_OUT_OF_MEMORY = 8,
    MILD_ERROR_CANCELLED = 9,         /* the progress callback returned non-zero */
    MILD_ERROR_INTERNAL = 10
} mild_status;

/* A static English name for a status ("MILD_ERROR_INVALID_ARGUMENT"); never NULL. */
MILD_API const char* mild_status_string(mild_status status);

/* The calling thread's last error message ("" if none); valid until the next failing call on the
 * same thread. A successful call does not clear it: read it only after a failing status. */
MILD_API const char* mild_last_error(void);

/* ---- library information --------------------------------------------------------------------- */

/* "MAJOR.MINOR.PATCH" of this library. */
MILD_API const char* mild_runtime_version(void);

/* The TensorRT this library was compiled for, from the headers' NvInferVersion.h, e.g.
 * "TensorRT 10.14.1" or "TensorRT-RTX 1.7.1", followed by " (linked: libtensorrt_rtx)". */
MILD_API const char* mild_runtime_tensorrt_version(void);

/* Whether the TensorRT library loaded into this process is the one the headers describe.
 * MILD_OK, or MILD_ERROR_TENSORRT_MISMATCH with both versions in mild_last_error(). Needs no GPU.
 * mild_context_create checks this too, before it hands TensorRT an ILogger (DESIGN.md section 7). */
MILD_API mild_status mild_runtime_check_tensorrt(void);

/* ---- images ---------------------------------------------------------------------------------- */

/* 8-bit interleaved pixels (sRGB, 0..255), rows top to bottom. stride: bytes from one row to the next
 * (0 means width * channels). The input image is only read; the output is written. */
typedef struct mild_image {
    int width;
    int height;
    int channels; /* input: 3 (RGB) or 4 (RGBA, alpha ignored); output: 3 */
    int stride;
    uint8_t* data;
} mild_image;

/* One instance mask, the image's size: 0 is background, any other value is the person. A mask with
 * no non-zero pixel is MILD_ERROR_INVALID_ARGUMENT. */
typedef struct mild_mask {
    int width;
    int height;
    int stride; /* 0 means width */
    const uint8_t* data;
} mild_mask;

/* ---- context --------------------------------------------------------------------------------- */

typedef enum mild_log_level {
    MILD_LOG_ERROR = 0,
    MILD_LOG_WARNING = 1,
    MILD_LOG_INFO = 2,
    MILD_LOG_VERBOSE = 3
} mild_log_level;

/* Called with TensorRT's messages while the context loads, runs and is freed, possibly from
 * TensorRT's own threads: make it thread-safe. `message` is valid during the call only. */
typedef void (*mild_log_fn)(mild_log_level level, const char* message, void* user);

/* Strings are copied by mild_context_create; log and log_user must stay valid until
 * mild_context_free. */
typedef struct mild_context_params {
    const char* model_dir;      /* a mild-export output folder: manifest.json and <graph>.plan */
    const char* plugin_library; /* NULL: the manifest's engines.plugin_library (beside the
                                   engines), or none when the engines have no plugin layers.
                                   A path (with a '/') must name a file; a bare name is found by
                                   the dynamic loader; "" loads none */
    int device;                 /* CUDA device ordinal (default 0) */
    int lazy_load;              /* 0 (default): load the engines now. Non-zero: only read and check
                                   the manifest now; the engines load on the first mild_erase,
                                   after its arguments have been checked */
    mild_log_level log_level;   /* messages up to this level reach `log` (default WARNING) */
    mild_log_fn log;            /* NULL: messages are dropped (errors still reach mild_last_error) */
    void* log_user;
} mild_context_params;

typedef struct mild_context mild_context;

/* Defaults into *params (does nothing when params is NULL). */
MILD_API void mild_context_params_init(mild_context_params* params);

/* Reads DIR/manifest.json, checks that every engine file it names exists and, unless lazy_load,
 * loads the plugin library and deserialises the engines on the GPU (which leaves params->device
 * the calling thread's current CUDA device). *out is NULL on failure; free a context with
 * mild_context_free. */
MILD_API mild_status mild_context_create(const mild_context_params* params, mild_context** out);

MILD_API void mild_context_free(mild_context* ctx);

/* The most instances (masks) one mild_erase may pass to this context's engines, without
 * (guided = 0) or with (guided != 0) classifier-free guidance; 0 when the engines cannot run
 * that way. From the engines' optimisation profiles recorded in the manifest. Needs no GPU.
 * ctx NULL: 0, with the reason in mild_last_error(). */
MILD_API int mild_context_max_instances(const mild_context* ctx, int guided);

/* ---- erasing ----------------------------------------------------------------------------------- */

typedef enum mild_compose_mode {
    MILD_COMPOSE_COPY_OUTSIDE = 0, /* pixels outside the removed masks copied from the input */
    MILD_COMPOSE_EQ6 = 1           /* the paper's Eq. 6 over the whole image */
} mild_compose_mode;

typedef enum mild_prompt_source {
    MILD_PROMPT_AUTO = 0,       /* the manifest's prompt cache if it holds the prompt, else the
                                   text engine */
    MILD_PROMPT_CACHE = 1,      /* only the cache: a prompt not in it is an error */
    MILD_PROMPT_TEXT_ENGINE = 2 /* always the text engine (byte-tokenizer models only) */
} mild_prompt_source;

/* Called after each denoising step (step = 1..steps), on the thread that called mild_erase, once
 * the step's GPU work has finished (so setting it makes every step wait for the GPU); a non-zero
 * return cancels the erase, which then returns MILD_ERROR_CANCELLED. */
typedef int (*mild_progress_fn)(int step, int steps, void* user);

#define MILD_REMOVE_ALL (-1)

typedef struct mild_erase_params {
    const int* remove;  /* 0-based instance indices to erase (distinct) */
    int n_remove;       /* MILD_REMOVE_ALL (default): every instance; 0: none (the composite is
                           the input image in copy-outside mode) */
    int steps;          /* DDIM steps, 1..num_train_timesteps (default 25) */
    float guidance;     /* classifier-free guidance scale; 1 (default) disables it */
    uint64_t seed;      /* the initial noise, the same as the Python pipeline's for the seed
                           (ignored when initial_noise is set) */
    mild_compose_mode compose;
    const char* prompt; /* NULL or "" (default): the empty prompt */
    mild_prompt_source prompt_source;
    const float* keypoints;  /* NULL, or [n_masks][18][3]: x, y in image pixels and confidence
                                (OpenPose-18; confidence 0 = missing) */
    const uint8_t* parsing;  /* NULL, or [height][width] LIP label ids 0..19, rows packed (no
                                stride) */
    const float* initial_noise; /* NULL (seeded noise), or [4][height / 8][width / 8] float32 latent
                                   noise, shared by every branch (mild_initial_noise's layout) */
    mild_progress_fn progress;
    void* user;
} mild_erase_params;

/* Defaults into *params (does nothing when params is NULL). */
MILD_API void mild_erase_params_init(mild_erase_params* params);

/* Erase the instances in params->remove from `image`. masks: n_masks masks of the image's size,
 * instance k is masks[k]. Both sides of the image must be multiples of 8 and within the engines'
 * exported resolutions (MILD_ERROR_UNSUPPORTED_SHAPE names the mild-export option otherwise).
 * out_composite: caller-owned, the image's width and height, 3 channels (RGB), data allocated by
 * the caller (stride 0 or >= width * 3). params NULL means the defaults. Blocks until the
 * composite is written. On failure the composite's pixels are unspecified (untouched when the
 * failure comes before the GPU work, as every argument error does). The context stays usable
 * after MILD_ERROR_INVALID_ARGUMENT, MILD_ERROR_UNSUPPORTED_SHAPE and MILD_ERROR_CANCELLED. */
MILD_API mild_status mild_erase(mild_context* ctx, const mild_image* image, const mild_mask* masks,
                                int n_masks, const mild_erase_params* params,
                                mild_image* out_composite);

/* The initial latent noise the Python pipeline draws for `seed` (torch.Generator().manual_seed(
 * seed), torch.randn(1, 4, height / 8, width / 8)), into out[4 * (height / 8) * (width / 8)]
 * (n_out: the number of floats out holds). width and height are the image's, in pixels.
 * CPU only. Equal to torch's up to float rounding of log/sin/cos. */
MILD_API mild_status mild_initial_noise(uint64_t seed, int width, int height, float* out, size_t n_out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MILD_MILD_H */

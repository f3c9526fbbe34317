// Runtime values to template parameters, one place for the instantiation list
// (the idea of flash-attention's static_switch.h). Each macro runs its body with a constexpr name.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

// The fp16/bf16 element type (fp32 has its own kernel and never reaches this switch).
#define MILD_HALF_TYPE_SWITCH(DTYPE, NAME, ...)                                                                        \
    [&] {                                                                                                              \
        if ((DTYPE) == ::mild::sma::DataType::kBFloat16)                                                               \
        {                                                                                                              \
            using NAME = __nv_bfloat16;                                                                                \
            return __VA_ARGS__();                                                                                      \
        }                                                                                                              \
        using NAME = __half;                                                                                           \
        return __VA_ARGS__();                                                                                          \
    }()

// Head-dim buckets: the kernel handles any multiple of 8 up to the bucket, skipping the padding.
// 64: D <= 64 (40, 64); 96: 80; 128; 160; 256: everything else up to 256.
#define MILD_HEAD_DIM_SWITCH(HEAD_DIM, NAME, ...)                                                                      \
    [&] {                                                                                                              \
        if ((HEAD_DIM) <= 64)                                                                                          \
        {                                                                                                              \
            constexpr int NAME = 64;                                                                                   \
            return __VA_ARGS__();                                                                                      \
        }                                                                                                              \
        if ((HEAD_DIM) <= 96)                                                                                          \
        {                                                                                                              \
            constexpr int NAME = 96;                                                                                   \
            return __VA_ARGS__();                                                                                      \
        }                                                                                                              \
        if ((HEAD_DIM) <= 128)                                                                                         \
        {                                                                                                              \
            constexpr int NAME = 128;                                                                                  \
            return __VA_ARGS__();                                                                                      \
        }                                                                                                              \
        if ((HEAD_DIM) <= 160)                                                                                         \
        {                                                                                                              \
            constexpr int NAME = 160;                                                                                  \
            return __VA_ARGS__();                                                                                      \
        }                                                                                                              \
        constexpr int NAME = 256;                                                                                      \
        return __VA_ARGS__();                                                                                          \
    }()

# What the plugin build (the top-level CMakeLists.txt) and the runtime's standalone build
# (engines/CMakeLists.txt) share, so that both build the same way when built apart.

# Before project(): SASS for Ampere, Ada and Hopper plus compute_90 PTX for newer GPUs, unless the
# caller chose (one architecture, e.g. -DCMAKE_CUDA_ARCHITECTURES=86-real, for a quick build).
macro(mild_default_cuda_architectures)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "80-real;86-real;89-real;90" CACHE STRING
        "CUDA architectures for the kernels (sm_80 or newer: the kernels use mma.sync)")
  endif()
endmacro()

# After project(): C++17 and CUDA C++17, a Release build unless one was chosen, the install
# layout and the CUDA toolkit.
macro(mild_project_defaults)
  set(CMAKE_CXX_STANDARD 17)
  set(CMAKE_CXX_STANDARD_REQUIRED ON)
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
    set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
  endif()
  include(GNUInstallDirs)
  include(CMakePackageConfigHelpers)
  find_package(CUDAToolkit REQUIRED)
endmacro()

# A leaner llama-cpp-python build: only what orchestrai's local provider loads.
#
# Used from the checkout's root as (README set-up and tests, .ci/run)
#   CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DCMAKE_PROJECT_llama.cpp_INCLUDE='$PWD/tools/llama_cpp_lean.cmake'"
# CMake includes this file right after the vendored llama.cpp's project("llama.cpp" C CXX) call
# (the name must match that call's exactly), in llama.cpp's own directory scope. The flags beside it:
#   GGML_NATIVE=OFF  a generic-CPU build: a -march=native build crashed at the first token on the
#                    2-core machines this was tested on.
#   LLAVA_BUILD=OFF  skips libmtmd (images and audio for multimodal models); llama-cpp-python
#                    imports it only in its multimodal chat handlers, which orchestrai never uses.
#
# llama-cpp-python forces LLAMA_BUILD_COMMON ON in the cache (set(... CACHE BOOL ... FORCE)), so
# -DLLAMA_BUILD_COMMON=OFF on the command line is overwritten. The common library (what llama.cpp's
# own tools share: argument parser, model downloader, chat parsers; 52 C++ files plus cpp-httplib) is
# never loaded by the Python bindings, which call libllama and libggml through ctypes. A normal
# variable shadows the cache entry here, and llama.cpp's option(LLAMA_BUILD_COMMON ...) leaves it
# alone (policy CMP0077 is NEW under its cmake_minimum_required 3.14), so common/ is never added.
# libmtmd's command-line tools need common, hence LLAVA_BUILD=OFF goes with this file.
#
# Measured on a 2-core machine (benchmarks/RESULTS.md, llama-cpp-python 0.3.36): 83 build steps
# instead of 193, 183 CPU-seconds instead of 464, a 14 MB wheel instead of 24 MB.
set(LLAMA_BUILD_COMMON OFF)

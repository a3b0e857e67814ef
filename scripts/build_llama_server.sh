#!/usr/bin/env bash
# Build llama-server from the llama.cpp vendored in the pinned llama-cpp-python sdist; print its path last.
#
#     bash scripts/build_llama_server.sh [CACHE_DIR]
#
# CACHE_DIR defaults to ${LLAMA_SERVER_CACHE:-$HOME/.cache/ollama_server/llama-server}. The binary lands in
# $CACHE/llama_cpp_python-<ver>/vendor/llama.cpp/build/bin/llama-server; when it is already there the script
# only prints that path (a build takes ~15 minutes on 2 cores).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${1:-${LLAMA_SERVER_CACHE:-$HOME/.cache/ollama_server/llama-server}}"

# The sources: fetched (once; instant afterwards) by the same script that fetches the checkpoint converter.
LLAMA="$(set -o pipefail; bash "$ROOT/scripts/fetch_converter.sh" "$CACHE" | tail -1)"
BINARY="$LLAMA/build/bin/llama-server"
if [ -x "$BINARY" ]; then
    echo "$BINARY"
    exit 0
fi
if [ ! -f "$LLAMA/CMakeLists.txt" ]; then
    echo "build_llama_server: no llama.cpp sources at $LLAMA" >&2
    exit 1
fi

# The same portable x86-64 flags as the Makefile (see its comment on AMX); the Makefile exports CMAKE_ARGS.
if [ -z "${CMAKE_ARGS:-}" ] && [ "$(uname -m)" = x86_64 ]; then
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
fi
# shellcheck disable=SC2086  # CMAKE_ARGS is a list of flags
cmake -S "$LLAMA" -B "$LLAMA/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF ${CMAKE_ARGS:-} >&2
cmake --build "$LLAMA/build" --config Release --target llama-server -j"$(nproc)" >&2

if [ ! -x "$BINARY" ]; then
    echo "build_llama_server: the build finished but $BINARY is missing" >&2
    exit 1
fi
echo "$BINARY"

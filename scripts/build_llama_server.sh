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
PY="${PYTHON:-$ROOT/.venv/bin/python}"

VERSION="$(sed -n 's/^llama-cpp-python==\([^[:space:]#]*\).*/\1/p' "$ROOT/requirements.txt" | head -1)"
if [ -z "$VERSION" ]; then
    echo "build_llama_server: no 'llama-cpp-python==X' line in $ROOT/requirements.txt" >&2
    exit 1
fi
SRC="$CACHE/llama_cpp_python-$VERSION"
LLAMA="$SRC/vendor/llama.cpp"
BINARY="$LLAMA/build/bin/llama-server"

if [ -x "$BINARY" ]; then
    echo "$BINARY"
    exit 0
fi

mkdir -p "$CACHE"
if [ ! -f "$LLAMA/CMakeLists.txt" ]; then
    # pip prints its progress on stdout: keep stdout for the path alone.
    "$PY" -m pip download --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d "$CACHE" >&2
    SDIST="$(ls "$CACHE"/llama_cpp_python-"$VERSION".tar.gz "$CACHE"/llama-cpp-python-"$VERSION".tar.gz 2>/dev/null | head -1)"
    if [ -z "$SDIST" ]; then
        echo "build_llama_server: pip did not leave an sdist for llama-cpp-python==$VERSION in $CACHE" >&2
        exit 1
    fi
    tar -xzf "$SDIST" -C "$CACHE"
    # Older sdists use the dashed name for their top directory.
    if [ ! -d "$SRC" ] && [ -d "$CACHE/llama-cpp-python-$VERSION" ]; then
        mv "$CACHE/llama-cpp-python-$VERSION" "$SRC"
    fi
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

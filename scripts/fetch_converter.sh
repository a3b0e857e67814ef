#!/usr/bin/env bash
# Fetch the llama.cpp vendored in the pinned llama-cpp-python sdist (it holds convert_hf_to_gguf.py); print its path last.
#
#     bash scripts/fetch_converter.sh [CACHE_DIR]
#
# CACHE_DIR defaults to ${LLAMA_SERVER_CACHE:-$HOME/.cache/ollama_server/llama-server}; the tree lands in
# $CACHE/llama_cpp_python-<ver>/vendor/llama.cpp, where the server looks when converter_dir is empty. Nothing is
# downloaded when it is already there. The converter's Python packages (torch, transformers, ...) are not
# installed here: $PY -m pip install -r <that path>/requirements/requirements-convert_hf_to_gguf.txt does it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${1:-${LLAMA_SERVER_CACHE:-$HOME/.cache/ollama_server/llama-server}}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"

VERSION="$(sed -n 's/^llama-cpp-python==\([^[:space:]#]*\).*/\1/p' "$ROOT/requirements.txt" | head -1)"
if [ -z "$VERSION" ]; then
    echo "fetch_converter: no 'llama-cpp-python==X' line in $ROOT/requirements.txt" >&2
    exit 1
fi
SRC="$CACHE/llama_cpp_python-$VERSION"
LLAMA="$SRC/vendor/llama.cpp"

# Both what the converter needs and what build_llama_server.sh builds from.
if [ ! -f "$LLAMA/convert_hf_to_gguf.py" ] || [ ! -f "$LLAMA/CMakeLists.txt" ]; then
    mkdir -p "$CACHE"
    # pip prints its progress on stdout: keep stdout for the path alone.
    "$PY" -m pip download --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d "$CACHE" >&2
    SDIST=""
    for candidate in "$CACHE/llama_cpp_python-$VERSION.tar.gz" "$CACHE/llama-cpp-python-$VERSION.tar.gz"; do
        if [ -f "$candidate" ]; then SDIST="$candidate"; break; fi
    done
    if [ -z "$SDIST" ]; then
        echo "fetch_converter: pip did not leave an sdist for llama-cpp-python==$VERSION in $CACHE" >&2
        exit 1
    fi
    tar -xzf "$SDIST" -C "$CACHE"
    # Older sdists use the dashed name for their top directory.
    if [ ! -d "$SRC" ] && [ -d "$CACHE/llama-cpp-python-$VERSION" ]; then
        mv "$CACHE/llama-cpp-python-$VERSION" "$SRC"
    fi
fi
if [ ! -f "$LLAMA/convert_hf_to_gguf.py" ] || [ ! -f "$LLAMA/CMakeLists.txt" ]; then
    echo "fetch_converter: no llama.cpp sources (convert_hf_to_gguf.py, CMakeLists.txt) at $LLAMA" >&2
    exit 1
fi
echo "$LLAMA"

#!/usr/bin/env bash
# Set up imgcls on a fresh machine: PyTorch (the local CPU build), imgcls with its dev tools, and the real
# Fashion-MNIST dataset. Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

# 1. PyTorch first, pinned: a bare 'torch' requirement with no torch installed pulls several GB of CUDA packages.
if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install --quiet torch==2.13.0
fi

# 2. imgcls itself, editable, with the test and lint tools and the optional features: export (onnx,
#    onnxscript, onnxruntime), serve (fastapi, uvicorn, python-multipart) and the served page's browser test
#    (httpx, Playwright, which drives the system's Chromium below: never `playwright install`).
"$PY" -m pip install --quiet -e ".[dev,export,serve,serve-test]"
command -v pyenv >/dev/null 2>&1 && pyenv rehash 2>/dev/null || true  # expose the new 'imgcls' command

# 3. Debian packages where apt-get works: Fashion-MNIST (dataset-fashion-mnist, /usr/share/datasets/fashion-mnist)
#    and Chromium for the served page's browser test (which skips, saying why, without it).
NEED=""
[ -d /usr/share/datasets/fashion-mnist ] || NEED="$NEED dataset-fashion-mnist"
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || NEED="$NEED chromium"
if [ -n "$NEED" ] && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
    if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
        # shellcheck disable=SC2086
        { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $NEED >/dev/null; } ||
            echo "setup.sh: note: could not install$NEED; without Fashion-MNIST 'imgcls train' falls back to digits" >&2
    fi
fi
echo "setup.sh: done ($("$PY" -c 'import torch, imgcls; print(f"torch {torch.__version__}, imgcls {imgcls.__version__}")'))"

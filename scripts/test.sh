#!/usr/bin/env bash
# Builds slm (release preset) and runs every test. Reference data comes from $SLM_SHARED
# (default: ../shared next to the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
export SLM_SHARED="${SLM_SHARED:-$(cd .. && pwd)/shared}"
cmake --preset release
cmake --build --preset release -j "$(nproc)"
ctest --preset release -j "$(nproc)" --timeout 900

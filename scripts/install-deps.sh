#!/usr/bin/env bash
# Installs what slm needs to build and test on Debian 12 (run as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
  g++ cmake ninja-build pkg-config git ca-certificates \
  libfmt-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libutf8proc-dev \
  libgtest-dev libgmock-dev libbenchmark-dev

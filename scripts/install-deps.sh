#!/usr/bin/env bash
# Installs what slm needs to build and test on Debian 12 (run as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
  g++ cmake ninja-build pkg-config git ca-certificates \
  libfmt-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libutf8proc-dev \
  libgtest-dev libgmock-dev libbenchmark-dev \
  libcpp-httplib-dev \
  libsqlite3-dev libgumbo-dev libpoppler-cpp-dev \
  chromium
# libpq: the index in a PostgreSQL database (--db postgresql://...). The server itself only for
# the tests, which start a private one of their own (tests/support/postgres.h).
apt-get install -y --no-install-recommends libpq-dev postgresql
# spm_train / spm_encode: the SentencePiece conversion test trains models and checks slm's ids
# against SentencePiece's own (tests/test_convert_hf_vocab.cpp).
apt-get install -y --no-install-recommends sentencepiece
# Node.js and npm run the server's end-to-end tests (the official openai client, Playwright
# driving the Chromium above). Debian's own nodejs/npm when the machine has no Node yet; a
# Node that is already installed (with its npm) is kept.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get install -y --no-install-recommends nodejs npm
fi

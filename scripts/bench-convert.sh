#!/usr/bin/env bash
# slm convert against cp on the same folder, in the same run (docs/performance.md, issue 11):
#   scripts/bench-convert.sh HF_DIR [SLM] [ROUNDS] [OUTTYPES]
# Each step is timed from its start to the end of a `sync`, so that both pay for the disk.
# The first cp warms the page cache and is printed but not counted. Writes next to HF_DIR.
set -euo pipefail
hf=${1:?usage: bench-convert.sh HF_DIR [SLM] [ROUNDS] [OUTTYPES]}
slm=${2:-build/release/slm}
rounds=${3:-3}
types=${4:-auto f16}
work=$(dirname "$hf")/bench-convert.$$
mkdir -p "$work"
trap 'rm -rf "$work"; sync' EXIT
bytes=$(du -sb "$hf" | cut -f1)
echo "folder $hf: $bytes bytes; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
timed() {  # label, command...: seconds to the end of the sync (the command's own part)
  local label=$1; shift
  sync
  local t0 t1 t2
  t0=$(date +%s.%N)
  "$@" > /dev/null
  t1=$(date +%s.%N)
  sync
  t2=$(date +%s.%N)
  awk -v l="$label" -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "%-14s %6.2f s  (%.2f s, then sync %.2f s)\n", l, c - a, b - a, c - b }'
}
timed "cp (warm-up)" cp -r "$hf" "$work/cp"; rm -rf "$work/cp"; sync
for r in $(seq "$rounds"); do
  echo "round $r"
  timed "cp -r" cp -r "$hf" "$work/cp"; rm -rf "$work/cp"; sync
  for t in $types; do
    timed "convert $t" "$slm" convert "$hf" -o "$work/o.gguf" --outtype "$t" -q
    rm -f "$work/o.gguf"; sync
  done
done

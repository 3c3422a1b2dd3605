#!/usr/bin/env bash
# The amx level on an AMX machine (issue 13), in one go: the tile unit against its model and the
# scalar path, then prompt speed at the amx and avx512vnni levels on 1B-shape files, same binary,
# same thread count, one run:
#   scripts/amx-check.sh [WORK_DIR] [THREADS]
# WORK_DIR (default /tmp/slm-amx) receives the synthesized models (~6 GB: bf16, Q8_0, Q4_K_M,
# Q4_0); they are reused when present. Needs a release build and ../shared (or SLM_SHARED).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/slm-amx}
threads=${2:-$(nproc)}
slm=build/release/slm
shared=${SLM_SHARED:-$(cd .. && pwd)/shared}
grep -m1 'model name' /proc/cpuinfo
if ! "$slm" info -m "$shared/models/stories260K.gguf" | grep -q '^amx: *ready'; then
  "$slm" info -m "$shared/models/stories260K.gguf" | grep '^amx:'
  echo "no usable AMX here: nothing to check" >&2
  exit 1
fi
echo "== the tile unit against its model and the scalar path"
SLM_SHARED="$shared" ./build/release/test_ops_kernels --gtest_filter='AmxTiles.*'
echo "== the golden tests at the amx level"
SLM_FORCE_ISA=amx SLM_SHARED="$shared" ./build/release/test_engine_logits --gtest_brief=1
mkdir -p "$work"
vocab="$shared/fixtures/vocab/ggml-vocab-llama-bpe.gguf"
[ -f "$work/l1b-bf16.gguf" ] || "$slm" synth --like llama-3.2-1b --vocab "$vocab" --type bf16 -o "$work/l1b-bf16.gguf" -q
[ -f "$work/l1b-f16.gguf" ] || "$slm" synth --like llama-3.2-1b --vocab "$vocab" --type f16 -o "$work/l1b-f16.gguf" -q
for t in Q4_0 Q8_0 Q4_K_M; do
  [ -f "$work/l1b-$t.gguf" ] || "$slm" quantize "$work/l1b-f16.gguf" "$work/l1b-$t.gguf" "$t" > /dev/null
done
echo "== slm bench, $threads threads: pp512 and tg128 (3 repetitions), pp2048 (1); avx512vnni, then amx"
for t in Q4_0 Q8_0 Q4_K_M bf16; do
  for isa in avx512vnni amx; do
    printf '%-7s %-11s ' "$t" "$isa"
    { SLM_FORCE_ISA=$isa "$slm" bench -m "$work/l1b-$t.gguf" -t "$threads" -p 512 -n 128 -r 3 2>/dev/null
      SLM_FORCE_ISA=$isa "$slm" bench -m "$work/l1b-$t.gguf" -t "$threads" -p 2048 -n 0 -r 1 2>/dev/null; } |
      awk -F'|' '$6 ~ /pp512|tg128|pp2048/ { gsub(/ /, "", $6); printf "%s %s t/s   ", $6, $7 } END { print "" }'
  done
done
# Start-up (load) and first-token time, median of 5: a 5-token prompt (decode kernels only) and
# a ~200-token one (the prompt goes through the long-batch products).
long_prompt=$(head -c 900 "$shared/text/eval-docs.txt" | tr '\n' ' ')
echo "== slm run -n 1 --timings, $threads threads, median of 5: model load ms, first token ms"
for t in Q4_0 Q4_K_M; do
  for isa in avx512vnni amx; do
    for which in short long; do
      prompt="Once upon a time"
      [ "$which" = long ] && prompt=$long_prompt
      for i in 1 2 3 4 5; do
        SLM_FORCE_ISA=$isa "$slm" run -m "$work/l1b-$t.gguf" -t "$threads" -p "$prompt" -n 1 --temp 0 --timings 2>&1 >/dev/null |
          sed -n 's/.*model \([0-9.]*\) ms.*prompt of \([0-9]*\) tokens + first token at \([0-9.]*\) ms.*/\1 \2 \3/p'
      done | sort -n -k3 | sed -n 3p | awk -v t="$t" -v isa="$isa" -v w="$which" \
        '{ printf "%-7s %-11s %-5s prompt %4d tokens: load %7.1f ms, first token %7.1f ms\n", t, isa, w, $2, $1, $3 }'
    done
  done
done

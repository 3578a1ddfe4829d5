#!/usr/bin/env bash
# bench/gemma-bench.sh — Gemma 3, kiln vs llama.cpp on the same GGUF files: a checkpoint of the text config of
# google/gemma-3-1b-it (Gemma3ForCausalLM: hidden 1152, intermediate 6912, 26 layers, 4 heads / 1 KV head,
# head_dim 256, vocab 262144, tied, sliding window 512 on 5 of every 6 layers, rope 1e6 global / 1e4 local,
# query_pre_attn_scalar 256, GELU-tanh) with random bf16 weights (../shared/tools/make_arch_model.py; the
# Llama-2 SentencePiece tokenizer, which llama.cpp's converter pads to the 262144-entry vocabulary),
# converted by llama.cpp's converter (BF16 GGUF) and llama-quantize (Q8_0, Q4_K_M). Both engines read those
# files. pp$PP / tg$TG at $THREADS threads, $ROUNDS interleaved rounds, medians (bench/gguf-rounds.sh).
#
# Measured 2026-12-01, 3 rounds, one FORMATS value per locked run (`flock /tmp/kiln-bench.lock nice -n -10
# bench/gemma-bench.sh`, TG=64), against llama.cpp's better wait policy (default at this load):
#   BF16   pp512 llama.cpp 208.40 / kiln 212.28 tok/s: 1.02x; tg64 14.54 / 13.68 tok/s: 0.94x (load 5.4-6.1)
#   Q4_K_M pp512 llama.cpp 110.23 / kiln 136.37 tok/s: 1.24x; tg64 23.73 / 23.52 tok/s: 0.99x (load 11-13)
#   Q8_0   pp512 llama.cpp 118.53 / kiln 276.61 tok/s: 2.33x; tg64 22.32 / 27.92 tok/s: 1.25x (load 10-10.5)
# Where kiln's time goes (perf, decode / prefill): BF16 89% the float GEMV (gemm_bf16) / 79% the bf16
# dot-product tiles (gemm_bf_rows); Q4_K_M 44% kern_gemm_q5_0_avx512 + 21% Q8_0 (the tied 262144 x 1152
# embedding as LM head is Q8_0, 306 MB a token) / 54% Q5_0, and in prefill 9% goes to the scalar
# activation quantisers (quantize_row_q8_0_ref for Q5_0's Q8_0 activations, with its roundf / fmaxf,
# and quantize_row_q8_K_ref). The Gemma graph itself (sandwich norms, GELU-tanh, q/k norms) is < 3%.
# llama-quantize's Q4_K_M of this shape is mostly Q5_0 (117 of 234 matrices: rows of 1152 are not a
# multiple of 256, so its Q4_K falls back to Q5_0 and Q6_K to Q8_0, as in the published gemma-3-1b Q4_K_M
# files).
# Setup is done once and kept: $MODEL (the checkpoint, 1.9 GB) and $MODEL-{BF16,Q8_0,Q4_K_M}.gguf.
#
# Usage: bench/gemma-bench.sh   (env: ROUNDS=3 THREADS=2 PP=512 TG=128 FORMATS="BF16 Q8_0 Q4_K_M"
#                                 LLAMA_WAIT="default passive" MODEL=/tmp/moebench/gemma3-1b
#                                 SHARED=../shared LLAMACPP=/work/llamacpp KILN=build/kiln [not rebuilt when given])
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
ROUNDS=${ROUNDS:-3} THREADS=${THREADS:-2} PP=${PP:-512} TG=${TG:-128}
FORMATS=${FORMATS:-"BF16 Q8_0 Q4_K_M"}
MODEL=${MODEL:-/tmp/moebench/gemma3-1b} LLAMACPP=${LLAMACPP:-/work/llamacpp}
. bench/gguf-rounds.sh
echo "== setup (checkpoint, GGUF: each done once)" >&2
mkdir -p "$(dirname "$MODEL")"
SP=$SHARED/tokenizers/llama2-sp
[ -f "$MODEL/config.json" ] || $PY "$SHARED/tools/make_arch_model.py" --arch gemma3 --hidden 1152 --inter 6912 \
    --layers 26 --heads 4 --kv-heads 1 --head-dim 256 --vocab 262144 --sliding-window 512 --swa-pattern 6 \
    --rope-theta 1000000 --rope-local-theta 10000 --max-pos 32768 --query-pre-attn-scalar 256 \
    --tokenizer "$SP" --tokenizer-model "$SP/tokenizer.model" --out "$MODEL" >&2
[ -f "$MODEL-BF16.gguf" ] || $LLAMA_CONVERT "$MODEL" --outtype bf16 --outfile "$MODEL-BF16.gguf" >&2
for fmt in $FORMATS; do
    [ -f "$MODEL-$fmt.gguf" ] || "$LLAMA_BIN/llama-quantize" "$MODEL-BF16.gguf" "$MODEL-$fmt.gguf" "$fmt" >&2
done
gguf_kiln
echo "== gemma3 1B shape, $THREADS threads, $ROUNDS interleaved rounds, pp$PP tg$TG" >&2
for fmt in $FORMATS; do gguf_rounds "$fmt" "$MODEL-$fmt.gguf"; done

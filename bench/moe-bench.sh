#!/usr/bin/env bash
# bench/moe-bench.sh — mixture of experts, kiln vs llama.cpp on the same GGUF files: a Qwen3-30B-A3B-shaped
# checkpoint (hidden 2048, 128 experts, top-8, moe_intermediate 768, 32 heads / 4 KV heads, head_dim 128,
# vocab 151936, untied) cut to $LAYERS layers (random bf16 weights, ../shared/tools/make_arch_model.py),
# converted by llama.cpp's converter (BF16 GGUF) and llama-quantize into Q8_0 and Q4_K_M (llama-quantize's
# mix: Q6_K ffn_down_exps / attn_v / output, Q4_K the rest, f32 routers). Both engines read those files.
# pp$PP / tg$TG at $THREADS threads, $ROUNDS interleaved rounds, medians (bench/gguf-rounds.sh, which also
# says why llama.cpp is measured under two OpenMP wait policies).
#
# The figures in the commit that last changed this script came from
#   flock /tmp/kiln-bench.lock nice -n -10 bench/moe-bench.sh
# Setup is done once and kept: $MODEL (the checkpoint, ~1.5 GB a layer in bf16), $MODEL-Q8_0.gguf,
# $MODEL-Q4_K_M.gguf (the BF16 GGUF in between is removed).
#
# Usage: bench/moe-bench.sh   (env: LAYERS=4 ROUNDS=3 THREADS=2 PP=512 TG=128 FORMATS="Q8_0 Q4_K_M"
#                               LLAMA_WAIT="default passive" MODEL=/tmp/moebench/qwen3moe-a3b-L$LAYERS
#                               SHARED=../shared LLAMACPP=/work/llamacpp KILN=build/kiln [not rebuilt when given])
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
LAYERS=${LAYERS:-4} ROUNDS=${ROUNDS:-3} THREADS=${THREADS:-2} PP=${PP:-512} TG=${TG:-128}
FORMATS=${FORMATS:-"Q8_0 Q4_K_M"}
MODEL=${MODEL:-/tmp/moebench/qwen3moe-a3b-L$LAYERS} LLAMACPP=${LLAMACPP:-/work/llamacpp}
PY=/usr/bin/python3
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

[ -f "$LLAMACPP/env.sh" ] || { echo "no llama.cpp at $LLAMACPP (build it: $SHARED/tools/baseline/build_llamacpp.sh)" >&2; exit 1; }
. "$LLAMACPP/env.sh"
echo "== setup (checkpoint, GGUF: each done once)" >&2
mkdir -p "$(dirname "$MODEL")"
[ -f "$MODEL/config.json" ] || $PY "$SHARED/tools/make_arch_model.py" --arch qwen3moe --hidden 2048 --inter 6144 \
    --moe-inter 768 --experts 128 --top-k 8 --heads 32 --kv-heads 4 --head-dim 128 --layers "$LAYERS" \
    --tokenizer "$SHARED/tokenizers/qwen3" --out "$MODEL" >&2
for fmt in $FORMATS; do
    [ -f "$MODEL-$fmt.gguf" ] && continue
    [ -f "$MODEL-BF16.gguf" ] || $LLAMA_CONVERT "$MODEL" --outtype bf16 --outfile "$MODEL-BF16.gguf" >&2
    "$LLAMA_BIN/llama-quantize" "$MODEL-BF16.gguf" "$MODEL-$fmt.gguf" "$fmt" >&2
done
rm -f "$MODEL-BF16.gguf"
[ -n "${KILN:-}" ] || { make -j2 build/kiln >/dev/null; KILN=build/kiln; }

. bench/gguf-rounds.sh
echo "== qwen3moe $LAYERS layers, $THREADS threads, $ROUNDS interleaved rounds, pp$PP tg$TG" >&2
for fmt in $FORMATS; do gguf_rounds "$fmt" "$MODEL-$fmt.gguf"; done

#!/usr/bin/env bash
# bench/moe-bench.sh — mixture of experts, kiln vs llama.cpp on the same GGUF files: a Qwen3-30B-A3B-shaped
# checkpoint (hidden 2048, 128 experts, top-8, moe_intermediate 768, 32 heads / 4 KV heads, head_dim 128,
# vocab 151936, untied) cut to $LAYERS layers (random bf16 weights, ../shared/tools/make_arch_model.py),
# converted by llama.cpp's converter (BF16 GGUF) and llama-quantize into Q8_0 and Q4_K_M (llama-quantize's
# mix: Q6_K ffn_down_exps / attn_v / output, Q4_K the rest, f32 routers). Both engines read those files.
# pp$PP / tg$TG at $THREADS threads, $ROUNDS interleaved rounds, medians (bench/gguf-rounds.sh, which also
# says why llama.cpp is measured under two OpenMP wait policies).
#
# Measured 2026-12-01, 4 layers, 3 rounds, `flock /tmp/kiln-bench.lock nice -n -10 bench/moe-bench.sh`
# (FORMATS=Q8_0; shared 2-core host, load average 13-14 during the run):
#   Q8_0 pp512 llama.cpp 38.69 (default wait) / 43.95 (passive) / kiln 134.42 tok/s: 3.47x / 3.06x
#        tg128 llama.cpp  1.61 (default wait) / 13.27 (passive) / kiln  13.49 tok/s: 8.37x / 1.02x
# FORMATS=Q4_K_M, LLAMA_WAIT=passive (same lock, load 9.7-7.6; /tmp/moebench/combo.sh in the commit message):
#   Q4_K_M pp512 llama.cpp 120.87 / kiln 82.52 tok/s: 0.68x; tg128 37.50 / 13.81 tok/s: 0.37x
#   (llama.cpp repacks every Q4_K matrix, experts included, to q4_K_8x8; kiln's Q4_K / Q6_K matmul
#   kernels are the gap: target missed, not profiled yet)
# tg is the host's read bandwidth for both engines: 571 MB a token in Q8_0 (58% of it the 151936 x 2048
# LM head; 4 layers of 8 active experts are 160 MB), 13.5 tok/s = 7.7 GB/s. With the same file and both
# at the roof, a tg ratio above ~1 needs a longer cut (more layers, so more expert bytes per head byte).
# Setup is done once and kept: $MODEL (the checkpoint, ~1.5 GB a layer in bf16), $MODEL-Q8_0.gguf,
# $MODEL-Q4_K_M.gguf (the BF16 GGUF in between is removed).
#
# Usage: bench/moe-bench.sh   (env: LAYERS=4 ROUNDS=3 THREADS=2 PP=512 TG=128 FORMATS="Q8_0 Q4_K_M"
#                               LLAMA_WAIT="default passive" MODEL=/tmp/moebench/qwen3moe-a3b-L$LAYERS
#                               SHARED=../shared LLAMACPP=/work/llamacpp KILN=build/kiln [not rebuilt when given])
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
LAYERS=${LAYERS:-8} ROUNDS=${ROUNDS:-3} THREADS=${THREADS:-2} PP=${PP:-512} TG=${TG:-128}
FORMATS=${FORMATS:-"Q8_0 Q4_K_M"}
MODEL=${MODEL:-/tmp/moebench/qwen3moe-a3b-L$LAYERS} LLAMACPP=${LLAMACPP:-/work/llamacpp}
. bench/gguf-rounds.sh
echo "== setup (checkpoint, GGUF: each done once)" >&2
mkdir -p "$(dirname "$MODEL")"
q8=$MODEL-Q8_0.gguf
if [ ! -f "$q8" ]; then
    if [ ! -f "$MODEL/config.json" ]; then # made aside and moved: an interrupted run leaves no half checkpoint
        rm -rf "$MODEL.part"
        $PY "$SHARED/tools/make_arch_model.py" --arch qwen3moe --hidden 2048 --inter 6144 --moe-inter 768 \
            --experts 128 --top-k 8 --heads 32 --kv-heads 4 --head-dim 128 --layers "$LAYERS" \
            --tokenizer "$SHARED/tokenizers/qwen3" --out "$MODEL.part" >&2
        mv "$MODEL.part" "$MODEL"
    fi
    $LLAMA_CONVERT "$MODEL" --outtype q8_0 --outfile "$q8.part" >&2
    mv "$q8.part" "$q8"
    rm -rf "$MODEL" # the checkpoint (1.25 GB a layer) was only the converter's input (remade if ever needed)
fi
for fmt in $FORMATS; do
    f=$MODEL-$fmt.gguf
    [ -f "$f" ] && continue
    "$LLAMA_BIN/llama-quantize" --allow-requantize "$q8" "$f.part" "$fmt" >&2
    mv "$f.part" "$f"
done
[ -z "${SETUP_ONLY:-}" ] || exit 0
gguf_kiln
echo "== qwen3moe $LAYERS layers, $THREADS threads, $ROUNDS interleaved rounds, pp$PP tg$TG" >&2
for fmt in $FORMATS; do gguf_rounds "$fmt" "$MODEL-$fmt.gguf"; done

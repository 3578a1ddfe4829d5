#!/usr/bin/env bash
# bench/moe-bench.sh — mixture of experts, kiln vs llama.cpp: a Qwen3-30B-A3B-shaped checkpoint (hidden 2048,
# 128 experts, top-8, moe_intermediate 768, 32 heads / 4 KV heads, head_dim 128, vocab 151936, untied) cut to
# $LAYERS layers (random bf16 weights, ../shared/tools/make_arch_model.py), in Q8_0 and Q4_0.
#
# kiln loads the checkpoint with --quant (its own Q8_0 / Q4_0 of the same bf16 weights; --quant-cache, so
# only the first round converts); llama.cpp runs a GGUF made from the same checkpoint by its converter
# (bf16) and llama-quantize. llama-quantize's Q4_0 keeps output.weight in Q6_K and kiln's Q4_0 keeps the
# output projection in Q8_0 (both keep the routers in f32): the tg figures include that difference.
# pp$PP / tg$TG at $THREADS threads, $ROUNDS interleaved rounds (both engines under the same noise), medians
# and the kiln / llama.cpp ratios printed, with each round's figures on stderr (their spread is the noise).
#
# Setup is done once and kept: $MODEL (the checkpoint, ~1.2 GB a layer in bf16), $MODEL-Q8_0.gguf,
# $MODEL-Q4_0.gguf; the bf16 GGUF in between is removed.
#
# Usage: bench/moe-bench.sh   (env: LAYERS=4 ROUNDS=3 THREADS=2 PP=512 TG=128 FORMATS="Q8_0 Q4_0"
#                               MODEL=/tmp/qwen3moe-a3b-L$LAYERS SHARED=../shared LLAMACPP=/work/llamacpp)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
LAYERS=${LAYERS:-4} ROUNDS=${ROUNDS:-3} THREADS=${THREADS:-2} PP=${PP:-512} TG=${TG:-128}
FORMATS=${FORMATS:-"Q8_0 Q4_0"}
MODEL=${MODEL:-/tmp/qwen3moe-a3b-L$LAYERS} LLAMACPP=${LLAMACPP:-/work/llamacpp}
PY=/usr/bin/python3
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

[ -f "$LLAMACPP/env.sh" ] || { echo "no llama.cpp at $LLAMACPP (build it: $SHARED/tools/baseline/build_llamacpp.sh)" >&2; exit 1; }
. "$LLAMACPP/env.sh"
echo "== setup (checkpoint, GGUF: each done once)" >&2
[ -f "$MODEL/config.json" ] || $PY "$SHARED/tools/make_arch_model.py" --arch qwen3moe --hidden 2048 --inter 6144 \
    --moe-inter 768 --experts 128 --top-k 8 --heads 32 --kv-heads 4 --head-dim 128 --layers "$LAYERS" \
    --tokenizer "$SHARED/tokenizers/qwen3" --out "$MODEL" >&2
for fmt in $FORMATS; do
    [ -f "$MODEL-$fmt.gguf" ] && continue
    [ -f "$MODEL-BF16.gguf" ] || $LLAMA_CONVERT "$MODEL" --outtype bf16 --outfile "$MODEL-BF16.gguf" >&2
    "$LLAMA_BIN/llama-quantize" "$MODEL-BF16.gguf" "$MODEL-$fmt.gguf" "$fmt" >&2
done
rm -f "$MODEL-BF16.gguf"
make -j2 build/kiln >/dev/null

. bench/llamacpp-pp-tg.sh
run_llama() { llama_pp_tg "$MODEL-$1.gguf" "$THREADS" "$PP" "$TG"; } # fmt -> "pp tg"
run_kiln() { # fmt -> "pp tg"
    local q
    q=$(tr '[:upper:]' '[:lower:]' <<<"$1")
    ./build/kiln bench --model "$MODEL" --prompt-tokens "$PP" --gen-tokens "$TG" --threads "$THREADS" --runs 1 \
        --quant "$q" --quant-cache --json "$work/k.json" >/dev/null 2>&1
    $PY -c 'import sys,json; d=json.load(open(sys.argv[1])); print(d["pp_tok_s"], d["tg_tok_s"])' "$work/k.json"
}

echo "== $LAYERS layers, $THREADS threads, $ROUNDS interleaved rounds, pp$PP tg$TG" >&2
for fmt in $FORMATS; do
    : >"$work/$fmt.l"; : >"$work/$fmt.k"
    for r in $(seq "$ROUNDS"); do
        l=$(run_llama "$fmt"); k=$(run_kiln "$fmt")
        echo "$l" >>"$work/$fmt.l"; echo "$k" >>"$work/$fmt.k"
        echo "  $fmt round $r: llama.cpp pp/tg $l   kiln pp/tg $k" >&2
    done
    $PY - "$fmt" "$work/$fmt.l" "$work/$fmt.k" "$PP" "$TG" <<'PYEOF'
import sys, statistics as st
fmt, lf, kf, pp, tg = sys.argv[1:]
L = [list(map(float, l.split())) for l in open(lf)]; K = [list(map(float, l.split())) for l in open(kf)]
lp, lt = st.median(x[0] for x in L), st.median(x[1] for x in L)
kp, kt = st.median(x[0] for x in K), st.median(x[1] for x in K)
spread = lambda xs: (max(xs) - min(xs)) / st.median(xs) * 100
print(f"{fmt:5s} pp{pp}: llama.cpp {lp:8.2f}  kiln {kp:8.2f} tok/s  ratio {kp/lp:5.2f}x | "
      f"tg{tg}: llama.cpp {lt:6.2f}  kiln {kt:6.2f} tok/s  ratio {kt/lt:5.2f}x | "
      f"spread over rounds (max-min)/median: pp {spread([x[0] for x in L]):.0f}% / {spread([x[0] for x in K]):.0f}%, "
      f"tg {spread([x[1] for x in L]):.0f}% / {spread([x[1] for x in K]):.0f}% (llama.cpp / kiln)")
PYEOF
done

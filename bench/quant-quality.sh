#!/usr/bin/env bash
# bench/quant-quality.sh — quantisation quality, kiln beside llama.cpp, on the same models and text.
#
# For each model: mean KL divergence of the next-token distributions against the unquantised model, and
# top-1 agreement, for kiln's Q8_0 / Q4_0 (bench/quant_quality.c) and llama.cpp's (llama-perplexity
# --kl-divergence-base / --kl-divergence), each against its own unquantised run, on the same text split the
# same way (CTX-token chunks, BOS first, second half of each chunk scored) and on the same token ids
# (llama-tokenize's; the GGUF's stories260K vocabulary tokenizes a little differently from tokenizer.json). Then perplexity over
# stories260K's golden stories (prompt + greedy story, every position) for f32, Q8_0, Q4_0.
#
# Models: stories260K (trained; converted to GGUF F32 here, then llama-quantize) with text sampled from it
# by kiln (fixed seeds); the Llama-3.2-1B-shaped random checkpoint $MODEL ($MODEL-F16.gguf base: its bf16
# weights are exact in f16) with README text. The reference of each engine is its own unquantised run.
# A benchmark, not a test: it prints a table (and the raw JSON lines on stderr).
#
# K-quant rows (Q4_K_M, Q5_K_M, Q6_K): kiln's --quant of an F32 GGUF (llama-quantize's per-tensor mixes,
# weight_format.c) against kiln on that F32 file, beside llama.cpp's llama-quantize files of the same F32
# GGUF against llama.cpp on it (bench/llamacpp/kl.c, built here against libllama: f32 KV cache, flash
# attention off), on the same token ids and positions. Models: ../shared/gguf/kq-llama-512 (every row a
# multiple of 256: the mixes as on real models) and stories260K (rows of 64 / 172: every K-quant falls
# back, Q5_0 / Q5_1 / Q8_0, as llama-quantize does). Target: kiln's KL <= 1.05 x llama.cpp's.
#
# Usage: bench/quant-quality.sh   (env: THREADS=2 BASELINE=/tmp/llamacpp MODEL=/tmp/llama-1b SHARED=../shared
#                                   SKIP_1B=1 to do stories260K only; CHUNKS_1B=4 CTX_1B=128 CTX_S=64;
#                                   K_ONLY=1: only the K-quant rows (needs no llama-perplexity))
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared} THREADS=${THREADS:-2}
BASELINE=${BASELINE:-/tmp/llamacpp} MODEL=${MODEL:-/tmp/llama-1b}
CTX_S=${CTX_S:-64} CTX_1B=${CTX_1B:-128} CHUNKS_1B=${CHUNKS_1B:-4}
PY=/usr/bin/python3
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
. "$BASELINE/env.sh"
# the baseline build script makes llama-bench / llama-server; the KL side needs llama-perplexity too
for t in llama-perplexity llama-tokenize; do
    [ -n "${K_ONLY:-}" ] && [ "$t" = llama-perplexity ] && continue
    [ -x "$LLAMA_BIN/$t" ] || cmake --build "$LLAMA_BIN/.." --target "$t" -j2 >&2
done
LL=$(cd "$LLAMA_BIN/../.." && pwd)
cc -O2 -std=c11 -I"$LL/include" -I"$LL/ggml/include" bench/llamacpp/kl.c -L"$LLAMA_BIN" -lllama -lggml -lggml-base \
    -Wl,-rpath,"$LLAMA_BIN" -lm -o "$work/llamacpp_kl"
make -j2 all bench >/dev/null
cp build/bench/quant_quality "$work/qq"

# stories260K → GGUF. The shared transformers stand-in lacks what gguf's LlamaHfVocab asks of a fast
# tokenizer (stories260K has a SentencePiece-style tokenizer.json, no tokenizer.model): add it in a copy.
S="$SHARED/models/stories260K" SG=$work/stories260K
cp -r "$SHARED/tools/baseline/hfshim" "$work/hfshim"
cat >>"$work/hfshim/transformers/__init__.py" <<'PYEOF'
_Tokenizer.is_fast = True
_Tokenizer.vocab_size = property(lambda self: max(self.vocab.values()) + 1)
_Tokenizer.all_special_tokens = property(lambda self: [t.content for t in self.added_tokens_decoder.values() if t.special])
_Tokenizer.all_special_ids = property(lambda self: [i for i, t in self.added_tokens_decoder.items() if t.special])
PYEOF
env PYTHONPATH="$work/hfshim:$(dirname "$LLAMA_BIN")/../gguf-py" NODE_PATH="$BASELINE/node/node_modules" $PY \
    "$SHARED/tools/baseline/convert_compat.py" "$(dirname "$LLAMA_BIN")/../convert_hf_to_gguf.py" "$S" \
    --outtype f32 --outfile "$SG-F32.gguf" >"$work/convert.log" 2>&1 || { tail -5 "$work/convert.log" >&2; exit 1; }
for q in Q8_0 Q4_0 Q4_K_M Q5_K_M Q6_K; do "$LLAMA_BIN/llama-quantize" "$SG-F32.gguf" "$SG-$q.gguf" $q >/dev/null 2>&1; done

# Text stories260K writes (sampled from its f32 weights by kiln, fixed seeds), 8 stories.
for seed in 1 2 3 4 5 6 7 8; do
    ./build/kiln run --model "$S" --raw --prompt "Once upon a time" --do-sample --seed $seed --max-new-tokens 200 2>/dev/null
    echo
done >"$work/stories.txt"
cat README.md "$SHARED/README.md" "$SHARED/ARCHITECTURE.md" >"$work/readme.txt"

# llama.cpp: base logits once, then KL + top-1 of each quantised file. Prints "KL TOP1" (top-1 as fraction).
llama_kl() { # base.gguf quant.gguf text ctx chunks
    local kld=$work/base.kld
    [ "$2" = base ] && { "$LLAMA_BIN/llama-perplexity" -m "$1" -f "$3" -c "$4" --chunks "$5" -t "$THREADS" \
        --kl-divergence-base "$kld" >"$work/llama-base.log" 2>&1 || tail -3 "$work/llama-base.log" >&2; return; }
    "$LLAMA_BIN/llama-perplexity" -m "$2" -f "$3" -c "$4" --chunks "$5" -t "$THREADS" --kl-divergence-base "$kld" \
        --kl-divergence >"$work/llama-kl.log" 2>&1 || { echo "llama-perplexity failed:" >&2; tail -3 "$work/llama-kl.log" >&2; }
    $PY - "$work/llama-kl.log" <<'PYEOF'
import re, sys
t = open(sys.argv[1]).read()
kl = re.search(r"Mean\s+KLD:\s+([-0-9.eE+]+)", t); top = re.search(r"Same top p:\s+([0-9.]+)", t)
if not (kl and top):
    # llama.cpp's logger runs on its own thread and can lose the summary at exit; the last per-chunk row
    # holds the same running means: chunk PPL±e ln±e KLD±e dp±e% same-top±e%
    rows = re.findall(r"^\s*\d+\s+[0-9.]+ ±\s+[0-9.]+\s+[-0-9.]+ ±\s+[0-9.]+\s+([0-9.]+) ±\s+[0-9.]+\s+[0-9.]+ ±\s+[0-9.]+ %\s+([0-9.]+) ±", t, re.M)
    if rows: print(rows[-1][0], float(rows[-1][1]) / 100); sys.exit()
    sys.stderr.write("llama-perplexity gave no KL:\n" + t[-600:])
print(kl.group(1) if kl else "nan", float(top.group(1)) / 100 if top else "nan")
PYEOF
}

kiln_kl() { # model_dir gguf text ctx chunks → JSON lines on stdout; fed llama.cpp's own tokenization of the
    # text (llama-tokenize), so both engines score the same token stream
    "$LLAMA_BIN/llama-tokenize" -m "$2" -f "$3" --ids --log-disable 2>/dev/null | tail -1 >"$work/ids.txt"
    "$work/qq" --model "$1" --ids "$work/ids.txt" --ctx "$4" --chunks "$5" --threads "$THREADS" --modes q8_0,q4_0
}

row() { # model fmt kiln_json llama_pair
    $PY - "$@" <<'PYEOF'
import json, sys
model, fmt, kj, lp = sys.argv[1:5]
k = json.loads(kj); lkl, ltop = (float(x) for x in lp.split())
ratio = k["mean_kl"] / lkl if lkl > 0 else float("nan")
print(f"| {model} | {fmt} | {k['positions']} | {k['mean_kl']:.5f} | {lkl:.5f} | {ratio:.3f} | {100*k['top1_agree']:.1f}% | {100*ltop:.1f}% |")
PYEOF
}

echo "| model | format | positions (kiln) | kiln mean KL | llama.cpp mean KL | kiln/llama.cpp | kiln top-1 | llama.cpp top-1 |"
echo "|---|---|---|---|---|---|---|---|"

# K-quant rows: kiln --quant on the F32 GGUF vs llama-quantize's files of it, both against their own F32 run.
measure_k() { # name f32.gguf gguf_prefix text ctx chunks
    local name=$1 f32=$2 pre=$3 text=$4 ctx=$5 chunks=$6
    "$LLAMA_BIN/llama-tokenize" -m "$f32" -f "$text" --ids --log-disable 2>/dev/null | tail -1 >"$work/ids.txt"
    "$work/qq" --model "$f32" --ids "$work/ids.txt" --ctx "$ctx" --chunks "$chunks" --threads "$THREADS" \
        --modes q4_k_m,q5_k_m,q6_k >"$work/kiln.jsonl"
    "$work/llamacpp_kl" --ids "$work/ids.txt" --ctx "$ctx" --chunks "$chunks" --threads "$THREADS" "$f32" \
        "$pre.Q4_K_M.gguf" "$pre.Q5_K_M.gguf" "$pre.Q6_K.gguf" 2>/dev/null >"$work/llama.jsonl"
    cat "$work/kiln.jsonl" "$work/llama.jsonl" >&2
    for q in Q4_K_M Q5_K_M Q6_K; do
        local lj; lj=$(grep "\.$q\.gguf" "$work/llama.jsonl")
        row "$name" "$q" "$(grep "\"mode\":\"${q,,}\"" "$work/kiln.jsonl")" \
            "$($PY -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["mean_kl"], j["top1_agree"])' "$lj")"
    done
}
KQ="$SHARED/gguf/kq-llama-512"
for q in Q4_K_M Q5_K_M Q6_K; do ln -sf "$SG-$q.gguf" "$SG.$q.gguf"; done
measure_k kq-llama-512 "$KQ/kq-llama-512.F32.gguf" "$KQ/kq-llama-512" "$work/stories.txt" "$CTX_S" 1000
measure_k stories260K "$SG-F32.gguf" "$SG" "$work/stories.txt" "$CTX_S" 1000
[ -n "${K_ONLY:-}" ] && exit 0

measure() { # name hf_dir gguf_prefix base_suffix text ctx chunks
    local name=$1 dir=$2 pre=$3 base=$4 text=$5 ctx=$6 chunks=$7
    kiln_kl "$dir" "$pre-$base.gguf" "$text" "$ctx" "$chunks" >"$work/kiln.jsonl"
    cat "$work/kiln.jsonl" >&2
    llama_kl "$pre-$base.gguf" base "$text" "$ctx" "$chunks"
    for q in Q8_0 Q4_0; do
        local lq; lq=$(llama_kl "$pre-$base.gguf" "$pre-$q.gguf" "$text" "$ctx" "$chunks")
        echo "llama.cpp $name $q: $lq" >&2
        row "$name" "$q" "$(grep "\"mode\":\"${q,,}\"" "$work/kiln.jsonl")" "$lq"
    done
}
measure stories260K "$S" "$SG" F32 "$work/stories.txt" "$CTX_S" 1000
[ -n "${SKIP_1B:-}" ] || measure llama-1b "$MODEL" "$MODEL" F16 "$work/readme.txt" "$CTX_1B" "$CHUNKS_1B"

echo
echo "Perplexity of stories260K over its golden stories (kiln; prompt + greedy story, every position):"
"$work/qq" --model "$S" --stories "$SHARED/golden/models/stories260K/golden.json" --threads "$THREADS" \
    --modes ref,q8_0,q4_0 | $PY -c '
import json, sys
for l in sys.stdin:
    d = json.loads(l); name = {"ref": "f32"}.get(d["mode"], d["mode"])
    print("  %-5s ppl %.4f over %d positions" % (name, d["ppl"], d["positions"]))'

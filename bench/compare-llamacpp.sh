#!/usr/bin/env bash
# bench/compare-llamacpp.sh — kiln vs llama.cpp, side by side in one run, on a Llama-3.2-1B-shaped model.
#
# Builds llama.cpp (../shared/tools/baseline/build_llamacpp.sh, once, into $BASELINE), makes the checkpoint
# (make_tiny_model.py --preset llama3.2-1b, once, into $MODEL), converts it to F16/Q8_0/Q4_0 GGUF, then for
# each format runs llama-bench and kiln interleaved for $ROUNDS rounds at $THREADS threads and prints the
# medians, the kiln/llama.cpp ratios for pp and tg, and each engine's decode as % of the measured read
# bandwidth (bytes of weights per token x tok/s / that round's bandwidth probe; median over rounds).
# Interleaving puts both engines under the same noise (other processes on the machine); medians drop
# outliers.
#
# kiln side: `kiln bench --prompt-tokens N --gen-tokens M --json FILE` when this build has it; otherwise
# bench/matmul_bench.c (the model's matmuls only: no attention/norm/rope, so it flatters kiln slightly) —
# the output says which one was measured.
#
# Deep contexts (after the format rows): for each of $DEPTH_FORMATS and each depth D in $DEPTHS, pp$DPP and
# tg$DTG measured with D tokens already in the KV cache (llama-bench -d D; kiln bench --depth D), llama.cpp
# with its f16 KV cache, kiln with --kv-type f16 and with its default KV format, interleaved likewise.
# DEPTHS="" skips them (they take minutes per round at 16384).
#
# K-quant rows: Q4_K_M and Q6_K are llama-quantize's files (made once from the F16 GGUF), read by BOTH
# engines as they are; KQ4_K_M is kiln's own q4_k_m conversion of the safetensors checkpoint (--quant q4_k_m
# --quant-cache) against llama.cpp on its Q4_K_M file. Their decode share counts the bytes each engine's
# weights take: the GGUF's size (the tied output is the Q6_K embedding, read whole per token), and for
# KQ4_K_M kiln's cache file.
#
# Usage: bench/compare-llamacpp.sh   (env: ROUNDS=3 THREADS=2 PP=512 TG=128 FORMATS="F16 Q8_0 Q4_0 Q4_K_M Q6_K KQ4_K_M"
#                                      DEPTHS="4096 16384" DPP=4096 DTG=128 DEPTH_FORMATS="F16"
#                                      BASELINE=/tmp/llamacpp MODEL=/tmp/llama-1b SHARED=../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
ROUNDS=${ROUNDS:-3} THREADS=${THREADS:-2} PP=${PP:-512} TG=${TG:-128}
FORMATS=${FORMATS-"F16 Q8_0 Q4_0 Q4_K_M Q6_K KQ4_K_M"}
DEPTHS=${DEPTHS-"4096 16384"} DPP=${DPP:-4096} DTG=${DTG:-128} DEPTH_FORMATS=${DEPTH_FORMATS:-"F16"}
BASELINE=${BASELINE:-/tmp/llamacpp} MODEL=${MODEL:-/tmp/llama-1b}
PY=/usr/bin/python3
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

echo "== setup (llama.cpp build, checkpoint, GGUF: each done once)" >&2
sh "$SHARED/tools/baseline/build_llamacpp.sh" "$BASELINE" >&2
[ -f "$MODEL/config.json" ] || $PY "$SHARED/tools/make_tiny_model.py" --arch llama --preset llama3.2-1b \
    --tokenizer "$SHARED/tokenizers/llama3" --out "$MODEL" >&2
sh "$SHARED/tools/baseline/to_gguf.sh" "$MODEL" "$MODEL" "$BASELINE" >&2
. "$BASELINE/env.sh"
for q in Q4_K_M Q6_K; do
    [ -f "$MODEL-$q.gguf" ] || "$LLAMA_BIN/llama-quantize" "$MODEL-F16.gguf" "$MODEL-$q.gguf" $q >/dev/null 2>&1
done
make -j2 all bench >/dev/null
cp build/bench/matmul_bench "$work/matmul_bench"

# (kiln bench prints its usage with exit 2: capture it first, or pipefail would read that as "absent")
kiln_help=$(./build/kiln bench --help 2>&1 || true)
if grep -q -- '--gen-tokens' <<<"$kiln_help"; then KILN_MODE=kiln-bench; else KILN_MODE=matmul-only; fi
echo "== kiln measured with: $KILN_MODE, $THREADS threads, $ROUNDS interleaved rounds, pp$PP tg$TG" >&2
# The prefill roofline (decode's is the per-round bandwidth probe below): the arithmetic peak of the units a
# float prefill runs on, and the pp tok/s it allows on this shape (the layers' matmuls per prompt token; on an
# AMX host kiln's float prefill runs on the tiles instead, above this bound).
"$work/matmul_bench" peak "$THREADS" 2>/dev/null | $PY -c 'import sys,json; print("== prefill roofline: vdpbf16ps %(bf16_dot_gflops).0f GFLOP/s -> pp <= %(pp_bound_bf16_dot_tok_s).0f tok/s, f32 FMA %(f32_fma_gflops).0f GFLOP/s -> pp <= %(pp_bound_f32_fma_tok_s).0f tok/s (%(gflop_per_prompt_token).2f GFLOP per prompt token)" % json.load(sys.stdin))' >&2 || true

# --quant-cache: the first round converts and writes $MODEL/model.<q>.kiln, later rounds map it (load time only).
kiln_flags() { case $1 in F16) echo "--dtype f16";; BF16) echo "--dtype bf16";; Q8_0) echo "--quant q8_0 --quant-cache";; Q4_0) echo "--quant q4_0 --quant-cache";; KQ4_K_M) echo "--quant q4_k_m --quant-cache";; esac; }
is_kquant() { case $1 in Q4_K_M|Q6_K|KQ4_K_M) true;; *) false;; esac; }
kiln_model() { case $1 in Q4_K_M|Q6_K) echo "$MODEL-$1.gguf";; *) echo "$MODEL";; esac; } # K-quant GGUFs: the same file
llama_gguf() { case $1 in KQ4_K_M) echo "$MODEL-Q4_K_M.gguf";; *) echo "$MODEL-$1.gguf";; esac; }
kiln_dtype() { case $1 in F16) echo f16;; BF16) echo bf16;; Q8_0) echo q8_0;; Q4_0) echo q4_0;; esac; }

. bench/llamacpp-pp-tg.sh
run_llama() { llama_pp_tg "$(llama_gguf "$1")" "$THREADS" "$PP" "$TG"; } # fmt -> "pp tg"
run_kiln() { # fmt -> "pp tg"
    if [ "$KILN_MODE" = kiln-bench ]; then
        # shellcheck disable=SC2046
        ./build/kiln bench --model "$(kiln_model "$1")" --prompt-tokens "$PP" --gen-tokens "$TG" --threads "$THREADS" --runs 1 \
            $(kiln_flags "$1") --json "$work/k.json" >/dev/null 2>&1
        $PY -c 'import sys,json; d=json.load(open(sys.argv[1])); print(d["pp_tok_s"], d["tg_tok_s"])' "$work/k.json"
    else
        "$work/matmul_bench" "$(kiln_dtype "$1")" "$THREADS" "$PP" "$TG" |
            $PY -c 'import sys,json; d=json.loads(sys.stdin.read()); print(d["pp'"$PP"'_tok_s"], d["tg_tok_s"])'
    fi
}

# The machine's read bandwidth swings by up to 1.5x between minutes here (shared host), so it is probed in
# every round between the two engines' runs, and each round's decode is divided by its own probe; the
# medians of those per-round shares are reported.
probe_bw() { "$work/matmul_bench" bw "$THREADS" | $PY -c 'import sys,json; print(json.load(sys.stdin)["read_bw_gb_s"])' >>"$1"; }
for fmt in $FORMATS; do
    [ -f "$(llama_gguf "$fmt")" ] || { echo "missing $(llama_gguf "$fmt")" >&2; exit 1; }
    is_kquant "$fmt" && [ "$KILN_MODE" != kiln-bench ] && { echo "$fmt rows need kiln bench --gen-tokens" >&2; exit 1; }
    if is_kquant "$fmt"; then wbytes=$(stat -L -c %s "$(llama_gguf "$fmt")") # KQ4_K_M: its cache file, once written
    else wbytes=$("$work/matmul_bench" "$(kiln_dtype "$fmt")" 1 1 1 | $PY -c 'import sys,json; print(json.load(sys.stdin)["weights_mib"]*1048576)'); fi
    # kiln's Q4_0 keeps the output projection (128256 x 2048) in Q8_0: 34 instead of 18 bytes per 32 weights
    [ "$fmt" = Q4_0 ] && wbytes=$($PY -c "print($wbytes + 128256 * 2048 // 32 * 16)")
    : >"$work/$fmt.l"; : >"$work/$fmt.k"; : >"$work/$fmt.bw"
    for r in $(seq "$ROUNDS"); do
        l=$(run_llama "$fmt"); probe_bw "$work/$fmt.bw"; k=$(run_kiln "$fmt")
        echo "$l" >>"$work/$fmt.l"; echo "$k" >>"$work/$fmt.k"
        echo "  $fmt round $r: llama.cpp pp/tg $l   kiln pp/tg $k   read bandwidth $(tail -1 "$work/$fmt.bw") GB/s" >&2
    done
    [ "$fmt" = KQ4_K_M ] && wbytes=$(stat -L -c %s "$MODEL/model.q4_k_m.kiln")
    lbytes=$(stat -L -c %s "$(llama_gguf "$fmt")") # llama.cpp reads about its whole file per token (tied output included)
    $PY - "$fmt" "$work/$fmt.l" "$work/$fmt.k" "$work/$fmt.bw" "$wbytes" "$PP" "$TG" "$KILN_MODE" "$lbytes" <<'PYEOF'
import sys, statistics as st
fmt, lf, kf, bwf, wb, pp, tg, mode, lb = sys.argv[1:]
B = [float(l) for l in open(bwf)]
L = [list(map(float, l.split())) for l in open(lf)]; K = [list(map(float, l.split())) for l in open(kf)]
lp, lt = st.median(x[0] for x in L), st.median(x[1] for x in L)
kp, kt = st.median(x[0] for x in K), st.median(x[1] for x in K)
pct = st.median(100 * float(wb) * k[1] / 1e9 / b for k, b in zip(K, B))
lpct = st.median(100 * float(lb) * l[1] / 1e9 / b for l, b in zip(L, B))
print(f"{fmt:5s} pp{pp}: llama.cpp {lp:8.2f}  kiln {kp:8.2f} tok/s  ratio {kp/lp:5.2f}x | "
      f"tg{tg}: llama.cpp {lt:6.2f}  kiln {kt:6.2f} tok/s  ratio {kt/lt:5.2f}x | "
      f"decode / read bandwidth of its round ({min(B):.1f}-{max(B):.1f} GB/s), median: kiln {pct:5.1f}% ({float(wb)/1e9:.2f} GB/token), "
      f"llama.cpp {lpct:5.1f}% ({float(lb)/1e9:.2f} GB/token) [{mode}]")
PYEOF
done

# ---- deep contexts: pp and tg after D cached tokens ----
[ -n "$DEPTHS" ] && [ "$KILN_MODE" != kiln-bench ] && { echo "deep rows need kiln bench --depth" >&2; exit 1; }
kiln_default_kv=$(./build/kiln bench --help | sed -n 's/.*KV cache format (default \([a-z0-9_]*\).*/\1/p')
run_llama_depth() { # fmt depth -> "pp tg" (f16 K and V, llama.cpp's default, said explicitly)
    "$LLAMA_BIN/llama-bench" -m "$MODEL-$1.gguf" -t "$THREADS" -p "$DPP" -n "$DTG" -d "$2" -ctk f16 -ctv f16 -r 1 \
        -o jsonl 2>/dev/null |
        $PY -c 'import sys,json
r={}
for l in sys.stdin:
    d=json.loads(l); r["pp" if d["n_prompt"] else "tg"]=d["avg_ts"]
print(r["pp"], r["tg"])'
}
run_kiln_depth() { # fmt depth kv -> "pp tg"
    # shellcheck disable=SC2046
    ./build/kiln bench --model "$MODEL" --prompt-tokens "$DPP" --gen-tokens "$DTG" --depth "$2" --kv-type "$3" \
        --threads "$THREADS" --runs 1 --warmup 0 $(kiln_flags "$1") --json "$work/kd.json" >/dev/null 2>&1
    $PY -c 'import sys,json; d=json.load(open(sys.argv[1])); assert d["depth"] == int(sys.argv[2]); print(d["pp_tok_s"], d["tg_tok_s"])' \
        "$work/kd.json" "$2"
}
kvs="f16"; [ "$kiln_default_kv" != f16 ] && kvs="f16 $kiln_default_kv"
for fmt in ${DEPTHS:+$DEPTH_FORMATS}; do
    for d in $DEPTHS; do
        : >"$work/d.l"; for kv in $kvs; do : >"$work/d.$kv"; done
        for r in $(seq "$ROUNDS"); do
            l=$(run_llama_depth "$fmt" "$d"); echo "$l" >>"$work/d.l"; line="llama.cpp (kv f16) pp/tg $l"
            for kv in $kvs; do k=$(run_kiln_depth "$fmt" "$d" "$kv"); echo "$k" >>"$work/d.$kv"; line="$line   kiln (kv $kv) $k"; done
            echo "  $fmt depth $d round $r: $line" >&2
        done
        args=(); for kv in $kvs; do args+=("$kv" "$work/d.$kv"); done
        $PY - "$fmt" "$d" "$DPP" "$DTG" "$work/d.l" "${args[@]}" <<'PYEOF'
import sys, statistics as st
fmt, d, pp, tg, lf, *kv = sys.argv[1:]
med = lambda f: [st.median(float(l.split()[i]) for l in open(f)) for i in (0, 1)]
lp, lt = med(lf)
out = f"{fmt:5s} @ d{d}: pp{pp} llama.cpp (kv f16) {lp:8.2f} | tg{tg} llama.cpp {lt:6.2f} tok/s"
for name, f in zip(kv[::2], kv[1::2]):
    kp, kt = med(f)
    out += f" || kiln kv {name}: pp {kp:8.2f} ({kp/lp:4.2f}x)  tg {kt:6.2f} ({kt/lt:4.2f}x)"
print(out)
PYEOF
    done
done

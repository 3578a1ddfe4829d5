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
# Usage: bench/compare-llamacpp.sh   (env: ROUNDS=3 THREADS=2 PP=512 TG=128 FORMATS="F16 Q8_0 Q4_0"
#                                      BASELINE=/tmp/llamacpp MODEL=/tmp/llama-1b SHARED=../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
ROUNDS=${ROUNDS:-3} THREADS=${THREADS:-2} PP=${PP:-512} TG=${TG:-128}
FORMATS=${FORMATS:-"F16 Q8_0 Q4_0"}
BASELINE=${BASELINE:-/tmp/llamacpp} MODEL=${MODEL:-/tmp/llama-1b}
PY=/usr/bin/python3
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

echo "== setup (llama.cpp build, checkpoint, GGUF: each done once)" >&2
sh "$SHARED/tools/baseline/build_llamacpp.sh" "$BASELINE" >&2
[ -f "$MODEL/config.json" ] || $PY "$SHARED/tools/make_tiny_model.py" --arch llama --preset llama3.2-1b \
    --tokenizer "$SHARED/tokenizers/llama3" --out "$MODEL" >&2
sh "$SHARED/tools/baseline/to_gguf.sh" "$MODEL" "$MODEL" "$BASELINE" >&2
. "$BASELINE/env.sh"
make -j2 all bench >/dev/null
cp build/bench/matmul_bench "$work/matmul_bench"

# (kiln bench prints its usage with exit 2: capture it first, or pipefail would read that as "absent")
kiln_help=$(./build/kiln bench --help 2>&1 || true)
if grep -q -- '--gen-tokens' <<<"$kiln_help"; then KILN_MODE=kiln-bench; else KILN_MODE=matmul-only; fi
echo "== kiln measured with: $KILN_MODE, $THREADS threads, $ROUNDS interleaved rounds, pp$PP tg$TG" >&2

# --quant-cache: the first round converts and writes $MODEL/model.<q>.kiln, later rounds map it (load time only).
kiln_flags() { case $1 in F16) echo "--dtype f16";; BF16) echo "--dtype bf16";; Q8_0) echo "--quant q8_0 --quant-cache";; Q4_0) echo "--quant q4_0 --quant-cache";; esac; }
kiln_dtype() { case $1 in F16) echo f16;; BF16) echo bf16;; Q8_0) echo q8_0;; Q4_0) echo q4_0;; esac; }

. bench/llamacpp-pp-tg.sh
run_llama() { llama_pp_tg "$MODEL-$1.gguf" "$THREADS" "$PP" "$TG"; } # fmt -> "pp tg"
run_kiln() { # fmt -> "pp tg"
    if [ "$KILN_MODE" = kiln-bench ]; then
        # shellcheck disable=SC2046
        ./build/kiln bench --model "$MODEL" --prompt-tokens "$PP" --gen-tokens "$TG" --threads "$THREADS" --runs 1 \
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
    [ -f "$MODEL-$fmt.gguf" ] || { echo "missing $MODEL-$fmt.gguf" >&2; exit 1; }
    wbytes=$("$work/matmul_bench" "$(kiln_dtype "$fmt")" 1 1 1 | $PY -c 'import sys,json; print(json.load(sys.stdin)["weights_mib"]*1048576)')
    # kiln's Q4_0 keeps the output projection (128256 x 2048) in Q8_0: 34 instead of 18 bytes per 32 weights
    [ "$fmt" = Q4_0 ] && wbytes=$($PY -c "print($wbytes + 128256 * 2048 // 32 * 16)")
    : >"$work/$fmt.l"; : >"$work/$fmt.k"; : >"$work/$fmt.bw"
    for r in $(seq "$ROUNDS"); do
        l=$(run_llama "$fmt"); probe_bw "$work/$fmt.bw"; k=$(run_kiln "$fmt")
        echo "$l" >>"$work/$fmt.l"; echo "$k" >>"$work/$fmt.k"
        echo "  $fmt round $r: llama.cpp pp/tg $l   kiln pp/tg $k   read bandwidth $(tail -1 "$work/$fmt.bw") GB/s" >&2
    done
    lbytes=$(stat -c %s "$MODEL-$fmt.gguf") # llama.cpp reads about its whole file per token (tied output included)
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

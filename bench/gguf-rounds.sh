# bench/gguf-rounds.sh — sourced by moe-bench.sh and gemma-bench.sh: kiln vs llama.cpp on the SAME GGUF file,
# interleaved rounds, medians, ratios.
#
# gguf_rounds LABEL FILE.gguf — $ROUNDS rounds; each round runs llama-bench once per OpenMP wait policy in
# $LLAMA_WAIT and `kiln bench` once, the order alternating between rounds (so drift in the machine's load
# hits both). Each engine is a fresh process that warms up first (llama-bench: a full pp$PP and one token;
# kiln bench: one unmeasured pp$PP+tg$TG run), so page faults on first touch of the mapped file are not in
# the figures. Prints one line per llama.cpp policy: medians and kiln / llama.cpp ratios; each round's
# figures go to stderr (their spread is the noise).
#
# Why the wait policies: llama.cpp (this build: GGML_OPENMP) waits at every graph node's barrier in
# libgomp, which by default spins for a while before sleeping. On a machine with more runnable threads
# than cores the spinner burns the timeslice its partner needs: a 4-layer Qwen3-MoE decode measured
# 0.23 tok/s with OMP_WAIT_POLICY=active, 1.24 by default and 8.87 with passive, back to back at load
# average 18 (a MoE layer has ~3x the graph nodes, so barriers, of a dense one). `default` is what a user
# gets; `passive` is llama.cpp's best on a busy host. The ratio that matters is against the better one.
#
# Sourcing it also does what both scripts need first: llama.cpp's env.sh from $LLAMACPP (or a clear error),
# $PY, a $work dir removed on exit. gguf_kiln then sets $KILN (kiln built here unless KILN names a binary).
# Needs: $SHARED $LLAMACPP $ROUNDS $THREADS $PP $TG; LLAMA_WAIT (default "default passive").
LLAMA_WAIT=${LLAMA_WAIT:-"default passive"}
PY=/usr/bin/python3
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
[ -f "$LLAMACPP/env.sh" ] || { echo "no llama.cpp at $LLAMACPP (build it: $SHARED/tools/baseline/build_llamacpp.sh)" >&2; exit 1; }
. "$LLAMACPP/env.sh"

gguf_kiln() { [ -n "${KILN:-}" ] || { make -j2 build/kiln >/dev/null; KILN=build/kiln; }; }

llama_run() { # GGUF POLICY -> "pp tg"
    local pol=$2
    [ "$pol" = default ] && pol=""
    env ${pol:+OMP_WAIT_POLICY=$pol} "$LLAMA_BIN/llama-bench" -m "$1" -t "$THREADS" -p "$PP" -n "$TG" -r 1 -o jsonl 2>/dev/null |
        $PY -c 'import sys,json
r={}
for l in sys.stdin:
    d=json.loads(l); r["pp" if d["n_prompt"] else "tg"]=d["avg_ts"]
print(r["pp"], r["tg"])'
}

kiln_run() { # GGUF -> "pp tg"
    "$KILN" bench --model "$1" --prompt-tokens "$PP" --gen-tokens "$TG" --threads "$THREADS" --runs 1 \
        --json "$work/k.json" >/dev/null 2>&1
    $PY -c 'import sys,json; d=json.load(open(sys.argv[1])); print(d["pp_tok_s"], d["tg_tok_s"])' "$work/k.json"
}

gguf_rounds() { # LABEL GGUF
    local label=$1 file=$2 r pol out
    : >"$work/k"
    for pol in $LLAMA_WAIT; do : >"$work/l.$pol"; done
    echo "  $label: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    for r in $(seq "$ROUNDS"); do
        if [ $((r % 2)) = 0 ]; then out=$(kiln_run "$file"); echo "$out" >>"$work/k"; echo "  $label round $r: kiln pp/tg $out" >&2; fi
        for pol in $LLAMA_WAIT; do
            out=$(llama_run "$file" "$pol"); echo "$out" >>"$work/l.$pol"
            echo "  $label round $r: llama.cpp ($pol) pp/tg $out" >&2
        done
        if [ $((r % 2)) = 1 ]; then out=$(kiln_run "$file"); echo "$out" >>"$work/k"; echo "  $label round $r: kiln pp/tg $out" >&2; fi
    done
    echo "  $label: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    for pol in $LLAMA_WAIT; do
        $PY - "$label" "$pol" "$work/l.$pol" "$work/k" "$PP" "$TG" <<'PYEOF'
import sys, statistics as st
label, pol, lf, kf, pp, tg = sys.argv[1:]
L = [list(map(float, l.split())) for l in open(lf)]; K = [list(map(float, l.split())) for l in open(kf)]
lp, lt = st.median(x[0] for x in L), st.median(x[1] for x in L)
kp, kt = st.median(x[0] for x in K), st.median(x[1] for x in K)
spread = lambda xs: (max(xs) - min(xs)) / st.median(xs) * 100
print(f"{label:14s} pp{pp}: llama.cpp {lp:8.2f}  kiln {kp:8.2f} tok/s  {kp/lp:5.2f}x | "
      f"tg{tg}: llama.cpp {lt:6.2f}  kiln {kt:6.2f} tok/s  {kt/lt:5.2f}x | llama.cpp OMP wait {pol} | "
      f"spread pp {spread([x[0] for x in L]):.0f}%/{spread([x[0] for x in K]):.0f}%, "
      f"tg {spread([x[1] for x in L]):.0f}%/{spread([x[1] for x in K]):.0f}% (llama.cpp/kiln)")
PYEOF
    done
}

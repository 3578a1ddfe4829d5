#!/usr/bin/env bash
# bench/serve-vs-llamacpp.sh — `kiln serve` under concurrent streams, against itself at one stream and
# against llama.cpp's llama-server (--parallel 8) under the same load, in one run, on a Llama-3.2-1B-shaped
# model.
#
# Setup (each step done once, reusing what exists): llama.cpp via ../shared/tools/baseline/build_llamacpp.sh
# into $BASELINE, the checkpoint via make_tiny_model.py --preset llama3.2-1b into $MODEL, GGUF files via
# to_gguf.sh ($MODEL-F16.gguf, $MODEL-Q8_0.gguf, ...).
#
# Load: `kiln bench serve` (streamed /v1/completions, --prompt-tokens random ids, exactly --gen-tokens new
# tokens each with ignore_eos). Per format and round: kiln serve at 1 stream (2 requests) and at 8 streams
# (8 requests), then the same two loads against llama-server --parallel 8, each server started fresh with $THREADS
# threads; rounds interleave the engines so both see the same background noise; medians are reported.
# Figures: "out tok/s" = generated tokens / wall time of the whole level (prefill included), "decode tok/s"
# = streams / median time-per-output-token (the decode rate the streams saw together).
#
# Usage: bench/serve-vs-llamacpp.sh   (env: ROUNDS=2 THREADS=2 PROMPT=32 GEN=64 STREAMS=8 FORMATS="F16 Q8_0"
#                                       BASELINE=/tmp/llamacpp MODEL=/tmp/llama-1b SHARED=../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
ROUNDS=${ROUNDS:-2} THREADS=${THREADS:-2} PROMPT=${PROMPT:-32} GEN=${GEN:-64} STREAMS=${STREAMS:-8}
FORMATS=${FORMATS:-"F16 Q8_0"}
BASELINE=${BASELINE:-/tmp/llamacpp} MODEL=${MODEL:-/tmp/llama-1b}
PY=/usr/bin/python3
work=$(mktemp -d)
SERVER_PID=
stop_server() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; SERVER_PID=; }
trap 'stop_server; rm -rf "$work"' EXIT

echo "== setup (llama.cpp build, checkpoint, GGUF: each done once)" >&2
[ -x "$BASELINE/llama.cpp/build/bin/llama-server" ] && [ -f "$BASELINE/env.sh" ] ||
    sh "$SHARED/tools/baseline/build_llamacpp.sh" "$BASELINE" >&2
[ -f "$MODEL/config.json" ] || $PY "$SHARED/tools/make_tiny_model.py" --arch llama --preset llama3.2-1b \
    --tokenizer "$SHARED/tokenizers/llama3" --out "$MODEL" >&2
for f in $FORMATS; do
    [ -f "$MODEL-$f.gguf" ] || { sh "$SHARED/tools/baseline/to_gguf.sh" "$MODEL" "$MODEL" "$BASELINE" >&2; break; }
done
. "$BASELINE/env.sh"
make -j2 >/dev/null

kiln_dtype() { echo "$1" | tr 'A-Z' 'a-z'; }
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_health() { # url -> 0 once /health answers 200
    for _ in $(seq 1 1200); do
        curl -sf -o /dev/null "$1/health" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
# start_kiln / start_llama FMT: set URL and SERVER_PID (not in a subshell: the caller needs the pid).
start_kiln() {
    local port; port=$(free_port)
    ./build/kiln serve --model "$MODEL" --dtype "$(kiln_dtype "$1")" --threads "$THREADS" --max-batch "$STREAMS" \
        --ctx $((2 * (PROMPT + GEN) + 64)) --port "$port" >"$work/server.log" 2>&1 &
    SERVER_PID=$!
    URL="http://127.0.0.1:$port"
    wait_health "$URL" || { cat "$work/server.log" >&2; exit 1; }
}
start_llama() {
    local port; port=$(free_port)
    "$LLAMA_BIN/llama-server" -m "$MODEL-$1.gguf" -t "$THREADS" -tb "$THREADS" --parallel "$STREAMS" \
        -c $((STREAMS * (PROMPT + GEN + 64))) --host 127.0.0.1 --port "$port" >"$work/server.log" 2>&1 &
    SERVER_PID=$!
    URL="http://127.0.0.1:$port"
    wait_health "$URL" || { tail -20 "$work/server.log" >&2; exit 1; }
}
load() { # url concurrency requests -> "out_tok_s decode_tok_s errors"
    ./build/kiln bench serve --url "$1" --concurrency "$2" --requests "$3" --prompt-tokens "$PROMPT" \
        --gen-tokens "$GEN" --json >"$work/b.json"
    $PY -c 'import json,sys; r=json.load(open(sys.argv[1]))["runs"][0]
tp=r["tpot_ms"]["median"]; print("%.2f %.2f %d" % (r["output_throughput"], int(sys.argv[2])*1000/tp if tp>0 else 0, r["errors"]))' \
        "$work/b.json" "$2"
}

echo "== $ROUNDS interleaved rounds, $THREADS threads, prompt $PROMPT, gen $GEN, $STREAMS streams; formats: $FORMATS" >&2
printf "%-5s %-6s %-22s %12s %14s %7s\n" round format engine "out tok/s" "decode tok/s" errors
: >"$work/rows"
for round in $(seq 1 "$ROUNDS"); do
    for f in $FORMATS; do
        start_kiln "$f"
        k1=$(load "$URL" 1 2)
        k8=$(load "$URL" "$STREAMS" "$STREAMS")
        stop_server
        start_llama "$f"
        l1=$(load "$URL" 1 2)
        l8=$(load "$URL" "$STREAMS" "$STREAMS")
        stop_server
        for row in "kiln-1:$k1" "kiln-$STREAMS:$k8" "llama.cpp-1:$l1" "llama.cpp-$STREAMS:$l8"; do
            set -- ${row#*:}
            printf "%-5s %-6s %-22s %12s %14s %7s\n" "$round" "$f" "${row%%:*}" "$1" "$2" "$3"
            echo "$f ${row%%:*} $1 $2 $3" >>"$work/rows"
        done
    done
done

echo
echo "medians over $ROUNDS rounds (decode tok/s = streams / median TPOT; out tok/s includes prefill):"
$PY - "$work/rows" "$STREAMS" <<'EOF'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
n = sys.argv[2]
fmts = list(dict.fromkeys(r[0] for r in rows))
med = lambda f, e, i: st.median(float(r[i]) for r in rows if r[0] == f and r[1] == e)
for f in fmts:
    k1o, k1d = med(f, "kiln-1", 2), med(f, "kiln-1", 3)
    k8o, k8d = med(f, f"kiln-{n}", 2), med(f, f"kiln-{n}", 3)
    l1o, l1d = med(f, "llama.cpp-1", 2), med(f, "llama.cpp-1", 3)
    l8o, l8d = med(f, f"llama.cpp-{n}", 2), med(f, f"llama.cpp-{n}", 3)
    print(f"{f}: kiln 1 stream {k1o:.1f} out / {k1d:.1f} decode tok/s; kiln {n} streams {k8o:.1f} / {k8d:.1f} "
          f"(x{k8o / k1o:.2f} / x{k8d / k1d:.2f} of 1 stream); llama-server 1 stream {l1o:.1f} / {l1d:.1f}, "
          f"--parallel {n} {l8o:.1f} / {l8d:.1f} "
          f"(kiln/llama.cpp x{k8o / l8o:.2f} / x{k8d / l8d:.2f})")
EOF

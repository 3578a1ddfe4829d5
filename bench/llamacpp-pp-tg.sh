# bench/llamacpp-pp-tg.sh — sourced by the bench scripts: llama-bench's pp / tg figures for one GGUF.
# llama_pp_tg GGUF THREADS PP TG -> prints "pp_tok_s tg_tok_s" (one repetition; needs $LLAMA_BIN, $PY).
llama_pp_tg() {
    "$LLAMA_BIN/llama-bench" -m "$1" -t "$2" -p "$3" -n "$4" -r 1 -o jsonl 2>/dev/null |
        $PY -c 'import sys,json
r={}
for l in sys.stdin:
    d=json.loads(l); r["pp" if d["n_prompt"] else "tg"]=d["avg_ts"]
print(r["pp"], r["tg"])'
}

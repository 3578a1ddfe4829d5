#!/usr/bin/env bash
# kiln tokenize: the JSON-lines contract, --special, --text, malformed lines, tokenizer-only dirs.
source "$(dirname "$0")/lib.bash"
TOK="$SHARED/tokenizers/llama3"

out=$(printf '%s\n' '"Hello, world!"' '"比较一下9.11和9"' '"tab\there \"q\""' | "$KILN" tokenize --model "$TOK")
rc=$?
want='{"ids":[9906,11,1917,0],"decoded":"Hello, world!"}
{"ids":[113511,111230,24,13,806,34208,24],"decoded":"比较一下9.11和9"}
{"ids":[6323,197,6881,330,80,1],"decoded":"tab\there \"q\""}'
check tokenize_json_lines [ "$rc" -eq 0 -a "$out" = "$want" ]

out=$(echo '"Hello, world!"' | "$KILN" tokenize --model "$TOK" --special)
check tokenize_special [ "$out" = '{"ids":[128000,9906,11,1917,0],"decoded":"<|begin_of_text|>Hello, world!"}' ]

# llama2 (LlamaTokenizerFast semantics: add_bos_token from tokenizer_config.json)
out=$(echo '"Hello"' | "$KILN" tokenize --model "$SHARED/tokenizers/llama2" --special)
check tokenize_llama2_bos [ "${out#\{\"ids\":[1,}" != "$out" ]

# every goldens line through the CLI: ids and decoded identical to transformers
if [ -f "$SHARED/golden/tokenizers/qwen3.tokens.jsonl" ]; then
    python3 -c 'import json,sys
for l in open(sys.argv[1]): print(json.dumps(json.loads(l)["text"], ensure_ascii=False))' "$SHARED/golden/tokenizers/qwen3.tokens.jsonl" >"$TMP/in"
    "$KILN" tokenize --model "$SHARED/tokenizers/qwen3" <"$TMP/in" >"$TMP/out"
    python3 -c 'import json,sys
g=[json.loads(l) for l in open(sys.argv[1])]; o=[json.loads(l) for l in open(sys.argv[2])]
assert len(g)==len(o), (len(g),len(o))
for a,b in zip(g,o): assert a["ids"]==b["ids"] and a["decoded"]==b["decoded"], (a,b)' "$SHARED/golden/tokenizers/qwen3.tokens.jsonl" "$TMP/out" \
        && pass tokenize_golden_qwen3 || fail tokenize_golden_qwen3 "mismatch"
else
    fail tokenize_golden_qwen3 "fixture missing"
fi

# UTF-8 stays as is (ensure_ascii=False), control characters escaped, NUL survives
out=$(printf '%s\n' '"é\u0000\u001f"' | "$KILN" tokenize --model "$TOK")
check tokenize_escapes [ "${out#*\"decoded\":}" = '"é\u0000\u001f"}' ]

# malformed line: still one output line ({"error":...}), the rest go on, exit 1
out=$(printf '%s\n' '"a"' 'not json' '42' '"b"' | "$KILN" tokenize --model "$TOK"); rc=$?
n=$(printf '%s\n' "$out" | wc -l)
check tokenize_malformed_lines [ "$rc" -eq 1 -a "$n" -eq 4 -a "$(printf '%s\n' "$out" | sed -n 2p | cut -c1-9)" = '{"error":' ]

out=$("$KILN" tokenize --model "$SHARED/models/stories260K" --text "Hello world")
check tokenize_text_human [ -n "$(printf '%s' "$out" | grep -F 'tokens:')" ]

"$KILN" tokenize --model /nonexistent </dev/null 2>"$TMP/err"; rc=$?
check tokenize_bad_dir [ "$rc" -ne 0 -a "$(wc -l <"$TMP/err")" -eq 1 ]
"$KILN" tokenize 2>/dev/null; check tokenize_needs_model [ $? -eq 2 ]

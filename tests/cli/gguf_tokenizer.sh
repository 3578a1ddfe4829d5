#!/usr/bin/env bash
# kiln tokenize / kiln template on a vocab-only GGUF file (the tokenizer and chat template come from the
# file's metadata): the goldens' ids and renders, through the CLI, and a one-line error for a bad file.
source "$(dirname "$0")/lib.bash"
G="$SHARED/gguf/tokenizers"

for pair in llama3:tiny-llama3 qwen3:tiny-qwen3 llama2-sp:llama2-sp; do
    gold="$SHARED/golden/tokenizers/${pair%%:*}.tokens.jsonl" file="$G/${pair##*:}.vocab.gguf"
    [ -f "$gold" -a -f "$file" ] || { fail "gguf_tokenize_${pair%%:*}" "missing $gold or $file"; continue; }
    python3 -c 'import json,sys
for l in open(sys.argv[1]): print(json.dumps(json.loads(l)["text"], ensure_ascii=False))' "$gold" >"$TMP/in"
    "$KILN" tokenize --model "$file" --special <"$TMP/in" >"$TMP/out"
    python3 -c 'import json,sys
g=[json.loads(l) for l in open(sys.argv[1])]; o=[json.loads(l) for l in open(sys.argv[2])]
assert len(g)==len(o), (len(g),len(o))
for a,b in zip(g,o): assert a["ids_with_special"]==b["ids"], (a,b)' "$gold" "$TMP/out" \
        && pass "gguf_tokenize_${pair%%:*}" || fail "gguf_tokenize_${pair%%:*}" "ids differ from $gold"
done

for pair in llama3:tiny-llama3 qwen3:tiny-qwen3; do
    gold="$SHARED/golden/tokenizers/${pair%%:*}.chat.jsonl" file="$G/${pair##*:}.vocab.gguf"
    python3 -c 'import json,sys
for l in open(sys.argv[1]):
    d=json.loads(l); print(json.dumps({k:v for k,v in d.items() if k not in ("rendered","ids","error")}, ensure_ascii=False))' \
        "$gold" >"$TMP/req" 2>/dev/null
    "$KILN" template --model "$file" <"$TMP/req" >"$TMP/out" 2>"$TMP/err"
    python3 -c 'import json,sys
g=[json.loads(l) for l in open(sys.argv[1])]; o=[json.loads(l) for l in open(sys.argv[2])]
assert len(g)==len(o) and len(g) > 0, (len(g),len(o))
for a,b in zip(g,o):
    if a.get("error") is None: assert a["rendered"]==b["rendered"] and a["ids"]==b["ids"], (a,b)' "$gold" "$TMP/out" \
        && pass "gguf_template_${pair%%:*}" || fail "gguf_template_${pair%%:*}" "$(head -c 300 "$TMP/err")"
done

# a truncated file: exit 1 and one line on stderr naming the file
head -c 3000 "$G/stories260K.vocab.gguf" >"$TMP/cut.gguf"
echo '"x"' | "$KILN" tokenize --model "$TMP/cut.gguf" >/dev/null 2>"$TMP/err"; rc=$?
check gguf_tokenize_truncated [ "$rc" -ne 0 -a "$(wc -l <"$TMP/err")" -eq 1 -a -n "$(grep cut.gguf "$TMP/err")" ]

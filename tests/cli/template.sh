#!/usr/bin/env bash
# kiln template: the JSON-lines contract against the chat goldens, error lines, bad usage.
source "$(dirname "$0")/lib.bash"

for tok in qwen3 llama3; do
    gold="$SHARED/golden/tokenizers/$tok.chat.jsonl"
    [ -f "$gold" ] || { fail "template_golden_$tok" "missing $gold"; continue; }
    # feed the input keys only; compare rendered + ids line by line
    python3 -c '
import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    print(json.dumps({k: v for k, v in d.items() if k not in ("rendered", "ids", "error")}, ensure_ascii=False))
' "$gold" > "$TMP/in.jsonl"
    "$KILN" template --model "$SHARED/tokenizers/$tok" < "$TMP/in.jsonl" > "$TMP/out.jsonl" 2> "$TMP/err"
    rc=$?
    if python3 -c '
import json, sys
gold = [json.loads(l) for l in open(sys.argv[1])]
out = [json.loads(l) for l in open(sys.argv[2])]
assert len(gold) == len(out), (len(gold), len(out))
for i, (g, o) in enumerate(zip(gold, out)):
    if g["error"] is not None:
        assert "error" in o, i
    else:
        assert o == {"rendered": g["rendered"], "ids": g["ids"]}, (i, o, g)
' "$gold" "$TMP/out.jsonl" && [ $rc -eq 0 ]; then pass "template_golden_$tok"; else fail "template_golden_$tok" "rc=$rc $(head -c 300 "$TMP/err")"; fi
done

# a model directory (tokenizer files symlinked) works too
out=$(echo '{"messages":[{"role":"user","content":"hi"}],"add_generation_prompt":true}' | "$KILN" template --model "$SHARED/models/tiny-qwen3")
check template_model_dir [ "$out" = '{"rendered":"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n","ids":[151644,872,198,6023,151645,198,151644,77091,198]}' ]

# a failing template line gives {"error":...} on that line, later lines still render, exit status 1
printf '%s\n' '{"messages":[]}' 'not json' '{"messages":[{"role":"user","content":"ok"}]}' \
    | "$KILN" template --model "$SHARED/tokenizers/qwen3" > "$TMP/mixed" 2>/dev/null
rc=$?
check template_error_lines python3 -c '
import json, sys
ls = [json.loads(l) for l in open(sys.argv[1])]
assert len(ls) == 3 and "error" in ls[0] and "line" in ls[0]["error"] and "error" in ls[1] and "rendered" in ls[2]
' "$TMP/mixed"
check template_error_exit [ $rc -eq 1 ]

# usage errors: one line on stderr, non-zero exit, nothing on stdout
out=$("$KILN" template 2>"$TMP/e" </dev/null); rc=$?
check template_needs_model [ $rc -ne 0 -a -z "$out" -a "$(wc -l < "$TMP/e")" -eq 1 ]
out=$("$KILN" template --model "$SHARED/tokenizers/llama2" 2>"$TMP/e" </dev/null); rc=$?
check template_no_chat_template [ $rc -ne 0 -a -z "$out" ] 
grep -q "chat template" "$TMP/e" && pass template_no_chat_template_message || fail template_no_chat_template_message "$(cat "$TMP/e")"
out=$("$KILN" template --model /nonexistent 2>"$TMP/e" </dev/null); rc=$?
check template_bad_dir [ $rc -ne 0 -a -z "$out" ]

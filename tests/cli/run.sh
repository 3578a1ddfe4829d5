#!/usr/bin/env bash
# kiln run end to end: golden greedy ids on every fixture model (raw prompts and the chat prompt through
# the template), the stories260K golden story streamed character for character, batches, bad inputs.
source "$(dirname "$0")/lib.bash"
G="$SHARED/golden/models"

# each golden prompt's text, run raw + greedy + --json, gives the golden ids (first N)
for model in tiny-llama3 tiny-qwen3 tiny-qwen2 stories260K; do
    [ -d "$G/$model" ] || { fail "golden_$model" "$G/$model missing"; continue; }
    python3 - "$G/$model" > "$TMP/cases" <<'PY' || fail "golden_$model" "cannot read golden"
import json, sys
d = sys.argv[1]
prompts = json.load(open(d + "/prompts.json")); cases = json.load(open(d + "/golden.json"))["cases"]
for p, c in zip(prompts, cases):
    if p["name"] == "single_token": continue
    n = len(c["greedy_ids"])
    print(json.dumps({"name": p["name"], "text": p["text"], "conv": p.get("conversation"),
                      "ids": ",".join(map(str, p["ids"])), "want": c["greedy_ids"][:n], "n": n,
                      "story": c.get("greedy_text")}))
PY
    while IFS= read -r line; do
        name=$(jq -r .name <<<"$line"); n=$(jq -r .n <<<"$line"); want=$(jq -c .want <<<"$line")
        if [ "$(jq -r .conv <<<"$line")" != null ]; then
            # the chat prompt through the template (user message, enable_thinking as in the golden)
            conv=$(jq -c .conv <<<"$line")
            user=$(jq -r '.messages[-1].content' <<<"$conv"); sys=$(jq -r '[.messages[]|select(.role=="system")][0].content // empty' <<<"$conv")
            think=$(jq -r 'if .enable_thinking == false then "off" elif .enable_thinking == true then "on" else "" end' <<<"$conv")
            args=(--prompt "$user"); [ -n "$sys" ] && args+=(--system "$sys"); [ -n "$think" ] && args+=(--think "$think")
        elif [ "$name" = long_300 ]; then
            # its text is a decoding of 300 ids cut mid-stream, not guaranteed to re-encode to them
            args=(--ids "$(jq -r .ids <<<"$line")")
        else
            args=(--raw --prompt "$(jq -r .text <<<"$line")")
        fi
        got=$("$KILN" run --model "$SHARED/models/$model" "${args[@]}" --greedy --json --max-new-tokens "$n" \
              --min-new-tokens "$n" 2>"$TMP/err" | jq -c .ids)
        check "golden_${model}_$name" test "$got" = "$want"
        # --ids gives the same
        if [ "$name" = short_en ]; then
            got=$("$KILN" run --model "$SHARED/models/$model" --ids "$(jq -r .ids <<<"$line")" --greedy --json \
                  --max-new-tokens "$n" --min-new-tokens "$n" 2>/dev/null | jq -c .ids)
            check "ids_${model}" test "$got" = "$want"
        fi
        story=$(jq -r '.story // empty' <<<"$line")
        if [ -n "$story" ]; then
            "$KILN" run --model "$SHARED/models/$model" "${args[@]}" --greedy --max-new-tokens "$n" \
                --min-new-tokens "$n" >"$TMP/out" 2>"$TMP/err"
            printf '%s\n' "$story" > "$TMP/want"
            # the golden decodes the generated ids alone, which drops the leading space SentencePiece gives
            # a continuation that starts a word; kiln streams it in the prompt's context (" a big tree.")
            sed -i '1s/^ //' "$TMP/out"
            check "story_${name}_streamed" cmp -s "$TMP/out" "$TMP/want"
            check "story_${name}_stats_line" grep -q "generated $n tok" "$TMP/err"
        fi
    done < "$TMP/cases"
done

M="$SHARED/models/stories260K"
# a batch of 4 prompts: each gets the ids it gets alone
printf '%s\n' '{"prompt":"Once upon a time"}' '{"prompt":"Lily went to the park"}' '{"prompt":"The dog was sad"}' \
    '{"prompt":"Tom had a big red ball and"}' > "$TMP/batch.jsonl"
"$KILN" run --model "$M" --raw --greedy --max-new-tokens 24 --batch-file "$TMP/batch.jsonl" > "$TMP/batch.out" 2>"$TMP/err"
check batch_four_lines test "$(wc -l < "$TMP/batch.out")" = 4
i=0
while IFS= read -r line; do
    p=$(jq -r .prompt <<<"$line"); i=$((i + 1))
    alone=$("$KILN" run --model "$M" --raw --greedy --max-new-tokens 24 --json --prompt "$p" 2>/dev/null | jq -c .ids)
    check "batch_matches_alone_$i" test "$(sed -n "${i}p" "$TMP/batch.out" | jq -c .ids)" = "$alone"
done < "$TMP/batch.jsonl"

# --json shape
out=$("$KILN" run --model "$M" --raw --greedy --max-new-tokens 5 --json --prompt "Once upon a time" 2>/dev/null)
check json_shape test "$(jq -c '[keys_unsorted, (.stats|keys_unsorted), .finish_reason, (.ids|length)]' <<<"$out")" = \
    '[["text","thinking","ids","finish_reason","stats"],["prompt_tokens","gen_tokens","ttft_ms","total_ms","decode_tok_s","peak_rss_mb"],"length",5]'
# stop string never printed, finish stop
out=$("$KILN" run --model "$M" --raw --greedy --max-new-tokens 60 --json --stop "Lily" --prompt "Once upon a time" 2>/dev/null)
check stop_string test "$(jq -r '.finish_reason + "|" + .text' <<<"$out")" = "stop|, there was a little girl named "
# seeded sampling reproduces; different seed differs
a=$("$KILN" run --model "$M" --raw --do-sample --temperature 1 --seed 7 --max-new-tokens 30 --json --prompt "Once" 2>/dev/null | jq -c .ids)
b=$("$KILN" run --model "$M" --raw --do-sample --temperature 1 --seed 7 --max-new-tokens 30 --json --prompt "Once" 2>/dev/null | jq -c .ids)
c=$("$KILN" run --model "$M" --raw --do-sample --temperature 1 --seed 8 --max-new-tokens 30 --json --prompt "Once" 2>/dev/null | jq -c .ids)
check seed_reproduces test "$a" = "$b"
check seed_differs test "$a" != "$c"
# OpenAI's penalties: a strong frequency penalty changes the greedy story and repeats its most common
# token less (which ids count is unit-tested in tests/test_sampler.c); out of range is a usage error
p0=$("$KILN" run --model "$M" --raw --greedy --max-new-tokens 60 --min-new-tokens 60 --json --prompt "Once upon a time" 2>/dev/null | jq -c .ids)
p1=$("$KILN" run --model "$M" --raw --greedy --max-new-tokens 60 --min-new-tokens 60 --json --frequency-penalty 2 --prompt "Once upon a time" 2>/dev/null | jq -c .ids)
maxrep() { jq '[group_by(.)[]|length]|max' <<<"$1"; }
check frequency_penalty_changes_story test "$p0" != "$p1"
check frequency_penalty_fewer_repeats test "$(maxrep "$p1")" -lt "$(maxrep "$p0")"
"$KILN" run --model "$M" --presence-penalty 3 --prompt x >/dev/null 2>&1
check presence_penalty_range test $? = 2
# stdin prompt
out=$(echo -n "Once upon a time" | "$KILN" run --model "$M" --raw --greedy --max-new-tokens 5 --json 2>/dev/null | jq -c .ids)
want=$("$KILN" run --model "$M" --raw --greedy --max-new-tokens 5 --json --prompt "Once upon a time" 2>/dev/null | jq -c .ids)
check stdin_prompt test "$out" = "$want"

# bad inputs: one line on stderr, non-zero exit
bad() { # name, args...
    local n=$1; shift
    "$KILN" run "$@" >"$TMP/o" 2>"$TMP/e" </dev/null; local rc=$?
    if [ $rc -ne 0 ] && [ "$(wc -l < "$TMP/e")" -eq 1 ] && [ ! -s "$TMP/o" ]; then pass "$n"; else fail "$n" "rc=$rc: $(head -c 300 "$TMP/e")"; fi
}
bad bad_model --model /nonexistent --prompt hi
bad bad_flag --model "$M" --prompt hi --frobnicate
bad bad_top_p --model "$M" --prompt hi --top-p 2
bad bad_ids --model "$M" --ids 1,x
bad bad_think --model "$M" --prompt hi --think maybe
bad too_long --model "$M" --raw --prompt "Once upon a time" --max-new-tokens 100000
bad bad_batch --model "$M" --batch-file /nonexistent.jsonl

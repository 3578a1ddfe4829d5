#!/usr/bin/env bash
# kiln run with constrained decoding (--json-schema, --regex, --grammar, --choice) and --logit-bias on
# the random-weight tiny-qwen3: sampled outputs must parse / match (checked with jq and grep -E), and
# misuse is a one-line usage error.
source "$(dirname "$0")/lib.bash"
M="$SHARED/models/tiny-qwen3"
run() { "$KILN" run --model "$M" --raw --prompt "Answer:" --do-sample --top-k 0 --top-p 1 --max-new-tokens 120 --json "$@" 2>"$TMP/err"; }

cat > "$TMP/schema.json" <<'JSON'
{"type":"object","properties":{"n":{"type":"integer"},"c":{"enum":["red","blue"]},
 "l":{"type":"array","items":{"type":"boolean"},"minItems":1,"maxItems":2}},"required":["n","c","l"]}
JSON
valid() { jq -e '(.n|type=="number" and floor==.) and (.c=="red" or .c=="blue") and
    (.l|length>=1 and length<=2 and all(type=="boolean")) and (keys==["c","l","n"])' <<<"$1" >/dev/null; }
for seed in 1 2; do
    out=$(run --seed $seed --json-schema "$TMP/schema.json")
    text=$(jq -r .text <<<"$out")
    check "json_schema_seed$seed" valid "$text"
    check "json_schema_finish_seed$seed" test "$(jq -r .finish_reason <<<"$out")" = eos
done

out=$(run --seed 4 --regex '[0-9]{2}-[a-z]{1,3}' | jq -r .text)
check regex grep -Eqx '[0-9]{2}-[a-z]{1,3}' <<<"$out"

printf 'root ::= "(" num ("+" num)* ")"\nnum ::= [1-9] [0-9]? # one or two digits\n' > "$TMP/g.gbnf"
out=$(run --seed 5 --grammar "$TMP/g.gbnf" --max-new-tokens 200 | jq -r .text)
check gbnf grep -Eqx '\([1-9][0-9]?(\+[1-9][0-9]?)*\)' <<<"$out"

out=$(run --seed 6 --choice 'alpha,beta,gamma ray' | jq -r .text)
check choice grep -Eqx 'alpha|beta|gamma ray' <<<"$out"

# --logit-bias 100 forces the token under greedy decoding
ids=$("$KILN" run --model "$M" --raw --prompt "Answer:" --greedy --max-new-tokens 2 --json --logit-bias 777=100 | jq -c .ids)
check logit_bias_forces test "$ids" = "[777,777]"

# misuse: one line, exit 2
usage() { local name=$1; shift
    "$KILN" run --model "$M" --raw --prompt x "$@" >/dev/null 2>"$TMP/err"; local rc=$?
    check "$name" test "$rc" = 2 -a "$(wc -l < "$TMP/err")" = 1
}
usage two_grammars --regex a --choice a,b
usage bad_regex --regex '(a'
usage bad_schema --json-schema "$TMP/g.gbnf"
usage unsupported_keyword --json-schema <(echo '{"type":"integer","multipleOf":2}')
usage bad_bias --logit-bias 5=200
usage bias_syntax --logit-bias 5

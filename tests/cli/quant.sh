#!/usr/bin/env bash
# Weight formats on the command line: --quant q8_0|q4_0 (and the older --dtype q8_0 spelling), --dtype for
# the float format, --quant-cache (file written next to the model, reused, a corrupt one rebuilt with one
# warning), bad values rejected, no progress output when stderr is not a terminal.
source "$(dirname "$0")/lib.bash"
M="$SHARED/models/stories260K"
ids=1,403,261,30

"$KILN" logits --model "$M" --ids $ids --top 3 --quant q8_0 >"$TMP/q8" 2>"$TMP/q8.err"
check quant_logits_run test -s "$TMP/q8"
check quiet_off_tty test ! -s "$TMP/q8.err"
"$KILN" logits --model "$M" --ids $ids --top 3 --dtype q8_0 >"$TMP/q8alias" 2>/dev/null
check dtype_q8_0_alias cmp -s "$TMP/q8" "$TMP/q8alias"
"$KILN" logits --model "$M" --ids $ids --top 3 >"$TMP/f32"
check q8_0_differs_from_f32 bash -c "! cmp -s '$TMP/q8' '$TMP/f32'"
"$KILN" logits --model "$M" --ids $ids --top 3 --quant q4_0 --dtype bf16 >"$TMP/q4bf" 2>/dev/null
"$KILN" logits --model "$M" --ids $ids --top 3 --quant q4_0 >"$TMP/q4" 2>/dev/null
# stories260K's 172-wide w_down cannot be Q4_0-blocked: it takes the --dtype format (bf16) instead of f32
check dtype_sets_unquantisable_matrices bash -c "test -s '$TMP/q4bf' && ! cmp -s '$TMP/q4' '$TMP/q4bf'"

for cmd in "generate --ids 1,2 --max-new-tokens 2" "run --raw --prompt Once --max-new-tokens 2"; do
    name=${cmd%% *}
    out=$("$KILN" $cmd --model "$M" --quant q4_0 2>&1) && pass "${name}_takes_quant" || fail "${name}_takes_quant" "$out"
done
for cmd in logits generate run bench serve; do
    "$KILN" $cmd --model "$M" --quant q5_1 --ids 1 >/dev/null 2>"$TMP/err"; rc=$?
    check "${cmd}_bad_quant" bash -c "[ $rc = 2 ] && grep -q \"unknown format 'q5_1'\" '$TMP/err'"
done
"$KILN" logits --model "$M" --ids 1 --dtype q3 >/dev/null 2>"$TMP/err"; rc=$?
check bad_dtype bash -c "[ $rc = 2 ] && grep -q 'want f32, f16 or bf16' '$TMP/err'"
"$KILN" serve --help | grep -q -- '--quant FMT .*q8_0|q4_0|q4_k_m|q5_k_m|q6_k' && pass serve_help_quant || fail serve_help_quant

# --quant-cache on a private copy of the model
D="$TMP/model"; mkdir "$D"; cp "$M"/config.json "$M"/model.safetensors "$M"/tokenizer*.json "$D"/
"$KILN" logits --model "$D" --ids $ids --top 3 --quant q8_0 --quant-cache >"$TMP/c1" 2>"$TMP/c1.err"
check cache_written test -s "$D/model.q8_0.kiln"
check cache_first_same cmp -s "$TMP/q8" "$TMP/c1"
"$KILN" logits --model "$D" --ids $ids --top 3 --quant q8_0 --quant-cache >"$TMP/c2" 2>"$TMP/c2.err"
check cache_reused_same bash -c "cmp -s '$TMP/q8' '$TMP/c2' && test ! -s '$TMP/c2.err'"
printf 'garbage' | dd of="$D/model.q8_0.kiln" bs=1 seek=5000 conv=notrunc 2>/dev/null
"$KILN" logits --model "$D" --ids $ids --top 3 --quant q8_0 --quant-cache >"$TMP/c3" 2>"$TMP/c3.err"
check cache_corrupt_warns bash -c "[ \$(wc -l <'$TMP/c3.err') = 1 ] && grep -q 'warning: weight cache .*corrupt.*rebuilding' '$TMP/c3.err'"
check cache_corrupt_same cmp -s "$TMP/q8" "$TMP/c3"
"$KILN" logits --model "$D" --ids $ids --top 3 --quant q8_0 --quant-cache >/dev/null 2>"$TMP/c4.err"
check cache_rebuilt test ! -s "$TMP/c4.err"

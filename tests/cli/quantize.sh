#!/usr/bin/env bash
# quantize.sh — `kiln quantize`: writes a GGUF that kiln then runs as it runs the checkpoint, refuses
# bad formats and unwritable targets with one line, leaves no temporary file behind, and says what it
# wrote on no terminal (no progress bar in a pipe); the other architectures' files run as their checkpoints
# (Gemma 3, Qwen3-MoE), and a window llama.cpp ignores is written with one warning naming it (Mistral).
source "$(dirname "$0")/lib.bash"
M="$SHARED/models/stories260K"
[ -f "$M/config.json" ] || { fail fixtures "$M missing"; exit 1; }

$KILN quantize --model "$M" --quant q4_k_m --out "$TMP/s.gguf" >"$TMP/out" 2>"$TMP/err"; rc=$?
check quantize_runs [ "$rc" -eq 0 -a -s "$TMP/s.gguf" ]
check quantize_quiet_in_a_pipe [ ! -s "$TMP/err" -a ! -s "$TMP/out" ]
check no_temp_left bash -c "! ls '$TMP' | grep -q 'tmp\.'"
# the file runs: the same greedy ids as the checkpoint loaded with --quant q4_k_m
a=$($KILN generate --model "$TMP/s.gguf" --ids 1,403,261 -n 8 2>&1)
b=$($KILN generate --model "$M" --quant q4_k_m --ids 1,403,261 -n 8 2>&1)
check gguf_generates_as_the_quantised_load [ "$a" = "$b" -a -n "$a" ]

$KILN quantize --model "$M" --quant q4_k --out "$TMP/x.gguf" 2>"$TMP/err"; rc=$?
check unknown_format_refused test "$rc" -eq 2 -a "$(grep -c "unknown format 'q4_k'" "$TMP/err")" -eq 1
check unknown_format_one_line [ "$(wc -l <"$TMP/err")" -eq 1 ]
$KILN quantize --model "$M" --out "$TMP/x.gguf" 2>"$TMP/err"; rc=$?
check quant_required [ "$rc" -eq 2 ]
$KILN quantize --model "$M" --quant f16 --out "$TMP/no/such/dir/x.gguf" 2>"$TMP/err"; rc=$?
check missing_dir_one_line test "$rc" -eq 1 -a "$(wc -l <"$TMP/err")" -eq 1 -a "$(grep -c no/such/dir/x.gguf "$TMP/err")" -eq 1
mkdir -p "$TMP/adir"
$KILN quantize --model "$M" --quant f16 --out "$TMP/adir" 2>"$TMP/err"; rc=$?
check target_dir_refused [ "$rc" -eq 1 -a "$(wc -l <"$TMP/err")" -eq 1 ]
check no_temp_after_failure bash -c "! ls '$TMP' | grep -q 'tmp\.'"
$KILN quantize --model "$TMP/s.gguf" --quant q8_0 --out "$TMP/y.gguf" 2>"$TMP/err"; rc=$?
check gguf_source_refused test "$rc" -eq 1 -a "$(grep -c safetensors "$TMP/err")" -eq 1

# the other architectures (tests/run.sh recreates the fixtures into ARCH_FIXTURES)
A="${ARCH_FIXTURES:-build/arch-fixtures}"
for m in gemma3-tiny qwen3moe-tiny; do
    [ -f "$A/$m/config.json" ] || { fail "fixtures_$m" "$A/$m missing"; continue; }
    $KILN quantize --model "$A/$m" --quant q4_k_m --out "$TMP/$m.gguf" 2>"$TMP/err"
    a=$($KILN generate --model "$TMP/$m.gguf" --ids 2,100,200,300 -n 8 2>&1)
    b=$($KILN generate --model "$A/$m" --quant q4_k_m --ids 2,100,200,300 -n 8 2>&1)
    check "${m}_gguf_generates_as_the_quantised_load" [ "$a" = "$b" -a -n "$a" -a ! -s "$TMP/err" ]
done
$KILN quantize --model "$A/mistral-tiny" --quant f32 --out "$TMP/mistral.gguf" 2>"$TMP/err"; rc=$?
check mistral_window_warned test "$rc" -eq 0 -a "$(wc -l <"$TMP/err")" -eq 1 -a \
    "$(grep -c 'llama.attention.sliding_window 8 written, but llama.cpp' "$TMP/err")" -eq 1
# what llama.cpp's keys cannot say is refused by name, and nothing is left behind: Gemma 2 with a
# query_pre_attn_scalar llama.cpp does not derive (it uses head_dim), Qwen3-MoE without norm_topk_prob
# (llama.cpp always renormalises the top-k weights)
mkdir -p "$TMP/g2" "$TMP/moe"
for f in model.safetensors tokenizer.json tokenizer_config.json; do
    ln -s "$(realpath "$A/gemma2-tiny/$f")" "$TMP/g2/$f"; ln -s "$(realpath "$A/qwen3moe-tiny/$f")" "$TMP/moe/$f"
done
sed 's/"query_pre_attn_scalar": 16/"query_pre_attn_scalar": 64/' "$A/gemma2-tiny/config.json" >"$TMP/g2/config.json"
sed 's/"norm_topk_prob": true/"norm_topk_prob": false/' "$A/qwen3moe-tiny/config.json" >"$TMP/moe/config.json"
mkdir -p "$TMP/refused"
$KILN quantize --model "$TMP/g2" --quant f32 --out "$TMP/refused/g2.gguf" 2>"$TMP/err"; rc=$?
check unexpressible_scale_refused test "$rc" -eq 1 -a "$(wc -l <"$TMP/err")" -eq 1 -a "$(grep -c "attn_scale would read back" "$TMP/err")" -eq 1
$KILN quantize --model "$TMP/moe" --quant q8_0 --out "$TMP/refused/moe.gguf" 2>"$TMP/err"; rc=$?
check unexpressible_topk_refused test "$rc" -eq 1 -a "$(grep -c "norm_topk_prob would read back" "$TMP/err")" -eq 1
check nothing_left_after_refusals [ -z "$(ls "$TMP/refused")" ]

#!/usr/bin/env bash
# quantize.sh — `kiln quantize`: writes a GGUF that kiln then runs as it runs the checkpoint, refuses
# bad formats and unwritable targets with one line, leaves no temporary file behind, and says what it
# wrote on no terminal (no progress bar in a pipe).
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

#!/usr/bin/env bash
# CLI conventions (issue 14): every command and sub-command answers -h / --help on stdout with exit 0,
# `kiln help CMD` prints the same text, and every flag the help lists is accepted by the parser (each is
# tried, long form and alias, followed by a sentinel flag that must be the first one refused). The
# llama-cli aliases exist wherever their long flag does, and `kiln --version` names the commit.
source "$(dirname "$0")/lib.bash"
SENTINEL=--zz-not-a-flag

# Commands from `kiln --help`, then each one's sub-commands from its help's "subcommands" section.
"$KILN" --help >"$TMP/top" 2>"$TMP/top.err"; rc=$?
check top_help_exit0 [ "$rc" = 0 ] && [ ! -s "$TMP/top.err" ]
mapfile -t cmds < <(awk '/^  [a-z]+ / && !/kiln/ {print $1}' "$TMP/top")
check top_help_lists_commands [ "${#cmds[@]}" -ge 10 ]
all=()
for c in "${cmds[@]}"; do
    all+=("$c")
    "$KILN" "$c" --help >"$TMP/h" 2>/dev/null
    while read -r sub; do all+=("$c $sub"); done < <(awk '/^subcommands/ {on=1; next} /^$/ {on=0} on && /^  [a-z]/ {print $1}' "$TMP/h")
done
check finds_bench_serve bash -c 'printf "%s\n" "$@" | grep -qx "bench serve"' _ "${all[@]}"

for cmd in "${all[@]}"; do
    name=${cmd// /_}
    read -ra words <<<"$cmd"
    for h in --help -h; do
        "$KILN" "${words[@]}" $h >"$TMP/help" 2>"$TMP/err"; rc=$?
        check "${name}_${h#--}_exit0_stdout" bash -c '[ "$1" = 0 ] && [ -s "$2" ] && [ ! -s "$3" ] && grep -q "^usage: kiln $4 " "$2"' _ "$rc" "$TMP/help" "$TMP/err" "$cmd"
    done
    "$KILN" help "${words[@]}" >"$TMP/help2" 2>/dev/null
    check "${name}_kiln_help_same" cmp -s "$TMP/help" "$TMP/help2"
    # the flag rows: "  -m, --model DIR   help" or "      --raw   help" (the value optional in [brackets])
    mapfile -t rows < <(sed -n '/^flags:/,/^$/p' "$TMP/help" | grep -E '^  (-[a-zA-Z], |    )--' |
        sed -E 's/^  (-[a-zA-Z]),? *(--[a-z0-9-]+)( \[?([^] ]+)\]?)?  .*/\1 \2 \4/; s/^ +(--[a-z0-9-]+)( \[?([^] ]+)\]?)?  .*/- \1 \3/')
    check "${name}_has_flags" [ "${#rows[@]}" -ge 1 ]
    for row in "${rows[@]}"; do
        read -r alias flag arg <<<"$row"
        [ "$flag" = --help ] && continue
        for form in "$flag" $([ "$alias" != - ] && echo "$alias"); do
            args=("$form"); [ -n "$arg" ] && args+=(1)
            "$KILN" "${words[@]}" "${args[@]}" $SENTINEL </dev/null >/dev/null 2>"$TMP/err"
            if grep -q "unknown flag '$form'" "$TMP/err"; then fail "${name}_accepts_$form" "$(cat "$TMP/err")"
            elif grep -q -e "unknown flag '$SENTINEL'" -e "$flag" "$TMP/err"; then pass "${name}_accepts_$form"
            else fail "${name}_accepts_$form" "the sentinel was not reached: $(head -c 300 "$TMP/err")"; fi
        done
        case "$flag" in # llama-cli's spellings
        --model) want=-m ;; --prompt) want=-p ;; --threads) want=-t ;; --max-new-tokens) want=-n ;; --seed) want=-s ;;
        *) want= ;;
        esac
        [ -n "$want" ] && check "${name}_alias_${want}_for_$flag" [ "$alias" = "$want" ]
    done
    "$KILN" "${words[@]}" $SENTINEL >"$TMP/o" 2>"$TMP/err"; rc=$?
    check "${name}_refuses_unknown_flag" bash -c '[ "$1" = 2 ] && [ ! -s "$2" ] && [ "$(wc -l <"$3")" = 1 ] && grep -q "unknown flag" "$3"' _ "$rc" "$TMP/o" "$TMP/err"
done

check help_no_command_lists_commands bash -c '"$1" help | grep -q "^  generate "' _ "$KILN"
check help_unknown_command_fails bash -c '! "$1" help frobnicate 2>/dev/null' _ "$KILN"
ver=$("$KILN" --version)
check version_names_commit grep -Eq '^kiln [0-9]+\.[0-9]+\.[0-9]+ \(commit ([0-9a-f]{7,}|unknown)\)$' <<<"$ver"
if git rev-parse --git-dir >/dev/null 2>&1; then
    check version_commit_is_head grep -qF "(commit $(git rev-parse --short HEAD))" <<<"$ver"
fi
# every command that makes a context takes --kv-type, with the one help text
for c in run chat generate logits bench serve info; do
    check "help_${c}_kv_type" bash -c '"$1" "$2" --help | grep -q -- "--kv-type f32|f16|bf16|q8_0 .*KV cache format"' _ "$KILN" "$c"
done

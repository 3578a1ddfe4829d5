#!/usr/bin/env bash
# kiln chat end to end, driven through a pipe (stdin not a TTY: plain lines, streamed answers) on
# tiny-qwen3 (a chat template with thinking; random weights, so greedy output is arbitrary but exact):
# two turns re-rendered through the template, /system, /save (valid JSON, right messages), a bad /save
# path (one-line error, the REPL goes on), /reset, /quit, EOF; then Ctrl-C and Ctrl-D on a real pty.
source "$(dirname "$0")/lib.bash"
M="$SHARED/models/tiny-qwen3"
[ -d "$M" ] || { fail chat_fixture "$M missing"; exit 0; }
GEN=(--greedy --max-new-tokens 8)

printf '%s\n' "Hello there" "/system You are terse." "What is 2+2?" "/save $TMP/a.json" \
    "/save $TMP/no/such/dir/x.json" "/reset" "/bogus" "" "Again" "/save $TMP/b.json" "/quit" "never asked" |
    "$KILN" chat --model "$M" "${GEN[@]}" > "$TMP/out" 2> "$TMP/err"
rc=$?
check chat_exit_zero test $rc = 0
check chat_three_answers test "$(wc -l < "$TMP/out")" = 3
check chat_three_stats_lines test "$(grep -c '^\[prompt .* tok, generated 8 tok' "$TMP/err")" = 3

# a.json: system first, then both turns; valid JSON (python's json.load)
if python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))["messages"]
assert [x["role"] for x in m] == ["system", "user", "assistant", "user", "assistant"], m
assert m[0]["content"] == "You are terse." and m[1]["content"] == "Hello there" and m[3]["content"] == "What is 2+2?", m
assert all(x["content"] for x in m), m
' "$TMP/a.json" 2>"$TMP/py"; then pass chat_save_json; else fail chat_save_json "$(tail -1 "$TMP/py")"; fi
# no temp file left behind by the atomic save
check chat_save_no_temp test -z "$(ls "$TMP" | grep '\.tmp\.')"

# turn 1 is what kiln run gives for the same single prompt (same template, same greedy ids)
want=$("$KILN" run --model "$M" "${GEN[@]}" --json --prompt "Hello there" 2>/dev/null | jq -r .text)
check chat_turn1_matches_run test "$(jq -r '.messages[2].content' "$TMP/a.json")" = "$want"
# turn 2 re-renders the whole history (system, turn 1 with the reply as content, question 2)
jq -c '{messages: .messages[0:4], add_generation_prompt: true}' "$TMP/a.json" > "$TMP/conv.jsonl"
ids=$("$KILN" template --model "$M" < "$TMP/conv.jsonl" | jq -r '.ids | map(tostring) | join(",")')
want=$("$KILN" run --model "$M" "${GEN[@]}" --json --ids "$ids" 2>/dev/null | jq -r .text)
check chat_turn2_rerenders_history test "$(jq -r '.messages[4].content' "$TMP/a.json")" = "$want"
# the streamed answers on stdout are the saved contents
check chat_streamed_is_saved test "$(sed -n 2p "$TMP/out")" = "$(jq -r '.messages[4].content' "$TMP/a.json")"

# the KV cache stays between turns: each turn prefills only what follows the common prefix of its
# re-rendered prompt with the cached ids, so turn k reuses at least all of turn k-1's prompt; the answers
# are still those of a fresh run over the whole re-rendered history
printf '%s\n' "Hello there" "What is 2+2?" "And 3+3?" "/save $TMP/r.json" |
    "$KILN" chat --model "$M" "${GEN[@]}" > "$TMP/rout" 2> "$TMP/rerr"
mapfile -t st < <(grep '^\[prompt' "$TMP/rerr" | sed -E 's/^\[prompt ([0-9]+) tok( \(([0-9]+) reused\), prefilled ([0-9]+) tok)?,.*/\1 \3 \4/')
read -r p1 r1 f1 <<<"${st[0]}"; read -r p2 r2 f2 <<<"${st[1]}"; read -r p3 r3 f3 <<<"${st[2]}"
check chat_turn1_prefills_all test "${#st[@]}" = 3 -a -z "$r1"
check chat_turn2_reuses_turn1 test "$r2" -ge "$p1" -a $((r2 + f2)) = "$p2"
check chat_turn3_reuses_turn2 test "$r3" -ge "$p2" -a $((r3 + f3)) = "$p3" -a "$f3" -lt $((p3 - p1))
jq -c '{messages: .messages[0:5], add_generation_prompt: true}' "$TMP/r.json" > "$TMP/conv3.jsonl"
ids=$("$KILN" template --model "$M" < "$TMP/conv3.jsonl" | jq -r '.ids | map(tostring) | join(",")')
want=$("$KILN" run --model "$M" "${GEN[@]}" --json --ids "$ids" 2>/dev/null | jq -r .text)
check chat_reused_turn_matches_fresh_run test "$(jq -r '.messages[5].content' "$TMP/r.json")" = "$want"

# the bad path: one line naming it, the REPL went on (b.json exists after it)
check chat_bad_save_one_line test "$(grep -c 'no/such/dir' "$TMP/err")" = 1
check chat_bad_save_message grep -q "^kiln chat: /save .*no/such/dir/x.json: No such file or directory$" "$TMP/err"
check chat_unknown_command grep -q "unknown command /bogus" "$TMP/err"
# b.json after /reset: the system prompt stays, the turns are gone; /quit ended before "never asked"
if python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))["messages"]
assert [(x["role"], x["content"]) for x in m[:2]] == [("system", "You are terse."), ("user", "Again")], m
assert len(m) == 3 and m[2]["role"] == "assistant", m
' "$TMP/b.json" 2>"$TMP/py"; then pass chat_reset; else fail chat_reset "$(tail -1 "$TMP/py")"; fi

# EOF ends cleanly; --system sets the first message; /system alone clears it
printf '%s\n' "/save $TMP/c.json" "/system" "/save $TMP/d.json" | "$KILN" chat --model "$M" --system "Be brief." >/dev/null 2>&1
check chat_eof_exit test $? = 0
check chat_system_flag test "$(jq -c '.messages' "$TMP/c.json")" = '[{"role":"system","content":"Be brief."}]'
check chat_system_clear test "$(jq -c '.messages' "$TMP/d.json")" = '[]'

# bad usage: one line, non-zero
"$KILN" chat --model "$SHARED/models/stories260K" </dev/null >"$TMP/o" 2>"$TMP/e"; rc=$?
check chat_no_template test $rc -ne 0 -a "$(wc -l < "$TMP/e")" = 1
"$KILN" chat --model "$M" --frobnicate </dev/null >"$TMP/o" 2>"$TMP/e"; rc=$?
check chat_bad_flag test $rc -ne 0 -a "$(wc -l < "$TMP/e")" = 1

# on a terminal: Ctrl-C stops a long answer (not the program), drops a half-typed line; Ctrl-D leaves
if python3 - "$KILN" "$M" > "$TMP/pty" 2>&1 <<'PY'
import os, pty, select, sys, time
kiln, model = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.execv(kiln, [kiln, "chat", "--model", model, "--greedy", "--max-new-tokens", "3000", "--min-new-tokens", "3000"])
out = b""
def pump(t):
    global out
    end = time.time() + t
    while time.time() < end:
        if select.select([fd], [], [], 0.05)[0]:
            try: out += os.read(fd, 65536)
            except OSError: return
def wait_after(marker, then, t=60):  # `then` appears after the last `marker`
    end = time.time() + t
    while time.time() < end and not (marker in out and then in out.rsplit(marker, 1)[1]): pump(0.05)
    if not (marker in out and then in out.rsplit(marker, 1)[1]):
        os.kill(pid, 9); raise SystemExit("waited for %r after %r: %r" % (then, marker, out[-400:]))
wait_after(b"\n", b">>> ")
os.write(fd, b"/help\r"); wait_after(b"/reset", b">>> ")
os.write(fd, b"\x1b[A\r")  # up arrow: /help again from the history
end = time.time() + 30
while time.time() < end and out.count(b"/system TEXT") < 2: pump(0.05)
assert out.count(b"/system TEXT") == 2, out[-600:]
wait_after(b"/quit", b">>> ")
os.write(fd, b"Hi\r"); pump(1.0)
os.write(fd, b"\x03")  # stops the answer
wait_after(b"[stopped]", b"(stop)")
wait_after(b"(stop)", b">>> ")
os.write(fd, b"half typed"); wait_after(b">>> ", b"half typed")
os.write(fd, b"\x03")  # drops the line
wait_after(b"half typed", b"^C")
wait_after(b"half typed^C", b">>> ")
os.write(fd, b"\x04")  # leaves
end = time.time() + 30
while time.time() < end:
    done, st = os.waitpid(pid, os.WNOHANG)
    if done: break
    pump(0.1)
else:
    os.kill(pid, 9); os.waitpid(pid, 0); raise SystemExit("Ctrl-D did not end the REPL: %r" % out[-300:])
assert os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0, st
print("ok")
PY
then pass chat_tty_ctrl_c; else fail chat_tty_ctrl_c "$(tail -c 400 "$TMP/pty")"; fi

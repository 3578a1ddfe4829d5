#!/usr/bin/env bash
# serve.sh — `kiln serve` end to end with the official openai npm client (tests/serve/serve.test.mjs):
# two servers on free loopback ports (stories260K for exactness and load, tiny-qwen3 for chat, the queue
# limit and disconnects), greedy ids compared with `kiln generate`, SIGTERM must drain and exit 0.
# One engine thread each (--threads 1): these models are tiny, and the suite shares two cores.
source "$(dirname "$0")/lib.bash"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STORIES=$SHARED/models/stories260K QWEN=$SHARED/models/tiny-qwen3
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT

[ -f "$ROOT/tests/serve/node_modules/openai/package.json" ] || { fail serve_client "tests/serve/node_modules missing: npm ci --prefix tests/serve"; exit 0; }
for m in "$STORIES" "$QWEN"; do [ -f "$m/config.json" ] || { fail serve_fixtures "$m missing"; exit 0; }; done

# start NAME MODEL FLAGS...: sets URL_NAME and PID_NAME once the server prints where it listens.
start() {
    local name=$1 model=$2; shift 2
    "$KILN" serve --model "$model" --host 127.0.0.1 --port 0 "$@" 2>"$TMP/$name.log" &
    local pid=$! url=
    PIDS+=("$pid")
    for _ in $(seq 1 600); do
        url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$TMP/$name.log" | head -1)
        [ -n "$url" ] || ! kill -0 "$pid" 2>/dev/null && break
        sleep 0.1
    done
    printf -v "URL_$name" '%s' "$url"
    printf -v "PID_$name" '%s' "$pid"
}

# Expected greedy continuations from the engine directly (kiln generate), for prompts of several lengths
# (one spans two KV blocks so the prefix cache has something to share).
MAX_TOKENS=12
prompts=("1,403,407,261,378" "1,90,250,301" "1,403,407,261,378,143,400,275,208,264,276,129,122,263,289,121,261,260,114,298" "1,15")
echo "[" >"$TMP/expected.json"
sep=""
for p in "${prompts[@]}"; do
    out=$("$KILN" generate --model "$STORIES" --ids "$p" --max-new-tokens $MAX_TOKENS 2>"$TMP/gen.err") || { fail serve_expected "kiln generate: $(cat "$TMP/gen.err")"; exit 0; }
    # kiln generate may print the prompt too: keep the last MAX_TOKENS ids.
    ids=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(json.dumps(d['ids'][-$MAX_TOKENS:]))" "$out")
    echo "$sep{\"prompt\":[$p],\"ids\":$ids}" >>"$TMP/expected.json"
    sep=","
done
echo "]" >>"$TMP/expected.json"
# The same through `kiln run --greedy` (chat template, generation_config.json, EOS ids, text): the server
# must give exactly this for a chat request (tiny-qwen3) and a text completion (stories260K).
"$KILN" run --model "$QWEN" --greedy --json --max-new-tokens 24 --threads 1 --prompt "Hello there!" >"$TMP/run_chat.json" 2>"$TMP/gen.err" &&
    "$KILN" run --model "$STORIES" --greedy --json --max-new-tokens 40 --threads 1 --prompt "Once upon a time" >"$TMP/run_text.json" 2>>"$TMP/gen.err" ||
    { fail serve_expected_run "kiln run: $(cat "$TMP/gen.err")"; exit 0; }

start STORIES "$STORIES" --threads 1 --api-key sekrit --max-body-kb 64 --max-batch 8 --max-queue 128 \
    --served-model-name stories260K,stories --allowed-origins http://app.example
start QWEN "$QWEN" --threads 1 --max-batch 2 --max-queue 2 --ctx 4096 --api-key sekrit --health-public \
    --read-timeout 2 --max-connections-per-ip 16 --drain 1 --log-format json
if [ -z "$URL_STORIES" ] || [ -z "$URL_QWEN" ]; then
    fail serve_start "$(cat "$TMP/STORIES.log" "$TMP/QWEN.log")"
    exit 0
fi
pass serve_start_port0

STORIES_URL=$URL_STORIES STORIES_PID=$PID_STORIES QWEN_URL=$URL_QWEN QWEN_PID=$PID_QWEN EXPECTED=$TMP/expected.json RUN_CHAT=$TMP/run_chat.json RUN_TEXT=$TMP/run_text.json MAX_TOKENS=$MAX_TOKENS \
    timeout 600 node "$ROOT/tests/serve/serve.test.mjs"
rc=$?
[ $rc -eq 0 ] || [ $rc -eq 1 ] || fail serve_client_run "node exited $rc"

# The stories server got SIGTERM at the end of the client run: it must exit 0 within the drain window.
st=124
for _ in $(seq 1 600); do kill -0 "$PID_STORIES" 2>/dev/null || { wait "$PID_STORIES"; st=$?; break; }; sleep 0.1; done
check sigterm_exit_0 [ "$st" -eq 0 ]
grep -q "draining" "$TMP/STORIES.log" || fail sigterm_message "$(tail -3 "$TMP/STORIES.log")"

# The qwen server got SIGINT during a stream (drain 1 s): it must exit 0 too.
st=124
for _ in $(seq 1 600); do kill -0 "$PID_QWEN" 2>/dev/null || { wait "$PID_QWEN"; st=$?; break; }; sleep 0.1; done
check sigint_exit_0 [ "$st" -eq 0 ]
if [ "$st" -ne 0 ]; then tail -20 "$TMP/QWEN.log"; fi

# Operability: the start-up summary and one access-log line per request (text on stories, JSON on qwen).
grep -q "context 512, batch 8, KV blocks [0-9]* x 16 tokens, threads 1, chat template none" "$TMP/STORIES.log" &&
    grep -q "LlamaForCausalLM, weights f32 (as stored)" "$TMP/STORIES.log"
check serve_startup_summary [ $? -eq 0 ]
grep -Eq '"POST /v1/completions" 200 prompt=[1-9][0-9]* completion=[1-9][0-9]* cached=[0-9]+ ttft=[0-9.]+ms total=[0-9.]+ms id=cmpl-' "$TMP/STORIES.log"
check serve_access_log_text [ $? -eq 0 ]
grep -q '"POST /v1/completions" 400 .* error: .*logit_bias' "$TMP/STORIES.log"
check serve_access_log_error [ $? -eq 0 ]
python3 - "$TMP/QWEN.log" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
start = [l for l in lines if l.get("event") == "start"]
reqs = [l for l in lines if l.get("path") == "/v1/chat/completions" and l.get("status") == 200]
ok = start and start[0]["chat_template"] and start[0]["thinking"] and start[0]["address"].startswith("http://127.0.0.1:") \
    and reqs and all(k in reqs[0] for k in ("prompt_tokens", "completion_tokens", "ttft_ms", "total_ms", "id", "client"))
sys.exit(0 if ok else 1)
PY
check serve_access_log_json [ $? -eq 0 ]

# The model file truncated underneath a running server: requests fail with a 503 that says why, the
# server stays up (no SIGBUS), and still stops cleanly.
mkdir -p "$TMP/copy" && cp "$STORIES"/* "$TMP/copy/" && chmod u+w "$TMP/copy"/*
start COPY "$TMP/copy" --threads 1
if [ -n "$URL_COPY" ]; then
    before=$(curl -s -o /dev/null -w '%{http_code}' "$URL_COPY/v1/completions" -d '{"prompt":"Once","max_tokens":4}')
    truncate -s 4096 "$TMP/copy/model.safetensors"
    after=$(curl -s "$URL_COPY/v1/completions" -d '{"prompt":"Once upon","max_tokens":4}')
    health=$(curl -s -o /dev/null -w '%{http_code}' "$URL_COPY/health")
    ok=0
    [ "$before" = 200 ] && [ "$health" = 503 ] && grep -q '"code":503' <<<"$after" && grep -q 'changed size on disk' <<<"$after" && ok=1
    check serve_model_truncated_503 [ $ok -eq 1 ]
    [ $ok -eq 1 ] || echo "before $before health $health after $after"
    check serve_model_truncated_alive kill -0 "$PID_COPY"
    kill -TERM "$PID_COPY"
    st=124
    for _ in $(seq 1 300); do kill -0 "$PID_COPY" 2>/dev/null || { wait "$PID_COPY"; st=$?; break; }; sleep 0.1; done
    check serve_model_truncated_exit_0 [ "$st" -eq 0 ]
else
    fail serve_model_truncated "$(cat "$TMP/COPY.log")"
fi

# Bad command lines fail cleanly.
"$KILN" serve 2>"$TMP/e" >/dev/null; check serve_needs_model [ $? -eq 2 ]
"$KILN" serve --model "$STORIES" --log-format xml 2>"$TMP/e" >/dev/null; check serve_bad_log_format [ $? -eq 2 ]
"$KILN" serve --model "$TMP/nope" --port 0 2>"$TMP/e" >/dev/null
rc=$?; check serve_bad_model [ $rc -ne 0 ] && check serve_bad_model_message grep -q nope "$TMP/e"

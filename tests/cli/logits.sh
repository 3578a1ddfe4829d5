#!/usr/bin/env bash
# kiln logits / kiln generate: the scripting contract and their errors.
source "$(dirname "$0")/lib.bash"
M="$SHARED/models/stories260K"
G="$SHARED/golden/models/stories260K/golden.json"

out=$("$KILN" logits --model "$M" --ids 1,403,407 --top 5 --all-logits "$TMP/last.f32")
check logits_lines_and_shape python3 - "$out" <<'PY'
import json, sys
lines = sys.argv[1].strip().split("\n")
assert len(lines) == 3, lines
for p, l in enumerate(lines):
    o = json.loads(l)
    assert o["pos"] == p and len(o["top"]) == 5
    vals = [x[1] for x in o["top"]]
    assert vals == sorted(vals, reverse=True)
PY
check logits_default_top20 bash -c "'$KILN' logits --model '$M' --ids 1 | python3 -c 'import json,sys; assert len(json.loads(sys.stdin.read())[\"top\"])==20'"
check all_logits_file_matches_golden python3 - "$TMP/last.f32" "$SHARED/golden/models/stories260K/case0.last_logits.f32" "$out" <<'PY'
import struct, sys, json
a = open(sys.argv[1], "rb").read()
assert len(a) == 512 * 4, len(a)
mine = struct.unpack("<512f", a)
top = json.loads(sys.argv[3].strip().split("\n")[-1])["top"]
assert all(abs(mine[i] - v) < 1e-5 for i, v in top)
PY
gen=$("$KILN" generate --model "$M" --ids "$(python3 -c "import json; print(','.join(map(str, json.load(open('$G'))['cases'][0]['prompt_ids'])))")" --max-new-tokens 64)
check generate_matches_golden python3 -c "
import json,sys; g=json.load(open('$G'))['cases'][0]['greedy_ids']; assert json.loads('''$gen''')['ids']==g"
check generate_stop_at_eos bash -c "'$KILN' generate --model '$M' --ids 1,403 --max-new-tokens 300 --stop-at-eos | python3 -c 'import json,sys; ids=json.loads(sys.stdin.read())[\"ids\"]; assert 0 < len(ids) <= 300 and 2 not in ids[:-1], ids'"
check generate_zero_tokens bash -c "[ \"\$('$KILN' generate --model '$M' --ids 1 --max-new-tokens 0)\" = '{\"ids\":[]}' ]"

# errors: one line on stderr, non-zero exit, nothing on stdout
err_case() { # name, expected substring, args...
    local name=$1 want=$2; shift 2
    "$KILN" "$@" >"$TMP/o" 2>"$TMP/e"; local rc=$?
    if [ $rc -ne 0 ] && [ "$(wc -l <"$TMP/e")" -eq 1 ] && grep -q -- "$want" "$TMP/e" && [ ! -s "$TMP/o" ]; then pass "$name"
    else fail "$name" "rc=$rc stderr=$(cat "$TMP/e") stdout=$(head -c 200 "$TMP/o")"; fi
}
err_case missing_model "/nonexistent" logits --model /nonexistent --ids 1
err_case bad_ids "bad token id" logits --model "$M" --ids 1,x
err_case id_out_of_range "999" logits --model "$M" --ids 1,999
err_case no_ids "--ids" logits --model "$M"
err_case unknown_flag "bogus" logits --model "$M" --ids 1 --bogus
err_case bad_dtype "unknown format" logits --model "$M" --ids 1 --dtype q7
err_case too_long "exceed" generate --model "$M" --ids 1 --max-new-tokens 600
err_case unwritable_logits "/nonexistent/dir" logits --model "$M" --ids 1 --all-logits /nonexistent/dir/x.f32

# Loading is mmap-based: peak RSS stays below the checkpoint's size + KV cache + 64 MiB.
for m in tiny-llama3 tiny-qwen2; do
    check "peak_rss_within_file_size_plus_64MiB_$m" python3 - "$KILN" "$SHARED/models/$m" <<'PY'
import os, resource, subprocess, sys, glob
kiln, model = sys.argv[1], sys.argv[2]
subprocess.run([kiln, "logits", "--model", model, "--ids", "1,2,3,4,5,6,7,8", "--top", "1"], check=True,
               stdout=subprocess.DEVNULL)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
size = sum(os.path.getsize(f) for f in glob.glob(model + "/*.safetensors"))
# 8 positions of logits (f32) are the only large allocation besides the weights
limit = size + 64 * 2**20 + 8 * 152064 * 4
sanitized = "asan" in kiln
assert sanitized or peak < limit, f"peak {peak} >= {limit}"
print(f"peak RSS {peak/2**20:.1f} MiB for {size/2**20:.1f} MiB of weights", file=sys.stderr)
PY
done

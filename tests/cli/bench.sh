#!/usr/bin/env bash
# CLI test for `kiln bench`: a 2-scenario x 3-run bench on a tiny model, its JSON/CSV/HTML checked for
# consistency, the llama-bench pp/tg mode, and `bench compare` against itself and against halved times.
source "$(dirname "$0")/lib.bash"
M="$SHARED/models/tiny-llama3"
[ -f "$M/config.json" ] || { fail bench_fixture "$M missing"; exit 0; }

if "$KILN" bench --model "$M" --prompt-tokens 8 --runs 3 --warmup 1 --max-new-tokens 6,4 --min-new-tokens 6 \
    --sample off,on --batch 1 --max-range 1000 --json "$TMP/a.json" --csv "$TMP/a.csv" --html "$TMP/a.html" \
    >"$TMP/out" 2>"$TMP/err"; then pass bench_runs; else fail bench_runs "$(cat "$TMP/err")"; fi

check json_consistent python3 - "$TMP/a.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
sc = d["scenarios"]
assert len(sc) == 4, len(sc)                      # 2 max-new-tokens x 2 sample
assert {s["name"] for s in sc} == {"max6-sample_off-b1", "max6-sample_on-b1", "max4-sample_off-b1", "max4-sample_on-b1"}
for k in ("cpu_model", "cpu_flags", "threads", "mem_total_bytes", "kiln_version", "git_commit", "model", "dtype", "date"):
    assert k in d["env"], k
assert d["env"]["threads"] >= 1, d["env"]["threads"]  # the resolved count, not the 0 "default" sentinel
for s in sc:
    assert len(s["runs"]) == 3
    for r in s["runs"]:
        # min == max for max6; for max4, min 6 is clamped to max 4: both generate exactly max
        assert r["gen_tokens"] == s["max_new_tokens"], (r, s["max_new_tokens"])
        assert r["prompt_tokens"] == 8
        assert 0 < r["ttft_s"] <= r["total_s"] and r["peak_rss_bytes"] >= r["rss_bytes"] > 0
    for key in ("total_s", "ttft_s", "decode_tok_s", "prefill_tok_s"):
        st, xs = s["stats"][key], [r[key] for r in s["runs"]]
        assert st["n"] == 3 and st["min"] == min(xs) and st["max"] == max(xs), key
        assert st["min"] <= st["mean"] <= st["max"] and st["min"] <= st["median"] <= st["max"], key
        assert abs(st["range"] - (st["max"] - st["min"])) < 1e-12
    assert s["stats"]["itl_s"]["n"] == 3 * (s["max_new_tokens"] - 1)
    assert s["verdict"] == "PASS", s["why"]
PY

check csv_one_row_per_run python3 - "$TMP/a.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 12 and all(int(r["gen_tokens"]) == int(r["max_new_tokens"]) for r in rows), len(rows)
PY

check html_one_point_per_run python3 - "$TMP/a.html" <<'PY'
import sys
from html.parser import HTMLParser
class P(HTMLParser):
    def __init__(s): super().__init__(); s.stack = []; s.pts = []; s.svgs = 0; s.ext = False
    def handle_starttag(s, t, a):
        a = dict(a)
        if t not in ("meta", "line", "rect", "circle"): s.stack.append(t)
        if t == "svg": s.svgs += 1
        if t == "circle" and "latency" in a.get("class", ""): s.pts.append((a["data-scenario"], a["data-run"]))
        if t in ("script", "link", "img") or "http://" in a.get("src", "") + a.get("href", ""): s.ext = True
    def handle_endtag(s, t):
        if t in ("meta", "line", "rect", "circle"): return
        assert s.stack and s.stack[-1] == t, (s.stack, t); s.stack.pop()
p = P(); p.feed(open(sys.argv[1]).read()); p.close()
assert not p.stack and p.svgs == 4 and not p.ext, (p.stack, p.svgs)
assert len(p.pts) == 12 and len(set(p.pts)) == 12, p.pts
PY

# llama-bench style: pp/tg medians at top level, on stdout with bare --json.
"$KILN" bench --model "$M" --prompt-tokens 16 --gen-tokens 5 --runs 3 --warmup 0 --json >"$TMP/pp.json" 2>"$TMP/err"
check pp_tg_json python3 - "$TMP/pp.json" <<'PY'
import json, sys, statistics
d = json.load(open(sys.argv[1]))
assert d["pp_tokens"] == 16 and d["tg_tokens"] == 5
runs = d["scenarios"][0]["runs"]
assert all(r["gen_tokens"] == 5 and r["prompt_tokens"] == 16 for r in runs)
assert abs(d["pp_tok_s"] - statistics.median(r["prefill_tok_s"] for r in runs)) < 1e-6 * d["pp_tok_s"]
assert abs(d["tg_tok_s"] - statistics.median(r["tg_tok_s"] for r in runs)) < 1e-6 * d["tg_tok_s"]
assert all(r["tg_tok_s"] > 0 for r in runs)
PY

# --depth N (llama-bench -d): pp and tg after N cached tokens; the report carries the depth, the scenario
# name says it, and depth + prompt + new tokens must fit the model's positions (4096 here)
"$KILN" bench --model "$M" --prompt-tokens 16 --gen-tokens 5 --depth 300 --kv-type f16 --runs 2 --warmup 0 --json \
    >"$TMP/d.json" 2>"$TMP/err"
check bench_depth_report python3 - "$TMP/d.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["depth"] == 300 and d["pp_tokens"] == 16 and d["tg_tokens"] == 5, d
s = d["scenarios"][0]
assert s["name"] == "pp16+tg5@d300-off-b1", s["name"]
assert all(r["prompt_tokens"] == 16 and r["gen_tokens"] == 5 and r["tg_tok_s"] > 0 for r in s["runs"]), s["runs"]
PY
"$KILN" bench --model "$M" --prompt-tokens 16 --gen-tokens 5 --depth 4080 2>"$TMP/e"; rc=$?
check bench_depth_too_deep test $rc -ne 0 -a "$(grep -c '4080 cached + 16 prompt + 5 new' "$TMP/e")" = 1
"$KILN" bench --model "$M" --depth 8 --batch 1,2 2>"$TMP/e"; rc=$?
check bench_depth_batch_refused test $rc = 2 -a "$(grep -c -- '--depth needs --batch 1' "$TMP/e")" = 1

# compare: against itself -> within noise; against times halved -> 2.00x faster. The halved copy is made
# from a copy with a fixed 2% spread so the result does not depend on how noisy this machine is.
python3 - "$TMP/a.json" "$TMP/tight.json" "$TMP/half.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for s in d["scenarios"]:
    for i, r in enumerate(s["runs"]): r["total_s"] = 1.0 + 0.01 * i
json.dump(d, open(sys.argv[2], "w"))
for s in d["scenarios"]:
    for r in s["runs"]: r["total_s"] /= 2
json.dump(d, open(sys.argv[3], "w"))
PY
"$KILN" bench compare "$TMP/a.json" "$TMP/a.json" >"$TMP/self" 2>&1
check compare_self bash -c "[ \$(grep -c 'within noise' '$TMP/self') -eq 4 ]"
"$KILN" bench compare "$TMP/tight.json" "$TMP/half.json" >"$TMP/half" 2>&1
check compare_halved bash -c "[ \$(grep -c '2.00× faster, outside the noise' '$TMP/half') -eq 4 ]"

# --chat renders the prompt through the chat template: more prompt tokens than the raw text.
Q="$SHARED/models/tiny-qwen3"
raw=$("$KILN" bench --model "$Q" --prompt Hello --runs 1 --warmup 0 --max-new-tokens 2 --json 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["scenarios"][0]["runs"][0]["prompt_tokens"])')
chat=$("$KILN" bench --model "$Q" --prompt Hello --chat --runs 1 --warmup 0 --max-new-tokens 2 --json 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["scenarios"][0]["runs"][0]["prompt_tokens"])')
check chat_template_applied test "${chat:-0}" -gt "${raw:-99}"

# bad input: one-line errors, non-zero exit
if "$KILN" bench compare "$TMP/a.json" /nonexistent.json 2>"$TMP/e1"; then fail compare_missing "exit 0"
else check compare_missing grep -q nonexistent "$TMP/e1"; fi
if "$KILN" bench --model "$M" --sample maybe 2>"$TMP/e2"; then fail bad_sample "exit 0"
else check bad_sample grep -q -- "--sample" "$TMP/e2"; fi

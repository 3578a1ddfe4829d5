#!/usr/bin/env bash
# info.sh — `kiln info --json`: every field present and plausible, SIMD features equal to what
# /proc/cpuinfo reports, and with --model the decode-cost figures recomputed here from the files.
source "$(dirname "$0")/lib.bash"
M="$SHARED/models/stories260K"
[ -f "$M/config.json" ] || { fail fixtures "$M missing"; exit 1; }

# One measured run serves every check (each run spends ~1 s measuring).
$KILN info --json --model "$M" >"$TMP/info.json" 2>"$TMP/err"; rc=$?
check info_json_runs [ "$rc" -eq 0 ]
check info_json_plausible python3 - "$TMP/info.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
cpu, mem, ms = j["cpu"], j["memory"], j["measured"]
assert cpu["model"] and cpu["threads"] >= cpu["cores"] >= 1, cpu
assert cpu["kernels"] in ("scalar", "avx2", "avx512", "amx"), cpu["kernels"]
meminfo = {l.split(":")[0]: int(l.split()[1]) * 1024 for l in open("/proc/meminfo") if l.split()[1].isdigit()}
assert mem["total_bytes"] == meminfo["MemTotal"], (mem, meminfo["MemTotal"])
assert 0 < mem["available_bytes"] <= mem["total_bytes"]
assert mem["transparent_hugepages"] in ("always", "madvise", "never", "unavailable")
assert mem["hugepages_total"] == meminfo["HugePages_Total"] // 1024, mem  # a count, not kB
assert ms["read_bandwidth_gbs"] > 0.1 and ms["matmul_gflops"] > 0.01, ms
assert ms["seconds"] <= 2.5, ms  # "a quick (<= 2 s) measurement" (+ slack for a loaded CI box)
PY
# Features: each name kiln probes is reported iff the kernel's flags line has it.
check features_match_proc_cpuinfo python3 - "$TMP/info.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
flags = set()
for l in open("/proc/cpuinfo"):
    if l.startswith("flags"):
        flags = set(l.split(":", 1)[1].split()); break
probed = ["sse4_2", "avx", "f16c", "fma", "avx2", "avx_vnni", "avx512f", "avx512dq", "avx512bw", "avx512vl",
          "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"]
want = [f for f in probed if f in flags]
got = j["cpu"]["features"]
assert sorted(got) == sorted(want), (got, want)
assert j["cpu"]["features_match_cpuinfo"] is True
assert "sse4_2" not in flags or "sse4_2" in got
PY

check info_model_figures python3 - "$TMP/info.json" "$M" <<'PY'
import json, struct, sys, os
j = json.load(open(sys.argv[1])); d = sys.argv[2]; m = j["model"]
cfg = json.load(open(os.path.join(d, "config.json")))
params = vec = 0
for f in os.listdir(d):
    if f.endswith(".safetensors"):
        with open(os.path.join(d, f), "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]; h = json.loads(fh.read(n))
        for k, t in h.items():
            if k != "__metadata__":
                p = 1
                for s in t["shape"]: p *= s
                params += p
                vec += p if len(t["shape"]) == 1 else 0
assert m["params"] == params, (m["params"], params)
L, kv = cfg["num_hidden_layers"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
assert m["kv_bytes_per_token"] == 2 * L * kv * hd * 2 and m["kv_type"] == "f16", m  # the default KV format
b = m["weight_bytes_per_token_by_dtype"]
# norms stay f32 in every format (as the loader keeps them): only the matrices halve in f16 / bf16
assert b["f32"] - 4 * vec == 2 * (b["f16"] - 4 * vec) == 2 * (b["bf16"] - 4 * vec), (b, vec)
assert b["f16"] > b["q8_0"] > b["q4_0"] > 0, b
assert m["checkpoint_dtype"] == "f32" and m["weight_bytes_per_token"] == b["f32"], m
# untied embeddings: the table is read one row per token, so bytes/token < all weights
assert b["f32"] <= params * 4
bw = j["measured"]["read_bandwidth_gbs"] * 1e9
assert abs(m["roofline_tok_s"] - bw / (b["f32"] + m["kv_bytes_per_token"])) / m["roofline_tok_s"] < 1e-3, m
assert m["max_context_in_memory"] > 0 and m["max_context"] == min(m["max_context_in_memory"], cfg["max_position_embeddings"])
PY
# --kv-type: the KV figures in that format (f16 half of f32; q8_0 34 bytes per 32 values); q8_0 needs whole
# 32-blocks along head_dim, so a head_dim 8 model is refused by name
Q="$SHARED/models/tiny-qwen3"
$KILN info --json --model "$Q" --kv-type f16 >"$TMP/f16.json" && $KILN info --json --model "$Q" --kv-type q8_0 >"$TMP/q8.json"
check info_kv_type_f16 test "$(jq '.model.kv_bytes_per_token' "$TMP/f16.json")" = $((2 * 2 * 2 * 32 * 2)) -a \
    "$(jq -r '.model.kv_type' "$TMP/f16.json")" = f16
check info_kv_type_q8_0 test "$(jq '.model.kv_bytes_per_token' "$TMP/q8.json")" = $((2 * 2 * 2 * 34))
$KILN info --model "$SHARED/models/stories260K" --kv-type q8_0 >/dev/null 2>"$TMP/err"; rc=$?
check info_kv_type_refused test "$rc" -ne 0 -a "$(wc -l <"$TMP/err")" -eq 1 -a "$(grep -c 'head_dim 8' "$TMP/err")" = 1
$KILN info >"$TMP/text" 2>&1
check info_text_mentions_bandwidth grep -q 'GB/s' "$TMP/text"
$KILN info --model /nonexistent/model >/dev/null 2>"$TMP/err"; rc=$?
check info_bad_model_one_line_error test "$rc" -ne 0 -a "$(wc -l <"$TMP/err")" -eq 1

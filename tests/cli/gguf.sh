#!/usr/bin/env bash
# GGUF files on the command line (issue 15): --model FILE.gguf, any part of a split set, a directory
# holding one GGUF; llama.cpp's greedy ids from the F32 file; one-line errors for what kiln does not run.
source "$(dirname "$0")/lib.bash"
D="$SHARED/gguf/kq-llama-512"
F="$D/kq-llama-512.F32.gguf"

check generate_matches_llamacpp python3 -c '
import json,sys,subprocess
for c in json.load(open(sys.argv[2]))["cases"]:
    ids=",".join(map(str,c["prompt_ids"]))
    o=subprocess.run([sys.argv[1],"generate","--model",sys.argv[3],"--ids",ids,"-n","16","--threads","1"],capture_output=True,text=True,check=True)
    assert json.loads(o.stdout)["ids"]==c["greedy_ids"], c["name"]
' "$KILN" "$D/kq-llama-512.F32.golden.json" "$F"

check logits_top1_matches_llamacpp python3 -c '
import json,sys,subprocess
c=json.load(open(sys.argv[2]))["cases"][0]
o=subprocess.run([sys.argv[1],"logits","--model",sys.argv[3],"--ids",",".join(map(str,c["prompt_ids"])),"--top","5","--kv-type","f32"],capture_output=True,text=True,check=True)
for p,l in enumerate(o.stdout.splitlines()):
    top=json.loads(l)["top"]
    assert [i for i,_ in top]==c["topk_ids"][p][:5], p
    assert max(abs(a-b) for (_,a),b in zip(top,c["topk_logits"][p]))<1e-3, p
' "$KILN" "$D/kq-llama-512.F32.golden.json" "$F"

mkdir -p "$TMP/one"
ln -s "$(cd "$D" && pwd)/kq-llama-512.Q8_0.gguf" "$TMP/one/model.gguf"
out=$("$KILN" generate --model "$TMP/one" --ids 1,2,3 -n 2 2>&1)
check directory_with_one_gguf python3 -c 'import json,sys; assert len(json.loads(sys.argv[1])["ids"])==2' "$out"

info=$("$KILN" info --model "$F" 2>&1)
check info_counts_gguf grep -q "params     1705216" <<<"$info"

# A tensor type kiln does not compute is one line naming the tensor and the type: the F32 file with its
# first tensor's type id patched to I32 (26, also 4 bytes a value, so every size still checks out).
python3 - "$F" "$TMP/i32.gguf" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n_tensors, n_kv = struct.unpack_from("<QQ", b, 8)
o = 24
def skip_str(o): return o + 8 + struct.unpack_from("<Q", b, o)[0]
SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def skip_val(o, t):
    if t == 8: return skip_str(o)
    if t == 9:
        et, n = struct.unpack_from("<IQ", b, o); o += 12
        for _ in range(n): o = skip_val(o, et)
        return o
    return o + SIZES[t]
for _ in range(n_kv):
    o = skip_str(o); t = struct.unpack_from("<I", b, o)[0]; o = skip_val(o + 4, t)
o = skip_str(o); nd = struct.unpack_from("<I", b, o)[0]; o += 4 + 8 * nd
assert struct.unpack_from("<I", b, o)[0] == 0  # F32
struct.pack_into("<I", b, o, 26)
open(sys.argv[2], "wb").write(b)
PY
err=$("$KILN" generate --model "$TMP/i32.gguf" --ids 1 -n 1 2>&1)
check unsupported_type_one_line python3 -c '
import sys; e=sys.argv[1]; assert e.count("\n")==0 and "I32" in e and ".weight" in e, e' "$err"
# llama-quantize's Q4_K_M mix (Q4_K, Q6_K, Q5_0 rows) runs, and any part of its split set is the whole set.
one=$("$KILN" generate --model "$D/kq-llama-512.Q4_K_M.gguf" --ids 1,2,3 -n 8 --threads 1 2>&1)
check kquant_mix_generates python3 -c 'import json,sys; assert len(json.loads(sys.argv[1])["ids"])==8' "$one"
split=$("$KILN" generate --model "$D/split/kq-llama-512.Q4_K_M-00002-of-00003.gguf" --ids 1,2,3 -n 8 --threads 1 2>&1)
check split_part_opens_the_set test "$one" = "$split"

head -c 1000 "$F" > "$TMP/cut.gguf"
err=$("$KILN" logits --model "$TMP/cut.gguf" --ids 1 2>&1); rc=$?
check truncated_file_one_line python3 -c '
import sys; e=sys.argv[1]; assert sys.argv[2]!="0" and e.count("\n")==0 and "cut.gguf" in e, e' "$err" "$rc"
# --quant-cache re-quantising a GGUF: FILE.<format>.kiln beside the file (a private copy), reused with the
# same logits, rebuilt with one warning when the GGUF changes; the directory holding the file uses it too.
mkdir "$TMP/qc"; cp "$F" "$TMP/qc/m.gguf"
"$KILN" logits --model "$TMP/qc/m.gguf" --ids 1,2,3 --top 3 --quant q4_k_m >"$TMP/qc0" 2>&1
"$KILN" logits --model "$TMP/qc/m.gguf" --ids 1,2,3 --top 3 --quant q4_k_m --quant-cache >"$TMP/qc1" 2>"$TMP/qc1.err"
check quant_cache_written bash -c "test -s '$TMP/qc/m.gguf.q4_k_m.kiln' && cmp -s '$TMP/qc0' '$TMP/qc1'"
ino=$(stat -c %i "$TMP/qc/m.gguf.q4_k_m.kiln") # a rebuild renames a new file over it
"$KILN" logits --model "$TMP/qc" --ids 1,2,3 --top 3 --quant q4_k_m --quant-cache >"$TMP/qc2" 2>"$TMP/qc2.err"
check quant_cache_reused bash -c "cmp -s '$TMP/qc0' '$TMP/qc2' && test ! -s '$TMP/qc2.err' && [ \$(ls '$TMP/qc' | wc -l) = 2 ] &&
    [ \$(stat -c %i '$TMP/qc/m.gguf.q4_k_m.kiln') = $ino ]"
touch "$TMP/qc/m.gguf"
"$KILN" logits --model "$TMP/qc/m.gguf" --ids 1,2,3 --top 3 --quant q4_k_m --quant-cache >"$TMP/qc3" 2>"$TMP/qc3.err"
check quant_cache_stale_rebuilt bash -c "cmp -s '$TMP/qc0' '$TMP/qc3' && [ \$(wc -l <'$TMP/qc3.err') = 1 ] && grep -q 'stale' '$TMP/qc3.err'"

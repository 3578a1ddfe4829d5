#!/usr/bin/env bash
# CLI contract of `kiln logits` and `kiln generate` (issue 3): JSON shapes, flags, and one-line errors.
source "$(dirname "$0")/lib.bash"
M="$SHARED/models/stories260K"
G="$SHARED/golden/models/stories260K"

out=$("$KILN" logits --model "$M" --ids 1,403,407 --top 3 --all-logits "$TMP/last.f32" 2>"$TMP/err")
check logits_runs test $? -eq 0
check logits_one_line_per_position test "$(printf '%s\n' "$out" | wc -l)" -eq 3
check logits_shape python3 -c '
import json,sys
lines=[json.loads(l) for l in sys.argv[1].splitlines()]
assert [l["pos"] for l in lines]==[0,1,2] and all(list(l)==["pos","top"] for l in lines)
for l in lines:
    assert len(l["top"])==3 and all(isinstance(i,int) for i,_ in l["top"])
    v=[x for _,x in l["top"]]; assert v==sorted(v,reverse=True)
assert lines[0]["top"][0][0]==403 and abs(lines[0]["top"][0][1]-17.02352)<1e-3
' "$out"
check all_logits_file test "$(stat -c %s "$TMP/last.f32")" -eq 2048
check all_logits_no_temp_left test -z "$(ls "$TMP" | grep tmp)"
top20=$("$KILN" logits --model "$M" --ids 1 | head -1)
check top_default_20 python3 -c 'import json,sys; assert len(json.loads(sys.argv[1])["top"])==20' "$top20"
check logits_match_golden python3 -c '
import json,sys,array,subprocess
g=json.load(open(sys.argv[2]+"/golden.json"))["cases"][0]
ids=",".join(map(str,g["prompt_ids"]))
o=subprocess.run([sys.argv[1],"logits","--model",sys.argv[3],"--ids",ids,"--threads","2","--kv-type","f32","--all-logits",sys.argv[4]],capture_output=True,text=True,check=True)
lines=[json.loads(l) for l in o.stdout.splitlines()]
for p,l in enumerate(lines):
    assert [i for i,_ in l["top"]]==g["topk_ids"][p], p
    assert max(abs(a-b) for (_,a),b in zip(l["top"],g["topk_logits"][p]))<1e-3
a=array.array("f",open(sys.argv[4],"rb").read()); b=array.array("f",open(sys.argv[2]+"/case0.last_logits.f32","rb").read())
assert len(a)==len(b) and max(abs(x-y) for x,y in zip(a,b))<1e-3
' "$KILN" "$G" "$M" "$TMP/c0.f32"

gen=$("$KILN" generate --model "$M" --ids 1,403,407 --max-new-tokens 5)
check generate_shape python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert list(d)==["ids"] and len(d["ids"])==5' "$gen"
check generate_matches_golden python3 -c '
import json,sys,subprocess
for c in json.load(open(sys.argv[2]+"/golden.json"))["cases"]:
    o=subprocess.run([sys.argv[1],"generate","--model",sys.argv[3],"--ids",",".join(map(str,c["prompt_ids"])),"--max-new-tokens","64"],capture_output=True,text=True,check=True)
    assert json.loads(o.stdout)["ids"]==c["greedy_ids"], c["name"]
' "$KILN" "$G" "$M"
# --stop-at-eos: stories260K ends a story with BOS (1), never with its eos_token_id 2; a copy whose config
# lists 1 among its EOS ids (as a list) must stop right after the first 1, and only with the flag.
mkdir -p "$TMP/eos"; ln -s "$(cd "$M" && pwd)/model.safetensors" "$TMP/eos/model.safetensors"
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["eos_token_id"]=[7,1]; json.dump(c,open(sys.argv[2],"w"))' "$M/config.json" "$TMP/eos/config.json"
long=$("$KILN" generate --model "$TMP/eos" --ids 1 --max-new-tokens 360)
stop=$("$KILN" generate --model "$TMP/eos" --ids 1 --max-new-tokens 360 --stop-at-eos)
check stop_at_eos python3 -c '
import json,sys
a=json.loads(sys.argv[1])["ids"]; b=json.loads(sys.argv[2])["ids"]
assert len(a)==360 and 1 in a and b==a[:a.index(1)+1], (len(b), a.index(1) if 1 in a else None)
' "$long" "$stop"
check generate_zero_tokens bash -c "[ \"\$('$KILN' generate --model '$M' --ids 1 --max-new-tokens 0)\" = '{\"ids\":[]}' ]"
gb=$("$KILN" generate --model "$M" --ids 1,403 --max-new-tokens 2 --dtype bf16)
check generate_dtype_bf16 python3 -c 'import json,sys; assert len(json.loads(sys.argv[1])["ids"])==2' "$gb"

# bad input: one line on stderr, non-zero exit, nothing on stdout
bad() { # name, args...
    local n=$1; shift
    "$KILN" "$@" >"$TMP/o" 2>"$TMP/e"; local rc=$?
    if [ $rc -ne 0 ] && [ ! -s "$TMP/o" ] && [ "$(wc -l <"$TMP/e")" -eq 1 ]; then pass "$n"; else fail "$n" "rc=$rc stdout=$(head -c 200 "$TMP/o") stderr=$(head -c 300 "$TMP/e")"; fi
}
bad missing_dir logits --model /nonexistent/model --ids 1
bad bad_ids logits --model "$M" --ids 1,x,3
bad empty_ids logits --model "$M" --ids ""
bad negative_id logits --model "$M" --ids -1
bad id_out_of_vocab logits --model "$M" --ids 1,512
bad huge_id logits --model "$M" --ids 99999999999
bad missing_ids logits --model "$M"
bad unknown_flag logits --model "$M" --ids 1 --frobnicate
bad bad_top logits --model "$M" --ids 1 --top 0
bad bad_dtype logits --model "$M" --ids 1 --dtype f8
bad too_long logits --model "$M" --ids "$(python3 -c 'print(",".join(["5"]*513))')"
bad gen_out_of_vocab generate --model "$M" --ids 600 --max-new-tokens 3
bad gen_too_long generate --model "$M" --ids 1 --max-new-tokens 600
bad gen_missing_max generate --model "$M" --ids 1
bad all_logits_bad_path logits --model "$M" --ids 1 --all-logits /nonexistent/dir/x.f32
check id_error_names_vocab grep -q "vocabulary" <("$KILN" logits --model "$M" --ids 1,512 2>&1)
check not_a_model_dir grep -q "config.json" <("$KILN" logits --model "$TMP" --ids 1 2>&1)

# Chunked prefill in `kiln logits` (32 positions at a time) gives the golden numbers across chunk edges:
# tiny-qwen2's 300-token prompt (sharded f16, biases), in the exact float arithmetic the goldens pin.
check logits_long_prompt_chunks python3 -c '
import json,sys,subprocess
g=json.load(open(sys.argv[2]+"/golden.json"))["cases"][3]
o=subprocess.run([sys.argv[1],"logits","--model",sys.argv[3],"--ids",",".join(map(str,g["prompt_ids"])),"--kv-type","f32","--exact"],capture_output=True,text=True,check=True)
lines=[json.loads(l) for l in o.stdout.splitlines()]
assert len(lines)==300
for p,l in enumerate(lines):
    assert [i for i,_ in l["top"]][:5]==g["topk_ids"][p][:5], p
    assert max(abs(a-b) for (_,a),b in zip(l["top"],g["topk_logits"][p]))<1e-3, p
' "$KILN" "$SHARED/golden/models/tiny-qwen2" "$SHARED/models/tiny-qwen2"

# Memory: weights are mmapped, so peak RSS stays below file size + KV cache + 64 MiB (bf16 and f16 models).
for mdl in tiny-llama3 tiny-qwen2; do
    ids=$(python3 -c 'import json,sys; print(",".join(map(str,json.load(open(sys.argv[1]))[0]["ids"])))' "$SHARED/golden/models/$mdl/prompts.json")
    "$KILN" logits --model "$SHARED/models/$mdl" --ids "$ids" --top 1 --stats >/dev/null 2>"$TMP/stats"
    files=$(cat "$SHARED/models/$mdl"/*.safetensors | wc -c)
    check "peak_rss_$mdl" python3 -c '
import json,sys
s=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); bound=int(sys.argv[2])+s["kv_bytes"]+64*2**20
print("  %s: peak RSS %.1f MiB, bound %.1f MiB (file %.1f MiB)"%(sys.argv[3],s["peak_rss_bytes"]/2**20,bound/2**20,int(sys.argv[2])/2**20),file=sys.stderr)
assert s["peak_rss_bytes"]<bound
' "$TMP/stats" "$files" "$mdl"
done

# Quantised formats load and keep the f32 model's top-1 on the golden prompt (stories260K: rows of 64).
ref_top=$("$KILN" logits --model "$M" --ids 1,403,407 --top 1 | tail -1)
for q in q8_0 q4_0; do
    got=$("$KILN" logits --model "$M" --ids 1,403,407 --top 1 --dtype $q | tail -1)
    check "quant_${q}_keeps_top1" python3 -c "import json; a=json.loads('$ref_top')['top'][0][0]; b=json.loads('$got')['top'][0][0]; assert a==b, (a,b)"
done

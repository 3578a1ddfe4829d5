#!/usr/bin/env bash
# hub.sh — `kiln pull / list / rm` and ORG/NAME model resolution against a local fake hub
# (tests/hub/fake_hub.py on 127.0.0.1, a port the OS picks) serving ../shared/models as kiln-test/<dir>.
# Everything lives under a temp HF_HOME: the real cache is never touched.
source "$(dirname "$0")/lib.bash"
export HF_HOME="$TMP/hf"
unset HF_HUB_CACHE HUGGINGFACE_HUB_CACHE HF_TOKEN HUGGING_FACE_HUB_TOKEN HF_HUB_OFFLINE HF_ENDPOINT
FAKE="$(dirname "$0")/../hub/fake_hub.py"
MODELS="$SHARED/models"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$TMP"' EXIT

[ -d "$MODELS/tiny-qwen2" ] && [ -d "$MODELS/stories260K" ] || { fail fixtures "$MODELS/tiny-qwen2 or stories260K missing"; exit 1; }

# start_hub NAME [switches...]: starts a fake hub; sets EP (its URL) and LOG (its request log).
start_hub() {
    local name=$1; shift
    LOG="$TMP/$name.log"; : >"$LOG"
    python3 "$FAKE" --root "$MODELS" --port-file "$TMP/$name.port" --log "$LOG" --lifetime 120 "$@" &
    PIDS+=($!)
    for _ in $(seq 100); do [ -s "$TMP/$name.port" ] && break; sleep 0.05; done
    EP="http://127.0.0.1:$(cat "$TMP/$name.port")"
}

# same_tree SRC DST: every file of SRC has the same sha256 in DST. Fixture tokenizer files may be git
# text-symlinks (a small file holding a relative path): their target is what the hub serves.
same_tree() {
    local src=$1 dst=$2 f t srcs=() dsts=()
    for f in "$src"/*; do
        [ -f "$f" ] || continue
        t=""; read -r -n 511 t <"$f" 2>/dev/null
        if [ -n "$t" ] && [ -f "${f%/*}/$t" ]; then srcs+=("${f%/*}/$t"); else srcs+=("$f"); fi
        dsts+=("$dst/${f##*/}")
    done
    local a b
    a=$(sha256sum "${srcs[@]}" | cut -c1-64) && b=$(sha256sum "${dsts[@]}" 2>/dev/null | cut -c1-64) && [ "$a" = "$b" ]
}

count() { grep -c "$1" "$LOG"; }
# checkc NAME 'EXPR': PASS if the shell expression (conditions joined with &&) holds.
checkc() { local n=$1; shift; if eval "$1"; then pass "$n"; else fail "$n" "$1"; fi; }

start_hub main --cut tiny-qwen2/model-00001-of-00002.safetensors --corrupt tiny-qwen2/model-00002-of-00002.safetensors \
    --token sekret --gated tiny-qwen3

# ---- a wrong hash fails and leaves no corrupt file (the server corrupts the first GET of one shard) ----
$KILN pull kiln-test/tiny-qwen2 --endpoint "$EP" --quiet >/dev/null 2>"$TMP/err"; rc=$?
bad="$HF_HOME/hub/models--kiln-test--tiny-qwen2"
lfs=$(sha256sum <"$MODELS/tiny-qwen2/model-00002-of-00002.safetensors" | cut -c1-64)
checkc hash_mismatch_fails '[ "$rc" -ne 0 ] && grep -q "sha256 mismatch" "$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ]'
checkc hash_mismatch_leaves_nothing '[ -z "$(find "$bad" -name "model-00002-of-00002.safetensors*" 2>/dev/null)" ] && [ -z "$(find "$bad/blobs" -name "$lfs*" 2>/dev/null)" ] && [ ! -e "$bad/refs/main" ]'

# ---- a full pull (which also recovers from the failure above) ---------------------------------------
snap=$($KILN pull kiln-test/tiny-qwen2 --endpoint "$EP" --quiet 2>"$TMP/err")
rc=$?
checkc pull_succeeds '[ "$rc" -eq 0 ] && [ -d "$snap" ]'
check pull_matches_source_sha256 same_tree "$MODELS/tiny-qwen2" "$snap"
# The server cut model-00001-of-00002.safetensors half way through once: the pull resumed it with Range.
check cut_was_made grep -q ' 200-cut ' "$LOG"
check cut_resumes_with_range bash -c "grep ' /cdn/' '$LOG' | grep -q ' 206 bytes=[1-9]'"
repo_dir="$HF_HOME/hub/models--kiln-test--tiny-qwen2"
sha=$(cat "$repo_dir/refs/main" 2>/dev/null)
check cache_layout_refs_and_snapshot [ "$snap" = "$repo_dir/snapshots/$sha" ]
lfs_sha=$(sha256sum <"$MODELS/tiny-qwen2/model-00001-of-00002.safetensors" | cut -c1-64)
check cache_layout_lfs_blob_is_sha256 [ "$(readlink "$snap/model-00001-of-00002.safetensors")" = "../../blobs/$lfs_sha" ]
check cache_no_incomplete_left [ -z "$(find "$repo_dir" -name '*.incomplete')" ]

# ---- a second pull downloads nothing ---------------------------------------------------------------
before=$(count ' /kiln-test/tiny-qwen2/resolve/\| /cdn/')
snap2=$($KILN pull kiln-test/tiny-qwen2 --endpoint "$EP" --quiet)
after=$(count ' /kiln-test/tiny-qwen2/resolve/\| /cdn/')
checkc second_pull_downloads_nothing '[ "$before" -gt 0 ] && [ "$after" -eq "$before" ] && [ "$snap2" = "$snap" ]'

# ---- --include, HF_ENDPOINT, %2F repo ids, --revision ------------------------------------------------
HF_ENDPOINT="$EP" $KILN pull 'kiln-test%2Fstories260K' --include '*.json' --quiet >"$TMP/out" 2>"$TMP/err"
check pct2f_repo_id_works grep -q '/kiln-test%2Fstories260K/resolve/' "$LOG"
s260=$(cat "$TMP/out")
checkc include_glob_filters '[ -f "$s260/config.json" ] && [ -f "$s260/tokenizer.json" ] && [ ! -e "$s260/model.safetensors" ]'
check pct2f_same_cache_folder [ "$s260" != "${s260#"$HF_HOME/hub/models--kiln-test--stories260K/"}" ]
s260b=$($KILN pull kiln-test/stories260K --endpoint "$EP" --revision v1.0 --quiet)
checkc revision_tag_writes_ref '[ -f "$HF_HOME/hub/models--kiln-test--stories260K/refs/v1.0" ] && same_tree "$MODELS/stories260K" "$s260b"'

# ---- --local-dir: plain files ------------------------------------------------------------------------
$KILN pull kiln-test/stories260K --endpoint "$EP" --local-dir "$TMP/local" --quiet >/dev/null
check local_dir_plain_files same_tree "$MODELS/stories260K" "$TMP/local"
checkc local_dir_not_symlinks '[ ! -L "$TMP/local/model.safetensors" ] && [ -f "$TMP/local/model.safetensors" ]'
before=$(count ' /cdn/')
$KILN pull kiln-test/stories260K --endpoint "$EP" --local-dir "$TMP/local" --quiet >/dev/null
check local_dir_second_pull_downloads_nothing [ "$(count ' /cdn/')" -eq "$before" ]
# A file of the local dir changed underneath at the same size is found (git blob sha1) and fetched again.
python3 -c 'import sys; p=sys.argv[1]; d=bytearray(open(p,"rb").read()); d[10]^=1; open(p,"wb").write(d)' "$TMP/local/config.json"
$KILN pull kiln-test/stories260K --endpoint "$EP" --local-dir "$TMP/local" --quiet >/dev/null
check local_dir_changed_file_repaired cmp -s "$MODELS/stories260K/config.json" "$TMP/local/config.json"

# ---- errors: 404 repo, 404 revision, 401 without a token ---------------------------------------------
$KILN pull kiln-test/no-such-model --endpoint "$EP" --quiet >/dev/null 2>"$TMP/err"; rc=$?
checkc error_404_repo '[ "$rc" -ne 0 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q '\''404'\'' "$TMP/err" && grep -q '\''kiln-test/no-such-model'\'' "$TMP/err"'
$KILN pull kiln-test/stories260K --endpoint "$EP" --revision nope --quiet >/dev/null 2>"$TMP/err"; rc=$?
checkc error_404_revision '[ "$rc" -ne 0 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q '\''RevisionNotFound'\'' "$TMP/err"'

$KILN pull kiln-test/tiny-qwen3 --endpoint "$EP" --include config.json --quiet >/dev/null 2>"$TMP/err"; rc=$?
checkc error_401_without_token '[ "$rc" -ne 0 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q 401 "$TMP/err" && grep -q HF_TOKEN "$TMP/err"'
d=$(HF_TOKEN=sekret $KILN pull kiln-test/tiny-qwen3 --endpoint "$EP" --include config.json --quiet)
check token_sent_as_bearer cmp "$MODELS/tiny-qwen3/config.json" "$d/config.json"

# Two pulls of one repo at once (huggingface_hub's .locks/ flock): both succeed, the blobs are intact.
$KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$TMP/cpar" --quiet >"$TMP/p1" 2>&1 &
p1=$!
$KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$TMP/cpar" --quiet >"$TMP/p2" 2>&1; rc2=$?
wait $p1; rc1=$?
checkc concurrent_pulls_share_the_cache '[ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ] && same_tree "$MODELS/stories260K" "$(tail -1 "$TMP/p1")" && [ -d "$TMP/cpar/.locks/models--kiln-test--stories260K" ]'

# A partial .incomplete left by an earlier run (or by Python) is resumed, not restarted.
lfs=$(sha256sum <"$MODELS/stories260K/model.safetensors" | cut -c1-64)
mkdir -p "$TMP/cres/models--kiln-test--stories260K/blobs"
head -c 300000 "$MODELS/stories260K/model.safetensors" >"$TMP/cres/models--kiln-test--stories260K/blobs/$lfs.incomplete"
d=$($KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$TMP/cres" --quiet)
checkc incomplete_file_resumed 'grep -q '\'' 206 bytes=300000-'\'' "$LOG" && same_tree "$MODELS/stories260K" "$d"'

# ---- a mirror that lists names only: etags (and the LFS sha256) come from HEAD requests ---------------
MAIN_EP=$EP MAIN_LOG=$LOG
start_hub bare --bare-listing --corrupt stories260K/model.safetensors
$KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$TMP/cbare" --quiet >/dev/null 2>"$TMP/err"; rc=$?
checkc bare_listing_verifies_sha256_from_head '[ "$rc" -ne 0 ] && grep -q "sha256 mismatch" "$TMP/err" && grep -q "^HEAD " "$LOG"'
d=$($KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$TMP/cbare" --quiet)
checkc bare_listing_pull_works 'same_tree "$MODELS/stories260K" "$d" && [ -e "$TMP/cbare/models--kiln-test--stories260K/blobs/$lfs" ]'
EP=$MAIN_EP LOG=$MAIN_LOG

# ---- hubs that lie (issue 19): each --misbehave mode gets its own hub and its own cache -------------------
MAIN_EP=$EP MAIN_LOG=$LOG
git_blob() { python3 -c 'import hashlib,sys; d=open(sys.argv[1],"rb").read(); print(hashlib.sha1(b"blob %d\0" % len(d) + d).hexdigest())' "$1"; }
flip_byte() { python3 -c 'import sys; p=sys.argv[1]; d=bytearray(open(p,"rb").read()); d[len(d)//2]^=1; open(p,"wb").write(d)' "$1"; }
S260="$MODELS/stories260K"

# A small file corrupted at the same size fails its git blob sha1, and never enters the snapshot.
start_hub small --corrupt stories260K/config.json
C="$TMP/csmall"; R="$C/models--kiln-test--stories260K"
$KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$C" --include config.json --include model.safetensors --quiet >/dev/null 2>"$TMP/err"; rc=$?
checkc small_file_sha1_mismatch_fails '[ "$rc" -ne 0 ] && grep -q "config.json: git blob sha1 mismatch" "$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ]'
checkc small_file_failure_not_in_snapshot '[ -z "$(find "$R/snapshots" -name config.json 2>/dev/null)" ] && [ ! -e "$R/refs/main" ] && [ ! -e "$R/blobs/$(git_blob "$S260/config.json")" ]'
d=$($KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$C" --include config.json --include model.safetensors --quiet 2>"$TMP/err")
checkc small_file_second_pull_repairs 'cmp -s "$S260/config.json" "$d/config.json" && cmp -s "$S260/model.safetensors" "$d/model.safetensors" && [ ! -s "$TMP/err" ]'
# Blobs corrupted in the cache at the same size (a small one and an LFS one) are found and fetched again.
flip_byte "$R/blobs/$(git_blob "$S260/config.json")"
flip_byte "$R/blobs/$(sha256sum <"$S260/model.safetensors" | cut -c1-64)"
gets=$(count '^GET .*config.json 200')
d=$($KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$C" --include config.json --include model.safetensors --quiet 2>"$TMP/err"); rc=$?
checkc cached_bad_blobs_repaired '[ "$rc" -eq 0 ] && cmp -s "$S260/config.json" "$d/config.json" && cmp -s "$S260/model.safetensors" "$d/model.safetensors" && [ "$(count "^GET .*config.json 200")" -gt "$gets" ]'

# A resume whose 206 starts elsewhere than asked is not appended: the pull falls back to a full download.
lfs=$(sha256sum <"$S260/model.safetensors" | cut -c1-64)
for mode in range-from-zero range-shifted; do
    start_hub "$mode" --misbehave "$mode=stories260K/model.safetensors"
    C="$TMP/c$mode"; mkdir -p "$C/models--kiln-test--stories260K/blobs"
    head -c 300000 "$S260/model.safetensors" >"$C/models--kiln-test--stories260K/blobs/$lfs.incomplete"
    d=$($KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$C" --quiet 2>"$TMP/err"); rc=$?
    checkc "resume_${mode//-/_}_not_appended" '[ "$rc" -eq 0 ] && same_tree "$S260" "$d" && grep -q " 206 bytes=300000-" "$LOG"'
done

# A partial file left by an earlier run whose bytes are wrong: the resume fails its hash, the pull then
# fetches the whole file and succeeds.
C="$TMP/cbadpart"; mkdir -p "$C/models--kiln-test--stories260K/blobs"
head -c 300000 /dev/zero >"$C/models--kiln-test--stories260K/blobs/$lfs.incomplete"
d=$($KILN pull kiln-test/stories260K --endpoint "$MAIN_EP" --cache-dir "$C" --include model.safetensors --quiet 2>"$TMP/err"); rc=$?
checkc bad_partial_file_refetched '[ "$rc" -eq 0 ] && cmp -s "$S260/model.safetensors" "$d/model.safetensors"'

# A Content-Length of 10^12 (and a body without end) is refused at once against the listed size.
start_hub huge --misbehave huge-length=stories260K/config.json
t0=$SECONDS
timeout 60 $KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$TMP/chuge" --include config.json --quiet >/dev/null 2>"$TMP/err"; rc=$?
checkc huge_content_length_refused '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "Content-Length 1000000000000 does not fit the listed size" "$TMP/err" && [ $((SECONDS - t0)) -lt 20 ] && [ -z "$(find "$TMP/chuge" -type f -size +1M)" ]'

# A names-only mirror whose body is longer than the file: the ETag (the git blob id) catches it.
start_hub long --bare-listing --misbehave long-body=stories260K/config.json
$KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$TMP/clong" --include config.json --quiet >/dev/null 2>"$TMP/err"; rc=$?
checkc bare_listing_long_body_refused '[ "$rc" -ne 0 ] && grep -q "config.json: git blob sha1 mismatch" "$TMP/err" && [ -z "$(find "$TMP/clong" -path "*snapshots*" -name config.json)" ]'

# A mirror that gives no hash at all: sizes are still checked, and the pull says what it could not verify.
start_hub opaque --misbehave opaque --misbehave long-body=stories260K/tokenizer.json
$KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$TMP/copaque" --include tokenizer.json --quiet >/dev/null 2>"$TMP/err"; rc=$?
checkc opaque_mirror_size_checked '[ "$rc" -ne 0 ] && grep -q "tokenizer.json: the server.s Content-Length [0-9]* does not fit the listed size" "$TMP/err"'
$KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$TMP/copaque" --include config.json --include model.safetensors --quiet >"$TMP/out" 2>"$TMP/err"; rc=$?
checkc opaque_mirror_says_unverified '[ "$rc" -eq 0 ] && grep -q "warning: 2 files could not be verified" "$TMP/err" && grep -q "config.json" "$TMP/err" && grep -q "model.safetensors" "$TMP/err" && cmp -s "$S260/config.json" "$(cat "$TMP/out")/config.json"'

# An ETag of ".." is refused as a file name (it made every snapshot entry point at the repo directory).
start_hub dotdot --bare-listing --misbehave etag=..
$KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$TMP/cdot" --include config.json --quiet >/dev/null 2>"$TMP/err"; rc=$?
checkc etag_dotdot_refused '[ "$rc" -ne 0 ] && grep -q "unsafe ETag" "$TMP/err" && [ -z "$(find "$TMP/cdot" -type l 2>/dev/null)" ]'

# Revisions are path components under refs/: "../../../escaped" must not write outside the cache.
start_hub anyrev --misbehave any-revision
$KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$TMP/crev/c" --revision ../../../escaped --include config.json --quiet >/dev/null 2>"$TMP/err"; rc=$?
checkc revision_escape_refused '[ "$rc" -ne 0 ] && grep -q "not a safe revision" "$TMP/err" && [ ! -e "$TMP/crev/escaped" ] && [ ! -e "$TMP/escaped" ] && ! grep -q "^GET" <(grep escaped "$LOG")'
d=$($KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$TMP/crev/c" --revision refs/pr/1 --include config.json --quiet)
checkc revision_with_slashes_still_works '[ -f "$TMP/crev/c/models--kiln-test--stories260K/refs/refs/pr/1" ] && cmp -s "$S260/config.json" "$d/config.json"'

# Unsafe names in a listing are refused by name (the message was read from freed memory).
i=0
for name in '../evil' '/etc/evil' 'a\b' 'sub/../../evil' 'x/./y'; do
    i=$((i + 1))
    start_hub "evil$i" --misbehave "evil-name=$name"
    $KILN pull kiln-test/stories260K --endpoint "$EP" --cache-dir "$TMP/cevil" --quiet >/dev/null 2>"$TMP/err"; rc=$?
    checkc "unsafe_name_refused ($name)" '[ "$rc" -eq 1 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -qF "unsafe file name '\''$name'\''" "$TMP/err" && [ ! -e "$TMP/evil" ] && [ ! -e "$TMP/cevil" ]'
done
EP=$MAIN_EP LOG=$MAIN_LOG

# ---- offline: HF_HUB_OFFLINE=1 never touches the network ------------------------------------------------
n_before=$(cat "$TMP"/*.log | wc -l)
d=$(HF_HUB_OFFLINE=1 $KILN pull kiln-test/tiny-qwen2 --endpoint "$EP" --quiet); rc=$?
checkc offline_resolves_from_cache '[ "$rc" -eq 0 ] && [ "$d" = "$snap" ]'
HF_HUB_OFFLINE=1 $KILN pull kiln-test/tiny-llama3 --endpoint "$EP" --quiet >/dev/null 2>"$TMP/err"; rc=$?
checkc offline_missing_is_clear_error '[ "$rc" -ne 0 ] && grep -q '\''not in the cache'\'' "$TMP/err"'
# Every --model ORG/NAME[@REV] resolves offline to its snapshot (here through `kiln info --model`).
HF_HUB_OFFLINE=1 $KILN info --json --model kiln-test/tiny-qwen2 >"$TMP/info.json" 2>"$TMP/err"
check model_flag_resolves_repo_id python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["model"]["dir"] == sys.argv[2]' "$TMP/info.json" "$snap"
check offline_made_no_request [ "$(cat "$TMP"/*.log | wc -l)" -eq "$n_before" ]

# ---- list and rm ------------------------------------------------------------------------------------------
$KILN list >"$TMP/list" 2>&1
checkc list_shows_models 'grep -q "^kiln-test/tiny-qwen2 .* main " "$TMP/list" && grep -q "^kiln-test/stories260K " "$TMP/list"'
$KILN list --json >"$TMP/list.json"
check list_json_size_and_revision python3 -c '
import json, sys
rows = {r["repo_id"]: r for r in map(json.loads, open(sys.argv[1]))}
q = rows["kiln-test/tiny-qwen2"]
assert q["size"] > 9_000_000 and "main" in q["revisions"].split(",") and len(q["sha"]) == 40 and q["files"] == 7, q
' "$TMP/list.json"
$KILN rm kiln-test/stories260K 2>/dev/null
checkc rm_removes '[ ! -e "$HF_HOME/hub/models--kiln-test--stories260K" ] && [ ! -e "$HF_HOME/hub/.locks/models--kiln-test--stories260K" ] && ! $KILN list | grep -q stories260K'
$KILN rm kiln-test/stories260K 2>"$TMP/err"; rc=$?
checkc rm_missing_is_error '[ "$rc" -ne 0 ] && grep -q '\''not in the cache'\'' "$TMP/err"'

#!/usr/bin/env bash
# bench/tokenizer_speed.sh — encode MB/s for English, Chinese and code text with each golden tokenizer.
# Builds bench/tokenizer_speed.c (make bench: build/bench/tokenizer_speed). Corpora (~1 MB each) are
# made from the golden texts and this repository's C sources. Prints one JSON line per (tokenizer, text).
set -eu
cd "$(dirname "$0")/.."
SHARED="${SHARED:-../shared}"
RUNS="${RUNS:-5}"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
make -j2 bench >/dev/null
cp build/bench/tokenizer_speed "$T/speed"
python3 - "$SHARED" "$T" <<'PY'
import json, sys, glob, re
shared, out = sys.argv[1], sys.argv[2]
texts = [json.loads(l)["text"] for l in open(f"{shared}/golden/tokenizers/qwen3.tokens.jsonl")]
zh = [t for t in texts if re.search("[\u4e00-\u9fff]", t)]
en = [t for t in texts if t.isascii() and len(t) > 20] + [open("README.md").read()]
code = [open(p).read() for p in sorted(glob.glob("src/*/*.c"))]
for name, parts in (("english", en), ("chinese", zh), ("code", code)):
    s, i = "", 0
    while len(s.encode()) < 1 << 20: s += parts[i % len(parts)] + "\n"; i += 1
    open(f"{out}/{name}.txt", "w").write(s)
PY
for tok in llama3 qwen3 llama2; do
    "$T/speed" "$SHARED/tokenizers/$tok" "$RUNS" "$T/english.txt" "$T/chinese.txt" "$T/code.txt"
done

#!/usr/bin/env python3
"""make_seeds.py SHARED OUT — small seed tokenizers for the fuzz suite, cut from the real ones in
SHARED/tokenizers (qwen3: byte-level BPE with pair merges; llama3: byte-level BPE with string merges and a
TemplateProcessing post-processor; llama2: SentencePiece-style BPE with byte fallback). Each keeps its
normalizer / pre-tokenizer / post-processor / decoder and tokenizer_config.json (chat template included)
but only the first KEEP vocab entries and the merges among them; added tokens are renumbered after them.
The committed seeds were made with this script; rerun it only to change them."""
import json, os, sys

KEEP = 600


def cut(src, out, name):
    t = json.load(open(os.path.join(src, "tokenizer.json")))
    m = t["model"]
    vocab = {k: v for k, v in m["vocab"].items() if v < KEEP}
    pair = lambda x: x if isinstance(x, list) else x.split(" ", 1)
    merges = [x for x in m.get("merges", []) if all(p in vocab for p in pair(x)) and "".join(pair(x)) in vocab]
    m["vocab"], m["merges"] = vocab, merges
    t["added_tokens"] = t["added_tokens"][:30]
    remap = {}
    for a in t["added_tokens"]:
        if a["id"] >= KEEP:
            remap[a["id"]] = a["id"] = KEEP + len(remap)

    def fix(o):  # renumber ids wherever the post-processor names them
        if isinstance(o, dict):
            if isinstance(o.get("ids"), list):
                o["ids"] = [remap.get(i, i) for i in o["ids"]]
            for v in o.values():
                fix(v)
        elif isinstance(o, list):
            for v in o:
                fix(v)

    fix(t.get("post_processor"))
    os.makedirs(os.path.join(out, name), exist_ok=True)
    json.dump(t, open(os.path.join(out, name, "tokenizer.json"), "w"), ensure_ascii=False, indent=1)
    c = json.load(open(os.path.join(src, "tokenizer_config.json")))
    if "added_tokens_decoder" in c:
        c["added_tokens_decoder"] = {str(remap.get(int(k), int(k))): v for k, v in c["added_tokens_decoder"].items()
                                     if int(k) in remap or int(k) < KEEP}
    json.dump(c, open(os.path.join(out, name, "tokenizer_config.json"), "w"), ensure_ascii=False, indent=1)


if __name__ == "__main__":
    shared, out = sys.argv[1], sys.argv[2]
    for n in ("qwen3", "llama3", "llama2"):
        cut(os.path.join(shared, "tokenizers", n), out, n)

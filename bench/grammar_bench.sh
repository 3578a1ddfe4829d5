#!/usr/bin/env bash
# bench/grammar_bench.sh — grammar-mask cost per token (µs) on the Qwen3 tokenizer (~151k ids), for a
# JSON schema. Builds bench/grammar_bench.c against build/libkiln.a (run `make` first).
set -eu
cd "$(dirname "$0")/.."
SHARED="${SHARED:-../shared}"
RUNS="${RUNS:-5}"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude bench/grammar_bench.c build/libkiln.a \
    $(pkg-config --libs jansson libpcre2-8 icu-uc) -lcrypto -lm -pthread -o "$T/grammar_bench"
"$T/grammar_bench" "$SHARED/models/tiny-qwen3" "$RUNS"

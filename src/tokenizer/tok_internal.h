/* tok_internal.h — the tokenizer's internal pieces, split as HF tokenizers splits them:
 * normalizer → pre-tokenizer → model (BPE) → post-processor; decoder for the way back. */
#ifndef KILN_TOK_INTERNAL_H
#define KILN_TOK_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fileio.h"
#include "common/strbuf.h"
#include "kiln.h"

/* Out of memory is an error like any other here: every function that allocates returns 0, or -1 when
 * an allocation failed (loaders: NULL with err set), and leaves what it was given freeable. */
#define TK_OOM "out of memory"
#define TK_TOO_LONG (-2)     /* encode: the normalizer grew the text past its bound (below) */
#define TK_REGEX_FAILED (-3) /* encode: PCRE2 gave up on a pre-tokenizer regex (match limit) */

/* A growable id list. */
typedef struct {
    int32_t *p;
    size_t n, cap;
} tk_ids;
int tk_ids_add(tk_ids *v, int32_t id);

/* String → int32 hash map (open addressing; keys copied). */
typedef struct {
    char **keys;
    uint32_t *klen;
    int32_t *vals;
    size_t cap, n;
} tk_map;
int tk_map_put(tk_map *m, const char *k, size_t kn, int32_t v);
int32_t tk_map_get(const tk_map *m, const char *k, size_t kn); /* -1 if absent */
void tk_map_free(tk_map *m);

/* UTF-8 helpers. */
int tk_utf8_len(unsigned char c); /* length of the sequence started by c (1 for invalid lead) */
/* Appends src as valid UTF-8, each maximal invalid subpart → U+FFFD (Rust's from_utf8_lossy). */
int tk_utf8_lossy(strbuf *out, const char *s, size_t n);
/* Bytes at the end of s[0..n) that are a valid but incomplete UTF-8 prefix (0..3). */
size_t tk_utf8_incomplete_tail(const char *s, size_t n);
bool tk_utf8_valid(const char *s, size_t n);

/* ---- normalizer.c ---- */
typedef struct tk_normalizer tk_normalizer;
tk_normalizer *tk_normalizer_load(json_t *j, kiln_err *err); /* j may be null → NULL, no error */
void tk_normalizer_free(tk_normalizer *n);
/* Appends the normal form of s to out; TK_TOO_LONG once out would hold more than `limit` bytes (a
 * Replace normalizer with a huge content would otherwise multiply the text without bound). */
int tk_normalize(const tk_normalizer *n, const char *s, size_t len, size_t limit, strbuf *out);
#define TK_NORM_GROWTH 16    /* the limit: this many times the text + TK_NORM_SLACK bytes */
#define TK_NORM_SLACK 65536

/* ---- pretokenizer.c ---- */
typedef struct tk_pretok tk_pretok;
tk_pretok *tk_pretok_load(json_t *j, kiln_err *err);
void tk_pretok_free(tk_pretok *p);
/* Calls fn for each pre-token (already byte-level mapped where the pre-tokenizer says). */
typedef int (*tk_piece_fn)(void *ctx, const char *s, size_t n); /* non-zero stops, returned */
int tk_pretokenize(const tk_pretok *p, const char *s, size_t n, tk_piece_fn fn, void *ctx);
/* GPT-2 byte ↔ unicode map. */
extern const char *tk_byte_to_unicode[256]; /* UTF-8 of the char byte b maps to */
int tk_unicode_to_byte(uint32_t cp);       /* -1 if cp is not in the map */
void tk_bytelevel_init(void);

/* ---- bpe.c ---- */
typedef struct tk_bpe tk_bpe;
/* n_added: the added tokens tokenizer.json lists, so that vocab ids may leave room for them. */
tk_bpe *tk_bpe_load(json_t *model, size_t n_added, kiln_err *err);
void tk_bpe_free(tk_bpe *b);
int tk_bpe_encode(const tk_bpe *b, const char *s, size_t n, tk_ids *out);
int32_t tk_bpe_token_id(const tk_bpe *b, const char *s, size_t n);
const char *tk_bpe_token_str(const tk_bpe *b, int32_t id);
size_t tk_bpe_vocab_size(const tk_bpe *b);

/* ---- decoder.c ---- */
typedef struct tk_decoder tk_decoder;
tk_decoder *tk_decoder_load(json_t *j, kiln_err *err);
void tk_decoder_free(tk_decoder *d);
/* Decodes tokens (strings) into raw bytes in out. If stream is true, an incomplete UTF-8 sequence of
 * byte-fallback tokens at the very end is kept as raw bytes (the caller holds it back). */
int tk_decode_tokens(const tk_decoder *d, const char **toks, size_t n, bool stream, strbuf *out);

/* ---- post-processor (postprocessor.c) ---- */
typedef struct tk_post tk_post;
tk_post *tk_post_load(json_t *j, int32_t vocab, kiln_err *err); /* vocab: ids must be below it */
tk_post *tk_post_bos_eos(int32_t bos, int32_t eos); /* LlamaTokenizerFast.update_post_processor; NULL: OOM */
void tk_post_free(tk_post *p);
int tk_post_apply(const tk_post *p, const tk_ids *in, tk_ids *out);

/* ---- added_tokens.c ---- */
typedef struct {
    char *content;
    size_t len;
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
} tk_added;

struct kiln_tokenizer {
    tk_normalizer *norm;
    tk_pretok *pre;
    tk_bpe *bpe;
    tk_post *post;
    tk_decoder *dec;
    tk_added *added;
    size_t n_added;
    tk_map added_map;
    int32_t max_id;
    bool clean_up_spaces;
    kiln_special_tokens sp;
    char *sp_str[4];
    char **tmpl_names, **tmpl_src;
    size_t n_tmpl;
};

/* Splits text on added tokens: calls fn(ctx, s, n, id) for each segment; id >= 0 for an added token. */
typedef int (*tk_seg_fn)(void *ctx, const char *s, size_t n, int32_t id); /* non-zero stops, returned */
int tk_split_added(const kiln_tokenizer *t, const char *s, size_t n, tk_seg_fn fn, void *ctx);
const tk_added *tk_added_by_id(const kiln_tokenizer *t, int32_t id);

/* ---- tokenizer.c ---- */
/* A tokenizer from a parsed tokenizer.json (tj) and tokenizer_config.json (cfg, may be NULL); errors
 * start with `where`. Every other source (GGUF) is turned into these two documents first, so that one
 * loader builds every tokenizer. */
kiln_tokenizer *tk_tokenizer_build(json_t *tj, json_t *cfg, const char *where, kiln_err *err);
/* dir/name parsed (through kiln_read_file, as the loader reads it); NULL with err set. */
json_t *tk_load_json(const char *dir, const char *name, kiln_err *err);

/* ---- gguf_vocab.c: a tokenizer from GGUF's tokenizer.ggml.* arrays ---- */
enum { TK_TYPE_NORMAL = 1, TK_TYPE_UNKNOWN = 2, TK_TYPE_CONTROL = 3, TK_TYPE_USER = 4, TK_TYPE_UNUSED = 5, TK_TYPE_BYTE = 6 };
typedef struct {
    const char *model;           /* tokenizer.ggml.model: "gpt2" or "llama" */
    const char *pre;             /* tokenizer.ggml.pre; NULL when absent */
    size_t n_tokens;
    const char **tokens;         /* n_tokens strings, token_len[i] bytes each (not NUL-terminated) */
    const size_t *token_len;
    const float *scores;         /* NULL: none */
    const int32_t *types;        /* TK_TYPE_*; NULL: all normal */
    size_t n_merges;
    const char **merges;         /* "left right", merge_len[i] bytes */
    const size_t *merge_len;
    int32_t bos, eos, unk, pad;  /* -1: none */
    bool add_bos, add_eos, add_space_prefix;
    const char *chat_template;   /* NULL: none */
    size_t n_named;              /* tokenizer.chat_template.NAME templates */
    const char **named_names, **named_templates;
} tk_gguf_vocab;
kiln_tokenizer *tk_tokenizer_from_vocab(const tk_gguf_vocab *v, const char *where, kiln_err *err);
/* The tokenizer.ggml.pre name of a tokenizer.json's byte-level pre-tokenizer and normaliser (the name
 * whose tokenizer reading the file rebuilds), or NULL when it is none kiln knows. */
const char *tk_gguf_pre_name(json_t *pre_tokenizer, json_t *normalizer);

/* ---- gguf_export.c: the same arrays from a tokenizer.json checkpoint (what llama.cpp's converter
 * writes: tokens padded to n_vocab with [PADi] (unused), token types, gpt2 merges or llama scores) ---- */
typedef struct tk_gguf_export {
    tk_gguf_vocab v;
    kiln_tokenizer *tok;
    json_t *tj;
    char **owned; /* strings made here (pads, joined merges), n_owned of them */
    size_t n_owned, cap_owned;
} tk_gguf_export;
/* dir's tokenizer as GGUF arrays: n_vocab tokens (at least the tokenizer's), bos_fallback when
 * tokenizer_config.json names no BOS (config.json's bos_token_id, -1 none). */
int tk_gguf_export_open(tk_gguf_export *x, const char *dir, size_t n_vocab, int32_t bos_fallback, kiln_err *err);
void tk_gguf_export_close(tk_gguf_export *x);

/* ---- gguf_tokenizer.c: reading those arrays from a file ---- */
/* path is a GGUF file, or a directory with no tokenizer.json that holds one. */
bool tk_gguf_source(const char *path);
kiln_tokenizer *tk_gguf_open(const char *path, kiln_err *err);

#endif

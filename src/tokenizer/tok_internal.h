/* tok_internal.h — the tokenizer's internal pieces, split as HF tokenizers splits them:
 * normalizer → pre-tokenizer → model (BPE) → post-processor; decoder for the way back. */
#ifndef KILN_TOK_INTERNAL_H
#define KILN_TOK_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fileio.h"
#include "kiln.h"

/* A growable byte string. */
typedef struct {
    char *p;
    size_t n, cap;
} tk_buf;
void tk_buf_add(tk_buf *b, const void *s, size_t n);
void tk_buf_addc(tk_buf *b, char c);

/* A growable id list. */
typedef struct {
    int32_t *p;
    size_t n, cap;
} tk_ids;
void tk_ids_add(tk_ids *v, int32_t id);

/* String → int32 hash map (open addressing; keys copied). */
typedef struct {
    char **keys;
    uint32_t *klen;
    int32_t *vals;
    size_t cap, n;
} tk_map;
void tk_map_put(tk_map *m, const char *k, size_t kn, int32_t v);
int32_t tk_map_get(const tk_map *m, const char *k, size_t kn); /* -1 if absent */
void tk_map_free(tk_map *m);

/* UTF-8 helpers. */
int tk_utf8_len(unsigned char c); /* length of the sequence started by c (1 for invalid lead) */
/* Appends src as valid UTF-8, each maximal invalid subpart → U+FFFD (Rust's from_utf8_lossy). */
void tk_utf8_lossy(tk_buf *out, const char *s, size_t n);
/* Bytes at the end of s[0..n) that are a valid but incomplete UTF-8 prefix (0..3). */
size_t tk_utf8_incomplete_tail(const char *s, size_t n);

/* ---- normalizer.c ---- */
typedef struct tk_normalizer tk_normalizer;
tk_normalizer *tk_normalizer_load(json_t *j, kiln_err *err); /* j may be null → NULL, no error */
void tk_normalizer_free(tk_normalizer *n);
void tk_normalize(const tk_normalizer *n, const char *s, size_t len, tk_buf *out);

/* ---- pretokenizer.c ---- */
typedef struct tk_pretok tk_pretok;
tk_pretok *tk_pretok_load(json_t *j, kiln_err *err);
void tk_pretok_free(tk_pretok *p);
/* Calls fn for each pre-token (already byte-level mapped where the pre-tokenizer says). */
typedef void (*tk_piece_fn)(void *ctx, const char *s, size_t n);
void tk_pretokenize(const tk_pretok *p, const char *s, size_t n, tk_piece_fn fn, void *ctx);
/* GPT-2 byte ↔ unicode map. */
extern const char *tk_byte_to_unicode[256]; /* UTF-8 of the char byte b maps to */
int tk_unicode_to_byte(uint32_t cp);       /* -1 if cp is not in the map */
void tk_bytelevel_init(void);

/* ---- bpe.c ---- */
typedef struct tk_bpe tk_bpe;
tk_bpe *tk_bpe_load(json_t *model, kiln_err *err);
void tk_bpe_free(tk_bpe *b);
void tk_bpe_encode(const tk_bpe *b, const char *s, size_t n, tk_ids *out);
int32_t tk_bpe_token_id(const tk_bpe *b, const char *s, size_t n);
const char *tk_bpe_token_str(const tk_bpe *b, int32_t id);
size_t tk_bpe_vocab_size(const tk_bpe *b);

/* ---- decoder.c ---- */
typedef struct tk_decoder tk_decoder;
tk_decoder *tk_decoder_load(json_t *j, kiln_err *err);
void tk_decoder_free(tk_decoder *d);
/* Decodes tokens (strings) into raw bytes in out. If stream is true, an incomplete UTF-8 sequence of
 * byte-fallback tokens at the very end is kept as raw bytes (the caller holds it back). */
void tk_decode_tokens(const tk_decoder *d, const char **toks, size_t n, bool stream, tk_buf *out);

/* ---- post-processor (postprocessor.c) ---- */
typedef struct tk_post tk_post;
tk_post *tk_post_load(json_t *j, kiln_err *err);
tk_post *tk_post_bos_eos(int32_t bos, int32_t eos); /* LlamaTokenizerFast.update_post_processor */
void tk_post_free(tk_post *p);
void tk_post_apply(const tk_post *p, const tk_ids *in, tk_ids *out);

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
typedef void (*tk_seg_fn)(void *ctx, const char *s, size_t n, int32_t id);
void tk_split_added(const kiln_tokenizer *t, const char *s, size_t n, tk_seg_fn fn, void *ctx);
const tk_added *tk_added_by_id(const kiln_tokenizer *t, int32_t id);

#endif

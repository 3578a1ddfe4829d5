/* gguf_vocab.c — a tokenizer from GGUF's tokenizer.ggml.* arrays. The arrays are turned into the
 * tokenizer.json + tokenizer_config.json that transformers would hold for the same model, and the one
 * loader (tokenizer.c) builds the tokenizer from those, so both sources share every piece.
 *   gpt2:  byte-level BPE with the file's merges; the pre-tokenizer (regex) follows tokenizer.ggml.pre.
 *   llama: SentencePiece BPE as transformers' LlamaConverter writes it (▁ normaliser, byte fallback);
 *          the merges are derived from the vocabulary as its SentencePieceExtractor derives them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* ---- pre-tokenizers by tokenizer.ggml.pre: the regexes of each family's tokenizer.json ---- */
static const char LLAMA3_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
                                "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
                               "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef struct {
    const char *name;
    const char *split; /* a Split (Isolated) before ByteLevel; NULL: none */
    bool byte_regex;   /* ByteLevel applies GPT-2's own regex */
    bool nfc, ignore_merges;
} pre_family;

static const pre_family PRE[] = {
    {"llama-bpe", LLAMA3_RE, false, false, true}, /* Llama 3: ignore_merges, as its tokenizer.json */
    {"llama3", LLAMA3_RE, false, false, true},
    {"llama-v3", LLAMA3_RE, false, false, true},
    {"qwen2", QWEN2_RE, false, true, false}, /* Qwen2/2.5/3: NFC normaliser */
    {"deepseek-r1-qwen", QWEN2_RE, false, true, false},
    {"gpt-2", NULL, true, false, false},
    {"phi-2", NULL, true, false, false},
    {"smollm", "\\p{N}", true, false, false}, /* Digits(individual) then GPT-2's ByteLevel */
    /* absent (files from before the key) or "default": GPT-2's byte-level split, the original gpt2 one */
    {"default", NULL, true, false, false},
};

static const pre_family *find_pre(const char *name, kiln_err *err) {
    for (size_t i = 0; i < sizeof PRE / sizeof PRE[0]; i++)
        if (!strcmp(PRE[i].name, name)) return &PRE[i];
    char known[256] = "";
    for (size_t i = 0; i < sizeof PRE / sizeof PRE[0]; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", PRE[i].name);
    kiln_err_set(err, "tokenizer.ggml.pre \"%s\" is not a pre-tokenizer kiln knows (known: %s)", name, known);
    return NULL;
}

/* (tok_internal.h) The PRE entry a tokenizer.json's byte-level pre-tokenizer and normaliser are: the
 * inverse of bytelevel_pretok, for writing tokenizer.ggml.pre. */
const char *tk_gguf_pre_name(json_t *pre_tokenizer, json_t *normalizer) {
    json_t *bl = pre_tokenizer, *split = NULL;
    const char *type = json_string_value(json_object_get(pre_tokenizer, "type"));
    if (type && !strcmp(type, "Sequence")) {
        json_t *parts = json_object_get(pre_tokenizer, "pretokenizers");
        if (json_array_size(parts) != 2) return NULL;
        split = json_array_get(parts, 0), bl = json_array_get(parts, 1);
        const char *st = json_string_value(json_object_get(split, "type"));
        if (!st || strcmp(st, "Split")) return NULL;
    }
    const char *bt = json_string_value(json_object_get(bl, "type"));
    if (!bt || strcmp(bt, "ByteLevel")) return NULL;
    json_t *ur = json_object_get(bl, "use_regex");
    const bool byte_regex = !ur || json_is_true(ur);
    const char *re = split ? json_string_value(json_object_get(json_object_get(split, "pattern"), "Regex")) : NULL;
    const char *nt = json_string_value(json_object_get(normalizer, "type"));
    const bool nfc = nt && !strcmp(nt, "NFC");
    if ((split && !re) || (normalizer && !json_is_null(normalizer) && !nfc)) return NULL;
    for (size_t i = 0; i < sizeof PRE / sizeof PRE[0]; i++)
        if (PRE[i].byte_regex == byte_regex && PRE[i].nfc == nfc && (!PRE[i].split) == (!re) &&
            (!re || !strcmp(PRE[i].split, re)))
            return PRE[i].name;
    return NULL;
}

static json_t *bytelevel_pretok(const pre_family *f) {
    json_t *bl = json_pack("{s:s,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 0, "use_regex", f->byte_regex);
    if (!f->split) return bl;
    return json_pack("{s:s,s:[{s:s,s:{s:s},s:s,s:b},o]}", "type", "Sequence", "pretokenizers", "type", "Split",
                     "pattern", "Regex", f->split, "behavior", "Isolated", "invert", 0, bl);
}

/* ---- the vocabulary ---- */
static bool type_is(const tk_gguf_vocab *v, size_t i, int type) {
    return (v->types ? v->types[i] : TK_TYPE_NORMAL) == type;
}

/* Every token must be a JSON-able string: valid UTF-8 without NUL. */
static int check_tokens(const tk_gguf_vocab *v, kiln_err *err) {
    if (!v->n_tokens) return kiln_err_set(err, "tokenizer.ggml.tokens is empty");
    if (v->n_tokens > (size_t)INT32_MAX) return kiln_err_set(err, "tokenizer.ggml.tokens: too many tokens");
    for (size_t i = 0; i < v->n_tokens; i++)
        if (memchr(v->tokens[i], 0, v->token_len[i]) || !tk_utf8_valid(v->tokens[i], v->token_len[i]))
            return kiln_err_set(err, "tokenizer.ggml.tokens[%zu] is not valid UTF-8 without NUL", i);
    return 0;
}

/* model.vocab: token → id, every token (unused [PAD…] fillers too: no merge makes them, and the ids stay
 * dense as the loader's id bound wants); a string given twice keeps its first id. */
static json_t *vocab_json(const tk_gguf_vocab *v) {
    json_t *o = json_object();
    for (size_t i = 0; o && i < v->n_tokens; i++) {
        if (json_object_getn(o, v->tokens[i], v->token_len[i])) continue;
        if (json_object_setn_new(o, v->tokens[i], v->token_len[i], json_integer((json_int_t)i))) json_decref(o), o = NULL;
    }
    return o;
}

/* added_tokens: control and unknown tokens are special, user-defined ones not (the converter writes
 * CONTROL for transformers' special added tokens, USER_DEFINED for the others). */
static json_t *added_json(const tk_gguf_vocab *v) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < v->n_tokens; i++) {
        bool special = type_is(v, i, TK_TYPE_CONTROL) || type_is(v, i, TK_TYPE_UNKNOWN);
        if (!special && !type_is(v, i, TK_TYPE_USER)) continue;
        json_t *t = json_pack("{s:I,s:s%,s:b,s:b,s:b,s:b,s:b}", "id", (json_int_t)i, "content", v->tokens[i],
                              v->token_len[i], "special", special, "lstrip", 0, "rstrip", 0, "single_word", 0,
                              "normalized", 0);
        if (json_array_append_new(a, t)) json_decref(a), a = NULL;
    }
    return a;
}

/* gpt2: the file's merges, "left right" each. */
static json_t *merges_json(const tk_gguf_vocab *v, kiln_err *err) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < v->n_merges; i++) {
        if (memchr(v->merges[i], 0, v->merge_len[i]) || !tk_utf8_valid(v->merges[i], v->merge_len[i]))
            return json_decref(a), kiln_err_set(err, "tokenizer.ggml.merges[%zu] is not valid UTF-8 without NUL", i), NULL;
        if (json_array_append_new(a, json_stringn(v->merges[i], v->merge_len[i]))) json_decref(a), a = NULL;
    }
    if (!a) kiln_err_set(err, TK_OOM);
    return a;
}

/* ---- llama (SentencePiece): merges from the vocabulary ----
 * transformers' SentencePieceExtractor: every piece that splits into two vocabulary pieces gives a
 * merge (left, right); merges rank by the merged piece's score, highest first (ties: lower id first),
 * then by (left id, right id). A file converted without the SentencePiece model has every score equal
 * (-1000): there the merged piece's id ranks, lowest first, except that pieces made only of ▁ rank
 * after all others — the rule that reproduces the Hugging Face merges of such tokenizers. */
#define SPM_SPACE "\xE2\x96\x81"

typedef struct {
    uint32_t order; /* rank of the merged piece */
    int32_t l, r;
} spm_merge;

typedef struct {
    float key;
    int32_t id;
} piece_key;

static int cmp_piece(const void *a, const void *b) {
    const piece_key *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1; /* higher first */
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_merge(const void *a, const void *b) {
    const spm_merge *x = a, *y = b;
    if (x->order != y->order) return x->order < y->order ? -1 : 1;
    if (x->l != y->l) return x->l < y->l ? -1 : 1;
    return (x->r > y->r) - (x->r < y->r);
}

static bool only_spaces(const char *s, size_t n) {
    if (!n || n % 3) return false;
    for (size_t i = 0; i < n; i += 3)
        if (memcmp(s + i, SPM_SPACE, 3)) return false;
    return true;
}

static bool scores_differ(const tk_gguf_vocab *v) {
    for (size_t i = 1; v->scores && i < v->n_tokens; i++)
        if (v->scores[i] != v->scores[0]) return true;
    return false;
}

/* order[id]: the rank of piece id as a merge result. */
static uint32_t *piece_order(const tk_gguf_vocab *v) {
    piece_key *k = malloc(v->n_tokens * sizeof *k);
    uint32_t *order = malloc(v->n_tokens * sizeof *order);
    if (!k || !order) return free(k), free(order), NULL;
    bool scored = scores_differ(v);
    for (size_t i = 0; i < v->n_tokens; i++) {
        float key = scored ? v->scores[i] : only_spaces(v->tokens[i], v->token_len[i]) ? -1.0f : 0.0f;
        k[i] = (piece_key){key == key ? key : -INFINITY, (int32_t)i}; /* a NaN score ranks last */
    }
    qsort(k, v->n_tokens, sizeof *k, cmp_piece);
    for (size_t i = 0; i < v->n_tokens; i++) order[k[i].id] = (uint32_t)i;
    free(k);
    return order;
}

/* Appends the merges that build piece `to` (every split into two pieces of the vocabulary). */
static int piece_merges(const tk_gguf_vocab *v, const tk_map *ids, const uint32_t *order, int32_t to,
                        spm_merge **m, size_t *n, size_t *cap) {
    const char *s = v->tokens[to];
    size_t len = v->token_len[to];
    for (size_t k = 1; k < len; k++) {
        if (((unsigned char)s[k] & 0xC0) == 0x80) continue; /* inside a character */
        int32_t l = tk_map_get(ids, s, k), r = l >= 0 ? tk_map_get(ids, s + k, len - k) : -1;
        if (r < 0) continue;
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 1024;
            spm_merge *p = realloc(*m, nc * sizeof *p);
            if (!p) return -1;
            *m = p, *cap = nc;
        }
        (*m)[(*n)++] = (spm_merge){order[to], l, r};
    }
    return 0;
}

static json_t *spm_merges_json(const tk_gguf_vocab *v, json_t *vocab) {
    tk_map ids = {0};
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) if (tk_map_put(&ids, key, strlen(key), (int32_t)json_integer_value(val))) goto oom;
    uint32_t *order = piece_order(v);
    spm_merge *m = NULL;
    size_t n = 0, cap = 0;
    int rc = order ? 0 : -1;
    for (size_t i = 0; !rc && i < v->n_tokens; i++)
        if (type_is(v, i, TK_TYPE_NORMAL) || type_is(v, i, TK_TYPE_USER)) rc = piece_merges(v, &ids, order, (int32_t)i, &m, &n, &cap);
    free(order);
    tk_map_free(&ids);
    if (rc) return free(m), NULL;
    qsort(m, n, sizeof *m, cmp_merge);
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        json_t *pair = json_pack("[s%,s%]", v->tokens[m[i].l], v->token_len[m[i].l], v->tokens[m[i].r], v->token_len[m[i].r]);
        if (json_array_append_new(a, pair)) json_decref(a), a = NULL;
    }
    free(m);
    return a;
oom:
    tk_map_free(&ids);
    return NULL;
}

/* ---- the two documents ---- */
static json_t *token_str(const tk_gguf_vocab *v, int32_t id) {
    return id >= 0 ? json_stringn(v->tokens[id], v->token_len[id]) : json_null();
}

/* tokenizer.json for model gpt2. */
static json_t *gpt2_json(const tk_gguf_vocab *v, json_t *vocab, kiln_err *err) {
    const pre_family *f = find_pre(v->pre ? v->pre : "default", err);
    if (!f) return json_decref(vocab), NULL;
    json_t *merges = merges_json(v, err);
    if (!merges) return json_decref(vocab), NULL;
    json_t *tj = json_pack("{s:{s:s,s:o,s:o,s:b},s:o?,s:o,s:{s:s}}", "model", "type", "BPE", "vocab", vocab, "merges",
                           merges, "ignore_merges", f->ignore_merges, "normalizer",
                           f->nfc ? json_pack("{s:s}", "type", "NFC") : NULL, "pre_tokenizer", bytelevel_pretok(f),
                           "decoder", "type", "ByteLevel");
    if (!tj) kiln_err_set(err, TK_OOM);
    return tj;
}

/* tokenizer.json for model llama, as LlamaConverter writes it (legacy): ▁ for spaces, one ▁ before the
 * text (tokenizer.ggml.add_space_prefix), byte fallback, unknown pieces fused. */
static json_t *llama_json(const tk_gguf_vocab *v, json_t *vocab, kiln_err *err) {
    if (v->pre && strcmp(v->pre, "default"))
        return json_decref(vocab), kiln_err_set(err, "tokenizer.ggml.pre \"%s\" is not a pre-tokenizer kiln knows for model llama (known: default)", v->pre), NULL;
    json_t *merges = spm_merges_json(v, vocab);
    json_t *replace = json_pack("{s:s,s:{s:s},s:s}", "type", "Replace", "pattern", "String", " ", "content", SPM_SPACE);
    json_t *norm = v->add_space_prefix ? json_pack("{s:s,s:[{s:s,s:s},o]}", "type", "Sequence", "normalizers", "type",
                                                   "Prepend", "prepend", SPM_SPACE, replace)
                                       : replace;
    json_t *dec = json_pack("{s:s,s:[{s:s,s:{s:s},s:s},{s:s},{s:s}]}", "type", "Sequence", "decoders", "type", "Replace",
                            "pattern", "String", SPM_SPACE, "content", " ", "type", "ByteFallback", "type", "Fuse");
    if (dec && v->add_space_prefix && /* the space the normaliser added goes again */
        json_array_append_new(json_object_get(dec, "decoders"),
                              json_pack("{s:s,s:s,s:i,s:i}", "type", "Strip", "content", " ", "start", 1, "stop", 0)))
        json_decref(dec), dec = NULL;
    json_t *tj = json_pack("{s:{s:s,s:o,s:o,s:b,s:b,s:o},s:o,s:o}", "model", "type", "BPE", "vocab", vocab, "merges",
                           merges, "byte_fallback", 1, "fuse_unk", 1, "unk_token", token_str(v, v->unk), "normalizer",
                           norm, "decoder", dec);
    if (!tj) kiln_err_set(err, TK_OOM);
    return tj;
}

static int check_id(const tk_gguf_vocab *v, int32_t id, const char *what, kiln_err *err) {
    if (id >= -1 && (id < 0 || (size_t)id < v->n_tokens)) return 0;
    return kiln_err_set(err, "tokenizer.ggml.%s_token_id %d is outside the vocabulary (%zu tokens)", what, id, v->n_tokens);
}

/* chat_template: one string, or the list transformers writes when there are named ones. */
static json_t *templates_json(const tk_gguf_vocab *v) {
    if (!v->n_named) return v->chat_template ? json_string(v->chat_template) : json_null();
    json_t *a = json_array();
    if (a && v->chat_template && json_array_append_new(a, json_pack("{s:s,s:s}", "name", "default", "template", v->chat_template)))
        json_decref(a), a = NULL;
    for (size_t i = 0; a && i < v->n_named; i++)
        if (json_array_append_new(a, json_pack("{s:s,s:s}", "name", v->named_names[i], "template", v->named_templates[i])))
            json_decref(a), a = NULL;
    return a;
}

/* tokenizer_config.json: special tokens, template; add_bos/add_eos mean what a Llama-class tokenizer's
 * add_bos_token/add_eos_token mean (the post-processor is rebuilt from them). The file says nothing of
 * clean_up_tokenization_spaces: decoding gives the tokens' text as is, as llama.cpp does. */
static json_t *config_json(const tk_gguf_vocab *v) {
    return json_pack("{s:o,s:o,s:o,s:o,s:o,s:s,s:b,s:b,s:b}", "bos_token", token_str(v, v->bos), "eos_token",
                     token_str(v, v->eos), "pad_token", token_str(v, v->pad), "unk_token", token_str(v, v->unk),
                     "chat_template", templates_json(v), "tokenizer_class", "LlamaTokenizerFast", "add_bos_token",
                     v->add_bos, "add_eos_token", v->add_eos, "clean_up_tokenization_spaces", 0);
}

static json_t *tokenizer_json(const tk_gguf_vocab *v, kiln_err *err) {
    bool gpt2 = !strcmp(v->model, "gpt2");
    if (!gpt2 && strcmp(v->model, "llama"))
        return kiln_err_set(err, "tokenizer.ggml.model \"%s\" is not supported (gpt2 or llama)", v->model), NULL;
    if (check_tokens(v, err) || check_id(v, v->bos, "bos", err) || check_id(v, v->eos, "eos", err) ||
        check_id(v, v->unk, "unknown", err) || check_id(v, v->pad, "padding", err))
        return NULL;
    json_t *vocab = vocab_json(v);
    if (!vocab) return kiln_err_set(err, TK_OOM), NULL;
    json_t *tj = gpt2 ? gpt2_json(v, vocab, err) : llama_json(v, vocab, err);
    if (tj && json_object_set_new(tj, "added_tokens", added_json(v))) json_decref(tj), tj = NULL, kiln_err_set(err, TK_OOM);
    return tj;
}

kiln_tokenizer *tk_tokenizer_from_vocab(const tk_gguf_vocab *v, const char *where, kiln_err *err) {
    kiln_err e = {0};
    json_t *tj = tokenizer_json(v, &e), *cfg = tj ? config_json(v) : NULL;
    if (tj && !cfg) kiln_err_set(&e, TK_OOM);
    kiln_tokenizer *t = cfg ? tk_tokenizer_build(tj, cfg, where, err) : NULL;
    if (!cfg) kiln_err_set(err, "%s: %s", where, e.msg);
    json_decref(tj), json_decref(cfg);
    return t;
}

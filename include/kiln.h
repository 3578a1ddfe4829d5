/* kiln.h — the public surface of libkiln.
 *
 * Data flows one way: load (model, tokenizer) → tokenize → template → forward → sample → stream.
 * The CLI (cli/) and the server (src/serve/) use only this header.
 *
 * The error contract (true of every function here)
 * - The library never aborts, exits or prints (except through callbacks it is handed). Every failure,
 *   out-of-memory included, returns to the caller: a status (0 ok, -1 failure; NULL for constructors)
 *   plus a kiln_err buffer owned by the caller, filled with ONE line of text that names what failed
 *   (file, tensor, field...). An allocation failure's message ends in "out of memory"
 *   (kiln_err_is_nomem), so a server can answer 500 for it and 400 for bad input. A failed call leaves the
 *   state it was given as it was (validate before changing state) and leaks nothing.
 * - Kernels never allocate on the hot path: their scratch is sized when the context is created
 *   (kiln_ctx_new), so kiln_forward fails cleanly rather than writing NaN.
 *
 * Conventions
 * - Memory the library returns (char *, int32_t *) is malloc'd and freed by the caller with free().
 * - Token ids are int32_t.
 *
 * Each section below belongs to one part of the tree (named in its heading). Keep a section's
 * declarations together so independent work merges cleanly.
 */
#ifndef KILN_H
#define KILN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_VERSION "0.1.0"

/* ===================================================================================================
 * Errors (src/common/error.c)
 * =================================================================================================== */
typedef struct kiln_err {
    char msg[1024];
} kiln_err;

/* printf-style: writes one line into err (if err is non-NULL) and returns -1, so a failing function
 * can `return kiln_err_set(err, "...")`. */
int kiln_err_set(kiln_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Whether err reports an allocation failure (its message ends in "out of memory"). */
bool kiln_err_is_nomem(const kiln_err *err);

/* ===================================================================================================
 * Common helpers used across the library (src/common/)
 * =================================================================================================== */
/* The git commit this library was built from (short hash; "unknown" outside a git checkout). */
const char *kiln_build_commit(void);
/* Peak resident set size of this process in bytes (VmHWM), and the current RSS (VmRSS). */
size_t kiln_peak_rss_bytes(void);
size_t kiln_rss_bytes(void);
/* Monotonic clock in seconds. */
double kiln_now(void);

/* ===================================================================================================
 * Model configuration (src/model/config.c)
 * =================================================================================================== */
typedef enum {
    KILN_ARCH_LLAMA,
    KILN_ARCH_MISTRAL,
    KILN_ARCH_QWEN2,
    KILN_ARCH_QWEN3,
    KILN_ARCH_PHI3,  /* Phi3ForCausalLM (Phi-3, Phi-4) */
    KILN_ARCH_OLMO2, /* Olmo2ForCausalLM */
    KILN_ARCH_GEMMA2,
    KILN_ARCH_GEMMA3,
    KILN_ARCH_QWEN3_MOE, /* Qwen3MoeForCausalLM */
    KILN_ARCH_MIXTRAL,   /* MixtralForCausalLM */
} kiln_arch;
/* The most routed experts per layer a config may have (Qwen3-MoE: 128, Mixtral: 8). */
#define KILN_MAX_EXPERTS 256
typedef enum { KILN_ROPE_DEFAULT, KILN_ROPE_LINEAR, KILN_ROPE_LLAMA3, KILN_ROPE_LONGROPE } kiln_rope_type;
#define KILN_ROPE_MAX_FACTORS 256 /* longrope's per-frequency factors: rope_dim / 2 of them at most */
typedef enum { KILN_ACT_SILU = 0, KILN_ACT_GELU_TANH } kiln_act; /* silu; gelu_pytorch_tanh (Gemma) */

/* Storage / compute formats. The quantised ones are llama.cpp's blocks (ggml-common.h), byte for byte: Q8_0
 * and Q4_0 (32 weights, f16 scale; what --quant converts to), Q4_1 / Q5_0 / Q5_1 / IQ4_NL (32 weights) and
 * the 256-weight K-quants Q2_K..Q6_K and IQ4_XS (what GGUF files hold). */
typedef enum {
    KILN_DT_F32 = 0,
    KILN_DT_F16,
    KILN_DT_BF16,
    KILN_DT_Q8_0,
    KILN_DT_Q4_0,
    KILN_DT_Q4_1,
    KILN_DT_Q5_0,
    KILN_DT_Q5_1,
    KILN_DT_Q2_K,
    KILN_DT_Q3_K,
    KILN_DT_Q4_K,
    KILN_DT_Q5_K,
    KILN_DT_Q6_K,
    KILN_DT_IQ4_NL,
    KILN_DT_IQ4_XS,
    KILN_DT_COUNT
} kiln_dtype;
const char *kiln_dtype_name(kiln_dtype dt);
int kiln_dtype_parse(const char *name, kiln_dtype *out); /* "f32","bf16","q8_0",... → 0, else -1 */

/* kiln_model_opts.quant values beyond the block formats: llama-quantize's per-tensor mixes of the same
 * names (most matrices in Q4_K / Q5_K, some attn_v / ffn_down and the output projection in Q6_K; the
 * rules are in src/model/weight_format.c). */
#define KILN_QUANT_Q4_K_M ((int)KILN_DT_COUNT)
#define KILN_QUANT_Q5_K_M ((int)KILN_DT_COUNT + 1)
#define KILN_QUANT_END ((int)KILN_DT_COUNT + 2) /* quant values are below this */
/* What --quant takes: "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k" → 0 with *out set, else -1. */
int kiln_quant_parse(const char *name, int *out);
/* A quant value's name: a mix's ("q4_k_m") or the block format's ("q8_0"); "?" for anything else. */
const char *kiln_quant_name(int quant);

typedef struct kiln_config {
    kiln_arch arch;
    char architecture[64]; /* e.g. "Qwen3ForCausalLM" */
    char model_type[32];   /* e.g. "qwen3" */
    int hidden_size;
    int intermediate_size;
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim; /* explicit in config.json or hidden_size / n_heads */
    int vocab_size;
    int max_position_embeddings;
    float rms_norm_eps;
    double rope_theta;
    kiln_rope_type rope_type;
    double rope_factor;           /* linear and llama3 */
    double rope_low_freq_factor;  /* llama3 */
    double rope_high_freq_factor; /* llama3 */
    int rope_original_max_pos;    /* llama3 original_max_position_embeddings */
    bool tie_word_embeddings;
    bool attention_bias; /* q/k/v biases (Qwen2 always) */
    bool qk_norm;        /* per-head RMSNorm on q and k (Qwen3) */
    kiln_dtype torch_dtype;
    int bos_token_id; /* -1 if none */
    int eos_token_ids[8];
    int n_eos_token_ids;
    /* Sliding-window attention (Mistral's sliding_window; Gemma's local layers): a layer whose bit is set in
     * swa_layers attends only the last sliding_window positions (key j visible from query i iff
     * i - sliding_window < j <= i). sliding_window 0: no layer has a window. */
    int sliding_window;
    uint64_t swa_layers[64]; /* bit l % 64 of word l / 64: layer l uses the window (n_layers <= 4096) */
    /* Gemma 2 / 3 (see kiln_config_load); all zero for the Llama family. */
    bool norm_offset;          /* RMSNorm weights are offsets: the norm multiplies by (1 + w) (safetensors only;
                                  llama.cpp's converter writes 1 + w into a GGUF) */
    bool sandwich_norms;       /* post-attention, pre- and post-feed-forward norms around each block */
    kiln_act hidden_act;       /* the MLP's gate activation */
    float embed_scale;         /* the embedding is multiplied by this (sqrt(hidden_size)); 0: not scaled */
    float attn_scale;          /* attention's score scale (1 / sqrt(query_pre_attn_scalar)); 0: 1 / sqrt(head_dim) */
    float attn_logit_softcap;  /* scores become tanh(s / cap) * cap before the softmax; 0: none */
    float final_logit_softcap; /* likewise for the output logits; 0: none */
    double rope_local_theta;   /* RoPE base of the window layers (Gemma 3 rope_local_base_freq, default RoPE
                                  without rope_scaling); 0: the same RoPE as the other layers */
    bool window_absent;        /* a GGUF of a Mistral model without {arch}.attention.sliding_window (llama.cpp's
                                  converter writes none): run unwindowed as the file says; kiln_model_open warns */
    /* Phi-3, OLMo-2 */
    bool fused_proj;   /* Phi-3: qkv_proj (rows q | k | v) and gate_up_proj (rows gate | up), bound as row views */
    bool no_pre_norms; /* OLMo-2: no input / pre-MLP RMSNorm (the sublayers read the residual stream itself) */
    bool post_norms;   /* OLMo-2: RMSNorm on the attention and MLP outputs, before the residual add */
    bool qk_norm_full; /* OLMo-2: RMSNorm over the whole q / k projection (weights [n_heads * head_dim], [kv_dim]) */
    /* RoPE of part of each head (Phi-4-mini: partial_rotary_factor 0.75) and Phi-3's longrope ("su") */
    int rope_dim;            /* leading dims of each head that RoPE rotates (int(head_dim * partial_rotary_factor)) */
    double rope_attn_factor; /* longrope: cos and sin scaled by it (transformers' attention_factor) */
    float rope_short_factor[KILN_ROPE_MAX_FACTORS]; /* longrope: frequency divisors [rope_dim / 2], contexts up to */
    float rope_long_factor[KILN_ROPE_MAX_FACTORS];  /* rope_original_max_pos tokens, and longer ones */
    /* Mixture of experts (Qwen3-MoE, Mixtral): every layer's FFN is n_experts SwiGLU experts of
     * expert_ffn_size, of which a router picks n_experts_used per token (softmax, top-k, the weights
     * renormalised to sum 1 when norm_topk_prob). n_experts 0: a dense FFN of intermediate_size. */
    int n_experts; /* at most KILN_MAX_EXPERTS */
    int n_experts_used;
    int expert_ffn_size;
    bool norm_topk_prob;
} kiln_config;

/* Whether layer l of c attends through the sliding window. */
static inline bool kiln_config_layer_windowed(const kiln_config *c, int l) {
    return c->sliding_window > 0 && (c->swa_layers[l / 64] >> (l % 64) & 1);
}

/* Parses DIR/config.json (or a GGUF model's {arch}.* keys, see kiln_model_open); validates every field the
 * forward pass needs. */
int kiln_config_load(const char *dir, kiln_config *cfg, kiln_err *err);

/* ===================================================================================================
 * Model weights (src/model/model.c, src/model/safetensors.c)
 * =================================================================================================== */
typedef struct kiln_model kiln_model;

/* Distributed inference over MPI (src/dist/; `mpirun -np TP*PP kiln ... --tp TP --pp PP`, see
 * docs/distributed.md). Every rank runs the same program on the same input; each loads only its shard
 * (tp: heads, KV heads and FFN width split; pp: contiguous stages of layers) and holds only its KV share.
 * Rank 0 gets the logits (zeros elsewhere) and, inside generation, samples and broadcasts each token. */
typedef struct kiln_dist kiln_dist;
bool kiln_dist_available(void); /* built with MPI */
/* Starts MPI; the job must have exactly tp * pp processes. NULL (err) without MPI or on a mismatch. */
kiln_dist *kiln_dist_init(int tp, int pp, kiln_err *err);
void kiln_dist_free(kiln_dist *d); /* ends MPI; NULL is a no-op */
int kiln_dist_rank(const kiln_dist *d); /* 0 for NULL */
int kiln_dist_size(const kiln_dist *d); /* 1 for NULL */
double kiln_dist_comm_seconds(const kiln_dist *d); /* time spent in MPI calls so far */
/* Commands whose input only rank 0 has (serve, bench, chat): rank 0 leads — it runs the command as one
 * process would, and each of its kiln_forward / kiln_forward_hidden calls first broadcasts the step
 * (the context's sequences and the batch) — while every other rank calls kiln_dist_follow with its
 * shard of the model, which runs those steps until rank 0 calls kiln_dist_lead_end. micro_batches
 * (--pp > 1 only; 1 = none, at most 16) splits each step's sequences into groups that overlap across
 * the pipeline stages. A NULL d is the single process: both return 0. */
int kiln_dist_lead(kiln_dist *d, int micro_batches, kiln_err *err);
int kiln_dist_lead_end(kiln_dist *d, kiln_err *err);
int kiln_dist_follow(kiln_model *m, kiln_err *err); /* returns 0 when rank 0 ended the run */

typedef struct kiln_model_opts {
    /* Weight formats, chosen at load. dtype: -1 keeps the checkpoint's storage type (zero-copy mmap), else
     * KILN_DT_F32/F16/BF16 to convert every matrix to. quant: -1 none, else KILN_DT_Q8_0/Q4_0 block-quantises
     * every matrix whose rows are whole 32-value blocks; the others get dtype (f32 when dtype is -1).
     * Q4_0 keeps the output projection (lm_head or the tied embedding) in Q8_0, as llama-quantize does.
     * KILN_DT_Q6_K, KILN_QUANT_Q4_K_M, KILN_QUANT_Q5_K_M: llama-quantize's Q6_K / Q4_K_M / Q5_K_M per-tensor
     * types, with its fallbacks for rows that are not whole 256-blocks (Q8_0 / Q5_0 / Q5_1, then f16 or
     * dtype). Any other block format: every matrix in it where the rows fit, as Q8_0.
     * dtype = Q8_0/Q4_0 is accepted as an alias for quant (older callers). */
    int dtype;
    int quant;
    /* Converted weights are cached on disk (one file next to the model, or under the hub cache root when
     * the model directory is read-only) and memory-mapped by later loads; a stale or corrupt cache is
     * reported through warn and rebuilt. */
    bool weight_cache;
    int threads; /* 0: default (physical cores) */
    /* Float arithmetic of F16 / BF16 matrices in prefill (4+ tokens at once). false (the default): where
     * the CPU has AVX-512 BF16, activations rounded to bf16 and vdpbf16ps dot products, on AMX tiles where
     * it has AMX-BF16 (F16 weights rounded to bf16 too), 1.5-1.7x faster (AMX: ~4x more) at a mean KL of
     * 1e-5..4e-4 nats against exact (docs/performance.md).
     * true (--exact): f32 FMA on widened weights and f32 activations, the path the golden tests pin.
     * Decode is exact either way; F32 and block-quantised matrices are unaffected. */
    bool exact;
    bool quiet;  /* no progress callbacks */
    /* Optional callbacks: conversion progress (bytes of converted weights done / total) and one-line
     * warnings (e.g. a cache that was rejected). */
    void (*progress)(void *ud, size_t done, size_t total);
    void (*warn)(void *ud, const char *msg);
    void *cb_ud;
    kiln_dist *dist; /* NULL: one process holds the whole model; else this rank's shard (see kiln_dist) */
} kiln_model_opts;
void kiln_model_opts_default(kiln_model_opts *o);

/* Opens a Hugging Face checkpoint directory: config.json + model.safetensors or sharded
 * model.safetensors.index.json; or a GGUF model: a .gguf file, any part of a split NAME-0000i-of-0000N.gguf
 * set, or a directory (without config.json) holding one. Weights are memory-mapped; every tensor is
 * validated. */
kiln_model *kiln_model_open(const char *dir, const kiln_model_opts *opts, kiln_err *err);
void kiln_model_free(kiln_model *m);
const kiln_config *kiln_model_config(const kiln_model *m);
/* Worker threads the model's kernels run on (the resolved --threads: physical cores by default). */
int kiln_model_threads(const kiln_model *m);
size_t kiln_model_weight_bytes(const kiln_model *m); /* bytes of weights in the compute format */
size_t kiln_model_param_count(const kiln_model *m);
/* Where the converted weights of this load live: the cache file path when weight_cache was set, else NULL;
 * *reused tells whether the cache was read (true) or written/rebuilt (false). */
const char *kiln_model_weight_cache(const kiln_model *m, bool *reused);

/* Writes the safetensors checkpoint at dir as a GGUF v3 file at path, which llama.cpp's tools load: the
 * `{arch}.*` hyperparameters, the tokenizer and chat template, and every tensor under llama.cpp's name in
 * the format a load with opts->quant / opts->dtype gives it (llama-quantize's mixes for the K-quants;
 * neither set: as stored). opts->threads convert; opts->progress gets bytes written / total. Atomic: the
 * file is written beside path under a temporary name and renamed; on any error nothing is left. */
int kiln_gguf_write(const char *dir, const char *path, const kiln_model_opts *opts, kiln_err *err);

/* ===================================================================================================
 * Inference context: forward pass over a paged KV cache (src/engine/)
 *
 * A context holds the KV cache for up to max_seqs sequences. The cache is paged: fixed blocks of
 * KILN_KV_BLOCK tokens, a block table per sequence, a free list. Sequences can share leading blocks
 * (prefix caching, kiln_seq_fork) with copy-on-write for a partially filled last block.
 * Positions are implicit: a sequence's new tokens go at its current length.
 * =================================================================================================== */
#define KILN_KV_BLOCK 16

typedef struct kiln_ctx kiln_ctx;

typedef struct kiln_ctx_opts {
    int max_seqs;  /* sequences alive at once (default 1) */
    int n_ctx;     /* max tokens per sequence (default: min(max_position_embeddings, 4096)) */
    int kv_blocks; /* total KV blocks (default: max_seqs * ceil(n_ctx / KILN_KV_BLOCK)) */
    kiln_dtype kv_type; /* what the KV cache stores: KILN_DT_F32, F16, BF16 or Q8_0 (llama.cpp's q8_0 KV: blocks
                           of 32 along head_dim with an f16 scale; head_dim % 32 == 0); attention reads it
                           directly. Default KILN_KV_TYPE_DEFAULT; a zeroed struct means f32 */
    int max_step_tokens; /* models with sliding-window layers: the most tokens of one sequence a forward step
                            computes at once (0: KILN_KV_WINDOW_STEP); kiln_forward runs a longer batch in
                            rounds, same results. It bounds the window layers' cache (kiln_kv_window_blocks).
                            Without window layers a step is never split and this has no effect */
} kiln_ctx_opts;
#define KILN_KV_WINDOW_STEP 512
/* The default KV cache format (docs/performance.md says why), and its name for help texts. */
#define KILN_KV_TYPE_DEFAULT KILN_DT_F16
#define KILN_KV_TYPE_DEFAULT_NAME "f16"
void kiln_ctx_opts_default(kiln_ctx_opts *o);

kiln_ctx *kiln_ctx_new(kiln_model *m, const kiln_ctx_opts *opts, kiln_err *err);
void kiln_ctx_free(kiln_ctx *c);
int kiln_ctx_n_ctx(const kiln_ctx *c);
kiln_model *kiln_ctx_model(const kiln_ctx *c); /* the model it was made for */
size_t kiln_ctx_kv_bytes(const kiln_ctx *c);   /* bytes allocated for the KV cache */
kiln_dtype kiln_ctx_kv_type(const kiln_ctx *c);
/* KV cache bytes one token takes (K and V, every layer) in format kv_type; 0 when the cache cannot hold
 * that format at this head_dim (see kiln_ctx_opts.kv_type). */
int64_t kiln_kv_bytes_per_token(int n_layers, int n_kv_heads, int head_dim, kiln_dtype kv_type);
/* The KV cache has two pools of blocks. The global layers keep every position of a sequence: kv_blocks
 * blocks, reserved per position as today (kiln_ctx_free_blocks / total_blocks count these). The
 * sliding-window layers keep only the blocks a later query can still see, at most
 * kiln_kv_window_blocks(sliding_window, n_ctx, max_step_tokens) per sequence, so their pool is a fixed
 * max_seqs times that and can never run out. */
int kiln_ctx_free_blocks(const kiln_ctx *c);   /* global-layer KV blocks on the free list */
int kiln_ctx_total_blocks(const kiln_ctx *c);
int kiln_ctx_window_free_blocks(const kiln_ctx *c); /* the window layers' pool (0 / 0 without window layers) */
int kiln_ctx_window_total_blocks(const kiln_ctx *c);
size_t kiln_ctx_block_bytes(const kiln_ctx *c);    /* one global-pool block (0 when every layer is windowed) */
size_t kiln_ctx_kv_bytes_used(const kiln_ctx *c);  /* bytes of the blocks in use, both pools */
/* Window-pool blocks one sequence holds at most: the window, the block it ends in and one step's tokens
 * (ceil(n_ctx / KILN_KV_BLOCK) at most; max_step_tokens 0: KILN_KV_WINDOW_STEP); 0 when sliding_window is 0. */
int kiln_kv_window_blocks(int sliding_window, int n_ctx, int max_step_tokens);

int kiln_seq_new(kiln_ctx *c, kiln_err *err); /* returns a sequence id >= 0, or -1 */
void kiln_seq_free(kiln_ctx *c, int seq);      /* releases its blocks (shared ones by refcount) */
int kiln_seq_len(const kiln_ctx *c, int seq);  /* tokens in the cache */
/* Keeps the first n tokens. With sliding-window layers the cache no longer holds what the window has
 * passed, so going back to n works only while it still holds the window before n (kiln_seq_reusable);
 * otherwise this fails naming why and changes nothing (truncate to 0 and prefill again). */
int kiln_seq_truncate(kiln_ctx *c, int seq, int n_tokens, kiln_err *err);
/* New sequence whose first n_tokens reuse src's KV (every block shared; a partial last block is copied when
 * either writes into it); the same condition as kiln_seq_truncate. */
int kiln_seq_fork(kiln_ctx *c, int src, int n_tokens, kiln_err *err);
/* How many of seq's first n tokens (n <= kiln_seq_len) a truncate or fork can keep: n when the cache still
 * holds every position a query after them sees (always without window layers, or when n is 0), else 0:
 * the window's KV before n is gone and only a fresh prefill brings it back. -1: no such sequence. */
int kiln_seq_reusable(const kiln_ctx *c, int seq, int n);

typedef struct kiln_batch {
    int n_seqs;
    const int *seq;        /* [n_seqs] sequence ids, distinct */
    const int *n_tokens;   /* [n_seqs] new tokens per sequence, >= 1 (prefill: many; decode: 1) */
    const int32_t *tokens; /* concatenated new tokens, sum(n_tokens) of them */
    bool logits_all;       /* false: logits of each sequence's last new token; true: of every new token */
    float *logits;         /* out: [n_out][vocab_size], n_out = n_seqs or sum(n_tokens) */
} kiln_batch;

/* One forward step over a batch of sequences (prefill and decode may be mixed). Fails cleanly (no
 * partial state change) when a sequence would exceed n_ctx or the cache is out of blocks. */
int kiln_forward(kiln_ctx *c, const kiln_batch *b, kiln_err *err);
/* kiln_forward that returns, instead of logits (b->logits is ignored and may be NULL), the final hidden
 * states after the final norm, [n_out][hidden_size] into hidden, for the same tokens: what embedding
 * models pool. The KV cache advances as with kiln_forward. */
int kiln_forward_hidden(kiln_ctx *c, const kiln_batch *b, float *hidden, kiln_err *err);

/* ===================================================================================================
 * Tokenizer (src/tokenizer/): tokenizer.json + tokenizer_config.json, byte-exact with HF transformers
 * =================================================================================================== */
typedef struct kiln_tokenizer kiln_tokenizer;

/* dir holds tokenizer.json (+ tokenizer_config.json); a model dir or a tokenizer-only dir. */
kiln_tokenizer *kiln_tokenizer_open(const char *dir, kiln_err *err);
void kiln_tokenizer_free(kiln_tokenizer *t);

/* Encodes text (len bytes, may contain NUL). add_special: add special tokens as tokenizer(text) does
 * (post-processor, add_bos_token). *ids is malloc'd. */
int kiln_encode(const kiln_tokenizer *t, const char *text, size_t len, bool add_special, int32_t **ids,
                size_t *n_ids, kiln_err *err);
/* Decodes ids to UTF-8 text (malloc'd, NUL-terminated, length in *out_len if non-NULL); NULL when out of
 * memory. */
char *kiln_decode(const kiln_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, size_t *out_len);

size_t kiln_tokenizer_vocab_size(const kiln_tokenizer *t); /* highest id + 1, added tokens included */
int32_t kiln_token_id(const kiln_tokenizer *t, const char *token); /* vocab or added token, -1 if none */
const char *kiln_token_str(const kiln_tokenizer *t, int32_t id);   /* raw vocab string, NULL if none */
bool kiln_token_is_special(const kiln_tokenizer *t, int32_t id);

/* From tokenizer_config.json (strings NULL when absent; ids -1). */
typedef struct kiln_special_tokens {
    const char *bos_token, *eos_token, *pad_token, *unk_token;
    int32_t bos_id, eos_id, pad_id, unk_id;
} kiln_special_tokens;
const kiln_special_tokens *kiln_tokenizer_specials(const kiln_tokenizer *t);
/* The chat template: name NULL for the default one; NULL if the tokenizer has none. */
const char *kiln_tokenizer_chat_template(const kiln_tokenizer *t, const char *name);

/* Incremental detokenizer for streaming: push ids one at a time, get back only complete UTF-8. */
typedef struct kiln_detok kiln_detok;
kiln_detok *kiln_detok_new(const kiln_tokenizer *t, bool skip_special);
void kiln_detok_free(kiln_detok *d);
/* Decodes what follows ids[0..n) (a prompt) in their context, emitting nothing for them: SentencePiece's
 * " a" after "Once upon" keeps its space, so prompt text + pushed text = the decode of both. 0, or -1
 * when out of memory (then d has no context). */
int kiln_detok_prime(kiln_detok *d, const int32_t *ids, size_t n);
/* Returns the newly completed text after adding id (valid until the next call; length in *len). Both
 * return NULL when out of memory (push: as if id had not been pushed). */
const char *kiln_detok_push(kiln_detok *d, int32_t id, size_t *len);
/* Returns whatever is still held back at the end (incomplete UTF-8 becomes U+FFFD as HF does). */
const char *kiln_detok_flush(kiln_detok *d, size_t *len);

/* ===================================================================================================
 * Chat templates (src/template/): a Jinja interpreter for the templates models publish
 * =================================================================================================== */
/* What one render may make the interpreter do, so that a hostile template is an error, never a crash,
 * a hang or an exhausted machine. A template that breaks a limit fails with a one-line error naming it.
 * A field left 0 takes its default; the defaults are far above what published templates need. */
typedef struct kiln_template_limits {
    size_t max_output_bytes; /* longest string the render may build, the output included */
    size_t max_memory_bytes; /* bytes the interpreter may allocate over the render (values, syntax tree, text) */
    uint64_t max_steps;      /* loop iterations + macro calls + container items compared, searched or printed
                              * + 1 per 4 KB of text scanned (searching, comparing, counting characters) */
    unsigned max_depth;      /* nesting of parsing, expressions, statements, macro calls and printed values
                              * (each level costs C stack: raise it only where the thread's stack allows) */
} kiln_template_limits;
#define KILN_TEMPLATE_MAX_OUTPUT_BYTES ((size_t)4 << 20)
#define KILN_TEMPLATE_MAX_MEMORY_BYTES ((size_t)64 << 20)
#define KILN_TEMPLATE_MAX_STEPS 250000u
#define KILN_TEMPLATE_MAX_DEPTH 500u

/* Renders template source with variables given as a JSON object (messages, tools, add_generation_prompt,
 * enable_thinking, bos_token, ...) under lim (NULL: the defaults). Errors name the template line and
 * column. Result malloc'd. */
char *kiln_template_render_limited(const char *tmpl, const char *vars_json, const kiln_template_limits *lim,
                                   size_t *out_len, kiln_err *err);
/* kiln_template_render_limited with the default limits. */
char *kiln_template_render(const char *tmpl, const char *vars_json, size_t *out_len, kiln_err *err);
/* Renders the tokenizer's chat template as apply_chat_template does: vars_json's variables plus the
 * tokenizer's special tokens (bos_token, eos_token, ...) unless vars_json sets them; lim as above. */
char *kiln_chat_render_limited(const kiln_tokenizer *t, const char *vars_json, const kiln_template_limits *lim,
                               size_t *out_len, kiln_err *err);
char *kiln_chat_render(const kiln_tokenizer *t, const char *vars_json, size_t *out_len, kiln_err *err);

/* ===================================================================================================
 * Sampling and generation (src/sample/, src/generate/)
 * =================================================================================================== */
/* Generation parameters, with transformers' names and semantics (GenerationConfig). */
#define KILN_GEN_MAX_STOP 16
#define KILN_GEN_MAX_EOS 16
typedef struct kiln_logit_bias {
    int32_t token;
    float bias; /* OpenAI's range -100..100; -100 effectively bans the token, 100 all but forces it */
} kiln_logit_bias;
typedef struct kiln_gen_params {
    int max_new_tokens;       /* default 20 (GenerationConfig.max_length 20 with an empty prompt) */
    int min_new_tokens;       /* EOS and stop strings are suppressed until this many tokens (default 0) */
    bool do_sample;           /* false: greedy argmax (warpers not applied, as in transformers) */
    float temperature;        /* 1.0; 0 means greedy */
    int top_k;                /* 50; 0 disables */
    float top_p;              /* 1.0 disables */
    float min_p;              /* 0 disables */
    float repetition_penalty; /* 1.0 disables (CTRL-style, over prompt + generated ids) */
    float presence_penalty;   /* 0 disables (OpenAI / vLLM: over generated ids only, once per distinct id) */
    float frequency_penalty;  /* 0 disables (OpenAI / vLLM: over generated ids only, per occurrence) */
    uint64_t seed;            /* same seed, same output */
    const char *stop[KILN_GEN_MAX_STOP]; /* stop strings (caller-owned), may span tokens, never emitted */
    int n_stop;
    int32_t eos_ids[KILN_GEN_MAX_EOS]; /* generation ends (finish "eos") on any of these */
    int n_eos;
    int32_t think_end_id; /* "</think>" id for the thinking split; -1: the tokenizer's "</think>" if any;
                           * any other negative value: no split (think tags stay ordinary text) */
    /* OpenAI's logit_bias (caller-owned): added to the logits before every other processor; the sampler
     * refuses ids outside the vocabulary and biases outside -100..100. */
    const kiln_logit_bias *logit_bias;
    int n_logit_bias;
    /* Constrained decoding (see "Constrained decoding" below; both caller-owned, NULL: none): tokens that
     * cannot continue the grammar are masked before sampling, EOS only once it is complete, and the
     * sequence ends (finish "eos") as soon as the output is complete and nothing may follow. grammar_vocab
     * NULL: each sequence builds its own from the tokenizer (share one when generating many). */
    const struct kiln_grammar *grammar;
    const struct kiln_grammar_vocab *grammar_vocab;
    kiln_dtype kv_type; /* KV cache format of the context kiln_generate makes (kiln_ctx_opts.kv_type; default
                           KILN_KV_TYPE_DEFAULT) */
} kiln_gen_params;

/* transformers' GenerationConfig defaults (greedy, 20 new tokens, no EOS ids, no stop strings). */
void kiln_gen_params_default(kiln_gen_params *p);
/* Applies DIR/generation_config.json over p as transformers does (fields present win; a missing file is
 * fine), and the EOS ids of config.json / generation_config.json (int or list). Apply explicit user
 * flags after this call. */
int kiln_gen_params_load(kiln_gen_params *p, const char *model_dir, kiln_err *err);
/* Adds an EOS id unless already present. */
void kiln_gen_params_add_eos(kiln_gen_params *p, int32_t id);

/* Logits processors, in place over n logits; removed tokens become -INFINITY. Exactly transformers'
 * RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper and
 * MinPLogitsWarper (min_tokens_to_keep = 1 as generate() uses; ties at the top-k threshold are kept).
 * Those returning int give -1 (logits untouched) when their working memory cannot be allocated; the
 * sampler below allocates it once, so kiln_sampler_sample never does. */
int kiln_logits_repetition_penalty(float *logits, int n, const int32_t *ids, size_t n_ids, float penalty);
/* OpenAI's presence / frequency penalties (vLLM's semantics): logit[id] -= frequency * count(id) +
 * presence * (count(id) > 0), counting ids[0..n_ids) (the generated ids, not the prompt). */
int kiln_logits_presence_frequency(float *logits, int n, const int32_t *ids, size_t n_ids, float presence,
                                   float frequency);
void kiln_logits_temperature(float *logits, int n, float temperature);
int kiln_logits_top_k(float *logits, int n, int k, int min_keep);
int kiln_logits_top_p(float *logits, int n, float top_p, int min_keep);
int kiln_logits_min_p(float *logits, int n, float min_p, int min_keep);
/* Softmax into probs (may equal logits); -INFINITY gives probability 0. */
void kiln_softmax(const float *logits, float *probs, int n);
int32_t kiln_argmax(const float *logits, int n); /* first maximum, as torch.argmax */

/* The sampler: logit_bias first, then processors in transformers' order (repetition penalty, then the presence / frequency
 * penalties as vLLM places them; then, when sampling, temperature, top-k, top-p, min-p), then argmax or a
 * draw from a seeded xoshiro256** generator. */
typedef struct kiln_sampler kiln_sampler;
kiln_sampler *kiln_sampler_new(const kiln_gen_params *p, int vocab_size, kiln_err *err);
void kiln_sampler_free(kiln_sampler *s);
/* Picks the next token; logits are modified in place. history = prompt + generated ids so far, the
 * first n_prompt of them the prompt. */
int32_t kiln_sampler_sample(kiln_sampler *s, float *logits, const int32_t *history, size_t n_history, size_t n_prompt);

/* Per-sequence generation state: feed it the logits of each step, get the next token, the newly
 * streamable text and whether the sequence finished. Usable by any scheduler (the run loop, the server). */
typedef enum { KILN_FINISH_NONE = 0, KILN_FINISH_EOS, KILN_FINISH_LENGTH, KILN_FINISH_STOP } kiln_finish;
const char *kiln_finish_name(kiln_finish f); /* "eos", "length", "stop" ("" for NONE) */

typedef struct kiln_gen_seq kiln_gen_seq;
typedef struct kiln_gen_step {
    int32_t token;      /* the chosen id (already appended to the sequence) */
    const char *text;   /* newly streamable text: complete UTF-8, never part of a stop string */
    size_t text_len;    /* (valid until the next step) */
    bool thinking;      /* text belongs to the thinking part (before </think>) */
    kiln_finish finish; /* NONE while the sequence goes on */
} kiln_gen_step;
/* prompt: the ids fed to the model (for the repetition penalty and to tell whether the prompt leaves the
 * model inside a <think> block). The tokenizer is borrowed. */
kiln_gen_seq *kiln_gen_seq_new(const kiln_tokenizer *t, const kiln_gen_params *p, const int32_t *prompt,
                               size_t n_prompt, int vocab_size, kiln_err *err);
void kiln_gen_seq_free(kiln_gen_seq *g);
/* One step: processes logits (modified in place), samples, detokenizes, checks eos / stop / length. */
int kiln_gen_seq_step(kiln_gen_seq *g, float *logits, kiln_gen_step *out);
/* Forces a token instead of sampling (used by tests and by prompt-lookup schemes); same bookkeeping. */
int kiln_gen_seq_push(kiln_gen_seq *g, int32_t token, kiln_gen_step *out);
kiln_finish kiln_gen_seq_finish(const kiln_gen_seq *g);
/* Why the last kiln_gen_seq_step / _push failed (a token the grammar does not allow, out of memory). */
const char *kiln_gen_seq_error(const kiln_gen_seq *g);
const int32_t *kiln_gen_seq_ids(const kiln_gen_seq *g, size_t *n); /* generated ids (incl. eos) */
/* Final text split at the LAST </think>, as the Qwen3 recipe: thinking and content, both without the
 * think tags, stop string removed, trimmed of surrounding newlines; malloc'd. */
int kiln_gen_seq_result(const kiln_gen_seq *g, char **content, char **thinking, kiln_err *err);
/* Index just past the last think_end_id in ids, or 0 if there is none (then all of ids is content). */
size_t kiln_think_split(const int32_t *ids, size_t n, int32_t think_end_id);

/* The generation loop: one or many prompts generated together, ONE batched kiln_forward per step. */
typedef struct kiln_gen_stats {
    int prompt_tokens, gen_tokens;
    int reused_tokens;   /* prompt tokens already in the KV cache, not prefilled (kiln_generate_in) */
    double ttft_ms;      /* start → first token chosen (prefill included) */
    double total_ms;     /* start → this sequence finished */
    double decode_tok_s; /* (gen_tokens - 1) / (total - ttft) */
    double peak_rss_mb;
} kiln_gen_stats;
typedef struct kiln_gen_output {
    char *text, *thinking; /* content and thinking text (malloc'd) */
    int32_t *ids;          /* generated ids (malloc'd) */
    size_t n_ids;
    kiln_finish finish;
    kiln_gen_stats stats;
} kiln_gen_output;
void kiln_gen_output_free(kiln_gen_output *o);
/* Called for every token of sequence `index` (in prompt order); return non-zero to stop all sequences
 * now (finish "stop" for those not yet finished; e.g. Ctrl-C). */
typedef int (*kiln_gen_callback)(void *user, int index, const kiln_gen_step *step);
/* Generates for n prompts. out[n] are filled (free each with kiln_gen_output_free). n_ctx 0: the
 * longest prompt + max_new_tokens. t may be NULL: ids in, ids out (no text, stop strings or thinking). */
int kiln_generate(kiln_model *m, const kiln_tokenizer *t, const kiln_gen_params *p, int n,
                  const int32_t *const *prompts, const size_t *n_prompts, kiln_gen_callback cb, void *user,
                  kiln_gen_output *out, kiln_err *err);

/* Generates one sequence in a context the caller keeps (a chat's conversation, a benchmark at depth), so
 * what is already cached is not computed again. The caller vouches that the first n_reuse tokens of seq
 * are prompt[0..n_reuse) (at most kiln_seq_len; the prompt's common prefix with the ids it fed); seq is
 * truncated to them and only the rest of the prompt is prefilled (at least its last token, whose logits
 * pick the first new one). Afterwards seq holds the prompt and every generated token but the last (which
 * was never fed). Filling the context ends generation with finish "length". out->stats.reused_tokens
 * says how much was reused; t, p, cb and user as kiln_generate (index 0); p->kv_type is the context's. */
int kiln_generate_in(kiln_ctx *ctx, int seq, size_t n_reuse, const kiln_tokenizer *t, const kiln_gen_params *p,
                     const int32_t *prompt, size_t n_prompt, kiln_gen_callback cb, void *user, kiln_gen_output *out,
                     kiln_err *err);

/* ===================================================================================================
 * Constrained decoding (src/grammar/)
 *
 * A grammar limits generation to the outputs it derives: at each step every token that cannot continue
 * a valid output is masked to -INFINITY, and EOS is allowed only once the output is complete. All front
 * ends compile to one byte-level grammar (llama.cpp's GBNF semantics); masks are computed over each
 * token's bytes, cached per matcher state, so a state seen before costs one pass over the logits.
 * =================================================================================================== */
typedef struct kiln_grammar kiln_grammar;
/* llama.cpp's GBNF text (`root ::= ...`, literals, [classes], groups, * + ? {m,n}, # comments). */
kiln_grammar *kiln_grammar_from_gbnf(const char *gbnf, kiln_err *err);
/* A JSON Schema (the schema's JSON text). Supported: type (or a list of types), properties, required,
 * additionalProperties (absent: no extra keys once properties are given, as llama.cpp), items,
 * minItems, maxItems, enum, const, minLength, maxLength, pattern, format (date, time, date-time, uuid,
 * email), minimum / maximum / exclusiveMinimum / exclusiveMaximum on integers, anyOf, oneOf (as anyOf), $ref to #/$defs/... or #/definitions/...; annotations (title,
 * description, default, examples, $schema, $id, $comment) are ignored by design. Any other keyword is
 * an error naming it. "{}" or {"type":"object"} is any JSON value / object (json_object mode).
 * Output whitespace: at most one space where JSON allows it. */
kiln_grammar *kiln_grammar_from_json_schema(const char *schema_json, kiln_err *err);
/* The GBNF the schema compiles to (malloc'd), for inspection. */
char *kiln_json_schema_to_gbnf(const char *schema_json, kiln_err *err);
/* A regular expression matched against the whole output: literals, . [classes] \d \w \s (and negations),
 * groups (?:...), |, * + ? {m} {m,} {m,n} (lazy forms match the same); ^ and $ only at the ends. */
kiln_grammar *kiln_grammar_from_regex(const char *regex, kiln_err *err);
/* Exactly one of n strings. */
kiln_grammar *kiln_grammar_from_choice(const char *const *choices, int n, kiln_err *err);
/* Tool calls (tool_choice "required" or a named function): one to max_calls calls, each call_open +
 * {"name": NAME, "arguments": ARGS} + call_close, separated by separator, NAME one of names[] and ARGS
 * valid against parameters[i] (a JSON Schema; NULL or parameters NULL: any object). For Hermes / Qwen
 * templates: "<tool_call>\n", "\n</tool_call>", "\n". */
kiln_grammar *kiln_grammar_from_tools(const char *const *names, const char *const *parameters, int n_tools,
                                      const char *call_open, const char *call_close, const char *separator,
                                      int max_calls, kiln_err *err);
void kiln_grammar_free(kiln_grammar *g);
/* Whether the whole of s[0..n) is derived by the grammar. */
bool kiln_grammar_accepts(const kiln_grammar *g, const char *s, size_t n);

/* Every token's output bytes, sorted for the mask walk: build once per tokenizer (about 0.1 s for a 150k
 * vocabulary) and share it between matchers (read-only). Special tokens are never allowed. */
typedef struct kiln_grammar_vocab kiln_grammar_vocab;
kiln_grammar_vocab *kiln_grammar_vocab_new(const kiln_tokenizer *t, kiln_err *err);
void kiln_grammar_vocab_free(kiln_grammar_vocab *v);
const char *kiln_grammar_vocab_bytes(const kiln_grammar_vocab *v, int32_t id, size_t *len); /* NULL: out of range */

/* One sequence's position in the grammar. v may be NULL for byte-only use (accept_bytes, complete).
 * Both g and v are borrowed and must outlive the matcher. Not thread-safe; one per sequence. */
typedef struct kiln_grammar_matcher kiln_grammar_matcher;
kiln_grammar_matcher *kiln_grammar_matcher_new(const kiln_grammar *g, const kiln_grammar_vocab *v, kiln_err *err);
void kiln_grammar_matcher_free(kiln_grammar_matcher *m);
/* Sets logits[i] = -INFINITY for every id in [0, n) that cannot come next; the eos ids keep their logit
 * only when the output is complete. -1 (err) when no token at all can come next. */
int kiln_grammar_matcher_mask(kiln_grammar_matcher *m, float *logits, int n, const int32_t *eos_ids, int n_eos,
                              kiln_err *err);
int kiln_grammar_matcher_accept_token(kiln_grammar_matcher *m, int32_t id, kiln_err *err); /* -1: not allowed */
int kiln_grammar_matcher_accept_bytes(kiln_grammar_matcher *m, const char *s, size_t n, kiln_err *err);
int kiln_grammar_matcher_accept_eos(kiln_grammar_matcher *m, kiln_err *err); /* -1: not complete yet */
bool kiln_grammar_matcher_complete(const kiln_grammar_matcher *m);     /* the output so far is valid */
bool kiln_grammar_matcher_can_continue(const kiln_grammar_matcher *m); /* some byte may still follow */

/* ===================================================================================================
 * Benchmark reports (src/report/): the statistics, stability verdict, report writers and compare of
 * `kiln bench`. The CLI fills kiln_bench_scenario / kiln_bench_run; everything here is pure data in, text
 * out, so it is unit-tested on injected timings (tests/test_report.c).
 * =================================================================================================== */
/* Summary of n samples. Variance is the POPULATION variance (divide by n): a bench reports the spread of
 * the runs it made, it does not estimate a wider population. Percentiles use linear interpolation between
 * closest ranks (numpy.percentile's default): rank = p/100 * (n-1) over the sorted samples. p90 is
 * reported only with n >= 10 samples and p99 with n >= 100 — below that they are just the max. */
typedef struct kiln_bench_stats {
    int n;
    double mean, var, stddev, min, max, range, median, cv; /* cv = stddev / mean (0 when mean is 0) */
    double p90, p99;
    int has_p90, has_p99;
} kiln_bench_stats;

void kiln_bench_stats_compute(const double *x, int n, kiln_bench_stats *s);

typedef struct kiln_bench_run {
    double total_s;      /* wall time of the whole generation */
    double ttft_s;       /* time to first token: prefill + first sample */
    double prefill_tps;  /* prompt tokens / prefill time */
    double decode_tps;   /* (gen_tokens - 1) / decode time, or gen_tokens / total when only one */
    double tg_tps;       /* pp/tg mode: decode tok/s of a separate run from a 1-token prompt (llama-bench's
                          * tg: no long context to attend over); 0 otherwise */
    int prompt_tokens, gen_tokens;
    size_t rss_bytes, peak_rss_bytes;
    double *itl_s; /* inter-token latencies of the decode steps (malloc'd), n_itl of them */
    int n_itl;
} kiln_bench_run;

typedef struct kiln_bench_scenario {
    char name[128];
    int max_new_tokens, min_new_tokens, sample, batch, prompt_tokens;
    int n_runs;
    kiln_bench_run *runs; /* [n_runs] */
    /* filled by kiln_bench_scenario_finish */
    kiln_bench_stats total, ttft, prefill, decode, itl;
    int pass;
    char why[256]; /* failed conditions, "" on PASS */
} kiln_bench_scenario;

typedef struct kiln_bench_limits {
    double max_range;        /* max (max-min)/mean of total_s, e.g. 0.10 */
    double tps_lo, tps_hi;   /* decode tok/s band; has_tps = 0 when not given */
    int has_tps;
} kiln_bench_limits;

/* Computes the stats and the verdict for one scenario. */
void kiln_bench_scenario_finish(kiln_bench_scenario *sc, const kiln_bench_limits *lim);
void kiln_bench_scenario_free(kiln_bench_scenario *sc);

/* The environment recorded with every report. */
typedef struct kiln_bench_env {
    char cpu_model[256];
    char cpu_flags[512]; /* SIMD-relevant flags only */
    int threads, n_cpus;
    size_t mem_total_bytes;
    char version[32], commit[48];
    char model[1024], dtype[32], date[40];
} kiln_bench_env;
void kiln_bench_env_collect(kiln_bench_env *e, const char *model, const char *dtype, int threads);

typedef struct kiln_bench_report {
    kiln_bench_env env;
    kiln_bench_limits limits;
    int runs, warmup;
    kiln_bench_scenario *sc;
    int n_sc;
    /* llama-bench style mode (pp/tg), or pp_tokens == 0 */
    int pp_tokens, tg_tokens;
    int depth;                 /* tokens already in the KV cache when pp and tg were measured (llama-bench -d) */
    double pp_tok_s, tg_tok_s; /* medians over the runs */
} kiln_bench_report;

int kiln_bench_write_json(const kiln_bench_report *r, FILE *f, kiln_err *err);
void kiln_bench_write_csv(const kiln_bench_report *r, FILE *f);
void kiln_bench_write_markdown(const kiln_bench_report *r, FILE *f);
void kiln_bench_write_html(const kiln_bench_report *r, FILE *f);
void kiln_bench_write_table(const kiln_bench_report *r, FILE *f); /* the human summary */

/* `bench compare`: writes one line per scenario present in both files. Returns 0, or -1 with err. */
typedef struct kiln_bench_cmp {
    char name[128];
    double ratio;    /* median total_s of A / median total_s of B: > 1 means B is faster */
    int outside_noise;
    char text[160];
} kiln_bench_cmp;
int kiln_bench_compare_files(const char *a, const char *b, kiln_bench_cmp **out, int *n, kiln_err *err);

/* ===================================================================================================
 * Server (src/serve/)
 * =================================================================================================== */
/* An OpenAI-compatible HTTP server (libmicrohttpd) over one model, with continuous batching on one
 * engine thread. kiln_server_start listens first (GET /health answers 503 {"status":"loading"} while the
 * model loads) and returns once the model is loaded and requests are served; it serves from its own
 * threads until kiln_server_shutdown. Signals are the caller's business (the CLI waits for SIGTERM/SIGINT). */
typedef struct kiln_server kiln_server;

/* One answered request, for an access log (the library never prints: the caller's callback does). */
typedef struct kiln_server_request_log {
    const char *id;            /* the response id (chatcmpl-..., cmpl-...), "" for other routes */
    const char *method, *path; /* path as requested: at most 200 bytes, control characters as '?' */
    const char *client;        /* the peer's address */
    int status;                /* 499: the client went away before the answer was complete */
    int prompt_tokens, completion_tokens, cached_tokens;
    double ttft_ms;  /* arrival to the first token; -1 when none was generated */
    double total_ms; /* arrival to the last byte sent */
    const char *error; /* the error message of a status >= 400, else NULL */
} kiln_server_request_log;
/* Called from the connection threads (concurrently) once per request, after its last byte. */
typedef void (*kiln_server_log_fn)(void *user, const kiln_server_request_log *e);

typedef struct kiln_server_opts {
    const char *model_dir;
    const char *model_name;   /* comma-separated ids requests may name: the first is the one responses report
                               * (default: the directory's last component); another name is a 404 */
    const char *host;         /* default "127.0.0.1" */
    int port;                 /* 0: any free port (kiln_server_port tells which) */
    const char *api_key;      /* NULL: no authentication; else every route but OPTIONS needs it */
    bool health_public;       /* GET /health without the API key */
    const char *allowed_origins; /* CORS: comma-separated origins, or "*"; NULL: none (no CORS headers) */
    int max_batch;            /* sequences decoded together (default 8) */
    int kv_cache_mb;          /* 0: enough for max_batch full contexts */
    int n_ctx;                /* 0: the engine's default */
    kiln_dtype kv_type;       /* KV cache format (kiln_ctx_opts.kv_type; default KILN_KV_TYPE_DEFAULT) */
    int max_queue;            /* requests waiting for admission before 429 (default 64; 0: no limit) */
    int max_body_kb;          /* request body limit (default 1024) */
    int max_connections;      /* concurrent HTTP connections (default 256) */
    int max_connections_per_ip; /* from one client address (default 128) */
    double read_timeout_s;    /* a request's headers and body must arrive within this many seconds from the
                               * connection (or the previous answer, plus 5 s of keep-alive idling),
                               * however slowly they trickle; the connection is closed otherwise (default 30) */
    double request_timeout_s; /* wall-clock limit per request (default 600) */
    int threads;              /* engine threads (0: default) */
    const char *pooling;      /* /v1/embeddings: "last" (the last token's final hidden state, as decoder embedding
                               * models such as Qwen3-Embedding; the default) or "mean"; L2-normalised */
    const kiln_model_opts *model_opts; /* weight formats / cache (NULL: defaults); threads above wins */
    kiln_server_log_fn log;   /* NULL: no access log */
    void *log_user;
} kiln_server_opts;
void kiln_server_opts_default(kiln_server_opts *o);

kiln_server *kiln_server_start(const kiln_server_opts *o, kiln_err *err);
int kiln_server_port(const kiln_server *s);

/* What the server runs with, for a start-up summary. Strings belong to the server. */
typedef struct kiln_server_info {
    const char *model_name;   /* the id responses report */
    const char *architecture; /* config.json's, e.g. "Qwen3ForCausalLM" */
    const char *stored_dtype; /* the checkpoint's torch_dtype */
    size_t weight_bytes;      /* weights in the compute format */
    int n_ctx, max_batch, kv_blocks, kv_block_tokens, threads;
    bool chat_template; /* the tokenizer has one (else /v1/chat/completions is a 400) */
    bool thinking;      /* it knows <think> (reasoning_content is split off) */
    const char *host;
    int port;
    bool api_key;
} kiln_server_info;
void kiln_server_get_info(const kiln_server *s, kiln_server_info *out);
/* Stops taking new work (requests are answered 503 while in-flight ones finish for up to grace_s
 * seconds), cancels the rest (streams still end with an error event and [DONE]), and stops every thread.
 * Idempotent. */
void kiln_server_shutdown(kiln_server *s, double grace_s);
void kiln_server_free(kiln_server *s); /* shuts down (grace 0) if still running */

/* ===================================================================================================
 * Hub and machine info (src/hub/, src/info/)
 * =================================================================================================== */
/* ORG/NAME (or ORG/NAME@REV) → the cached snapshot directory, offline; NULL if not cached.
 * The returned string stays valid for the life of the process. */
const char *kiln_hub_resolve_model(const char *repo_id);

/* The cache follows huggingface_hub's layout exactly, so Python tools and kiln share downloads:
 *   ROOT/models--ORG--NAME/blobs/<etag>            file contents (LFS: the sha256; else the git blob id)
 *   ROOT/models--ORG--NAME/snapshots/<sha>/<path>  relative symlinks into blobs/
 *   ROOT/models--ORG--NAME/refs/<revision>         the commit sha the revision pointed to
 * ROOT is $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 * ~/.cache/huggingface/hub. Returns it malloc'd. */
char *kiln_hub_cache_root(void);

typedef struct kiln_hub_progress {
    int files_total, files_done;
    int64_t bytes_total, bytes_done; /* bytes_total may grow as sizes become known */
} kiln_hub_progress;

typedef struct kiln_hub_opts {
    const char *endpoint;  /* NULL: $HF_ENDPOINT, else https://huggingface.co */
    const char *revision;  /* NULL: "main" */
    const char *const *include; /* fnmatch globs; a file is fetched if it matches any (none: all) */
    int n_include;
    const char *cache_dir; /* NULL: kiln_hub_cache_root() */
    const char *local_dir; /* non-NULL: plain files in this directory instead of the cache */
    const char *token;     /* NULL: $HF_TOKEN */
    int parallel;          /* concurrent downloads; 0: 4 */
    bool offline;          /* also when $HF_HUB_OFFLINE is 1/true/yes */
    /* Called (serialised, from download threads) as bytes arrive; may be NULL. */
    void (*progress)(void *ud, const kiln_hub_progress *p);
    void *progress_ud;
} kiln_hub_opts;

typedef struct kiln_hub_result {
    char sha[65];          /* the commit */
    char dir[4096];        /* snapshot directory (or the local dir) */
    int n_files;           /* files in the selection */
    int n_downloaded;      /* files that needed a transfer */
    int64_t bytes_downloaded;
    int n_unverified;      /* files the hub gave no hash for: checked by size only */
    char unverified[1024]; /* their names, comma-separated (cut short at the end of the buffer) */
} kiln_hub_result;

/* Downloads (the selected files of) repo_id at a revision. Files already in the cache are not fetched
 * again but re-verified; interrupted downloads resume with HTTP Range (Content-Range checked); every file
 * is checked against the hash the hub gives (sha256 for LFS files, the git blob id for small ones) and its
 * listed size, and arrives in the snapshot only when complete and verified. repo_id is ORG/NAME (or ORG%2FNAME, sent as
 * given, for mirrors that want it). */
int kiln_hub_pull(const char *repo_id, const kiln_hub_opts *o, kiln_hub_result *res, kiln_err *err);

typedef struct kiln_hub_entry {
    char repo_id[256];
    char revisions[256];   /* "main,v1" (the refs pointing at sha; empty when none) */
    char sha[65];          /* newest snapshot */
    int n_files;           /* files in that snapshot */
    int64_t size;          /* bytes of all blobs */
    char path[4096];       /* the repo's cache folder */
} kiln_hub_entry;
/* Cached models under cache_dir (NULL: the default root), sorted by repo id; *out malloc'd. */
int kiln_hub_list(const char *cache_dir, kiln_hub_entry **out, size_t *n, kiln_err *err);
/* Removes a cached model (its whole models--ORG--NAME folder and its .locks/ entry). */
int kiln_hub_remove(const char *cache_dir, const char *repo_id, kiln_err *err);

/* Machine description for `kiln info` (src/info/). */
typedef struct kiln_machine {
    char cpu_model[128];
    int cores, threads;
    char features[512];          /* SIMD features from CPUID (usable by the OS), /proc/cpuinfo spelling */
    char cpuinfo_features[512];  /* the same feature list as /proc/cpuinfo reports it */
    int64_t mem_total, mem_available; /* bytes */
    char thp[16];                /* transparent hugepages: always / madvise / never / "" */
    int64_t hugepages_total, hugepage_size;
} kiln_machine;
void kiln_machine_probe(kiln_machine *m);
/* The kernel set kiln runs here, chosen once from CPUID ("avx512", "avx2", "scalar", ...). */
const char *kiln_kernel_set(void);
/* Memory read bandwidth in bytes/s: sums a buffer of `bytes` with n_threads threads, best pass, within
 * about `seconds` in all (setup included; at least one pass). */
double kiln_measure_read_bw(size_t bytes, int n_threads, double seconds);
/* kiln's f32 matmul throughput in GFLOP/s on rows×cols weights × n tokens, best of the runs that fit in
 * about `seconds` (at least one). */
double kiln_measure_matmul_gflops(int rows, int cols, int n, int n_threads, double seconds);

/* What decoding a model costs in memory traffic, from config.json and the safetensors headers alone
 * (no weights read; the loader's shard index, tensor list and format policy, so every figure is the bytes
 * a load holds). Per-token weight bytes count every weight read once per decoded token: all of them
 * except an untied input embedding, of which one row is read, and of a mixture of experts only the
 * n_experts_used experts per layer a token is routed to. */
typedef struct kiln_model_stats {
    int64_t params;
    char checkpoint_dtype[16];          /* the storage type of most weights: "bf16", "f32", ... */
    int64_t checkpoint_bytes;           /* all tensors as stored */
    int64_t checkpoint_bytes_per_token; /* weight bytes per decoded token of the default (zero-copy) load:
                                           matrices as stored, norms and biases in f32 */
    int64_t bytes_per_token[KILN_QUANT_END]; /* the same for a load in each format (--dtype f32/f16/bf16,
                                               --quant: index = the quant value, the mixes after the
                                               block formats), as kiln_model_weight_bytes counts it:
                                               norms and biases stay f32, matrices whose rows are not
                                               whole 32-blocks get f32 under q8_0/q4_0, and q4_0 keeps the
                                               output projection in q8_0 */
    /* KV cache in format kv_type (default KILN_KV_TYPE_DEFAULT; kiln_model_stats_kv sets another): K and V
     * of every global layer per token of a sequence, and the sliding-window layers' fixed cost per sequence
     * (kv_window_blocks blocks of KILN_KV_BLOCK tokens, kiln_kv_window_blocks at max_position_embeddings). */
    kiln_dtype kv_type;
    int64_t kv_bytes_per_token;
    int64_t kv_window_bytes_per_seq;
    int n_layers, n_kv_heads, head_dim, max_position_embeddings;
    int n_window_layers, sliding_window, kv_window_blocks;
} kiln_model_stats;
int kiln_model_stats_load(const char *dir, kiln_model_stats *s, kiln_err *err);
/* Sets the KV figures of s for format kv_type; -1 when that format cannot hold the model's heads. */
int kiln_model_stats_kv(kiln_model_stats *s, kiln_dtype kv_type);

#ifdef __cplusplus
}
#endif
#endif /* KILN_H */

/* serve.h — the server's internal pieces and the one request object they share.
 *
 * Threads: libmicrohttpd runs one thread per connection (http.c); each parses its request (openai.c),
 * submits a serve_req to the scheduler and then waits on the request's condition variable, writing
 * whatever the engine produced so far (SSE) or, at the end, the whole response. ONE engine thread
 * (scheduler.c) owns the model context: it admits queued requests between steps, runs one kiln_forward
 * over all running sequences, samples, and appends text to each request under the request's mutex.
 * The HTTP side never touches the context; the engine side never touches a socket. */
#ifndef KILN_SERVE_H
#define KILN_SERVE_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/strbuf.h"
#include "kiln.h"

/* Where a request parser reports a 400: the message and the offending parameter. */
typedef struct perr {
    char *msg;
    size_t msg_size;
    char *param;
    size_t param_size;
} perr;
/* printf-style: fills e (param may be NULL) and returns 400 — or 500 when the message reports an allocation
 * failure (kiln_err_is_nomem) — so a parser can `return perr_set(...)`. */
int perr_set(perr *e, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

typedef enum { REQ_CHAT, REQ_COMPLETION, REQ_EMBED } serve_kind;
typedef enum { FIN_NONE, FIN_STOP, FIN_LENGTH, FIN_ERROR, FIN_CANCELLED, FIN_TIMEOUT } serve_finish;

/* One generated token's log-probabilities (requested with logprobs). */
#define SERVE_MAX_TOP_LOGPROBS 20
#define SERVE_MAX_CHOICES 16 /* n and best_of */
#define SERVE_MAX_INPUTS 256 /* /v1/embeddings inputs per request */
typedef struct serve_logprob {
    int32_t id;
    float logprob;
    int n_top;
    int32_t top_id[SERVE_MAX_TOP_LOGPROBS];
    float top_lp[SERVE_MAX_TOP_LOGPROBS];
} serve_logprob;

/* One function call the model made (OpenAI's tool_calls entry): arguments as JSON text. */
typedef struct serve_tool_call {
    char *name, *arguments;
} serve_tool_call;

typedef struct serve_req {
    /* --- input: written by the HTTP thread before submit, read-only afterwards --- */
    serve_kind kind;
    int32_t *prompt; /* token ids */
    int n_prompt;
    strbuf prompt_text; /* completions: the prompt string as sent (what echo returns); empty for ids */
    int max_tokens; /* -1: up to the context */
    kiln_gen_params gen; /* sampling, stop strings, EOS ids, thinking split: what kiln_gen_seq runs on */
    char **stop;         /* storage for gen.stop */
    int n_stop;
    bool stream, include_usage;
    bool logprobs;
    int top_logprobs;
    bool split_thinking;   /* route text inside <think>...</think> to reasoning_content */
    bool echo;             /* completions: prepend the prompt text */
    bool return_token_ids; /* vLLM's extension: token_ids / prompt_token_ids in the choice */
    bool has_tools;        /* chat with tools: tool calls in the answer become tool_calls */
    char **tools;          /* names of the functions offered (a bare JSON call must name one of them) */
    int n_tools;
    kiln_grammar *grammar;  /* constrained decoding (gen.grammar points here); freed with the request */
    const char *grammar_field; /* the request field it came from (for "only one of" errors) */
    kiln_logit_bias *bias;  /* storage for gen.logit_bias */
    int n_choices, best_of;   /* n and best_of (>= n): best_of requests are generated, n answered */
    int index;                /* this choice's index among them (0: the request the HTTP side parsed) */
    const struct serve_req *fork_from; /* choices 1..: choice 0, whose prefill they fork (identity only:
                                        * the scheduler compares it, never dereferences it) */
    struct serve_req **more;  /* choice 0 only: references to choices 1 .. best_of-1 */
    int n_more;
    bool mean_pooling;        /* REQ_EMBED: mean over the tokens, else the last token's state */
    int dimensions;           /* REQ_EMBED: leading dimensions kept (0: all) */
    bool base64;              /* REQ_EMBED: encoding_format "base64" */
    bool responses;           /* asked through /v1/responses: answered in that API's shape */
    bool rank;                /* track cum_logprob (best_of > n) */
    double timeout_s;      /* wall-clock limit from submit */
    char id[48];
    long created;

    /* --- shared state: guarded by mu, signalled on cv --- */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    strbuf content;   /* answer text so far */
    strbuf reasoning; /* thinking text so far (split_thinking) */
    serve_tool_call *calls; /* complete tool calls parsed from the answer so far */
    int n_calls, cap_calls;
    serve_logprob *lp; /* one per generated token when logprobs */
    int n_lp, cap_lp;
    int n_gen;         /* generated tokens */
    double cum_logprob; /* sum of the generated tokens' logprobs (rank, logprobs) */
    float *embedding;   /* REQ_EMBED: the pooled hidden state (hidden_size floats), not yet normalised */
    int32_t *gen_ids;  /* [n_gen] when return_token_ids */
    int n_cached;      /* prompt tokens served from the prefix cache */
    bool done;
    serve_finish finish;
    int err_status; /* HTTP status when the engine fails the request (finish == FIN_ERROR) */
    char err_msg[256];
    bool cancelled; /* set by the HTTP side when the client went away */
    int refs;       /* HTTP thread + scheduler; the last one frees */
    double t_submit, t_first, t_last;
} serve_req;

serve_req *serve_req_new(void);
void serve_req_unref(serve_req *r);
const char *serve_finish_name(serve_finish f);

/* ---------- metrics.c: Prometheus counters and histograms (thread-safe) ---------- */
typedef struct serve_metrics serve_metrics;
serve_metrics *metrics_new(void);
void metrics_free(serve_metrics *m);
void metrics_request(serve_metrics *m, const char *endpoint, int status);
void metrics_tokens(serve_metrics *m, int prompt, int generated, int cached);
void metrics_ttft(serve_metrics *m, double s);
void metrics_tpot(serve_metrics *m, double s);
void metrics_e2e(serve_metrics *m, double s);
/* Gauges the scheduler sets after each step. */
void metrics_gauges(serve_metrics *m, int queued, int running, int kv_used, int kv_total, int cached_seqs);
/* ... and the sliding-window layers' pool (blocks), and the bytes of both pools. */
void metrics_kv(serve_metrics *m, int window_used, int window_total, int64_t bytes_used, int64_t bytes_total);
char *metrics_render(serve_metrics *m); /* Prometheus text format, malloc'd */

/* ---------- prefix_cache.c: finished prompts kept in the KV cache for reuse ---------- */
/* Entries are sequences the scheduler no longer runs, keyed by a chain of hashes over their full
 * KILN_KV_BLOCK-token blocks (block i's hash covers blocks 0..i), so a lookup compares whole blocks. */
typedef struct prefix_cache prefix_cache;
prefix_cache *prefix_cache_new(int max_entries);
void prefix_cache_free(prefix_cache *pc, kiln_ctx *ctx); /* frees the cached sequences too */
/* Longest cached match for tokens[0..n) that ctx can still serve (kiln_seq_reusable: with sliding-window
 * layers only a match reaching close to an entry's end): returns the sequence to fork from and sets
 * *n_match (a multiple of KILN_KV_BLOCK), or -1 when nothing matches. Marks the entry as recently used. */
int prefix_cache_lookup(prefix_cache *pc, const kiln_ctx *ctx, const int32_t *tokens, int n, int *n_match);
/* Hands sequence seq (whose cache holds tokens[0..n)) to the cache. It is truncated to its full blocks;
 * a sequence that adds nothing over an existing entry is freed instead, an entry it extends (and serves
 * every prefix of) is replaced. The cache owns seq afterwards. */
void prefix_cache_insert(prefix_cache *pc, kiln_ctx *ctx, int seq, const int32_t *tokens, int n);
/* Frees the least recently used entry; returns false when the cache is empty. */
bool prefix_cache_evict(prefix_cache *pc, kiln_ctx *ctx);
int prefix_cache_count(const prefix_cache *pc);
uint64_t prefix_block_hash(uint64_t prev, const int32_t *tokens); /* one block's chained hash */

/* ---------- request_output.c: from logits to the text a request sees ---------- */
/* Per-request state around the library's kiln_gen_seq (sampling, stop strings, EOS, incremental
 * detokenization and the <think> split all live there): adds what only the API needs — logprobs,
 * routing text to content / reasoning_content (chat trims the newlines around each part as
 * kiln_gen_seq_result does), and tool calls pulled out of the content as they complete. */
typedef struct req_output req_output;
req_output *output_new(serve_req *r, const kiln_tokenizer *tok, int vocab, kiln_err *err);
void output_free(req_output *o);
/* Picks the next token from logits[vocab] (modified in place); fills lp when the request asked for
 * logprobs (raw model log-probabilities, as vLLM reports them). No lock needed. */
int output_sample(req_output *o, serve_req *r, float *logits, kiln_gen_step *step, serve_logprob *lp);
/* Why output_sample failed (a grammar with no token left to allow, out of memory). */
const char *output_error(const req_output *o);
/* Same bookkeeping for a token chosen elsewhere (tests). */
int output_force(req_output *o, int32_t token, kiln_gen_step *step);
/* Publishes the step to r (caller holds r->mu): token count, ids, logprob, text. Returns FIN_STOP (EOS or
 * a stop string), FIN_LENGTH (max_tokens) or FIN_NONE. At FIN_STOP / FIN_LENGTH everything held back is
 * released; output_flush does the same for a request that ends otherwise (timeout). */
serve_finish output_push(req_output *o, serve_req *r, const kiln_gen_step *step, const serve_logprob *lp);
void output_flush(req_output *o, serve_req *r);
/* Generated ids so far (EOS included). */
const int32_t *output_ids(const req_output *o, size_t *n);

/* ---------- model_watch.c: the mapped weight files changed underneath? ---------- */
typedef struct model_watch model_watch;
/* Records every *.safetensors in dir and cache_path (the quant cache; NULL: none) as they are now. */
model_watch *model_watch_new(const char *dir, const char *cache_path, kiln_err *err);
/* 0 while each file is as recorded (or replaced by a new inode: harmless); -1 with err naming the file
 * when one changed size or content in place. NULL w: always 0. */
int model_watch_check(const model_watch *w, kiln_err *err);
int model_watch_count(const model_watch *w);
void model_watch_free(model_watch *w);

/* ---------- scheduler.c: continuous batching on one engine thread ---------- */
typedef struct serve_sched serve_sched;
typedef struct serve_sched_opts {
    int max_batch;    /* sequences decoded together */
    int max_queue;    /* requests waiting for admission before 429; 0: no limit */
    int kv_cache_mb;  /* 0: the engine's default (every slot can hold a full context) */
    int n_ctx;        /* 0: the engine's default */
    kiln_dtype kv_type; /* KV cache format (kiln_ctx_opts.kv_type) */
    int prefill_chunk;/* prompt tokens per step across all prefills */
    const model_watch *watch; /* checked before every step (NULL: none) */
} serve_sched_opts;
serve_sched *sched_new(kiln_model *model, const kiln_tokenizer *tok, serve_metrics *metrics,
                       const serve_sched_opts *o, kiln_err *err);
/* Queues r (taking a reference). Returns 0, or -1 when the queue is full (caller answers 429). */
int sched_submit(serve_sched *s, serve_req *r);
/* Queues rs[0..n) together: one request's choices (n, best_of) or inputs (embeddings), counted as one
 * against max_queue. 0, or -1 (none queued). */
int sched_submit_all(serve_sched *s, serve_req *const *rs, int n);
/* Whether the engine stopped because the model files changed (why: the message). */
bool sched_broken(serve_sched *s, char *why, size_t size);
/* Wakes the engine so it notices r->cancelled promptly. */
void sched_poke(serve_sched *s);
int sched_n_ctx(const serve_sched *s);
int sched_total_blocks(const serve_sched *s);
double sched_retry_after(serve_sched *s); /* seconds a rejected client should wait */
/* Stops the engine thread: finishes whatever is still queued or running as cancelled (waking its
 * waiters) and joins. Afterwards submit fails and poke does nothing; sched_free releases the memory. */
void sched_stop(serve_sched *s);
void sched_free(serve_sched *s);

/* ---------- openai.c: request parsing and response shapes ---------- */
typedef struct serve_model_info {
    const char *name;     /* the id responses echo (names[0]) */
    const char *const *names; /* every id a request may name (--served-model-name aliases) */
    int n_names;
    const kiln_tokenizer *tok;
    int n_ctx;
    bool thinking;        /* the chat template knows enable_thinking / <think> */
    kiln_gen_params defaults; /* generation_config.json as vLLM applies it: what a request omits */
    const kiln_grammar_vocab *grammar_vocab; /* built once at load, shared read-only by every request */
    int vocab;            /* the model's logits per token (logit_bias ids must be below it) */
    int hidden;           /* hidden_size: an embedding's length */
    bool mean_pooling;    /* --pooling mean */
} serve_model_info;

/* ---------- constrain.c: the request fields that constrain decoding ---------- */
/* response_format, guided_json / guided_regex / guided_choice / guided_grammar (vLLM), grammar /
 * json_schema (llama.cpp) and logit_bias → r->grammar / r->bias, wired into r->gen. At most one grammar
 * field per request. 0, or 400 with e. */
int constrain_parse(const serve_model_info *mi, json_t *o, serve_req *r, perr *e);
/* tool_choice / parallel_tool_calls for a chat request offering tools (a list, possibly empty):
 * "required" or a named function compiles a tool-call grammar; *offer is false for "none" (the tools stay
 * out of the prompt). 0, or 400 with e. */
int constrain_tools(json_t *o, json_t *tools, serve_req *r, bool *offer, perr *e);

/* Parses a /v1/chat/completions or /v1/completions body into r. On failure returns the HTTP status
 * (400) and writes the message and the offending parameter into msg / param. */
int openai_parse(const serve_model_info *mi, serve_kind kind, const char *body, size_t len, serve_req *r,
                 char *msg, size_t msg_size, char *param, size_t param_size);
/* An OpenAI error body: {"error":{"message","type","param","code"}}. malloc'd. */
char *openai_error_json(int status, const char *msg, const char *param);
/* Whether a request's "model" names this server's model (one of mi->names). */
bool openai_model_known(const serve_model_info *mi, const char *name);
/* Checks and normalises chat messages in place for template tmpl: content parts joined, content null on
 * an assistant turn rendered as "", tool-call arguments given as JSON text parsed into objects; for a
 * template that cannot show tool calls, calls and results rewritten as Hermes-style text. *out: the
 * messages to render (a new reference). 0, or 400 with msg / param. */
int openai_chat_messages(json_t *msgs, const char *tmpl, json_t **out, char *msg, size_t msg_size, char *param,
                         size_t param_size);
/* POST /tokenize and /detokenize bodies (vLLM's shapes) → *out (malloc'd JSON); 0 or the HTTP status. */
int openai_tokenize(const serve_model_info *mi, const char *body, size_t len, char **out, char *msg, size_t msg_size,
                    char *param, size_t param_size);
int openai_detokenize(const serve_model_info *mi, const char *body, size_t len, char **out, char *msg,
                      size_t msg_size, char *param, size_t param_size);
/* POST /v1/embeddings: input i becomes choice i of r (r itself, then r->more), kind REQ_EMBED. 0 or the
 * HTTP status with msg / param. */
int openai_embeddings_parse(const serve_model_info *mi, const char *body, size_t len, serve_req *r, char *msg,
                            size_t msg_size, char *param, size_t param_size);
/* The embeddings response once every input is done (no lock held). malloc'd. */
char *openai_embeddings_json(const serve_model_info *mi, serve_req *r);
/* Full non-streaming response for a finished request (caller holds r->mu; r->more are locked in turn),
 * one choice per answer (best_of: the n best). malloc'd. */
char *openai_response_json(const serve_model_info *mi, serve_req *r);
/* One SSE event "data: {...}\n\n" with everything new since the cursors (caller holds r->mu); NULL if
 * nothing new. first: include the role delta. */
typedef struct serve_cursor {
    size_t content, reasoning;
    size_t text_offset; /* completions logprobs: where the next entry starts in the streamed text */
    int lp, calls;
    bool sent_role, sent_finish;
} serve_cursor;
char *openai_stream_chunk(const serve_model_info *mi, serve_req *r, serve_cursor *cur);
/* The final usage-only chunk (stream_options.include_usage). */
char *openai_usage_chunk(const serve_model_info *mi, serve_req *r);
char *openai_models_json(const serve_model_info *mi, long created);
char *openai_model_json(const serve_model_info *mi, const char *id, long created); /* NULL: unknown id */


/* ---------- responses.c: a stateless /v1/responses over the chat path ---------- */
/* Rewrites a Responses API body as the chat request it means and parses that into r (r->responses). */
int openai_responses_parse(const serve_model_info *mi, const char *body, size_t len, serve_req *r, char *msg,
                           size_t msg_size, char *param, size_t param_size);
char *responses_json(const serve_model_info *mi, serve_req *r); /* caller holds r->mu */
/* The SSE events new since cur (response.created, response.output_text.delta, ..., response.completed). */
char *responses_stream_events(const serve_model_info *mi, serve_req *r, serve_cursor *cur);

/* ---------- server.c / http.c ---------- */
#define SERVE_MAX_NAMES 16
typedef struct conn_watch conn_watch; /* http.c: one per connection, for the read deadline */
struct kiln_server {
    kiln_server_opts o;
    kiln_model *model;
    kiln_tokenizer *tok;
    serve_sched *sched;
    serve_metrics *metrics;
    serve_model_info mi;
    kiln_grammar_vocab *grammar_vocab; /* mi.grammar_vocab */
    model_watch *watch;
    char *names_buf; /* o.model_name split at commas */
    const char *names[SERVE_MAX_NAMES];
    char **origins; /* o.allowed_origins split at commas ("*" allowed) */
    int n_origins;
    struct MHD_Daemon *daemon;
    int port;
    long started; /* unix time, for /v1/models */
    pthread_mutex_t mu;
    pthread_cond_t idle;  /* signalled when active drops to 0 */
    int active;           /* generation requests between parse and last byte */
    bool loading;         /* listening, the model not loaded yet: /health 503 "loading", the rest 503 */
    bool draining, stopped;
    /* http.c's read-deadline watchdog */
    pthread_mutex_t watch_mu;
    conn_watch *watches;
    pthread_t watchdog;
    bool watchdog_started, watchdog_stop;
};
/* http.c: starts / stops the libmicrohttpd daemon on s->o.host:s->o.port (sets s->port). */
int http_start(kiln_server *s, kiln_err *err);
void http_stop(kiln_server *s);

#endif

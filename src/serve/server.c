/* server.c — the server's life cycle: load the model and tokenizer, start the engine thread and the
 * HTTP daemon; drain and stop them in the right order. Also the request object. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/serve.h"

serve_req *serve_req_new(void) {
    serve_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->refs = 1;
    r->max_tokens = -1;
    return r;
}

void serve_req_unref(serve_req *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left) return;
    free(r->prompt);
    strbuf_free(&r->prompt_text);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    for (int i = 0; i < r->n_tools; i++) free(r->tools[i]);
    free(r->tools);
    for (int i = 0; i < r->n_more; i++) serve_req_unref(r->more[i]);
    free(r->more);
    free(r->embedding);
    kiln_grammar_free(r->grammar); /* the engine freed its kiln_gen_seq before its unref */
    free(r->bias);
    for (int i = 0; i < r->n_calls; i++) free(r->calls[i].name), free(r->calls[i].arguments);
    free(r->calls);
    strbuf_free(&r->content);
    strbuf_free(&r->reasoning);
    free(r->lp);
    free(r->gen_ids);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

const char *serve_finish_name(serve_finish f) {
    static const char *names[] = {"none", "stop", "length", "error", "cancelled", "timeout"};
    return names[f];
}

void kiln_server_opts_default(kiln_server_opts *o) {
    *o = (kiln_server_opts){.host = "127.0.0.1",
                            .port = 8080,
                            .max_batch = 8,
                            .max_queue = 64,
                            .max_body_kb = 1024,
                            .max_connections = 256,
                            .max_connections_per_ip = 128,
                            .read_timeout_s = 30,
                            .request_timeout_s = 600,
                            .kv_type = KILN_KV_TYPE_DEFAULT};
}

/* Thinking models: the chat template knows about <think> blocks (Qwen3, DeepSeek-R1 distills). */
static bool template_thinks(const kiln_tokenizer *t) {
    const char *tmpl = kiln_tokenizer_chat_template(t, NULL);
    return tmpl && strstr(tmpl, "<think>");
}

/* What a request that omits a field gets, as vLLM applies generation_config.json: its temperature,
 * top_p, top_k, min_p, repetition_penalty and max_new_tokens become the defaults; without them OpenAI's
 * (temperature 1, no top-k: transformers' top_k 50 is a generate() default, not the model's). EOS ids
 * from config.json, generation_config.json and the tokenizer, as `kiln run` uses. */
static int load_defaults(kiln_gen_params *p, const char *dir, const kiln_tokenizer *tok, kiln_err *err) {
    kiln_gen_params_default(p);
    p->top_k = 0;
    p->max_new_tokens = 0; /* 0 after loading: up to the context */
    if (kiln_gen_params_load(p, dir, err)) return -1;
    const kiln_special_tokens *sp = kiln_tokenizer_specials(tok);
    if (sp && sp->eos_id >= 0) kiln_gen_params_add_eos(p, sp->eos_id);
    return 0;
}

/* Splits list (commas; empty parts skipped) into strdup'd parts: 0, -1 out of memory, -2 more than max. */
static int split_list(const char *list, char **out, int max, int *n) {
    *n = 0;
    for (const char *p = list; p && *p;) {
        size_t len = strcspn(p, ",");
        if (len && *n == max) return -2;
        if (len && !(out[(*n)++] = strndup(p, len))) return (*n)--, -1;
        p += len + (p[len] == ',');
    }
    return 0;
}

static int list_error(int rc, const char *what, kiln_err *err) {
    return rc == -2 ? kiln_err_set(err, "%s: at most %d entries", what, SERVE_MAX_NAMES) : kiln_err_set(err, "out of memory");
}

/* The ids requests may name: --served-model-name's list, else the model directory's last component. */
static int split_names(kiln_server *s, kiln_err *err) {
    const char *list = s->o.model_name;
    char base[256];
    if (!list || !*list) {
        size_t n = strlen(s->o.model_dir);
        while (n > 1 && s->o.model_dir[n - 1] == '/') n--;
        size_t b = n;
        while (b > 0 && s->o.model_dir[b - 1] != '/') b--;
        snprintf(base, sizeof base, "%.*s", (int)(n - b), s->o.model_dir + b);
        list = base;
    }
    char *parts[SERVE_MAX_NAMES];
    int n = 0, rc = split_list(list, parts, SERVE_MAX_NAMES, &n);
    if (rc || n == 0) {
        for (int i = 0; i < n; i++) free(parts[i]);
        return rc ? list_error(rc, "--served-model-name", err) : kiln_err_set(err, "--served-model-name: no name given");
    }
    /* one allocation holds them all (names[] points into it) */
    size_t total = 0;
    for (int i = 0; i < n; i++) total += strlen(parts[i]) + 1;
    s->names_buf = malloc(total);
    for (int i = 0, off = 0; s->names_buf && i < n; i++) {
        strcpy(s->names_buf + off, parts[i]);
        s->names[i] = s->names_buf + off;
        off += (int)strlen(parts[i]) + 1;
    }
    for (int i = 0; i < n; i++) free(parts[i]);
    if (!s->names_buf) return kiln_err_set(err, "out of memory");
    s->mi.n_names = n;
    return 0;
}

/* The model, tokenizer and engine: everything requests need, set up while /health says "loading". */
static int load(kiln_server *s, kiln_err *err) {
    const kiln_server_opts *o = &s->o;
    kiln_model_opts mo;
    if (o->model_opts) mo = *o->model_opts;
    else {
        kiln_model_opts_default(&mo);
        mo.quiet = true;
    }
    if (o->threads) mo.threads = o->threads;
    if (!(s->model = kiln_model_open(o->model_dir, &mo, err))) return -1;
    if (!(s->tok = kiln_tokenizer_open(o->model_dir, err))) return -1;
    serve_sched_opts so = {.max_batch = o->max_batch > 0 ? o->max_batch : 8,
                           .max_queue = o->max_queue >= 0 ? o->max_queue : 64,
                           .kv_cache_mb = o->kv_cache_mb,
                           .n_ctx = o->n_ctx,
                           .kv_type = o->kv_type,
                           .prefill_chunk = 512};
    bool reused;
    if (!(s->watch = model_watch_new(o->model_dir, kiln_model_weight_cache(s->model, &reused), err))) return -1;
    so.watch = s->watch;
    if (!(s->sched = sched_new(s->model, s->tok, s->metrics, &so, err))) return -1;
    s->mi.name = s->names[0];
    s->mi.names = s->names;
    s->mi.tok = s->tok;
    s->mi.n_ctx = sched_n_ctx(s->sched);
    s->mi.thinking = template_thinks(s->tok);
    s->mi.vocab = kiln_model_config(s->model)->vocab_size;
    s->mi.hidden = kiln_model_config(s->model)->hidden_size;
    s->mi.mean_pooling = o->pooling && !strcmp(o->pooling, "mean");
    if (!(s->grammar_vocab = kiln_grammar_vocab_new(s->tok, err))) return -1;
    s->mi.grammar_vocab = s->grammar_vocab;
    return load_defaults(&s->mi.defaults, o->model_dir, s->tok, err);
}

/* Listens first, then loads: while the weights load (or convert) /health already answers 503
 * {"status":"loading"}, so a load balancer or orchestrator sees a replica coming up rather than a
 * refused port, and a port that is taken is reported before minutes of loading. */
kiln_server *kiln_server_start(const kiln_server_opts *o, kiln_err *err) {
    kiln_server *s = calloc(1, sizeof *s);
    if (!s) return kiln_err_set(err, "out of memory"), NULL;
    s->o = *o;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle, NULL);
    pthread_mutex_init(&s->watch_mu, NULL);
    s->started = (long)time(NULL);
    s->loading = true;
    if (!(s->metrics = metrics_new())) {
        kiln_err_set(err, "out of memory");
        goto fail;
    }
    if (split_names(s, err)) goto fail;
    if (o->pooling && strcmp(o->pooling, "last") && strcmp(o->pooling, "mean")) {
        kiln_err_set(err, "--pooling: '%s' is not last or mean", o->pooling);
        goto fail;
    }
    s->origins = calloc(SERVE_MAX_NAMES, sizeof *s->origins);
    int rc = s->origins ? split_list(o->allowed_origins, s->origins, SERVE_MAX_NAMES, &s->n_origins) : -1;
    if (rc) {
        list_error(rc, "--allowed-origins", err);
        goto fail;
    }
    if (http_start(s, err) || load(s, err)) goto fail;
    pthread_mutex_lock(&s->mu);
    s->loading = false; /* under mu: the connection threads read it there (http.c life) */
    pthread_mutex_unlock(&s->mu);
    return s;
fail:
    kiln_server_free(s);
    return NULL;
}

int kiln_server_port(const kiln_server *s) { return s->port; }

void kiln_server_get_info(const kiln_server *s, kiln_server_info *out) {
    const kiln_config *cfg = kiln_model_config(s->model);
    *out = (kiln_server_info){.model_name = s->mi.name,
                              .architecture = cfg->architecture,
                              .stored_dtype = kiln_dtype_name(cfg->torch_dtype),
                              .weight_bytes = kiln_model_weight_bytes(s->model),
                              .n_ctx = s->mi.n_ctx,
                              .max_batch = s->o.max_batch > 0 ? s->o.max_batch : 8,
                              .kv_blocks = sched_total_blocks(s->sched),
                              .kv_block_tokens = KILN_KV_BLOCK,
                              .threads = kiln_model_threads(s->model),
                              .chat_template = kiln_tokenizer_chat_template(s->tok, NULL) != NULL,
                              .thinking = s->mi.thinking,
                              .host = s->o.host ? s->o.host : "127.0.0.1",
                              .port = s->port,
                              .api_key = s->o.api_key && *s->o.api_key};
}

/* Waits (bounded) until no generation request is in flight. */
static void wait_idle(kiln_server *s, double seconds) {
    double until = kiln_now() + seconds;
    pthread_mutex_lock(&s->mu);
    while (s->active > 0 && kiln_now() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&s->idle, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
}

/* The drain: the daemon keeps listening and answers new work 503 (a refused connection tells a client
 * nothing); in-flight requests get grace_s, then what is left is cancelled and every stream still gets
 * its error event and [DONE] (a few seconds for the writers) before the sockets close. */
void kiln_server_shutdown(kiln_server *s, double grace_s) {
    pthread_mutex_lock(&s->mu);
    bool first = !s->draining;
    s->draining = true;
    pthread_mutex_unlock(&s->mu);
    if (!first) return;
    wait_idle(s, grace_s);
    if (s->sched) sched_stop(s->sched); /* wakes any waiter left with a cancelled result */
    wait_idle(s, 5);
    if (s->daemon) http_stop(s);       /* joins the connection threads */
    s->stopped = true;
}

void kiln_server_free(kiln_server *s) {
    if (!s) return;
    kiln_server_shutdown(s, 0);
    sched_free(s->sched);
    model_watch_free(s->watch);
    metrics_free(s->metrics);
    kiln_grammar_vocab_free(s->grammar_vocab); /* after the engine: its sequences borrowed it */
    kiln_tokenizer_free(s->tok);
    kiln_model_free(s->model);
    free(s->names_buf);
    for (int i = 0; i < s->n_origins; i++) free(s->origins[i]);
    free(s->origins);
    pthread_mutex_destroy(&s->watch_mu);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->idle);
    free(s);
}

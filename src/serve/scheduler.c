/* scheduler.c — iteration-level continuous batching on ONE engine thread.
 *
 * Each turn of the loop: drop requests that were cancelled or ran out of time (freeing their KV),
 * admit queued requests while there are batch slots and KV blocks for them, then run ONE kiln_forward
 * over every running sequence: decoding sequences contribute their last token, prefilling ones the next
 * chunk of their prompt (chunks share a per-step token budget so a long prompt cannot stall everyone's
 * decode). Sampled tokens go to each request's output under its own mutex; the HTTP threads pick them up.
 *
 * KV accounting: a request is admitted only if the free blocks cover its whole budget (prompt +
 * max_tokens, capped at the context) plus what running requests may still grow into, so a running
 * sequence never runs out of blocks mid-answer (no preemption needed). The prefix cache lends its
 * blocks back: entries are evicted least-recently-used when admission needs room. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/serve.h"

typedef struct running {
    serve_req *r;
    req_output *out;
    int seq;
    int n_prompt_done; /* prompt tokens already in the KV cache */
    int32_t last;      /* the last generated token: the next decode step's input */
    int budget_blocks; /* KV blocks this request may grow to */
} running;

struct serve_sched {
    kiln_model *model;
    const kiln_tokenizer *tok;
    kiln_ctx *ctx;
    serve_metrics *metrics;
    serve_sched_opts o;
    prefix_cache *pc;
    int n_ctx, vocab, total_blocks;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu; /* guards the queue and the flags below */
    pthread_cond_t cv;
    serve_req **queue;
    int n_queue, cap_queue; /* cap grows when max_queue is 0 (no limit) */
    bool stop;
    char broken[512]; /* why the engine stopped running forward passes ("" while it runs) */
    double step_s; /* recent time per engine step, for Retry-After */

    /* engine thread only */
    running *run;
    int n_run;
    float *logits;
    int *b_seq, *b_n;
    int32_t *b_tok;
};

static int blocks_for(int tokens) { return (tokens + KILN_KV_BLOCK - 1) / KILN_KV_BLOCK; }

/* ---- finishing a request ---- */

static void finish(serve_req *r, serve_finish f, int status, const char *msg) {
    pthread_mutex_lock(&r->mu);
    if (!r->done) {
        r->done = true;
        r->finish = f;
        r->err_status = status;
        if (msg) snprintf(r->err_msg, sizeof r->err_msg, "%.250s", msg);
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Ends running request i. A request that finished normally leaves its KV to the prefix cache. */
static void retire(serve_sched *s, int i, serve_finish f, int status, const char *msg) {
    running *x = &s->run[i];
    serve_req *r = x->r;
    pthread_mutex_lock(&r->mu);
    if (f == FIN_TIMEOUT) output_flush(x->out, r); /* stop / length: output_push released everything */
    double now = kiln_now();
    int n_gen = r->n_gen;
    if (n_gen > 0) metrics_e2e(s->metrics, now - r->t_submit);
    if (n_gen > 1) metrics_tpot(s->metrics, (r->t_last - r->t_first) / (n_gen - 1));
    pthread_mutex_unlock(&r->mu);
    metrics_tokens(s->metrics, 0, n_gen, 0);
    /* A request that ended normally leaves prompt + answer to the prefix cache (keyed by those ids). */
    size_t n_ids = 0;
    const int32_t *ids = output_ids(x->out, &n_ids);
    int32_t *toks = f == FIN_STOP || f == FIN_LENGTH ? malloc((r->n_prompt + n_ids) * sizeof *toks) : NULL;
    if (toks) {
        memcpy(toks, r->prompt, (size_t)r->n_prompt * sizeof *toks);
        memcpy(toks + r->n_prompt, ids, n_ids * sizeof *toks);
        int n = r->n_prompt + (int)n_ids, in_kv = kiln_seq_len(s->ctx, x->seq);
        prefix_cache_insert(s->pc, s->ctx, x->seq, toks, in_kv < n ? in_kv : n);
        free(toks);
    } else {
        kiln_seq_free(s->ctx, x->seq);
    }
    finish(r, f, status, msg);
    output_free(x->out);
    serve_req_unref(r);
    s->run[i] = s->run[--s->n_run];
}

/* ---- admission ---- */

/* Blocks that running requests may still claim beyond what they hold now. */
static int growth_blocks(serve_sched *s) {
    int g = 0;
    for (int i = 0; i < s->n_run; i++) {
        int held = blocks_for(kiln_seq_len(s->ctx, s->run[i].seq));
        if (s->run[i].budget_blocks > held) g += s->run[i].budget_blocks - held;
    }
    return g;
}

/* Runs r on seq, whose KV already holds r's first n_done prompt tokens. 1, or -1 (r finished). */
static int start_running(serve_sched *s, serve_req *r, int seq, int n_done, int budget) {
    kiln_err err = {{0}};
    running *x = &s->run[s->n_run];
    *x = (running){.r = r, .seq = seq, .n_prompt_done = n_done, .budget_blocks = budget};
    if (!(x->out = output_new(r, s->tok, s->vocab, &err))) {
        kiln_seq_free(s->ctx, seq);
        finish(r, FIN_ERROR, 500, err.msg);
        return -1;
    }
    s->n_run++;
    pthread_mutex_lock(&r->mu);
    r->n_cached = n_done;
    pthread_mutex_unlock(&r->mu);
    metrics_tokens(s->metrics, r->n_prompt, 0, n_done);
    return 1;
}

/* Choices 1.. of an n / best_of request fork choice 0's prefill (all but its last prompt token, whose
 * logits each choice computes itself): 1 admitted, 0 wait (choice 0 is queued or still prefilling),
 * -1 failed, 2 choice 0 is gone (admit the ordinary way: the prefix cache has its blocks). s->mu held. */
static int admit_fork(serve_sched *s, serve_req *r, int budget) {
    for (int i = 0; i < s->n_queue; i++)
        if (s->queue[i] == r->fork_from) return 0;
    running *src = NULL;
    for (int i = 0; i < s->n_run && !src; i++)
        if (s->run[i].r == r->fork_from) src = &s->run[i];
    /* whole blocks only: a fork that copies a partial block would change KV contents between steps, which
     * the followers of a split server cannot mirror (src/dist/follow.c); at most 15 tokens more to prefill */
    int shared = (r->n_prompt - 1) / KILN_KV_BLOCK * KILN_KV_BLOCK;
    /* identity alone could be a new request at a freed address: the prompt must match too */
    if (!src || src->r->n_prompt != r->n_prompt || memcmp(src->r->prompt, r->prompt, (size_t)(r->n_prompt - 1) * sizeof *r->prompt))
        return 2;
    if (src->n_prompt_done < r->n_prompt) return 0;
    while (budget - shared / KILN_KV_BLOCK > kiln_ctx_free_blocks(s->ctx) - growth_blocks(s))
        if (!prefix_cache_evict(s->pc, s->ctx)) return 0;
    kiln_err err = {{0}};
    int seq = shared > 0 ? kiln_seq_fork(s->ctx, src->seq, shared, &err) : kiln_seq_new(s->ctx, &err);
    if (seq < 0) return prefix_cache_evict(s->pc, s->ctx) ? 0 : 2;
    return start_running(s, r, seq, shared, budget);
}

/* Tries to start r. Returns 1 if admitted, 0 if it must wait, -1 if it failed (already finished). */
static int admit(serve_sched *s, serve_req *r) {
    int budget = blocks_for(r->n_prompt + r->max_tokens < s->n_ctx ? r->n_prompt + r->max_tokens : s->n_ctx);
    if (r->fork_from) {
        int st = admit_fork(s, r, budget);
        if (st != 2) return st;
    }
    for (;;) {
        int n_match = 0;
        int src = prefix_cache_lookup(s->pc, r->prompt, r->n_prompt - 1, &n_match);
        int need = budget - n_match / KILN_KV_BLOCK;
        int avail = kiln_ctx_free_blocks(s->ctx) - growth_blocks(s);
        /* Alone with an empty cache a request always starts: if it can never fit it ends at "length". */
        bool alone = s->n_run == 0 && prefix_cache_count(s->pc) == 0;
        if (need > avail && !alone) {
            if (prefix_cache_evict(s->pc, s->ctx)) continue;
            return 0;
        }
        kiln_err err = {{0}};
        int seq = src >= 0 ? kiln_seq_fork(s->ctx, src, n_match, &err) : kiln_seq_new(s->ctx, &err);
        if (seq < 0) {
            if (prefix_cache_evict(s->pc, s->ctx)) continue; /* out of sequence slots */
            if (s->n_run > 0) return 0;
            finish(r, FIN_ERROR, 500, err.msg);
            return -1;
        }
        return start_running(s, r, seq, n_match, budget);
    }
}

/* An embedding runs whole, here, between steps: its prompt in chunks (the step's token budget) with the
 * final hidden states out, pooled (mean, or the last token's), its sequence freed at once. 0: wait for
 * room; -1: finished (done or failed). Decodes stall for the length of one prefill, as with a prompt. */
static int embed(serve_sched *s, serve_req *r) {
    int need = blocks_for(r->n_prompt);
    while (need > kiln_ctx_free_blocks(s->ctx) - growth_blocks(s))
        if (!prefix_cache_evict(s->pc, s->ctx)) return 0;
    kiln_err err = {{0}};
    int seq;
    while ((seq = kiln_seq_new(s->ctx, &err)) < 0)
        if (!prefix_cache_evict(s->pc, s->ctx)) return s->n_run > 0 ? 0 : (finish(r, FIN_ERROR, 500, err.msg), -1);
    const int H = kiln_model_config(s->model)->hidden_size, chunk = s->o.prefill_chunk;
    float *pooled = calloc((size_t)H, sizeof *pooled), *hid = malloc((size_t)chunk * H * sizeof *hid);
    int rc = pooled && hid ? 0 : kiln_err_set(&err, "out of memory");
    for (int done = 0; !rc && done < r->n_prompt;) {
        int n = r->n_prompt - done < chunk ? r->n_prompt - done : chunk;
        kiln_batch b = {.n_seqs = 1, .seq = &seq, .n_tokens = &n, .tokens = r->prompt + done, .logits_all = r->mean_pooling};
        rc = kiln_forward_hidden(s->ctx, &b, hid, &err);
        for (int t = 0; !rc && t < (r->mean_pooling ? n : 1); t++)
            for (int k = 0; k < H; k++) pooled[k] = r->mean_pooling ? pooled[k] + hid[(size_t)t * H + k] : hid[k];
        done += n;
    }
    for (int k = 0; !rc && r->mean_pooling && k < H; k++) pooled[k] /= (float)r->n_prompt;
    kiln_seq_free(s->ctx, seq);
    free(hid);
    metrics_tokens(s->metrics, r->n_prompt, 0, 0);
    if (rc) {
        free(pooled);
        finish(r, FIN_ERROR, 500, err.msg);
        return -1;
    }
    pthread_mutex_lock(&r->mu);
    r->embedding = pooled;
    pthread_mutex_unlock(&r->mu);
    finish(r, FIN_STOP, 0, NULL);
    return -1;
}

/* Moves queued requests into the running set, in arrival order, while they fit. */
static void admit_queued(serve_sched *s) {
    pthread_mutex_lock(&s->mu);
    while (s->n_queue > 0 && s->n_run < s->o.max_batch) {
        serve_req *r = s->queue[0];
        pthread_mutex_lock(&r->mu);
        bool gone = r->cancelled;
        pthread_mutex_unlock(&r->mu);
        int st = gone ? -1 : r->kind == REQ_EMBED ? embed(s, r) : admit(s, r);
        if (st == 0) break;
        if (gone) finish(r, FIN_CANCELLED, 0, NULL);
        memmove(s->queue, s->queue + 1, (size_t)--s->n_queue * sizeof *s->queue);
        if (st < 0) serve_req_unref(r); /* admitted ones keep the queue's reference in run[] */
    }
    pthread_mutex_unlock(&s->mu);
}

/* Cancelled (client gone) and timed-out requests leave at once, queued ones included. */
static void reap(serve_sched *s) {
    double now = kiln_now();
    pthread_mutex_lock(&s->mu);
    for (int i = s->n_queue - 1; i >= 0; i--) {
        serve_req *r = s->queue[i];
        pthread_mutex_lock(&r->mu);
        bool gone = r->cancelled, late = now - r->t_submit > r->timeout_s;
        pthread_mutex_unlock(&r->mu);
        if (!gone && !late) continue;
        finish(r, gone ? FIN_CANCELLED : FIN_ERROR, 503, "timed out waiting for a free slot: retry later");
        serve_req_unref(r);
        memmove(s->queue + i, s->queue + i + 1, (size_t)(--s->n_queue - i) * sizeof *s->queue);
    }
    pthread_mutex_unlock(&s->mu);
    for (int i = s->n_run - 1; i >= 0; i--) {
        serve_req *r = s->run[i].r;
        pthread_mutex_lock(&r->mu);
        bool gone = r->cancelled, late = now - r->t_submit > r->timeout_s;
        pthread_mutex_unlock(&r->mu);
        if (gone) retire(s, i, FIN_CANCELLED, 0, NULL);
        else if (late) retire(s, i, FIN_TIMEOUT, 0, NULL);
    }
}

/* ---- one engine step ---- */

static void step(serve_sched *s) {
    int nb = 0, nt = 0, budget = s->o.prefill_chunk;
    int which[s->n_run > 0 ? s->n_run : 1];
    /* Decodes first: one token each, so running streams never stall behind a prefill. */
    for (int i = 0; i < s->n_run; i++) {
        running *x = &s->run[i];
        if (x->n_prompt_done < x->r->n_prompt) continue;
        s->b_seq[nb] = x->seq;
        s->b_n[nb] = 1;
        s->b_tok[nt++] = x->last;
        which[nb++] = i;
        budget--;
    }
    for (int i = 0; i < s->n_run && budget > 0; i++) {
        running *x = &s->run[i];
        int left = x->r->n_prompt - x->n_prompt_done;
        if (left <= 0) continue;
        int n = left < budget ? left : budget;
        s->b_seq[nb] = x->seq;
        s->b_n[nb] = n;
        memcpy(s->b_tok + nt, x->r->prompt + x->n_prompt_done, (size_t)n * sizeof *s->b_tok);
        nt += n;
        which[nb++] = i;
        budget -= n;
    }
    if (nb == 0) return;
    kiln_batch b = {.n_seqs = nb, .seq = s->b_seq, .n_tokens = s->b_n, .tokens = s->b_tok, .logits = s->logits};
    kiln_err err = {{0}};
    double t0 = kiln_now();
    /* Visit batch slots by running index, highest first, so retire()'s swap-with-last never moves an
     * entry still to be visited. */
    int order[nb];
    for (int k = 0; k < nb; k++) order[k] = k;
    for (int a = 1; a < nb; a++)
        for (int j = a; j > 0 && which[order[j]] > which[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    if (kiln_forward(s->ctx, &b, &err)) { /* fails without changing state: the batch's requests end */
        for (int q = 0; q < nb; q++) retire(s, which[order[q]], FIN_ERROR, 500, err.msg);
        return;
    }
    double now = kiln_now();
    s->step_s = 0.8 * s->step_s + 0.2 * (now - t0);
    for (int q = 0; q < nb; q++) {
        int k = order[q];
        running *x = &s->run[which[k]];
        serve_req *r = x->r;
        if (x->n_prompt_done < r->n_prompt) {
            x->n_prompt_done += s->b_n[k];
            if (x->n_prompt_done < r->n_prompt) continue; /* more prompt to go */
        }
        serve_logprob lp = {0};
        kiln_gen_step st;
        if (output_sample(x->out, r, s->logits + (size_t)k * s->vocab, &st, &lp)) {
            retire(s, which[k], FIN_ERROR, 500, output_error(x->out));
            continue;
        }
        x->last = st.token;
        pthread_mutex_lock(&r->mu);
        if (r->n_gen == 0) {
            r->t_first = now;
            metrics_ttft(s->metrics, now - r->t_submit);
        }
        r->t_last = now;
        serve_finish f = output_push(x->out, r, &st, r->logprobs || r->rank ? &lp : NULL);
        if (f == FIN_NONE && r->n_prompt + r->n_gen >= s->n_ctx) {
            f = FIN_LENGTH;
            output_flush(x->out, r);
        }
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        if (f != FIN_NONE) retire(s, which[k], f, 0, NULL);
    }
}

static void publish_gauges(serve_sched *s) {
    pthread_mutex_lock(&s->mu);
    int q = s->n_queue;
    pthread_mutex_unlock(&s->mu);
    metrics_gauges(s->metrics, q, s->n_run, s->total_blocks - kiln_ctx_free_blocks(s->ctx), s->total_blocks,
                   prefix_cache_count(s->pc));
}

/* Before each step: are the mapped weights still what was loaded? Once not, nothing touches them again
 * and every request, queued or running, ends with a 503 naming the file. */
static bool engine_broken(serve_sched *s) {
    kiln_err err = {{0}};
    pthread_mutex_lock(&s->mu);
    bool broken = s->broken[0];
    pthread_mutex_unlock(&s->mu);
    if (!broken && model_watch_check(s->o.watch, &err)) {
        pthread_mutex_lock(&s->mu);
        snprintf(s->broken, sizeof s->broken, "%.500s", err.msg);
        pthread_mutex_unlock(&s->mu);
        broken = true;
    }
    if (!broken) return false;
    while (s->n_run) retire(s, s->n_run - 1, FIN_ERROR, 503, s->broken);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_queue; i++) {
        finish(s->queue[i], FIN_ERROR, 503, s->broken);
        serve_req_unref(s->queue[i]);
    }
    s->n_queue = 0;
    pthread_mutex_unlock(&s->mu);
    return true;
}

static void *engine_main(void *arg) {
    serve_sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stop && s->n_queue == 0 && s->n_run == 0) pthread_cond_wait(&s->cv, &s->mu);
        bool stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop) break;
        reap(s);
        if (engine_broken(s)) continue;
        admit_queued(s);
        publish_gauges(s);
        step(s);
        publish_gauges(s);
    }
    /* Shutting down: whatever is left ends as cancelled. */
    while (s->n_run) retire(s, s->n_run - 1, FIN_CANCELLED, 0, NULL);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_queue; i++) {
        finish(s->queue[i], FIN_CANCELLED, 0, NULL);
        serve_req_unref(s->queue[i]);
    }
    s->n_queue = 0;
    pthread_mutex_unlock(&s->mu);
    publish_gauges(s);
    return NULL;
}

/* ---- public ---- */

serve_sched *sched_new(kiln_model *model, const kiln_tokenizer *tok, serve_metrics *metrics,
                       const serve_sched_opts *o, kiln_err *err) {
    serve_sched *s = calloc(1, sizeof *s);
    if (!s) return kiln_err_set(err, "out of memory"), NULL;
    s->model = model;
    s->tok = tok;
    s->metrics = metrics;
    s->o = *o;
    if (s->o.max_batch < 1) s->o.max_batch = 1;
    if (s->o.prefill_chunk < s->o.max_batch) s->o.prefill_chunk = s->o.max_batch + 256;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    /* Sequence slots: the running batch plus as many parked in the prefix cache. */
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.max_seqs = 2 * s->o.max_batch;
    if (o->n_ctx > 0) co.n_ctx = o->n_ctx;
    co.kv_type = o->kv_type;
    if (o->kv_cache_mb > 0) { /* ask the engine what one block costs (its KV format is its business) */
        kiln_ctx_opts probe = co;
        probe.max_seqs = 1;
        probe.n_ctx = KILN_KV_BLOCK;
        probe.kv_blocks = 1;
        kiln_ctx *p = kiln_ctx_new(model, &probe, err);
        if (!p) goto fail;
        double per_block = (double)kiln_ctx_kv_bytes(p) / kiln_ctx_total_blocks(p);
        kiln_ctx_free(p);
        double blocks = (double)o->kv_cache_mb * 1024 * 1024 / (per_block > 0 ? per_block : 1);
        co.kv_blocks = blocks < 1 ? 1 : blocks > 1e8 ? 100000000 : (int)blocks;
    }
    if (!(s->ctx = kiln_ctx_new(model, &co, err))) goto fail;
    const kiln_config *cfg = kiln_model_config(model);
    s->n_ctx = kiln_ctx_n_ctx(s->ctx);
    s->vocab = cfg->vocab_size;
    s->total_blocks = kiln_ctx_total_blocks(s->ctx);
    s->pc = prefix_cache_new(s->o.max_batch);
    s->cap_queue = s->o.max_queue > 0 ? s->o.max_queue : 64;
    s->queue = calloc((size_t)s->cap_queue, sizeof *s->queue);
    s->run = calloc((size_t)s->o.max_batch, sizeof *s->run);
    s->logits = malloc((size_t)s->o.max_batch * (size_t)s->vocab * sizeof *s->logits);
    s->b_seq = malloc((size_t)s->o.max_batch * sizeof *s->b_seq);
    s->b_n = malloc((size_t)s->o.max_batch * sizeof *s->b_n);
    s->b_tok = malloc((size_t)s->o.prefill_chunk * sizeof *s->b_tok);
    if (!s->pc || !s->queue || !s->run || !s->logits || !s->b_seq || !s->b_n || !s->b_tok) {
        kiln_err_set(err, "out of memory");
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, engine_main, s)) {
        kiln_err_set(err, "cannot start the engine thread");
        goto fail;
    }
    s->thread_started = true;
    return s;
fail:
    sched_free(s);
    return NULL;
}

bool sched_broken(serve_sched *s, char *why, size_t size) {
    pthread_mutex_lock(&s->mu);
    bool broken = s->broken[0];
    if (broken) snprintf(why, size, "%s", s->broken);
    pthread_mutex_unlock(&s->mu);
    return broken;
}

int sched_submit(serve_sched *s, serve_req *r) { return sched_submit_all(s, &r, 1); }

int sched_submit_all(serve_sched *s, serve_req *const *rs, int n) {
    pthread_mutex_lock(&s->mu);
    if (s->stop || (s->o.max_queue > 0 && s->n_queue >= s->o.max_queue)) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    while (s->n_queue + n > s->cap_queue) { /* grows: the limit counts requests, not their choices */
        serve_req **q = realloc(s->queue, (size_t)s->cap_queue * 2 * sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&s->mu);
            return -1;
        }
        s->queue = q;
        s->cap_queue *= 2;
    }
    double now = kiln_now();
    for (int i = 0; i < n; i++) {
        pthread_mutex_lock(&rs[i]->mu);
        rs[i]->refs++;
        rs[i]->t_submit = now;
        pthread_mutex_unlock(&rs[i]->mu);
        s->queue[s->n_queue++] = rs[i];
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void sched_poke(serve_sched *s) {
    pthread_mutex_lock(&s->mu);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int sched_n_ctx(const serve_sched *s) { return s->n_ctx; }
int sched_total_blocks(const serve_sched *s) { return s->total_blocks; }

double sched_retry_after(serve_sched *s) {
    pthread_mutex_lock(&s->mu);
    double t = s->step_s * 32 * (1 + s->n_queue / (s->o.max_batch > 0 ? s->o.max_batch : 1));
    pthread_mutex_unlock(&s->mu);
    return t < 1 ? 1 : t > 60 ? 60 : t;
}

void sched_stop(serve_sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->thread_started) pthread_join(s->thread, NULL);
    s->thread_started = false;
}

void sched_free(serve_sched *s) {
    if (!s) return;
    sched_stop(s);
    if (s->ctx) prefix_cache_free(s->pc, s->ctx);
    kiln_ctx_free(s->ctx);
    free(s->queue);
    free(s->run);
    free(s->logits);
    free(s->b_seq);
    free(s->b_n);
    free(s->b_tok);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

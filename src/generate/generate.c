/* generate.c — the generation loop: all prompts together, one batched kiln_forward per step.
 *
 * Step 0 prefills every prompt in one batch; each later step feeds the last token of every sequence
 * still running. Finished sequences leave the batch (their KV blocks are freed at once). */
#include <stdlib.h>
#include <string.h>

#include "kiln.h"

void kiln_gen_output_free(kiln_gen_output *o) {
    if (!o) return;
    free(o->text);
    free(o->thinking);
    free(o->ids);
    memset(o, 0, sizeof *o);
}

/* The output of one finished sequence: rates, peak RSS, ids and text. */
static int finish_output(kiln_gen_output *o, const kiln_gen_seq *g, double rss_mb, kiln_err *err) {
    kiln_gen_stats *s = &o->stats;
    double dt = (s->total_ms - s->ttft_ms) / 1e3;
    s->decode_tok_s = (s->gen_tokens > 1 && dt > 0) ? (s->gen_tokens - 1) / dt : 0;
    s->peak_rss_mb = rss_mb;
    size_t k;
    const int32_t *ids = kiln_gen_seq_ids(g, &k);
    o->ids = malloc((k ? k : 1) * sizeof *ids);
    if (!o->ids || kiln_gen_seq_result(g, &o->text, &o->thinking, err)) return kiln_err_set(err, "generate: out of memory");
    memcpy(o->ids, ids, k * sizeof *ids);
    o->n_ids = k;
    return 0;
}

int kiln_generate(kiln_model *m, const kiln_tokenizer *t, const kiln_gen_params *p, int n,
                  const int32_t *const *prompts, const size_t *n_prompts, kiln_gen_callback cb, void *user,
                  kiln_gen_output *out, kiln_err *err) {
    const kiln_config *cfg = kiln_model_config(m);
    int V = cfg->vocab_size, rc = -1;
    memset(out, 0, (size_t)n * sizeof *out);
    if (n <= 0) return kiln_err_set(err, "generate: no prompts");
    size_t longest = 0, total_prompt = 0;
    for (int i = 0; i < n; i++) {
        if (n_prompts[i] == 0) return kiln_err_set(err, "generate: prompt %d is empty", i);
        if (n_prompts[i] > longest) longest = n_prompts[i];
        total_prompt += n_prompts[i];
    }
    int max_new = p->max_new_tokens > 0 ? p->max_new_tokens : 1;
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.max_seqs = n;
    co.kv_type = p->kv_type;
    co.n_ctx = (int)longest + max_new;
    if (cfg->max_position_embeddings > 0 && co.n_ctx > cfg->max_position_embeddings)
        return kiln_err_set(err, "prompt (%zu tokens) + max new tokens (%d) exceeds the model's context of %d",
                            longest, max_new, cfg->max_position_embeddings);
    double t0 = kiln_now();
    kiln_ctx *ctx = kiln_ctx_new(m, &co, err);
    kiln_gen_seq **gs = calloc((size_t)n, sizeof *gs);
    int *seq = malloc((size_t)n * sizeof *seq), *bseq = malloc((size_t)n * sizeof *bseq);
    int *bn = malloc((size_t)n * sizeof *bn), *who = malloc((size_t)n * sizeof *who);
    int32_t *toks = malloc((total_prompt > (size_t)n ? total_prompt : (size_t)n) * sizeof *toks);
    float *logits = malloc((size_t)n * (size_t)V * sizeof *logits);
    if (!ctx) goto done;
    if (!gs || !seq || !bseq || !bn || !who || !toks || !logits) {
        kiln_err_set(err, "generate: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) seq[i] = -1;
    for (int i = 0; i < n; i++) {
        if ((seq[i] = kiln_seq_new(ctx, err)) < 0) goto done;
        if (!(gs[i] = kiln_gen_seq_new(t, p, prompts[i], n_prompts[i], V, err))) goto done;
        out[i].stats.prompt_tokens = (int)n_prompts[i];
    }
    /* step 0: the prompts */
    int nb = 0;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        bseq[nb] = seq[i];
        bn[nb] = (int)n_prompts[i];
        who[nb++] = i;
        memcpy(toks + off, prompts[i], n_prompts[i] * sizeof *toks);
        off += n_prompts[i];
    }
    bool stop_all = false;
    for (int step = 0; nb > 0; step++) {
        kiln_batch b = {.n_seqs = nb, .seq = bseq, .n_tokens = bn, .tokens = toks, .logits = logits};
        if (kiln_forward(ctx, &b, err)) goto done;
        double now = kiln_now();
        int next = 0;
        for (int j = 0; j < nb; j++) {
            int i = who[j];
            kiln_gen_step st;
            if (kiln_gen_seq_step(gs[i], logits + (size_t)j * V, &st)) {
                kiln_err_set(err, "generate: %s", kiln_gen_seq_error(gs[i]));
                goto done;
            }
            if (step == 0) out[i].stats.ttft_ms = (now - t0) * 1e3;
            out[i].stats.gen_tokens++;
            if (cb && !stop_all && cb(user, i, &st)) stop_all = true;
            if (st.finish == KILN_FINISH_NONE && !stop_all) {
                bseq[next] = seq[i];
                bn[next] = 1;
                who[next] = i;
                toks[next++] = st.token;
            } else {
                out[i].finish = st.finish != KILN_FINISH_NONE ? st.finish : KILN_FINISH_STOP;
                out[i].stats.total_ms = (kiln_now() - t0) * 1e3;
                kiln_seq_free(ctx, seq[i]);
                seq[i] = -1;
            }
        }
        if (stop_all) /* everyone still running stops now */
            for (int j = 0; j < next; j++) {
                int i = who[j];
                out[i].finish = KILN_FINISH_STOP;
                out[i].stats.total_ms = (kiln_now() - t0) * 1e3;
            }
        nb = stop_all ? 0 : next;
    }
    double rss = (double)kiln_peak_rss_bytes() / (1024.0 * 1024.0);
    for (int i = 0; i < n; i++)
        if (finish_output(&out[i], gs[i], rss, err)) goto done;
    rc = 0;
done:
    if (rc)
        for (int i = 0; i < n; i++) kiln_gen_output_free(&out[i]);
    for (int i = 0; gs && i < n; i++) kiln_gen_seq_free(gs[i]);
    if (ctx && seq)
        for (int i = 0; i < n; i++)
            if (seq[i] >= 0) kiln_seq_free(ctx, seq[i]);
    kiln_ctx_free(ctx);
    free(gs);
    free(seq);
    free(bseq);
    free(bn);
    free(who);
    free(toks);
    free(logits);
    return rc;
}

int kiln_generate_in(kiln_ctx *ctx, int seq, size_t n_reuse, const kiln_tokenizer *t, const kiln_gen_params *p,
                     const int32_t *prompt, size_t n_prompt, kiln_gen_callback cb, void *user, kiln_gen_output *out,
                     kiln_err *err) {
    memset(out, 0, sizeof *out);
    const int len = kiln_seq_len(ctx, seq), n_ctx = kiln_ctx_n_ctx(ctx);
    if (len < 0) return kiln_err_set(err, "generate: sequence %d does not exist", seq);
    if (n_prompt == 0) return kiln_err_set(err, "generate: the prompt is empty");
    if (n_reuse > (size_t)len) return kiln_err_set(err, "generate: %zu tokens to reuse, the sequence holds %d", n_reuse, len);
    if (n_prompt > (size_t)n_ctx)
        return kiln_err_set(err, "generate: prompt (%zu tokens) exceeds the context of %d", n_prompt, n_ctx);
    if (n_reuse >= n_prompt) n_reuse = n_prompt - 1; /* the last prompt token is fed again: its logits pick the first */
    n_reuse = (size_t)kiln_seq_reusable(ctx, seq, (int)n_reuse); /* 0 when a window's KV before it is gone */
    const int V = kiln_model_config(kiln_ctx_model(ctx))->vocab_size;
    double t0 = kiln_now();
    float *logits = malloc((size_t)V * sizeof *logits);
    kiln_gen_seq *g = logits ? kiln_gen_seq_new(t, p, prompt, n_prompt, V, err) : NULL;
    int rc = -1;
    if (!logits) kiln_err_set(err, "generate: out of memory");
    if (!g || kiln_seq_truncate(ctx, seq, (int)n_reuse, err)) goto done;
    out->stats.prompt_tokens = (int)n_prompt;
    out->stats.reused_tokens = (int)n_reuse;
    int nt = (int)(n_prompt - n_reuse);
    const int32_t *toks = prompt + n_reuse;
    int32_t next;
    for (bool stop = false;;) {
        kiln_batch b = {.n_seqs = 1, .seq = &seq, .n_tokens = &nt, .tokens = toks, .logits = logits};
        if (kiln_forward(ctx, &b, err)) goto done;
        kiln_gen_step st;
        if (kiln_gen_seq_step(g, logits, &st)) {
            kiln_err_set(err, "generate: %s", kiln_gen_seq_error(g));
            goto done;
        }
        if (out->stats.gen_tokens++ == 0) out->stats.ttft_ms = (kiln_now() - t0) * 1e3;
        if (cb && cb(user, 0, &st)) stop = true;
        /* a full context ends the sequence as max_new_tokens would */
        kiln_finish f = st.finish != KILN_FINISH_NONE ? st.finish : stop ? KILN_FINISH_STOP
                      : kiln_seq_len(ctx, seq) >= n_ctx ? KILN_FINISH_LENGTH : KILN_FINISH_NONE;
        if (f != KILN_FINISH_NONE) {
            out->finish = f;
            break;
        }
        next = st.token;
        nt = 1;
        toks = &next;
    }
    out->stats.total_ms = (kiln_now() - t0) * 1e3;
    rc = finish_output(out, g, (double)kiln_peak_rss_bytes() / (1024.0 * 1024.0), err);
done:
    if (rc) kiln_gen_output_free(out);
    kiln_gen_seq_free(g);
    free(logits);
    return rc;
}

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
    for (int i = 0; i < n; i++) {
        kiln_gen_stats *s = &out[i].stats;
        double dt = (s->total_ms - s->ttft_ms) / 1e3;
        s->decode_tok_s = (s->gen_tokens > 1 && dt > 0) ? (s->gen_tokens - 1) / dt : 0;
        s->peak_rss_mb = rss;
        size_t k;
        const int32_t *ids = kiln_gen_seq_ids(gs[i], &k);
        out[i].ids = malloc((k ? k : 1) * sizeof *ids);
        if (!out[i].ids || kiln_gen_seq_result(gs[i], &out[i].text, &out[i].thinking, err)) {
            kiln_err_set(err, "generate: out of memory");
            goto done;
        }
        memcpy(out[i].ids, ids, k * sizeof *ids);
        out[i].n_ids = k;
    }
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

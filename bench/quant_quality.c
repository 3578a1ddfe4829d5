/* quant_quality.c — how much Q8_0 / Q4_0 change a model's next-token distributions, against the
 * checkpoint's own weights computed in f32 (the reference). Benchmark/analysis tool, not a test.
 *
 * Modes: ref (checkpoint weights, f32 compute), q8_0 / q4_0 / q4_k_m / q5_k_m / q6_k (kiln's path: --quant's
 * weights, activations quantised to int8 for the integer dot products), q8_0w / q4_0w / ... ("weights only": the same
 * quantised weights dequantised back to f32, f32 activations — isolates the activation rounding).
 * Per mode: top-1 agreement with ref, mean KL(ref || mode) over the vocabulary, perplexity of the text's
 * own next tokens, and top-1 agreement restricted to positions whose ref top1-top2 logit gap exceeds
 * --margin. Token streams: --golden golden.json (every prompt position of every case) or --text FILE
 * (tokenized with the model's tokenizer, split as llama-perplexity does: --ctx N tokens per chunk, first
 * token replaced by BOS, positions N/2 .. N-2 scored) or --ids FILE (the same, from token ids) or --stories golden.json (stories260K: each case's
 * prompt + greedy text, every position scored).
 *
 *   cc -O2 -D_GNU_SOURCE -Iinclude -Isrc bench/quant_quality.c build/libkiln.a $(pkg-config --libs jansson \
 *      libpcre2-8 icu-uc) -lcrypto -lm -pthread -o /tmp/quant_quality      (bench/quant-quality.sh does this)
 *   /tmp/quant_quality --model DIR --golden G.json [--modes ref,q8_0,q8_0w,q4_0,q4_0w] [--margin 0.05] [--flips]
 *       [--ref MODE]  (the reference, default ref; e.g. --ref bf16x --modes bf16: bf16 dot products in prefill
 *                      against the exact path on the same bf16 weights; float modes f32|f16|bf16, x = --exact)
 * Prints one JSON line per mode. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant.h"
#include "model/model.h"

typedef struct seq {
    int32_t *ids;
    int n, first; /* positions first .. n-2 are scored (predicting ids[p+1]) */
} seq;

typedef struct stream {
    seq *s;
    int n;
} stream;

static void die(const char *m, const char *a) {
    fprintf(stderr, "quant_quality: %s%s\n", m, a ? a : "");
    exit(1);
}

static void add_seq(stream *st, const int32_t *ids, int n, int first) {
    st->s = realloc(st->s, sizeof(seq) * (size_t)(st->n + 1));
    seq *q = &st->s[st->n++];
    q->ids = malloc(sizeof(int32_t) * (size_t)n);
    memcpy(q->ids, ids, sizeof(int32_t) * (size_t)n);
    q->n = n, q->first = first;
}

static void load_golden(stream *st, const char *path, const char *dir, bool stories) {
    json_error_t je;
    json_t *g = json_load_file(path, 0, &je);
    if (!g) die("cannot read ", path);
    kiln_err err;
    kiln_tokenizer *t = stories ? kiln_tokenizer_open(dir, &err) : NULL;
    json_t *cases = json_object_get(g, "cases");
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *cs = json_array_get(cases, c), *pid = json_object_get(cs, "prompt_ids");
        int n = (int)json_array_size(pid);
        int32_t *ids = malloc(sizeof(int32_t) * 4096);
        for (int i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(pid, i));
        if (stories) { /* the golden story: prompt + its greedy continuation, as text the model wrote */
            json_t *gi = json_object_get(cs, "greedy_ids");
            for (size_t i = 0; i < json_array_size(gi) && n < 4096; i++)
                ids[n++] = (int32_t)json_integer_value(json_array_get(gi, i));
        }
        if (n >= 2 || !stories) add_seq(st, ids, n, 0);
        free(ids);
    }
    kiln_tokenizer_free(t);
    json_decref(g);
}

/* --text: tokenized here; --ids: ids as another engine tokenized the text (e.g. llama-tokenize --ids
 * output "[1, 2, ...]"), so both engines score exactly the same token stream. */
static void load_text(stream *st, const char *path, bool is_ids, const char *dir, int ctx, int max_chunks) {
    kiln_err err;
    size_t len, n = 0;
    char *text = kiln_read_file(path, &len, &err);
    kiln_tokenizer *t = kiln_tokenizer_open(dir, &err);
    int32_t *ids = NULL;
    if (!text || !t) die("cannot read ", path);
    if (is_ids) {
        ids = malloc(sizeof(int32_t) * (len / 2 + 1));
        for (char *p = text, *e; *p; p = e) {
            long v = strtol(p, &e, 10);
            if (e == p) e = p + 1;
            else ids[n++] = (int32_t)v;
        }
    } else if (kiln_encode(t, text, len, true, &ids, &n, &err)) die("cannot tokenize ", path);
    const kiln_special_tokens *sp = kiln_tokenizer_specials(t);
    int bos = sp && sp->bos_id >= 0 ? sp->bos_id : ids[0];
    for (size_t s = 0; s + (size_t)ctx <= n && st->n < max_chunks; s += (size_t)ctx) {
        int32_t keep = ids[s];
        ids[s] = bos; /* llama-perplexity: each chunk starts with BOS */
        add_seq(st, ids + s, ctx, ctx / 2);
        ids[s] = keep;
    }
    fprintf(stderr, "quant_quality: %zu tokens, %d chunks of %d\n", n, st->n, ctx);
    free(ids), free(text);
    kiln_tokenizer_free(t);
}

/* Weights-only mode: every matrix quantised to qt and dequantised back to f32, computed in f32. */
static void **patch_weights_only(kiln_model *m, int qt, int *n_out) {
    const int n = m->n_mats;
    const bool tied = m->lm_head.data == m->embed.data;
    const weight_request rq = weight_request_for(qt);
    void **bufs = malloc(sizeof *bufs * (size_t)n);
    for (int i = 0; i < n; i++) {
        kiln_mat *w = m->mats[i];
        /* the format the quantised load gives this matrix (Q8_0 for Q4_0's output projection; f32 kept as
         * is where rows are not whole blocks) */
        const weight_slot slot = model_slot(m, i);
        const kiln_dtype dt = weight_format(&rq, &slot);
        float *out = malloc(sizeof(float) * (size_t)w->rows * (size_t)w->cols);
        void *q = malloc(kern_row_bytes(dt, w->cols));
        size_t rb = kern_row_bytes(w->dt, w->cols);
        for (int r = 0; r < w->rows; r++) {
            float *row = out + (size_t)r * w->cols;
            kern_row_to_f32(row, (const char *)w->data + rb * r, w->dt, w->cols);
            if (!kern_is_quantised(dt)) continue;
            kern_row_from_f32(q, dt, row, w->cols);
            kern_row_to_f32(row, q, dt, w->cols);
        }
        free(q);
        *w = (kiln_mat){out, KILN_DT_F32, w->rows, w->cols, KERN_LAYOUT_PLAIN};
        bufs[i] = out;
    }
    if (tied) m->lm_head = m->embed;
    *n_out = n;
    return bufs;
}

/* log-softmax normaliser: log(sum(exp(x))) */
static double logsumexp(const float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

static int argmax(const float *x, int n, int *second) {
    int a = 0, b = -1;
    for (int i = 1; i < n; i++) {
        if (x[i] > x[a]) b = a, a = i;
        else if (b < 0 || x[i] > x[b]) b = i;
    }
    *second = b;
    return a;
}

/* All scored positions' logits for the stream under one mode: [positions][V]. */
static float *run_mode(const char *dir, const char *mode, const stream *st, int threads, int *V_out, size_t *np) {
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.threads = threads;
    mo.exact = true; /* the int8 paths are measured against exact float arithmetic */
    /* float modes: f32 / f16 / bf16 weights in the default arithmetic (bf16 dot products in prefill),
     * with an x suffix in the exact one (--exact) */
    kiln_dtype fdt;
    char fbase[32];
    snprintf(fbase, sizeof fbase, "%.*s", (int)strlen(mode) - (mode[strlen(mode) - 1] == 'x'), mode);
    const bool float_mode = !kiln_dtype_parse(fbase, &fdt) && fdt <= KILN_DT_BF16;
    if (float_mode) mo.dtype = (int)fdt, mo.exact = strcmp(fbase, mode) != 0;
    const bool wonly = !float_mode && mode[strlen(mode) - 1] == 'w';
    char base[32];
    snprintf(base, sizeof base, "%.*s", (int)(strlen(mode) - wonly), mode);
    int quant = -1;
    if (!float_mode && strcmp(mode, "ref") && kiln_quant_parse(base, &quant)) die("unknown mode ", mode);
    if (!wonly) mo.quant = quant;
    kiln_err err;
    kiln_model *m = kiln_model_open(dir, &mo, &err);
    if (!m) die("open: ", err.msg);
    int nb = 0;
    void **bufs = wonly ? patch_weights_only(m, quant, &nb) : NULL;
    int V = kiln_model_config(m)->vocab_size, maxn = 0;
    size_t total = 0;
    for (int i = 0; i < st->n; i++) {
        total += (size_t)(st->s[i].n - 1 - st->s[i].first);
        maxn = st->s[i].n > maxn ? st->s[i].n : maxn;
    }
    float *all = malloc(sizeof(float) * total * (size_t)V), *tmp = malloc(sizeof(float) * (size_t)maxn * V);
    if (!all || !tmp) die("out of memory for logits", NULL);
    size_t at = 0;
    for (int i = 0; i < st->n; i++) {
        const seq *q = &st->s[i];
        kiln_ctx_opts co;
        kiln_ctx_opts_default(&co);
        co.n_ctx = q->n;
        co.kv_type = KILN_DT_F32; /* the weights' formats alone are measured */
        kiln_ctx *c = kiln_ctx_new(m, &co, &err);
        int sid = c ? kiln_seq_new(c, &err) : -1, nt = q->n;
        kiln_batch b = {1, &sid, &nt, q->ids, true, tmp};
        if (!c || kiln_forward(c, &b, &err)) die("forward: ", err.msg);
        int k = q->n - 1 - q->first;
        memcpy(all + at * V, tmp + (size_t)q->first * V, sizeof(float) * (size_t)k * V);
        at += (size_t)k;
        kiln_ctx_free(c);
    }
    for (int i = 0; i < nb; i++) free(bufs[i]);
    free(bufs), free(tmp);
    kiln_model_free(m);
    *V_out = V, *np = total;
    return all;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *golden = NULL, *text = NULL, *idsf = NULL, *stories = NULL, *modes = "ref,q8_0,q8_0w,q4_0,q4_0w", *ref_mode = "ref";
    int ctx = 128, chunks = 1 << 30, threads = 0, flips = 0;
    double margin = 0.05;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--flips")) flips = 1;
        else if (!v) die("missing value for ", a);
        else if (!strcmp(a, "--model")) dir = v, i++;
        else if (!strcmp(a, "--golden")) golden = v, i++;
        else if (!strcmp(a, "--stories")) stories = v, i++;
        else if (!strcmp(a, "--text")) text = v, i++;
        else if (!strcmp(a, "--ids")) idsf = v, i++;
        else if (!strcmp(a, "--ctx")) ctx = atoi(v), i++;
        else if (!strcmp(a, "--chunks")) chunks = atoi(v), i++;
        else if (!strcmp(a, "--threads")) threads = atoi(v), i++;
        else if (!strcmp(a, "--modes")) modes = v, i++;
        else if (!strcmp(a, "--ref")) ref_mode = v, i++;
        else if (!strcmp(a, "--margin")) margin = atof(v), i++;
        else die("unknown flag ", a);
    }
    if (!dir || !!golden + !!text + !!idsf + !!stories != 1)
        die("need --model DIR and one of --golden/--text/--ids/--stories", NULL);
    stream st = {0};
    if (golden || stories) load_golden(&st, golden ? golden : stories, dir, stories != NULL);
    else load_text(&st, text ? text : idsf, idsf != NULL, dir, ctx, chunks);
    int V;
    size_t np;
    float *ref = run_mode(dir, ref_mode, &st, threads, &V, &np);
    /* The reference's own per-position figures: top-1, gap, log-normaliser, and the true next token. */
    int *r1 = malloc(sizeof(int) * np), *next = malloc(sizeof(int) * np);
    double *gap = malloc(sizeof(double) * np), *lse = malloc(sizeof(double) * np);
    for (int i = 0, at = 0; i < st.n; i++)
        for (int p = st.s[i].first; p < st.s[i].n - 1; p++, at++) next[at] = st.s[i].ids[p + 1];
    for (size_t p = 0; p < np; p++) {
        int s;
        const float *x = ref + p * V;
        r1[p] = argmax(x, V, &s);
        gap[p] = x[r1[p]] - x[s];
        lse[p] = logsumexp(x, V);
    }
    char buf[256];
    snprintf(buf, sizeof buf, "%s", modes);
    for (char *save, *mode = strtok_r(buf, ",", &save); mode; mode = strtok_r(NULL, ",", &save)) {
        float *y = strcmp(mode, ref_mode) ? run_mode(dir, mode, &st, threads, &V, &np) : ref;
        int agree = 0, big = 0, big_agree = 0;
        double kl = 0, nll = 0, min_flip_gap = INFINITY, max_flip_gap = 0, err2 = 0, max_flip_z = 0;
        for (size_t p = 0; p < np; p++) {
            const float *x = ref + p * V, *q = y + p * V;
            int s, t1 = argmax(q, V, &s);
            double l2 = logsumexp(q, V), k = 0;
            for (int i = 0; i < V; i++) {
                double lp = x[i] - lse[p], lq = q[i] - l2;
                k += exp(lp) * (lp - lq);
            }
            /* logit noise at this position: RMS of the (mean-removed) change over the vocabulary */
            double d = 0, d2 = 0;
            for (int i = 0; i < V; i++) d += (double)q[i] - x[i], d2 += ((double)q[i] - x[i]) * ((double)q[i] - x[i]);
            double sig = sqrt(fmax(d2 / V - (d / V) * (d / V), 1e-30));
            err2 += sig * sig;
            /* z: the ref gap in units of the noise on a difference of two logits */
            double z = gap[p] / (sig * sqrt(2.0));
            kl += k;
            nll += l2 - q[next[p]];
            agree += t1 == r1[p];
            if (gap[p] > margin) big++, big_agree += t1 == r1[p];
            if (t1 != r1[p]) {
                min_flip_gap = fmin(min_flip_gap, gap[p]), max_flip_gap = fmax(max_flip_gap, gap[p]);
                max_flip_z = fmax(max_flip_z, z);
                if (flips)
                    fprintf(stderr, "  %s flip at %zu: ref gap %.4f (z %.2f), mode's logit of ref top-1 %.4f vs its pick %.4f\n",
                            mode, p, gap[p], z, q[r1[p]], q[t1]);
            }
        }
        printf("{\"mode\":\"%s\",\"positions\":%zu,\"top1_agree\":%.4f,\"mean_kl\":%.6g,\"ppl\":%.4f,"
               "\"margin\":%g,\"positions_over_margin\":%d,\"top1_agree_over_margin\":%.4f,"
               "\"flip_gap_min\":%.4g,\"flip_gap_max\":%.4g,\"logit_rms_err\":%.4g,\"flip_z_max\":%.3g}\n",
               mode, np, (double)agree / np, kl / np, exp(nll / np), margin, big, big ? (double)big_agree / big : 1.0,
               agree == (int)np ? 0 : min_flip_gap, max_flip_gap, sqrt(err2 / np), max_flip_z);
        fflush(stdout);
        if (y != ref) free(y);
    }
    free(ref), free(r1), free(next), free(gap), free(lse);
    for (int i = 0; i < st.n; i++) free(st.s[i].ids);
    free(st.s);
    return 0;
}

/* test_attention_block.c — kern_attention_block (a block of queries at once: the tiled flash-attention kernel
 * of prefill and chunked prefill, and the all-heads-together path of decode) against its specification,
 * kern_attention_block_ref (one query at a time through kern_attention_ref, which test_kernels checks
 * against the formula and the decoded f32 cache).
 *
 * Every KV format; head sizes with masked tails and without a multiple of 16 (20, 72) as well as the
 * register-specialised 64 and 128; GQA ratios 1, 4 and 8; a causal prompt from position 0 and chunks
 * appended to a cache (pos0 > 0) of ragged lengths (1 token: decode; 3: too few rows for a tile; 17, 70:
 * tiles with a partial last query block and a partial last key tile); sliding windows shorter than the
 * chunk and longer; a scale and soft-cap; a paged cache whose blocks are out of order; query rows further
 * apart than the heads (q_stride); and a head range crossing kv heads, with everything outside it untouched. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1 << 23))) - 1.0f;
}

enum { BLOCK = 16, NBLK = 16, NPOS = BLOCK * NBLK, HKV = 2 };

typedef struct {
    kiln_dtype type;
    int head_dim, group, pos0, nq, window;
    bool capped;
} attn_case;

/* One case: the ISA's kern_attention_block vs the reference on the same cache, heads [h0, h1). Returns
 * whether they agree (a CHECK says where not). */
static bool run_case(const attn_case *c, const char *isa, int h0, int h1) {
    const int hd = c->head_dim, HQ = HKV * c->group;
    const size_t rb = kern_row_bytes(c->type, hd), rows = (size_t)2 * BLOCK * HKV * NBLK;
    const size_t q_stride = (size_t)HQ * hd + 3; /* tokens further apart than their heads */
    char *cache = malloc(rb * rows);
    float *vals = malloc(sizeof(float) * hd), *q = malloc(sizeof(float) * q_stride * c->nq);
    float *ref = malloc(sizeof(float) * q_stride * c->nq), *got = malloc(sizeof(float) * q_stride * c->nq);
    const size_t ns = kern_attention_block_scratch(NPOS, hd);
    float *scratch = malloc(sizeof(float) * ns);
    int table[NBLK];
    for (int i = 0; i < NBLK; i++) table[i] = (i * 5 + 3) % NBLK; /* a permutation: 5 is coprime to 16 */
    for (size_t r = 0; r < rows; r++) {
        for (int i = 0; i < hd; i++) vals[i] = frand() * (1.0f + (float)(r % 5));
        kern_row_from_f32(cache + r * rb, c->type, vals, hd);
    }
    for (size_t i = 0; i < q_stride * c->nq; i++) q[i] = frand() * 2, ref[i] = got[i] = NAN;
    /* head-major blocks as the engine lays them out (engine.h): K then V, each [kv head][slot] */
    const kern_kv_view kv = {cache, cache + (size_t)BLOCK * HKV * rb, table, BLOCK, 2 * BLOCK * HKV * rb, rb, BLOCK * rb,
                             c->type, 0, c->capped ? 0.3f : 0, c->capped ? 5.0f : 0};
    kern_attention_block_ref(ref, q, q_stride, c->nq, c->pos0, c->window, HQ, HKV, hd, h0, h1, &kv, scratch);
    kern_set_isa(isa); /* the caller checked it is supported */
    kern_attention_block(got, q, q_stride, c->nq, c->pos0, c->window, HQ, HKV, hd, h0, h1, &kv, scratch);
    kern_set_isa(kern_best_isa());
    bool ok = true;
    for (int t = 0; t < c->nq && ok; t++)
        for (size_t i = 0; i < q_stride && ok; i++) {
            const size_t k = (size_t)t * q_stride + i;
            const bool in = i >= (size_t)h0 * hd && i < (size_t)h1 * hd;
            if (in ? !(fabsf(got[k] - ref[k]) <= 3e-5f * (1 + fabsf(ref[k]))) : !isnan(got[k])) {
                CHECK(0, "%s kv %s head_dim=%d group=%d pos0=%d nq=%d window=%d capped=%d heads %d..%d: token %d [%zu] %g vs "
                         "reference %g", isa, kiln_dtype_name(c->type), hd, c->group, c->pos0, c->nq, c->window, c->capped,
                      h0, h1, t, i, got[k], ref[k]);
                ok = false;
            }
        }
    free(cache), free(vals), free(q), free(ref), free(got), free(scratch);
    return ok;
}

TEST(attention_block_matches_reference) {
    const kiln_dtype types[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_BF16, KILN_DT_Q8_0};
    const int dims[] = {20, 32, 64, 72, 128}, groups[] = {1, 2, 4, 8};
    const int chunks[][2] = {{0, 1}, {0, 17}, {0, 70}, {5, 1}, {37, 3}, {130, 17}, {150, 70}, {201, 1}};
    const int windows[] = {0, 8, 100};
    int cases = 0;
    for (size_t ti = 0; ti < 4; ti++)
        for (size_t d = 0; d < 5; d++)
            for (size_t g = 0; g < 4; g++)
                for (size_t ch = 0; ch < sizeof chunks / sizeof chunks[0]; ch++)
                    for (size_t w = 0; w < 3; w++) {
                        const attn_case c = {types[ti], dims[d], groups[g], chunks[ch][0], chunks[ch][1], windows[w],
                                             (ch + w) % 3 == 2};
                        if (!kern_kv_type_ok(c.type, c.head_dim) || c.pos0 + c.nq > NPOS) continue;
                        const int HQ = HKV * c.group;
                        for (int isa = 0; isa < 2; isa++) {
                            const char *name = isa ? "avx512" : "avx2";
                            if (kern_set_isa(name) != 0) continue;
                            kern_set_isa(kern_best_isa());
                            /* each kv head's heads as the engine calls it, then a range across kv heads */
                            if (!run_case(&c, name, 0, c.group) || !run_case(&c, name, c.group, HQ) ||
                                (HQ > 2 && !run_case(&c, name, 1, HQ - 1)))
                                return;
                            cases++;
                        }
                    }
    CHECK(cases > 500, "only %d cases ran", cases);
}

/* A block of nq queries equals nq blocks of one query each (how decode calls it), on the best ISA. */
TEST(attention_block_chunking_is_invisible) {
    enum { HD = 64, HQ = 8, T = 40 };
    const size_t rb = kern_row_bytes(KILN_DT_F16, HD), rows = (size_t)2 * BLOCK * HKV * NBLK, qs = (size_t)HQ * HD;
    char *cache = malloc(rb * rows);
    float vals[HD], *q = malloc(sizeof(float) * qs * T), *a = malloc(sizeof(float) * qs * T), *b = malloc(sizeof(float) * qs * T);
    float *scratch = malloc(sizeof(float) * kern_attention_block_scratch(NPOS, HD));
    int table[NBLK];
    for (int i = 0; i < NBLK; i++) table[i] = i;
    for (size_t r = 0; r < rows; r++) {
        for (int i = 0; i < HD; i++) vals[i] = frand();
        kern_row_from_f32(cache + r * rb, KILN_DT_F16, vals, HD);
    }
    for (size_t i = 0; i < qs * T; i++) q[i] = frand();
    const kern_kv_view kv = {cache, cache + (size_t)BLOCK * HKV * rb, table, BLOCK, 2 * BLOCK * HKV * rb, rb, BLOCK * rb,
                             KILN_DT_F16, 0, 0, 0};
    for (int h = 0; h < HQ; h += HQ / HKV) {
        kern_attention_block(a, q, qs, T, 60, 0, HQ, HKV, HD, h, h + HQ / HKV, &kv, scratch);
        for (int t = 0; t < T; t++)
            kern_attention_block(b + t * qs, q + t * qs, qs, 1, 60 + t, 0, HQ, HKV, HD, h, h + HQ / HKV, &kv, scratch);
    }
    float worst = 0;
    for (size_t i = 0; i < qs * T; i++) worst = fmaxf(worst, fabsf(a[i] - b[i]) / (1 + fabsf(b[i])));
    CHECK(worst < 3e-5f, "tiled vs one query at a time: off by %g", worst);
    free(cache), free(q), free(a), free(b), free(scratch);
}

int main(void) {
    kern_init();
    RUN(attention_block_matches_reference);
    RUN(attention_block_chunking_is_invisible);
    return check_done();
}

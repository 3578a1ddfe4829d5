/* test_kquant_mix.c — --quant q4_k_m / q5_k_m / q6_k pick, tensor by tensor, the types llama-quantize
 * (llama.cpp's llama_tensor_get_type) gives the same model shapes, as weight_format decides them for both
 * the loader and `kiln info`.
 *
 * The expected types were read from GGUF files llama-quantize wrote (llama.cpp as in ../shared/gguf/README,
 * `llama-quantize F32.gguf OUT.gguf TYPE`) from make_tiny_model.py --arch llama checkpoints of these shapes:
 *   kq512: ../shared/gguf/kq-llama-512 (its goldens' tensor_types): 2 layers, hidden 256, inter 768, tied
 *   mixA:  --hidden 256 --inter 640 --layers 12 --heads 4 --kv-heads 2 --head-dim 64 --no-tie --vocab 512:
 *          use_more_bits over 12 layers, an untied embedding (default type), ffn_down rows of 640 (Q4_K ->
 *          Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0 fallbacks)
 *   mixC:  --hidden 288 --inter 768 --layers 3 --heads 4 --kv-heads 2 --head-dim 72 --tie --vocab 512:
 *          rows of 288 everywhere but ffn_down (fallbacks; the tied output projection in Q8_0)
 * And a model kiln quantises this way computes close to f32: the logits bound is measured. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/format.h"
#include "model/gguf.h"
#include "model/model.h"

typedef enum { SHAPE_KQ512, SHAPE_MIXA, SHAPE_MIXC } shape_id;

static kiln_config shape(shape_id s) {
    kiln_config c = {.arch = KILN_ARCH_LLAMA, .n_heads = 4, .n_kv_heads = 2, .vocab_size = 512};
    c.hidden_size = s == SHAPE_MIXC ? 288 : 256;
    c.head_dim = s == SHAPE_MIXC ? 72 : 64;
    c.intermediate_size = s == SHAPE_MIXA ? 640 : 768;
    c.n_layers = s == SHAPE_MIXA ? 12 : s == SHAPE_MIXC ? 3 : 2;
    c.tie_word_embeddings = s != SHAPE_MIXA;
    return c;
}

/* llama-quantize's choice for every matrix, "gguf name without .weight=TYPE". */
static const struct {
    shape_id shape;
    const char *quant, *types;
} CASES[] = {
    {SHAPE_MIXA, "q4_k_m",
     "output=Q6_K token_embd=Q4_K blk.0.attn_k=Q4_K blk.0.attn_output=Q4_K blk.0.attn_q=Q4_K "
     "blk.0.attn_v=Q6_K blk.0.ffn_down=Q8_0 blk.0.ffn_gate=Q4_K blk.0.ffn_up=Q4_K blk.1.attn_k=Q4_K "
     "blk.1.attn_output=Q4_K blk.1.attn_q=Q4_K blk.1.attn_v=Q4_K blk.1.ffn_down=Q5_0 blk.1.ffn_gate=Q4_K "
     "blk.1.ffn_up=Q4_K blk.2.attn_k=Q4_K blk.2.attn_output=Q4_K blk.2.attn_q=Q4_K blk.2.attn_v=Q4_K "
     "blk.2.ffn_down=Q5_0 blk.2.ffn_gate=Q4_K blk.2.ffn_up=Q4_K blk.3.attn_k=Q4_K blk.3.attn_output=Q4_K "
     "blk.3.attn_q=Q4_K blk.3.attn_v=Q6_K blk.3.ffn_down=Q8_0 blk.3.ffn_gate=Q4_K blk.3.ffn_up=Q4_K "
     "blk.4.attn_k=Q4_K blk.4.attn_output=Q4_K blk.4.attn_q=Q4_K blk.4.attn_v=Q4_K blk.4.ffn_down=Q5_0 "
     "blk.4.ffn_gate=Q4_K blk.4.ffn_up=Q4_K blk.5.attn_k=Q4_K blk.5.attn_output=Q4_K blk.5.attn_q=Q4_K "
     "blk.5.attn_v=Q4_K blk.5.ffn_down=Q5_0 blk.5.ffn_gate=Q4_K blk.5.ffn_up=Q4_K blk.6.attn_k=Q4_K "
     "blk.6.attn_output=Q4_K blk.6.attn_q=Q4_K blk.6.attn_v=Q6_K blk.6.ffn_down=Q8_0 blk.6.ffn_gate=Q4_K "
     "blk.6.ffn_up=Q4_K blk.7.attn_k=Q4_K blk.7.attn_output=Q4_K blk.7.attn_q=Q4_K blk.7.attn_v=Q4_K "
     "blk.7.ffn_down=Q5_0 blk.7.ffn_gate=Q4_K blk.7.ffn_up=Q4_K blk.8.attn_k=Q4_K blk.8.attn_output=Q4_K "
     "blk.8.attn_q=Q4_K blk.8.attn_v=Q4_K blk.8.ffn_down=Q5_0 blk.8.ffn_gate=Q4_K blk.8.ffn_up=Q4_K "
     "blk.9.attn_k=Q4_K blk.9.attn_output=Q4_K blk.9.attn_q=Q4_K blk.9.attn_v=Q6_K blk.9.ffn_down=Q8_0 "
     "blk.9.ffn_gate=Q4_K blk.9.ffn_up=Q4_K blk.10.attn_k=Q4_K blk.10.attn_output=Q4_K blk.10.attn_q=Q4_K "
     "blk.10.attn_v=Q6_K blk.10.ffn_down=Q8_0 blk.10.ffn_gate=Q4_K blk.10.ffn_up=Q4_K blk.11.attn_k=Q4_K "
     "blk.11.attn_output=Q4_K blk.11.attn_q=Q4_K blk.11.attn_v=Q6_K blk.11.ffn_down=Q8_0 "
     "blk.11.ffn_gate=Q4_K blk.11.ffn_up=Q4_K "
    },
    {SHAPE_MIXA, "q5_k_m",
     "output=Q6_K token_embd=Q5_K blk.0.attn_k=Q5_K blk.0.attn_output=Q5_K blk.0.attn_q=Q5_K "
     "blk.0.attn_v=Q6_K blk.0.ffn_down=Q8_0 blk.0.ffn_gate=Q5_K blk.0.ffn_up=Q5_K blk.1.attn_k=Q5_K "
     "blk.1.attn_output=Q5_K blk.1.attn_q=Q5_K blk.1.attn_v=Q5_K blk.1.ffn_down=Q5_1 blk.1.ffn_gate=Q5_K "
     "blk.1.ffn_up=Q5_K blk.2.attn_k=Q5_K blk.2.attn_output=Q5_K blk.2.attn_q=Q5_K blk.2.attn_v=Q5_K "
     "blk.2.ffn_down=Q5_1 blk.2.ffn_gate=Q5_K blk.2.ffn_up=Q5_K blk.3.attn_k=Q5_K blk.3.attn_output=Q5_K "
     "blk.3.attn_q=Q5_K blk.3.attn_v=Q6_K blk.3.ffn_down=Q8_0 blk.3.ffn_gate=Q5_K blk.3.ffn_up=Q5_K "
     "blk.4.attn_k=Q5_K blk.4.attn_output=Q5_K blk.4.attn_q=Q5_K blk.4.attn_v=Q5_K blk.4.ffn_down=Q5_1 "
     "blk.4.ffn_gate=Q5_K blk.4.ffn_up=Q5_K blk.5.attn_k=Q5_K blk.5.attn_output=Q5_K blk.5.attn_q=Q5_K "
     "blk.5.attn_v=Q5_K blk.5.ffn_down=Q5_1 blk.5.ffn_gate=Q5_K blk.5.ffn_up=Q5_K blk.6.attn_k=Q5_K "
     "blk.6.attn_output=Q5_K blk.6.attn_q=Q5_K blk.6.attn_v=Q6_K blk.6.ffn_down=Q8_0 blk.6.ffn_gate=Q5_K "
     "blk.6.ffn_up=Q5_K blk.7.attn_k=Q5_K blk.7.attn_output=Q5_K blk.7.attn_q=Q5_K blk.7.attn_v=Q5_K "
     "blk.7.ffn_down=Q5_1 blk.7.ffn_gate=Q5_K blk.7.ffn_up=Q5_K blk.8.attn_k=Q5_K blk.8.attn_output=Q5_K "
     "blk.8.attn_q=Q5_K blk.8.attn_v=Q5_K blk.8.ffn_down=Q5_1 blk.8.ffn_gate=Q5_K blk.8.ffn_up=Q5_K "
     "blk.9.attn_k=Q5_K blk.9.attn_output=Q5_K blk.9.attn_q=Q5_K blk.9.attn_v=Q6_K blk.9.ffn_down=Q8_0 "
     "blk.9.ffn_gate=Q5_K blk.9.ffn_up=Q5_K blk.10.attn_k=Q5_K blk.10.attn_output=Q5_K blk.10.attn_q=Q5_K "
     "blk.10.attn_v=Q6_K blk.10.ffn_down=Q8_0 blk.10.ffn_gate=Q5_K blk.10.ffn_up=Q5_K blk.11.attn_k=Q5_K "
     "blk.11.attn_output=Q5_K blk.11.attn_q=Q5_K blk.11.attn_v=Q6_K blk.11.ffn_down=Q8_0 "
     "blk.11.ffn_gate=Q5_K blk.11.ffn_up=Q5_K "
    },
    {SHAPE_MIXA, "q6_k",
     "output=Q6_K token_embd=Q6_K blk.0.attn_k=Q6_K blk.0.attn_output=Q6_K blk.0.attn_q=Q6_K "
     "blk.0.attn_v=Q6_K blk.0.ffn_down=Q8_0 blk.0.ffn_gate=Q6_K blk.0.ffn_up=Q6_K blk.1.attn_k=Q6_K "
     "blk.1.attn_output=Q6_K blk.1.attn_q=Q6_K blk.1.attn_v=Q6_K blk.1.ffn_down=Q8_0 blk.1.ffn_gate=Q6_K "
     "blk.1.ffn_up=Q6_K blk.2.attn_k=Q6_K blk.2.attn_output=Q6_K blk.2.attn_q=Q6_K blk.2.attn_v=Q6_K "
     "blk.2.ffn_down=Q8_0 blk.2.ffn_gate=Q6_K blk.2.ffn_up=Q6_K blk.3.attn_k=Q6_K blk.3.attn_output=Q6_K "
     "blk.3.attn_q=Q6_K blk.3.attn_v=Q6_K blk.3.ffn_down=Q8_0 blk.3.ffn_gate=Q6_K blk.3.ffn_up=Q6_K "
     "blk.4.attn_k=Q6_K blk.4.attn_output=Q6_K blk.4.attn_q=Q6_K blk.4.attn_v=Q6_K blk.4.ffn_down=Q8_0 "
     "blk.4.ffn_gate=Q6_K blk.4.ffn_up=Q6_K blk.5.attn_k=Q6_K blk.5.attn_output=Q6_K blk.5.attn_q=Q6_K "
     "blk.5.attn_v=Q6_K blk.5.ffn_down=Q8_0 blk.5.ffn_gate=Q6_K blk.5.ffn_up=Q6_K blk.6.attn_k=Q6_K "
     "blk.6.attn_output=Q6_K blk.6.attn_q=Q6_K blk.6.attn_v=Q6_K blk.6.ffn_down=Q8_0 blk.6.ffn_gate=Q6_K "
     "blk.6.ffn_up=Q6_K blk.7.attn_k=Q6_K blk.7.attn_output=Q6_K blk.7.attn_q=Q6_K blk.7.attn_v=Q6_K "
     "blk.7.ffn_down=Q8_0 blk.7.ffn_gate=Q6_K blk.7.ffn_up=Q6_K blk.8.attn_k=Q6_K blk.8.attn_output=Q6_K "
     "blk.8.attn_q=Q6_K blk.8.attn_v=Q6_K blk.8.ffn_down=Q8_0 blk.8.ffn_gate=Q6_K blk.8.ffn_up=Q6_K "
     "blk.9.attn_k=Q6_K blk.9.attn_output=Q6_K blk.9.attn_q=Q6_K blk.9.attn_v=Q6_K blk.9.ffn_down=Q8_0 "
     "blk.9.ffn_gate=Q6_K blk.9.ffn_up=Q6_K blk.10.attn_k=Q6_K blk.10.attn_output=Q6_K blk.10.attn_q=Q6_K "
     "blk.10.attn_v=Q6_K blk.10.ffn_down=Q8_0 blk.10.ffn_gate=Q6_K blk.10.ffn_up=Q6_K blk.11.attn_k=Q6_K "
     "blk.11.attn_output=Q6_K blk.11.attn_q=Q6_K blk.11.attn_v=Q6_K blk.11.ffn_down=Q8_0 "
     "blk.11.ffn_gate=Q6_K blk.11.ffn_up=Q6_K "
    },
    {SHAPE_MIXC, "q4_k_m",
     "token_embd=Q8_0 blk.0.attn_k=Q5_0 blk.0.attn_output=Q5_0 blk.0.attn_q=Q5_0 blk.0.attn_v=Q5_0 "
     "blk.0.ffn_down=Q4_K blk.0.ffn_gate=Q5_0 blk.0.ffn_up=Q5_0 blk.1.attn_k=Q5_0 blk.1.attn_output=Q5_0 "
     "blk.1.attn_q=Q5_0 blk.1.attn_v=Q5_0 blk.1.ffn_down=Q4_K blk.1.ffn_gate=Q5_0 blk.1.ffn_up=Q5_0 "
     "blk.2.attn_k=Q5_0 blk.2.attn_output=Q5_0 blk.2.attn_q=Q5_0 blk.2.attn_v=Q8_0 blk.2.ffn_down=Q6_K "
     "blk.2.ffn_gate=Q5_0 blk.2.ffn_up=Q5_0 "
    },
    {SHAPE_MIXC, "q5_k_m",
     "token_embd=Q8_0 blk.0.attn_k=Q5_1 blk.0.attn_output=Q5_1 blk.0.attn_q=Q5_1 blk.0.attn_v=Q5_1 "
     "blk.0.ffn_down=Q5_K blk.0.ffn_gate=Q5_1 blk.0.ffn_up=Q5_1 blk.1.attn_k=Q5_1 blk.1.attn_output=Q5_1 "
     "blk.1.attn_q=Q5_1 blk.1.attn_v=Q5_1 blk.1.ffn_down=Q5_K blk.1.ffn_gate=Q5_1 blk.1.ffn_up=Q5_1 "
     "blk.2.attn_k=Q5_1 blk.2.attn_output=Q5_1 blk.2.attn_q=Q5_1 blk.2.attn_v=Q8_0 blk.2.ffn_down=Q6_K "
     "blk.2.ffn_gate=Q5_1 blk.2.ffn_up=Q5_1 "
    },
    {SHAPE_MIXC, "q6_k",
     "token_embd=Q8_0 blk.0.attn_k=Q8_0 blk.0.attn_output=Q8_0 blk.0.attn_q=Q8_0 blk.0.attn_v=Q8_0 "
     "blk.0.ffn_down=Q6_K blk.0.ffn_gate=Q8_0 blk.0.ffn_up=Q8_0 blk.1.attn_k=Q8_0 blk.1.attn_output=Q8_0 "
     "blk.1.attn_q=Q8_0 blk.1.attn_v=Q8_0 blk.1.ffn_down=Q6_K blk.1.ffn_gate=Q8_0 blk.1.ffn_up=Q8_0 "
     "blk.2.attn_k=Q8_0 blk.2.attn_output=Q8_0 blk.2.attn_q=Q8_0 blk.2.attn_v=Q8_0 blk.2.ffn_down=Q6_K "
     "blk.2.ffn_gate=Q8_0 blk.2.ffn_up=Q8_0 "
    },
    {SHAPE_KQ512, "q4_k_m",
     "token_embd=Q6_K blk.0.attn_k=Q4_K blk.0.attn_output=Q4_K blk.0.attn_q=Q4_K blk.0.attn_v=Q4_K "
     "blk.0.ffn_down=Q4_K blk.0.ffn_gate=Q4_K blk.0.ffn_up=Q4_K blk.1.attn_k=Q4_K blk.1.attn_output=Q4_K "
     "blk.1.attn_q=Q4_K blk.1.attn_v=Q6_K blk.1.ffn_down=Q6_K blk.1.ffn_gate=Q4_K blk.1.ffn_up=Q4_K "
    },
    {SHAPE_KQ512, "q5_k_m",
     "token_embd=Q6_K blk.0.attn_k=Q5_K blk.0.attn_output=Q5_K blk.0.attn_q=Q5_K blk.0.attn_v=Q5_K "
     "blk.0.ffn_down=Q5_K blk.0.ffn_gate=Q5_K blk.0.ffn_up=Q5_K blk.1.attn_k=Q5_K blk.1.attn_output=Q5_K "
     "blk.1.attn_q=Q5_K blk.1.attn_v=Q6_K blk.1.ffn_down=Q6_K blk.1.ffn_gate=Q5_K blk.1.ffn_up=Q5_K "
    },
    {SHAPE_KQ512, "q6_k",
     "token_embd=Q6_K blk.0.attn_k=Q6_K blk.0.attn_output=Q6_K blk.0.attn_q=Q6_K blk.0.attn_v=Q6_K "
     "blk.0.ffn_down=Q6_K blk.0.ffn_gate=Q6_K blk.0.ffn_up=Q6_K blk.1.attn_k=Q6_K blk.1.attn_output=Q6_K "
     "blk.1.attn_q=Q6_K blk.1.attn_v=Q6_K blk.1.ffn_down=Q6_K blk.1.ffn_gate=Q6_K blk.1.ffn_up=Q6_K "
    },
    {SHAPE_KQ512, "q8_0",
     "token_embd=Q8_0 blk.0.attn_k=Q8_0 blk.0.attn_output=Q8_0 blk.0.attn_q=Q8_0 blk.0.attn_v=Q8_0 "
     "blk.0.ffn_down=Q8_0 blk.0.ffn_gate=Q8_0 blk.0.ffn_up=Q8_0 blk.1.attn_k=Q8_0 blk.1.attn_output=Q8_0 "
     "blk.1.attn_q=Q8_0 blk.1.attn_v=Q8_0 blk.1.ffn_down=Q8_0 blk.1.ffn_gate=Q8_0 blk.1.ffn_up=Q8_0 "
    },
};

struct walk {
    const char *types;
    weight_request rq;
    int n_layers, checked;
    bool tied;
};

/* The type CASES lists for name, or NULL. */
static const char *expected(const char *types, const char *name, char *buf, size_t n) {
    char key[160];
    snprintf(key, sizeof key, " %s=", name);
    char padded[8192];
    snprintf(padded, sizeof padded, " %s", types);
    const char *p = strstr(padded, key);
    if (!p) return NULL;
    p += strlen(key);
    size_t len = strcspn(p, " ");
    snprintf(buf, n, "%.*s", (int)len, p);
    return buf;
}

static int check_tensor(void *ud, const tensor_desc *d, int layer, const char *name, int64_t rows, int64_t cols,
                        kiln_err *err) {
    (void)name, (void)rows, (void)err;
    struct walk *w = ud;
    if (d->role == ROLE_VECTOR) return 0;
    char gname[160], want[16];
    tensor_name(d, true, layer, gname, sizeof gname);
    gname[strlen(gname) - strlen(".weight")] = 0;
    const bool output = d->role == ROLE_OUTPUT || (d->role == ROLE_EMBEDDING && w->tied);
    const weight_slot s = {d, layer, w->n_layers, output, KILN_DT_BF16, (int)cols, 0};
    const kiln_dtype got = weight_format(&w->rq, &s);
    const char *exp = expected(w->types, gname, want, sizeof want);
    CHECK(exp, "%s: not in the expected list", gname);
    if (!exp) return 0;
    const char *got_name = gguf_type_name(kern_formats[got].gguf_type);
    CHECK(!strcmp(got_name, exp), "%s: kiln picks %s, llama-quantize %s", gname, got_name, exp);
    w->checked++;
    return 0;
}

TEST(mixes_match_llama_quantize) {
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        const kiln_config c = shape(CASES[i].shape);
        int quant;
        REQUIRE(kiln_quant_parse(CASES[i].quant, &quant) == 0, "%s", CASES[i].quant);
        struct walk w = {CASES[i].types, weight_request_for(quant), c.n_layers, 0, c.tie_word_embeddings};
        kiln_err err;
        REQUIRE(tensors_each(&c, check_tensor, &w, &err) == 0, "%s", err.msg);
        int listed = 0;
        for (const char *p = CASES[i].types; (p = strchr(p, '=')); p++) listed++;
        CHECK(w.checked == listed, "case %zu (%s): checked %d of %d listed tensors", i, CASES[i].quant, w.checked, listed);
    }
}

TEST(quant_names_round_trip) {
    const char *names[] = {"q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        int q;
        CHECK(kiln_quant_parse(names[i], &q) == 0 && !strcmp(kiln_quant_name(q), names[i]), "%s", names[i]);
    }
    int q;
    CHECK(kiln_quant_parse("q4_k", &q) != 0 && kiln_quant_parse("q4_k_s", &q) != 0, "only llama-quantize's mixes");
}

/* ---- a model kiln quantises: kq-llama-512's F32 GGUF loaded with --quant ---- */

static const int32_t MEDIUM_20[] = {1, 359, 439, 423, 262, 425, 276, 364, 439, 276, 410, 325, 428, 415, 413, 432, 312, 439, 419, 263};
#define N_POS ((int)(sizeof MEDIUM_20 / sizeof *MEDIUM_20))

/* Logits at every position of medium_20 (N_POS x V, malloc'd) from path loaded with quant (-1: as stored). */
static float *logits_of(const char *path, int quant, int *V) {
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.quant = quant, mo.threads = 2, mo.quiet = true;
    kiln_err err;
    kiln_model *m = kiln_model_open(path, &mo, &err);
    CHECK(m, "%s: %s", path, err.msg);
    if (!m) return NULL;
    *V = kiln_model_config(m)->vocab_size;
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.n_ctx = N_POS;
    co.kv_type = KILN_DT_F32; /* llama.cpp's KL figures were made with an f32 KV cache */
    kiln_ctx *c = kiln_ctx_new(m, &co, &err);
    float *out = malloc(sizeof(float) * (size_t)N_POS * *V);
    int seq = c ? kiln_seq_new(c, &err) : -1, nt = N_POS;
    kiln_batch b = {1, &seq, &nt, MEDIUM_20, true, out};
    int rc = c && out ? kiln_forward(c, &b, &err) : -1;
    CHECK(rc == 0, "%s: %s", path, err.msg);
    kiln_ctx_free(c);
    kiln_model_free(m);
    if (rc) free(out), out = NULL;
    return out;
}

static float *read_logits(const char *rel, int V) {
    FILE *f = fopen(shared_path(rel), "rb");
    float *x = malloc(sizeof(float) * (size_t)N_POS * V);
    bool ok = f && x && fread(x, sizeof(float), (size_t)N_POS * V, f) == (size_t)N_POS * V;
    if (f) fclose(f);
    CHECK(ok, "cannot read %s", shared_path(rel));
    if (!ok) free(x), x = NULL;
    return x;
}

/* Mean over the positions of KL(softmax(p) || softmax(q)) (float64, natural log), as the goldens' kl. */
static double mean_kl(const float *p, const float *q, int V) {
    double sum = 0;
    for (int t = 0; t < N_POS; t++) {
        const float *a = p + (size_t)t * V, *b = q + (size_t)t * V;
        double ma = a[0], mb = b[0], za = 0, zb = 0, kl = 0;
        for (int i = 1; i < V; i++) ma = fmax(ma, a[i]), mb = fmax(mb, b[i]);
        for (int i = 0; i < V; i++) za += exp(a[i] - ma), zb += exp(b[i] - mb);
        for (int i = 0; i < V; i++) {
            double la = a[i] - ma - log(za), lb = b[i] - mb - log(zb);
            kl += exp(la) * (la - lb);
        }
        sum += kl;
    }
    return sum / N_POS;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* kiln's --quant X of the F32 file against llama.cpp's file of type X (the same mix, and llama.cpp's
 * reference rounding without an imatrix: the same bytes, so kiln computes the same logits on both), and
 * against the f32 model: mean KL(f32 || kiln's X) within 5% of llama.cpp's KL(f32 || X) (the goldens'
 * kl.f32_to_format.mean, llama.cpp computing on its own file). */
TEST(kiln_quantised_model_is_llama_quantize_close_to_f32) {
    static const struct {
        const char *quant, *file;
        double llamacpp_kl;
    } Q[] = {{"q4_k_m", "Q4_K_M", 0.2826}, {"q5_k_m", "Q5_K_M", 0.08427}, {"q6_k", "Q6_K", 0.02355}};
    char f32[4096];
    snprintf(f32, sizeof f32, "%s", shared_path("gguf/kq-llama-512/kq-llama-512.F32.gguf"));
    REQUIRE(path_exists(f32), "fixture %s missing", f32);
    int V = 0;
    float *ref = read_logits("gguf/kq-llama-512/kq-llama-512.F32.logits.f32", 512);
    for (size_t i = 0; ref && i < sizeof Q / sizeof *Q; i++) {
        int quant;
        REQUIRE(kiln_quant_parse(Q[i].quant, &quant) == 0, "%s", Q[i].quant);
        char theirs[4096], rel[256];
        snprintf(rel, sizeof rel, "gguf/kq-llama-512/kq-llama-512.%s.gguf", Q[i].file);
        snprintf(theirs, sizeof theirs, "%s", shared_path(rel));
        float *ours = logits_of(f32, quant, &V), *on_theirs = logits_of(theirs, -1, &V);
        if (ours && on_theirs && V == 512) {
            const double d = max_diff(ours, on_theirs, (size_t)N_POS * V), kl = mean_kl(ref, ours, V);
            fprintf(stderr, "  %s: max |kiln --quant - kiln on llama-quantize's file| %.3g, KL(f32 || kiln) %.5f "
                            "(llama.cpp %.5f)\n", Q[i].quant, d, kl, Q[i].llamacpp_kl);
            CHECK(d <= 1e-5, "%s: kiln's quantisation computes %.3g away from llama-quantize's file", Q[i].quant, d);
            CHECK(kl <= 1.05 * Q[i].llamacpp_kl, "%s: KL(f32 || kiln) %.5f above 1.05 x llama.cpp's %.5f", Q[i].quant, kl,
                  Q[i].llamacpp_kl);
        }
        free(ours), free(on_theirs);
    }
    free(ref);
}

int main(void) {
    RUN(mixes_match_llama_quantize);
    RUN(quant_names_round_trip);
    RUN(kiln_quantised_model_is_llama_quantize_close_to_f32);
    return check_done();
}

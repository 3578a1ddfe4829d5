/* weight_format.c — the format policy (see weight_format.h). */
#include "model/weight_format.h"

#include <string.h>

#include "kernels/format.h"

/* What --quant takes: llama-quantize's type names. */
static const struct {
    const char *name;
    int quant;
} quants[] = {
    {"q8_0", KILN_DT_Q8_0}, {"q4_0", KILN_DT_Q4_0}, {"q4_k_m", KILN_QUANT_Q4_K_M}, {"q5_k_m", KILN_QUANT_Q5_K_M},
    {"q6_k", KILN_DT_Q6_K},
};

int kiln_quant_parse(const char *name, int *out) {
    for (size_t i = 0; i < sizeof quants / sizeof quants[0]; i++)
        if (!strcmp(name, quants[i].name)) return *out = quants[i].quant, 0;
    return -1;
}

const char *kiln_quant_name(int quant) {
    if (quant == KILN_QUANT_Q4_K_M) return "q4_k_m";
    if (quant == KILN_QUANT_Q5_K_M) return "q5_k_m";
    return kern_is_quantised((kiln_dtype)quant) ? kiln_dtype_name((kiln_dtype)quant) : "?";
}

static bool is_mix(int quant) { return quant >= KILN_DT_COUNT && quant < KILN_QUANT_END; }

int weight_request_from_opts(const kiln_model_opts *o, weight_request *rq, kiln_err *err) {
    int quant = o->quant, dtype = o->dtype;
    if (kern_is_quantised((kiln_dtype)dtype)) {
        if (quant >= 0 && quant != dtype)
            return kiln_err_set(err, "dtype %s contradicts quant %s", kiln_dtype_name((kiln_dtype)dtype),
                                kiln_quant_name(quant));
        quant = dtype, dtype = -1;
    }
    if (dtype < -1 || dtype >= KILN_DT_COUNT) return kiln_err_set(err, "bad dtype %d (want f32, f16 or bf16)", dtype);
    if (quant != -1 && !kern_is_quantised((kiln_dtype)quant) && !is_mix(quant))
        return kiln_err_set(err, "bad quant %d (want q8_0, q4_0, q4_k_m, q5_k_m or q6_k)", quant);
    *rq = (weight_request){quant, dtype};
    return 0;
}

weight_request weight_request_for(int quant_or_dtype) {
    const int f = quant_or_dtype;
    return kern_is_quantised((kiln_dtype)f) || is_mix(f) ? (weight_request){f, -1} : (weight_request){-1, f};
}

bool weight_request_converts(const weight_request *rq) { return rq->quant >= 0 || rq->dtype >= 0; }

/* llama-quantize's use_more_bits: the first and last eighth of the layers, and every third between. */
static bool use_more_bits(int layer, int n_layers) {
    return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

/* The tensor's llama-quantize category, from its GGUF name as llama.cpp's tensor_get_category reads it. */
static bool named(const weight_slot *s, const char *part) {
    return s->desc->gguf_name && strstr(s->desc->gguf_name, part);
}

/* llama_tensor_get_type_impl for the Q4_K_M / Q5_K_M / Q6_K ftypes (non-Falcon): the output projection, then
 * the attn_v-like tensors (attn_v, attn_qkv), attn_k, ffn_down (ffn_down_exps too) and attn_output. */
static kiln_dtype mix_type(int quant, const weight_slot *s) {
    const kiln_dtype base = quant == KILN_QUANT_Q4_K_M ? KILN_DT_Q4_K : quant == KILN_QUANT_Q5_K_M ? KILN_DT_Q5_K
                                                                                                  : KILN_DT_Q6_K;
    const bool mix = base != KILN_DT_Q6_K, eight = s->n_experts == 8;
    if (s->output) return kern_row_fits(base, s->cols) ? KILN_DT_Q6_K : KILN_DT_Q8_0;
    if (named(s, ".attn_v.") || named(s, ".attn_qkv."))
        return eight ? KILN_DT_Q8_0 : mix && use_more_bits(s->layer, s->n_layers) ? KILN_DT_Q6_K : base;
    if (named(s, ".attn_k.")) return eight ? KILN_DT_Q8_0 : base;
    if (named(s, ".ffn_down")) return mix && use_more_bits(s->layer, s->n_layers) ? KILN_DT_Q6_K : base;
    if (named(s, ".attn_output.")) return eight && quant == KILN_QUANT_Q4_K_M ? KILN_DT_Q5_K : base;
    return base;
}

/* llama-quantize's tensor_type_fallback: a type whose blocks do not fit the rows steps to a 32-block one. */
static int fallback(kiln_dtype t, int cols) {
    if (kern_row_fits(t, cols)) return (int)t;
    const kiln_dtype next = t == KILN_DT_Q4_K ? KILN_DT_Q5_0 : t == KILN_DT_Q5_K ? KILN_DT_Q5_1 : KILN_DT_Q8_0;
    return kern_row_fits(next, cols) ? (int)next : -1;
}

kiln_dtype weight_format(const weight_request *rq, const weight_slot *s) {
    if (s->desc->role == ROLE_VECTOR || s->desc->role == ROLE_ROUTER) return KILN_DT_F32;
    if (is_mix(rq->quant) || rq->quant == KILN_DT_Q6_K) {
        int t = fallback(mix_type(rq->quant, s), s->cols);
        return t >= 0 ? (kiln_dtype)t : rq->dtype >= 0 ? (kiln_dtype)rq->dtype : KILN_DT_F16;
    }
    if (rq->quant >= 0) {
        kiln_dtype q = s->output && rq->quant == KILN_DT_Q4_0 ? KILN_DT_Q8_0 : (kiln_dtype)rq->quant;
        if (kern_row_fits(q, s->cols)) return q;
    }
    if (rq->dtype >= 0) return (kiln_dtype)rq->dtype;
    return rq->quant >= 0 ? KILN_DT_F32 : s->stored;
}

size_t weight_bytes(kiln_dtype dt, int64_t rows, int64_t cols) {
    return cols ? kern_row_bytes(dt, (int)cols) * (size_t)rows : (size_t)rows * kern_row_bytes(dt, 1);
}

/* weight_format.h — which format each tensor gets at load: the ONE place that decides it (internal).
 * The loader converts to what this says, and `kiln info --model` counts what this says. */
#ifndef KILN_WEIGHT_FORMAT_H
#define KILN_WEIGHT_FORMAT_H

#include <stdbool.h>

#include "kiln.h"
#include "model/tensors.h"

/* The formats a load asks for: quant -1, a block-quantised format or a mix (KILN_QUANT_*); dtype -1
 * (keep the checkpoint's) or a float format. */
typedef struct weight_request {
    int quant, dtype;
} weight_request;

/* The request kiln_model_opts describe (dtype = Q8_0/Q4_0 is the older spelling of quant), checked. */
int weight_request_from_opts(const kiln_model_opts *o, weight_request *rq, kiln_err *err);
/* The request that loads every matrix in format f, or with mix f (what `kiln info` prints per format). */
weight_request weight_request_for(int quant_or_dtype);
/* Whether the request converts anything (false: zero-copy, every matrix as stored). */
bool weight_request_converts(const weight_request *rq);

/* One tensor a format is picked for: what it is (its table row: role and GGUF name), where (layer -1
 * outside the layers, of n_layers), whether it is the output projection (lm_head, or the embedding when
 * it stands in for it), how it is stored and its row length. */
typedef struct weight_slot {
    const tensor_desc *desc;
    int layer, n_layers;
    bool output;
    kiln_dtype stored;
    int cols;
    int n_experts; /* the model's experts (0: dense): llama-quantize's 8-expert rules */
} weight_slot;

/* The format tensor s gets. Vectors and MoE routers stay f32.
 * Q8_0 / Q4_0 (and the other block formats): every matrix in it; quantised formats need whole blocks per
 * row, so other matrices (e.g. stories260K's 172-wide w_down) get the float format instead (f32 unless
 * dtype names one), as llama.cpp keeps such tensors unquantised. Q4_0 keeps the output projection in
 * Q8_0: every logit goes through it, and llama-quantize likewise keeps it at Q6_K.
 * Q6_K, Q4_K_M, Q5_K_M: llama-quantize's llama_tensor_get_type for those ftypes (llama-quant.cpp):
 * the output projection (and a tied embedding) Q6_K, or Q8_0 when its rows are not whole 256-blocks;
 * under the _M mixes attn_v and ffn_down of the layers use_more_bits picks (the first and last eighth
 * and every third between) Q6_K (a fused attn_qkv counts as attn_v, as its category_is_attn_v says); in a
 * model of exactly 8 experts attn_v and attn_k Q8_0 and, under Q4_K_M, attn_output Q5_K (its MoE rules;
 * the stacked experts' ffn_down_exps follow ffn_down's rule by their layer); then its fallback for rows that
 * are not whole blocks: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and f16 (or dtype) when even that does
 * not fit. */
kiln_dtype weight_format(const weight_request *rq, const weight_slot *s);

/* Bytes a loaded tensor of that format and shape occupies (vectors: cols 0). */
size_t weight_bytes(kiln_dtype dt, int64_t rows, int64_t cols);

#endif

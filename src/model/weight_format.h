/* weight_format.h — which format each tensor gets at load: the ONE place that decides it (internal).
 * The loader converts to what this says, and `kiln info --model` counts what this says. */
#ifndef KILN_WEIGHT_FORMAT_H
#define KILN_WEIGHT_FORMAT_H

#include <stdbool.h>

#include "kiln.h"
#include "model/tensors.h"

/* The formats a load asks for: quant -1 or a block-quantised format; dtype -1 (keep the checkpoint's)
 * or a float format. */
typedef struct weight_request {
    int quant, dtype;
} weight_request;

/* The request kiln_model_opts describe (dtype = Q8_0/Q4_0 is the older spelling of quant), checked. */
int weight_request_from_opts(const kiln_model_opts *o, weight_request *rq, kiln_err *err);
/* The request that loads every matrix in format dt (what `kiln info` prints per format). */
weight_request weight_request_for(kiln_dtype dt);
/* Whether the request converts anything (false: zero-copy, every matrix as stored). */
bool weight_request_converts(const weight_request *rq);

/* The format a tensor of role `role`, stored as `stored`, with rows of `cols` values gets. output: it is
 * the output projection (lm_head, or the embedding when it stands in for it). Vectors and MoE routers stay f32. Quantised
 * formats need whole blocks per row, so other matrices (e.g. stories260K's 172-wide w_down) get the float
 * format instead (f32 unless dtype names one), as llama.cpp keeps such tensors unquantised. Q4_0 keeps the
 * output projection in Q8_0: every logit goes through it, and llama-quantize likewise keeps it at Q6_K
 * (Q8_0 when rows are not 256-wide). */
kiln_dtype weight_format(const weight_request *rq, tensor_role role, bool output, kiln_dtype stored, int cols);

/* Bytes a loaded tensor of that format and shape occupies (vectors: cols 0). */
size_t weight_bytes(kiln_dtype dt, int64_t rows, int64_t cols);

#endif

/* weight_format.c — the format policy (see weight_format.h). */
#include "model/weight_format.h"

#include "kernels/format.h"

int weight_request_from_opts(const kiln_model_opts *o, weight_request *rq, kiln_err *err) {
    int quant = o->quant, dtype = o->dtype;
    if (kern_is_quantised((kiln_dtype)dtype)) {
        if (quant >= 0 && quant != dtype)
            return kiln_err_set(err, "dtype %s contradicts quant %s", kiln_dtype_name((kiln_dtype)dtype),
                                kiln_dtype_name((kiln_dtype)quant));
        quant = dtype, dtype = -1;
    }
    if (dtype < -1 || dtype >= KILN_DT_COUNT) return kiln_err_set(err, "bad dtype %d (want f32, f16 or bf16)", dtype);
    if (quant != -1 && !kern_is_quantised((kiln_dtype)quant))
        return kiln_err_set(err, "bad quant %d (want q8_0 or q4_0)", quant);
    *rq = (weight_request){quant, dtype};
    return 0;
}

weight_request weight_request_for(kiln_dtype dt) {
    return kern_is_quantised(dt) ? (weight_request){(int)dt, -1} : (weight_request){-1, (int)dt};
}

bool weight_request_converts(const weight_request *rq) { return rq->quant >= 0 || rq->dtype >= 0; }

kiln_dtype weight_format(const weight_request *rq, tensor_role role, bool output, kiln_dtype stored, int cols) {
    if (role == ROLE_VECTOR || role == ROLE_ROUTER) return KILN_DT_F32;
    if (rq->quant >= 0) {
        kiln_dtype q = output && rq->quant == KILN_DT_Q4_0 ? KILN_DT_Q8_0 : (kiln_dtype)rq->quant;
        if (kern_row_fits(q, cols)) return q;
    }
    if (rq->dtype >= 0) return (kiln_dtype)rq->dtype;
    return rq->quant >= 0 ? KILN_DT_F32 : stored;
}

size_t weight_bytes(kiln_dtype dt, int64_t rows, int64_t cols) {
    return cols ? kern_row_bytes(dt, (int)cols) * (size_t)rows : (size_t)rows * kern_row_bytes(dt, 1);
}

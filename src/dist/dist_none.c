/* dist_none.c — dist.h without MPI (the build found no Open MPI development files): the single process.
 * --tp / --pp then fail at kiln_dist_init with one line saying so; nothing else can hold a kiln_dist. */
#ifndef KILN_MPI
#include "dist/dist.h"

bool kiln_dist_available(void) { return false; }

kiln_dist *kiln_dist_init(int tp, int pp, kiln_err *err) {
    (void)tp, (void)pp;
    kiln_err_set(err, "--tp / --pp: kiln was built without MPI (install libopenmpi-dev and openmpi-bin, then rebuild)");
    return NULL;
}

void kiln_dist_free(kiln_dist *d) { (void)d; }

/* No kiln_dist exists here, so every exchange is the single process's no-op. */
int dist_allreduce(kiln_dist *d, float *x, size_t n, kiln_err *err) { return (void)d, (void)x, (void)n, (void)err, 0; }
int dist_recv_prev(kiln_dist *d, float *x, size_t n, kiln_err *err) { return (void)d, (void)x, (void)n, (void)err, 0; }
int dist_send_next(kiln_dist *d, const float *x, size_t n, kiln_err *err) { return (void)d, (void)x, (void)n, (void)err, 0; }
int dist_to_output(kiln_dist *d, float *h, size_t n, kiln_err *err) { return (void)d, (void)h, (void)n, (void)err, 0; }
float *dist_logits_part(kiln_dist *d, float *out, size_t n_out, kiln_err *err) {
    return (void)d, (void)n_out, (void)err, out;
}
int dist_logits_gather(kiln_dist *d, const float *part, float *out, size_t n_out, kiln_err *err) {
    return (void)d, (void)part, (void)out, (void)n_out, (void)err, 0;
}
int dist_bcast_token(int32_t *tok, kiln_err *err) { return (void)tok, (void)err, 0; }
int dist_bcast_ints(kiln_dist *d, int32_t *x, int n, bool idle, kiln_err *err) {
    return (void)d, (void)x, (void)n, (void)idle, (void)err, 0;
}
void dist_defer(kiln_dist *d, bool on) { (void)d, (void)on; }
int dist_flush(kiln_dist *d, kiln_err *err) { return (void)d, (void)err, 0; }
int dist_threads_serialized(const kiln_dist *d, kiln_err *err) { return (void)d, (void)err, 0; }
#endif

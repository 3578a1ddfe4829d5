/* sampler_bench.c — time of one sampled token's logits processing and draw on a 152k vocabulary (Qwen's),
 * for a few top-k / top-p settings (not a test: it prints figures).
 *   build/bench/sampler_bench [TOP_K TOP_P]  (default: Qwen3's generation_config, top_k 20, top_p 0.95) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "kiln.h"
int main(int argc, char **argv) {
    int V = 151936, N = 50, topk = argc > 1 ? atoi(argv[1]) : 20; float topp = argc > 2 ? atof(argv[2]) : 0.95f;
    float *base = malloc(V * 4), *l = malloc(V * 4);
    srand(1); for (int i = 0; i < V; i++) base[i] = (float)(rand() % 20000) / 1000.0f - 10;
    kiln_gen_params p; kiln_gen_params_default(&p); p.do_sample = true; p.temperature = 0.7f; p.top_k = topk; p.top_p = topp; p.seed = 7;
    kiln_err err; kiln_sampler *s = kiln_sampler_new(&p, V, &err);
    double t0 = kiln_now(); unsigned long long h = 0;
    for (int r = 0; r < N; r++) { memcpy(l, base, V * 4); base[r] += 0.5f; h = h * 31 + kiln_sampler_sample(s, l, NULL, 0, 0); }
    printf("top_k %d top_p %.2f: %.2f ms/token, hash %llu\n", topk, topp, (kiln_now() - t0) * 1e3 / N, h);
    kiln_sampler_free(s); free(base); free(l); return 0;
}

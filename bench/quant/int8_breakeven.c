/* Where sparse int8 packing starts to pay: sparse over dense rf_qgemm time
 * on the bench's layer shapes at 256 rows, pruned 30-80% (random
 * unstructured), at the best ISA level and at AVX2, one thread, best of 15
 * samples of >= 0.2 ms thread CPU time. The result sets
 * QUANT_SPARSE_PACK_MIN (src/compress/quant.c; docs/kernels.md).
 * Build and run: bench/cbench.sh bench/quant/int8_breakeven.c */
#include "raffle/kernels.h"

#include <stdio.h>
#include <stdlib.h>

static double best_time(const rf_qmat *q, const uint8_t *A, int32_t *C, int M) {
    double best = 1e9;
    for (int r = 0; r < 15; r++) {
        double t0 = rf_thread_seconds();
        int it = 0;
        do { rf_qgemm(q, A, C, M); it++; } while (rf_thread_seconds() - t0 < 2e-4);
        double t = (rf_thread_seconds() - t0) / it;
        if (t < best) best = t;
    }
    return best;
}

int main(void) {
    static const int shapes[][2] = {{300, 784}, {100, 300}, {10, 100}, {64, 9},  {64, 576}, {256, 256},
                                    {10, 256},  {192, 64},  {64, 64},  {256, 64}, {64, 256}, {64, 49}};
    static const double pruned[] = {0.3, 0.4, 0.5, 0.6, 0.7, 0.8};
    const int M = 256, nsh = sizeof shapes / sizeof shapes[0], np = sizeof pruned / sizeof pruned[0];
    rf_isa levels[2] = {rf_kernels_cpu_isa(), RF_ISA_AVX2};
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_rng r;
    rf_rng_init(&r, 11, 0);
    for (int l = 0; l < 2; l++) {
        if (l && levels[0] <= RF_ISA_AVX2) break;
        rf_kernels_force(levels[l]);
        printf("isa %s: dense time / sparse time, %d rows\n", rf_isa_name(rf_kernels_isa()), M);
        for (int s = 0; s < nsh; s++) {
            int N = shapes[s][0], K = shapes[s][1];
            int8_t *W = malloc((size_t)N * K);
            uint8_t *A = malloc((size_t)M * K);
            int32_t *C = malloc(sizeof(int32_t) * (size_t)M * N);
            if (!W || !A || !C) { fprintf(stderr, "out of memory\n"); return 1; }
            for (int i = 0; i < M * K; i++) A[i] = (uint8_t)rf_rng_u32(&r);
            printf("%4dx%-4d", N, K);
            for (int p = 0; p < np; p++) {
                for (int i = 0; i < N * K; i++) {
                    int8_t v = (int8_t)(rf_rng_u32(&r) % 255 - 127);
                    W[i] = rf_rng_uniform_double(&r) < pruned[p] ? 0 : (v ? v : 1);
                }
                rf_qmat *d, *sq;
                if (rf_qmat_pack(&ctx, W, N, K, 0, &d) || rf_qmat_pack(&ctx, W, N, K, 1, &sq)) {
                    fprintf(stderr, "%s\n", ctx.err);
                    return 1;
                }
                printf("  %.1f: %5.2f", pruned[p], best_time(d, A, C, M) / best_time(sq, A, C, M));
                rf_qmat_free(d);
                rf_qmat_free(sq);
            }
            printf("\n");
            free(W); free(A); free(C);
        }
    }
    rf_kernels_release_workspace();
    return 0;
}

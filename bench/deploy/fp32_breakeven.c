/* Where the sparse fp32 kernel starts to pay: dense sgemm time over rf_spmm
 * time on the bench's layer shapes, pruned 30-95% (random unstructured), at
 * the evaluation batch (256 samples: 256 rows for linear layers, capped at
 * 2,048 im2col or token rows), at 64 and at 16, one thread, best of 15
 * samples of >= 0.2 ms thread CPU time. The result sets
 * RF_DEPLOY_EVAL_MIN_SPARSITY (include/raffle/deploy.h; docs/kernels.md).
 * Build and run: bench/cbench.sh bench/deploy/fp32_breakeven.c */
#include "raffle/kernels.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct { const float *X, *W; float *Y; const rf_spmat *sp; int M, N, K; } job;

static void run(const job *j, int sparse) {
    if (sparse) rf_spmm(j->sp, j->X, NULL, j->Y, j->M);
    else rf_linear_f32(j->X, j->W, NULL, j->Y, j->M, j->N, j->K);
}

static double best_time(const job *j, int sparse) {
    double best = 1e9;
    run(j, sparse);
    for (int r = 0; r < 15; r++) {
        double t0 = rf_thread_seconds();
        int it = 0;
        do { run(j, sparse); it++; } while (rf_thread_seconds() - t0 < 2e-4);
        double t = (rf_thread_seconds() - t0) / it;
        if (t < best) best = t;
    }
    return best;
}

int main(void) {
    /* N, K, rows per sample */
    static const int shapes[][3] = {{300, 784, 1}, {100, 300, 1}, {10, 100, 1}, {64, 9, 784},  {64, 576, 784},
                                    {256, 256, 1}, {10, 256, 1},  {192, 64, 17}, {64, 64, 17}, {256, 64, 17},
                                    {64, 256, 17}, {64, 49, 16}};
    static const double pruned[] = {0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95};
    static const int batches[] = {256, 64, 16};
    const int nsh = sizeof shapes / sizeof shapes[0], np = sizeof pruned / sizeof pruned[0];
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_rng r;
    rf_rng_init(&r, 12, 0);
    printf("isa %s: dense sgemm time / sparse time\n", rf_isa_name(rf_kernels_init()));
    for (int bi = 0; bi < 3; bi++)
        for (int s = 0; s < nsh; s++) {
            int N = shapes[s][0], K = shapes[s][1];
            long rows = (long)batches[bi] * shapes[s][2];
            int M = (int)(rows > 2048 ? 2048 : rows);
            float *W = malloc(sizeof(float) * (size_t)N * K), *X = malloc(sizeof(float) * (size_t)M * K);
            float *Y = malloc(sizeof(float) * (size_t)M * N);
            if (!W || !X || !Y) { fprintf(stderr, "out of memory\n"); return 1; }
            for (size_t i = 0; i < (size_t)M * K; i++) X[i] = rf_rng_normal(&r);
            printf("batch %3d %4dx%-4d", batches[bi], N, K);
            for (int p = 0; p < np; p++) {
                for (size_t i = 0; i < (size_t)N * K; i++)
                    W[i] = rf_rng_uniform_double(&r) < pruned[p] ? 0.0f : rf_rng_normal(&r);
                rf_spmat *sp;
                if (rf_spmat_pack(&ctx, W, N, K, &sp)) { fprintf(stderr, "%s\n", ctx.err); return 1; }
                job j = {X, W, Y, sp, M, N, K};
                printf("  %.2f: %5.2f", pruned[p], best_time(&j, 0) / best_time(&j, 1));
                rf_spmat_free(sp);
            }
            printf("\n");
            free(W); free(X); free(Y);
        }
    rf_kernels_release_workspace();
    return 0;
}

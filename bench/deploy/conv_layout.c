/* Sparse conv inference, feature-major against row-major: conv-2 and
 * lenet-5 pruned at random to 90% and 95%, deployed with the sparse kernel on
 * every layer (RF_DEPLOY_SPARSE), whole-model inference forwards timed at
 * batch 1 and 64 on one thread, three ways side by side in one process:
 *   dense  - no overrides (Winograd / direct / im2col + sgemm);
 *   rows   - the conv layers' sparse override through its row-major form
 *            (im2col rows, rf_spmm, result transposed to NCHW): what
 *            deployment ran before infer_gemm_feat;
 *   feat   - through infer_gemm_feat (column matrix in, per-channel result
 *            out: rf_spmm_lay RF_FEAT/RF_FEAT, no transposes).
 * Best of 7 samples of >= 20 ms thread CPU time; docs/kernels.md has results.
 * Build and run: OPENBLAS_NUM_THREADS=1 bench/cbench.sh bench/deploy/conv_layout.c */
#include "raffle/deploy.h"
#include "raffle/kernels.h"
#include "raffle/nn.h"

#include <stdio.h>
#include <stdlib.h>

static double time_forward(rf_ctx *ctx, rf_model *m, const float *x, int batch) {
    const float *lg;
    double best = 1e30;
    rf_model_forward(ctx, m, x, batch, 0, &lg);
    for (int r = 0; r < 7; r++) {
        double t0 = rf_thread_seconds(), t;
        long n = 0;
        do { rf_model_forward(ctx, m, x, batch, 0, &lg); n++; t = rf_thread_seconds() - t0; } while (t < 0.02);
        if (t / (double)n < best) best = t / (double)n;
    }
    return best;
}

int main(void) {
    static const char *const presets[] = {"conv-2", "lenet-5"};
    static const double sparsities[] = {0.9, 0.95};
    static const int batches[] = {1, 64};
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    printf("isa %s; whole-model inference forward, ms per batch\n", rf_isa_name(rf_kernels_init()));
    printf("%-8s %8s %5s %9s %9s %9s %10s %10s\n", "model", "sparsity", "batch", "dense", "rows", "feat",
           "rows/feat", "dense/feat");
    for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++)
        for (size_t s = 0; s < sizeof sparsities / sizeof sparsities[0]; s++) {
            rf_model *m;
            if (rf_model_create(&ctx, presets[p], &m) || rf_model_init(&ctx, m, 7)) {
                fprintf(stderr, "%s\n", rf_ctx_error(&ctx));
                return 1;
            }
            rf_rng r;
            rf_rng_init(&r, 3, 0);
            for (int t = 0; t < m->n_ptensors; t++)
                if (m->ptensors[t].role == RF_P_WEIGHT)
                    for (size_t i = 0; i < m->ptensors[t].numel; i++)
                        if (rf_rng_uniform_double(&r) < sparsities[s]) m->params[m->ptensors[t].offset + i] = 0.0f;
            size_t in = (size_t)m->input.d[0] * m->input.d[1] * m->input.d[2];
            float *x = malloc(sizeof(float) * in * 64);
            if (!x) return 1;
            for (size_t i = 0; i < in * 64; i++) x[i] = rf_rng_uniform(&r);
            for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
                int B = batches[b];
                double td = time_forward(&ctx, m, x, B);
                rf_deploy_opts o;
                rf_deploy_opts_default(&o);
                o.mode = RF_DEPLOY_SPARSE;
                o.batch = B;
                if (rf_deploy_model(&ctx, m, &o, NULL, 0, NULL)) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
                double tf = time_forward(&ctx, m, x, B);
                rf_status (*saved[64])(void *, const float *, float *, int, int);
                for (int i = 0; i < m->n_layers && i < 64; i++) {
                    saved[i] = m->layers[i].infer_gemm_feat;
                    m->layers[i].infer_gemm_feat = NULL;
                }
                double tr = time_forward(&ctx, m, x, B);
                for (int i = 0; i < m->n_layers && i < 64; i++) m->layers[i].infer_gemm_feat = saved[i];
                rf_deploy_release(m);
                printf("%-8s %8.2f %5d %9.3f %9.3f %9.3f %9.2fx %9.2fx\n", presets[p], sparsities[s], B, td * 1e3,
                       tr * 1e3, tf * 1e3, tr / tf, td / tf);
                fflush(stdout);
            }
            free(x);
            rf_model_free(m);
        }
    return 0;
}

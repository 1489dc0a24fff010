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
#include "model_bench.h"
#include "raffle/deploy.h"
#include "raffle/kernels.h"
#include "raffle/nn.h"

#include <stdio.h>
#include <stdlib.h>

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
            float *x;
            if (pruned_preset(&ctx, presets[p], sparsities[s], 64, &m, &x)) return 1;
            for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
                int B = batches[b];
                double td = time_forward(&ctx, m, x, B);
                if (deploy_sparse(&ctx, m, B)) return 1;
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

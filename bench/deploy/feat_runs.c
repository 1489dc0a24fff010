/* Feature-major runs (src/nn/model.c) against row-major inference: lenet-
 * 300-100, conv-2 and vit-tiny pruned at random to 90% and 95%, deployed
 * with the sparse kernel on every site (RF_DEPLOY_SPARSE), whole-model
 * inference forwards timed at batch 1, 64 and 256 on one thread, three ways
 * side by side in one process:
 *   dense - no overrides;
 *   rows  - the deployed model with feature-major runs off (each sparse
 *           product transposes its activation panels in and out);
 *   rule  - with them where their rule puts them (the default: vit-tiny
 *           from 2 samples);
 *   all   - forced wherever a layer can run feature-major
 *           (engine option feat_runs=always: each run transposes its input once and
 *           its last output once).
 * Best of 7 samples of >= 20 ms thread CPU time; docs/kernels.md has results.
 * Build and run: OPENBLAS_NUM_THREADS=1 bench/cbench.sh bench/deploy/feat_runs.c */
#include "nn/layers.h"
#include "model_bench.h"
#include "raffle/deploy.h"
#include "raffle/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    static const char *const presets[] = {"lenet-300-100", "conv-2", "vit-tiny"};
    static const double sparsities[] = {0.9, 0.95};
    static const int batches[] = {1, 64, 256};
    enum { MAXB = 256 };
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    printf("isa %s; whole-model inference forward, ms per batch\n", rf_isa_name(rf_kernels_init()));
    printf("%-14s %8s %5s %9s %9s %9s %9s %10s %10s %10s\n", "model", "sparsity", "batch", "dense", "rows", "rule",
           "all", "rows/rule", "rows/all", "dense/rule");
    for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++) {
        if (argc > 1 && strcmp(argv[1], presets[p]) != 0) continue;
        for (size_t s = 0; s < sizeof sparsities / sizeof sparsities[0]; s++) {
            rf_model *m;
            float *x;
            if (pruned_preset(&ctx, presets[p], sparsities[s], MAXB, &m, &x)) return 1;
            for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
                int B = batches[b];
                double td = time_forward(&ctx, m, x, B);
                if (deploy_sparse(&ctx, m, B)) return 1;
                ctx.engine.v[RF_ENGINE_FEAT_RUNS] = RF_ENGINE_FEAT_RULE;
                double tf = time_forward(&ctx, m, x, B);
                ctx.engine.v[RF_ENGINE_FEAT_RUNS] = RF_ENGINE_FEAT_ALWAYS;
                double ta = time_forward(&ctx, m, x, B);
                ctx.engine.v[RF_ENGINE_FEAT_RUNS] = RF_ENGINE_FEAT_OFF;
                double tr = time_forward(&ctx, m, x, B);
                ctx.engine.v[RF_ENGINE_FEAT_RUNS] = RF_ENGINE_FEAT_RULE;
                rf_deploy_release(m);
                printf("%-14s %8.2f %5d %9.3f %9.3f %9.3f %9.3f %9.2fx %9.2fx %9.2fx\n", presets[p], sparsities[s], B,
                       td * 1e3, tr * 1e3, tf * 1e3, ta * 1e3, tr / tf, tr / ta, td / tf);
                fflush(stdout);
            }
            free(x);
            rf_model_free(m);
        }
    }
    return 0;
}

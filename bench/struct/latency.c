/* Dense latency of checkpoints side by side (docs/kernels.md, "Structured
 * pruning"): each checkpoint is loaded and timed at batch 1 and 64 with
 * plain sgemm (no overrides: "dense"), and, when it has zero weights, also
 * deployed as a sweep's finish step deploys it (rf_deploy_model, sparse or
 * N:M kernels where calibration measures them faster: "deployed"). Rounds
 * alternate between the checkpoints so that load on the shared machine
 * hits all of them alike; each number is the best of 7 samples of >= 20 ms
 * of thread CPU time (model_bench.h), and the table reports the median
 * over rounds. The first checkpoint is the reference of the speed-ups.
 *   OPENBLAS_NUM_THREADS=1 bench/cbench.sh bench/struct/latency.c ROUNDS DATA LABEL=CKPT ...
 * DATA: a dataset spec whose first test samples are the inputs. Engine
 * options come from the environment (docs/engine.md: RAFFLE_CONV=gemm runs
 * every conv as im2col + sgemm, so that a change of width cannot also
 * change the conv path). Prints a
 * markdown table and one JSON line per checkpoint. */
#include "../deploy/model_bench.h"
#include "raffle/ckpt.h"
#include "raffle/data.h"
#include "raffle/train.h"
#include "raffle/engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAXB = 64, MAXC = 8, MAXR = 15 };

static int dcmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, dcmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: latency ROUNDS DATA LABEL=CKPT ...\n"); return 2; }
    int rounds = atoi(argv[1]), nc = argc - 3;
    if (rounds < 1 || rounds > MAXR || nc > MAXC) { fprintf(stderr, "1 <= ROUNDS <= %d, at most %d checkpoints\n", MAXR, MAXC); return 2; }
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    /* engine options from the environment (RAFFLE_CONV=gemm forces one conv path for every model) */
    if (rf_engine_from_env(&ctx, &ctx.engine)) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
    rf_dataset *tr = NULL, *te = NULL;
    if (rf_data_load(&ctx, argv[2], &tr, &te)) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
    rf_model *m[MAXC];
    const char *label[MAXC];
    double sparsity[MAXC], t[MAXC][4][MAXR];   /* dense 1, dense 64, deployed 1, deployed 64 */
    int sparse_sites[MAXC], nm_sites[MAXC];
    for (int c = 0; c < nc; c++) {
        char *eq = strchr(argv[3 + c], '=');
        if (!eq) { fprintf(stderr, "expected LABEL=CKPT: %s\n", argv[3 + c]); return 2; }
        *eq = '\0';
        label[c] = argv[3 + c];
        if (rf_model_load(&ctx, eq + 1, &m[c])) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
        size_t tot = 0, z = 0;
        for (int p = 0; p < m[c]->n_ptensors; p++)
            if (m[c]->ptensors[p].prunable)
                for (size_t k = 0; k < m[c]->ptensors[p].numel; k++) { tot++; z += m[c]->params[m[c]->ptensors[p].offset + k] == 0.0f; }
        sparsity[c] = tot ? (double)z / (double)tot : 0.0;
    }
    size_t ss = (size_t)te->c * te->h * te->w;
    float *x = malloc(sizeof(float) * ss * MAXB);
    for (int i = 0; i < MAXB; i++) memcpy(x + (size_t)i * ss, te->x + (size_t)i * ss, ss * sizeof(float));
    for (int r = 0; r < rounds; r++)
        for (int c = 0; c < nc; c++) {
            t[c][0][r] = time_forward(&ctx, m[c], x, 1);
            t[c][1][r] = time_forward(&ctx, m[c], x, MAXB);
            t[c][2][r] = t[c][0][r];
            t[c][3][r] = t[c][1][r];
            sparse_sites[c] = nm_sites[c] = 0;
            if (sparsity[c] > 0.0) {
                rf_deploy_opts o;
                rf_deploy_opts_default(&o);
                o.batch = MAXB;
                rf_deploy_layer info[512];
                int ni = 0;
                if (rf_deploy_model(&ctx, m[c], &o, info, 512, &ni)) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
                for (int i = 0; i < ni; i++) { sparse_sites[c] += info[i].sparse; nm_sites[c] += info[i].sparse && info[i].nm; }
                t[c][2][r] = time_forward(&ctx, m[c], x, 1);
                t[c][3][r] = time_forward(&ctx, m[c], x, MAXB);
                rf_deploy_release(m[c]);
            }
        }
    double med[MAXC][4];
    for (int c = 0; c < nc; c++)
        for (int k = 0; k < 4; k++) med[c][k] = median(t[c][k], rounds);
    printf("| model | parameters | FLOPs (MACs) | zero weights | dense ms (b=1) | dense ms (b=64) | deployed ms (b=1) | deployed ms (b=64) | speed-up b=1 | speed-up b=64 |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (int c = 0; c < nc; c++) {
        double b1 = fmin(med[c][0], med[c][2]), b64 = fmin(med[c][1], med[c][3]);
        printf("| %s | %zu | %.2fM | %.1f%% | %.3f | %.2f | %.3f | %.2f | %.2fx | %.2fx |\n", label[c], m[c]->n_params,
               rf_model_flops(m[c]) / 1e6, 100 * sparsity[c], 1e3 * med[c][0], 1e3 * med[c][1], 1e3 * med[c][2],
               1e3 * med[c][3], fmin(med[0][0], med[0][2]) / b1, fmin(med[0][1], med[0][3]) / b64);
    }
    for (int c = 0; c < nc; c++)
        printf("{\"label\":\"%s\",\"parameters\":%zu,\"flops\":%.0f,\"zero_fraction\":%.6f,\"rounds\":%d,"
               "\"dense_ms_b1\":%.5f,\"dense_ms_b64\":%.5f,\"deployed_ms_b1\":%.5f,\"deployed_ms_b64\":%.5f,"
               "\"sparse_sites\":%d,\"nm_sites\":%d}\n",
               label[c], m[c]->n_params, rf_model_flops(m[c]), sparsity[c], rounds, 1e3 * med[c][0], 1e3 * med[c][1],
               1e3 * med[c][2], 1e3 * med[c][3], sparse_sites[c], nm_sites[c]);
    free(x);
    for (int c = 0; c < nc; c++) rf_model_free(m[c]);
    rf_dataset_free(tr);
    rf_dataset_free(te);
    return 0;
}

/* Shared by the whole-model deployment benches (conv_layout.c,
 * feat_runs.c): a preset pruned at random with its inputs, its sparse
 * deployment on every site, and the timer of
 * inference forwards. */
#ifndef RAFFLE_BENCH_MODEL_BENCH_H
#define RAFFLE_BENCH_MODEL_BENCH_H

#include "raffle/deploy.h"
#include "raffle/kernels.h"
#include "raffle/nn.h"

#include <stdio.h>
#include <stdlib.h>

/* Best of 7 samples of >= 20 ms thread CPU time, after one warm-up call. */
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

/* Preset `name` (seed 7) with each weight zeroed with probability sparsity,
 * and *x = samples random inputs (both owned by the caller). 0 on success. */
static int pruned_preset(rf_ctx *ctx, const char *name, double sparsity, int samples, rf_model **out, float **x) {
    rf_model *m;
    if (rf_model_create(ctx, name, &m) || rf_model_init(ctx, m, 7)) {
        fprintf(stderr, "%s\n", rf_ctx_error(ctx));
        return 1;
    }
    rf_rng r;
    rf_rng_init(&r, 3, 0);
    for (int t = 0; t < m->n_ptensors; t++)
        if (m->ptensors[t].role == RF_P_WEIGHT)
            for (size_t i = 0; i < m->ptensors[t].numel; i++)
                if (rf_rng_uniform_double(&r) < sparsity) m->params[m->ptensors[t].offset + i] = 0.0f;
    size_t in = (size_t)m->input.d[0] * m->input.d[1] * m->input.d[2] * (size_t)samples;
    if (!(*x = malloc(sizeof(float) * in))) { rf_model_free(m); return 1; }
    for (size_t i = 0; i < in; i++) (*x)[i] = rf_rng_uniform(&r);
    *out = m;
    return 0;
}

/* Deploys the sparse kernel on every site of m for batches of B. 0 on success. */
static int deploy_sparse(rf_ctx *ctx, rf_model *m, int B) {
    rf_deploy_opts o;
    rf_deploy_opts_default(&o);
    o.mode = RF_DEPLOY_SPARSE;
    o.batch = B;
    if (!rf_deploy_model(ctx, m, &o, NULL, 0, NULL)) return 0;
    fprintf(stderr, "%s\n", rf_ctx_error(ctx));
    return 1;
}

#endif

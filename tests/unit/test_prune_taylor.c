/* The "taylor" pruning method (src/compress/prune_taylor.c: first-order
 * Taylor importance, Molchanov et al. 2019 eq. 4, averaged over batches)
 * against a mask computed here by hand: a 3 -> 2 linear classifier with
 * fixed weights on four samples, whose softmax cross-entropy gradient is
 * written out in closed form, dL/dW = (1/B) Σ_n (softmax(W x_n + b) − e_{y_n}) x_nᵀ,
 * per batch, scored (g·w)² and averaged over the two batches, and the three
 * lowest of the six weights pruned (global scope, ties by index). The same
 * data ranks differently under |mean g · w| and under one batch's |g·w|
 * (SNIP): the test checks that too, so it pins the variant, not just "some
 * gradient saliency". */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "raffle/prune.h"

#define N 4
#define K 3
#define C 2
#define B 2

static const float W0[C * K] = {0.875f, -0.125f, -0.5f, 0.625f, 0.625f, -1.0f};
static const float b0[C] = {0.10f, -0.20f};
/* exact in float; chosen so that the three rankings below disagree */
static const float X[N * K] = {0.75f, -1.75f, -1.5f, 1.5f, -1.75f, -1.0f, 2.0f, -0.25f, -1.5f, -1.25f, -1.0f, 1.0f};
static const int32_t Y[N] = {0, 1, 0, 1};

static rf_dataset *make_data(void) {
    rf_dataset *d = rf_calloc(1, sizeof *d);
    d->x = rf_malloc(sizeof X);
    d->y = rf_malloc(sizeof Y);
    memcpy(d->x, X, sizeof X);
    memcpy(d->y, Y, sizeof Y);
    snprintf(d->name, sizeof d->name, "hand");
    d->n = N; d->c = 1; d->h = 1; d->w = K; d->n_classes = C;
    return d;
}

/* Gradient of batch (samples idx[0..B)) in double, by the closed form. */
static void batch_grad(const int64_t *idx, double g[C * K]) {
    memset(g, 0, sizeof(double) * C * K);
    for (int s = 0; s < B; s++) {
        const float *x = X + idx[s] * K;
        double z[C], mx = -1e300, den = 0;
        for (int c = 0; c < C; c++) {
            z[c] = b0[c];
            for (int k = 0; k < K; k++) z[c] += (double)W0[c * K + k] * x[k];
            if (z[c] > mx) mx = z[c];
        }
        for (int c = 0; c < C; c++) den += exp(z[c] - mx);
        for (int c = 0; c < C; c++) {
            double p = exp(z[c] - mx) / den - (c == Y[idx[s]]);
            for (int k = 0; k < K; k++) g[c * K + k] += p * x[k] / B;
        }
    }
}

/* The mask that prunes the 3 lowest of scores (ties: lower index first). */
static void lowest3(const double *sc, float *mask) {
    for (int i = 0; i < C * K; i++) mask[i] = 1.0f;
    for (int r = 0; r < 3; r++) {
        int lo = -1;
        for (int i = 0; i < C * K; i++)
            if (mask[i] != 0.0f && (lo < 0 || sc[i] < sc[lo])) lo = i;
        mask[lo] = 0.0f;
    }
}

Test(prune_taylor, matches_the_hand_computed_mask) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    const char *spec = "{\"input\":[1,1,3],\"classes\":2,\"layers\":[{\"type\":\"flatten\"},"
                       "{\"type\":\"linear\",\"name\":\"fc\",\"out\":2}]}";
    rf_model *m = NULL;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s", ctx.err);
    const rf_param *w = rf_model_param(m, "fc.weight"), *bias = rf_model_param(m, "fc.bias");
    memcpy(m->params + w->offset, W0, sizeof W0);
    memcpy(m->params + bias->offset, b0, sizeof b0);
    rf_dataset *d = make_data();

    /* the batches the method sees: the batcher's order for (seed 0, epoch 0) */
    int64_t idx[2][B];
    rf_batcher bt;
    cr_assert_eq(rf_batcher_init(&ctx, &bt, d, B, 0, 0, 1, 1), RF_OK);
    for (int b = 0; b < 2; b++) cr_assert_eq(rf_batcher_next(&bt, NULL, NULL, idx[b]), B);
    rf_batcher_free(&bt);

    double g[2][C * K], taylor[C * K], mean_sq[C * K], snip[C * K];
    batch_grad(idx[0], g[0]);
    batch_grad(idx[1], g[1]);
    for (int i = 0; i < C * K; i++) {
        double a = g[0][i] * W0[i], c = g[1][i] * W0[i];
        taylor[i] = (a * a + c * c) / 2;                  /* eq. 4, averaged over the batches */
        mean_sq[i] = fabs((g[0][i] + g[1][i]) / 2 * W0[i]); /* |mean g · w|: not the variant */
        snip[i] = fabs(a);                                /* one batch: SNIP's ranking */
    }
    float want[C * K], other[C * K], one[C * K];
    lowest3(taylor, want);
    lowest3(mean_sq, other);
    lowest3(snip, one);
    cr_assert(memcmp(want, other, sizeof want) != 0, "the data does not tell (g·w)² averaged from |mean g · w|");
    cr_assert(memcmp(want, one, sizeof want) != 0, "the data does not tell two batches from one");

    rf_prune_cfg cfg;
    rf_prune_cfg_default(&cfg);
    cfg.method = rf_prune_method_from_name("taylor");
    cr_assert_geq(cfg.method, 0, "taylor is not in the method table");
    cfg.scope = RF_SCOPE_GLOBAL;
    cfg.sparsity = 0.5;
    cfg.batch = B;
    cfg.batches = 2;
    cr_assert_eq(rf_prune_model(&ctx, m, &cfg, d), RF_OK, "%s", ctx.err);
    for (int i = 0; i < C * K; i++)
        cr_assert_eq(m->masks[w->offset + i], want[i], "fc.weight[%d]: mask %g, by hand %g (scores %g %g %g %g %g %g)", i,
                     m->masks[w->offset + i], want[i], taylor[0], taylor[1], taylor[2], taylor[3], taylor[4], taylor[5]);
    /* the model is left as found apart from its masks: the bias is not prunable, kept weights unchanged */
    for (int i = 0; i < C; i++) cr_assert_eq(m->params[bias->offset + i], b0[i]);
    for (int i = 0; i < C * K; i++) cr_assert_eq(m->params[w->offset + i], want[i] != 0.0f ? W0[i] : 0.0f);

    /* the descriptor says what the method needs */
    const rf_prune_method_desc *desc = rf_prune_method_get(cfg.method);
    cr_assert(desc->flags & RF_PM_DATA);
    cr_assert(desc->flags & RF_PM_GRAD);
    cr_assert(!(desc->flags & RF_PM_HIGHEST));
    cr_assert(rf_prune_method_reads(cfg.method, "obd_batches"));
    cr_assert_eq(rf_prune_model(&ctx, m, &cfg, NULL), RF_ERR_INVALID, "taylor without data must be refused");
    rf_dataset_free(d);
    rf_model_free(m);
}

/* Helpers shared by the nn unit tests (test_nn.c, test_models.c). */
#ifndef RAFFLE_TESTS_NN_TEST_UTIL_H
#define RAFFLE_TESTS_NN_TEST_UTIL_H

#include <stdlib.h>
#include <string.h>
#include "raffle/nn.h"

/* n standard normal floats from stream (seed, 3); caller frees. */
static inline float *randn(size_t n, uint64_t seed) {
    rf_rng r; rf_rng_init(&r, seed, 3);
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = rf_rng_normal(&r);
    return x;
}

/* Floats per input sample. */
static inline size_t in_numel(const rf_model *m) { return (size_t)m->input.d[0] * m->input.d[1] * m->input.d[2]; }

/* One training forward and backward of x (B samples) with logits gradient
 * dl; poison: every activation gradient set to NaN between the two, so a
 * gradient that is added to instead of written shows. The parameter
 * gradients into g [n_params] and the input gradient into dx (needs
 * m->input_grad). Uses Criterion: include it first. */
static inline void grads_after(rf_model *m, rf_ctx *ctx, const float *x, const float *dl, int B, float *g, float *dx,
                               int poison) {
    const float *y;
    cr_assert_eq(rf_model_forward(ctx, m, x, B, 1, &y), RF_OK, "%s", rf_ctx_error(ctx));
    if (poison)
        for (size_t i = 0; i < m->acts_numel; i++) m->dacts[i] = __builtin_nanf("");
    rf_model_zero_grad(m);
    cr_assert_eq(rf_model_backward(ctx, m, dl), RF_OK, "%s", rf_ctx_error(ctx));
    memcpy(g, m->grads, m->n_params * sizeof(float));
    memcpy(dx, m->dinput, (size_t)B * in_numel(m) * sizeof(float));
}

/* Three legs of grads_after (parameter gradients g[k], input gradients d[k]
 * of nx floats): legs 1 and 2 must have leg 0's bytes and leg 1 (the
 * poisoned one) no NaN parameter gradient; frees the six buffers. */
static inline void expect_three_legs(const rf_model *m, float **g, float **d, size_t nx) {
    for (int k = 1; k < 3; k++) {
        cr_expect(memcmp(g[0], g[k], m->n_params * sizeof(float)) == 0, "leg %d: parameter gradients differ", k);
        cr_expect(memcmp(d[0], d[k], nx * sizeof(float)) == 0, "leg %d: input gradient differs", k);
    }
    size_t nan = 0;
    for (size_t i = 0; i < m->n_params; i++) nan += g[1][i] != g[1][i];
    cr_expect_eq(nan, 0, "%zu NaN parameter gradients", nan);
    for (int k = 0; k < 3; k++) { free(g[k]); free(d[k]); }
}

#endif

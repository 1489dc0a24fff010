/* Helpers shared by the nn unit tests (test_nn.c, test_models.c). */
#ifndef RAFFLE_TESTS_NN_TEST_UTIL_H
#define RAFFLE_TESTS_NN_TEST_UTIL_H

#include <stdlib.h>
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

#endif

/* Row-streaming sgemm (src/nn/gemm_rows.c) against OpenBLAS on the engine's
 * product shapes, one thread, side by side in one run. Prints, per shape and
 * product (fwd: Y = X W^T + b; dx: dX += dY W), GFLOP/s of both and the
 * ratio. Build and run: bench/cbench.sh bench/train/gemm_rows_bench.c */
#include "nn/layers.h"
#include "raffle/kernels.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *rnd(size_t n, unsigned *s) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) { *s = *s * 1664525u + 1013904223u; p[i] = (float)(*s >> 8) / 16777216.0f - 0.5f; }
    return p;
}

/* seconds per call, best of 5 batches of calls lasting >= 20 ms */
static double time_it(int blas, int op, float *Y, const float *X, const float *W, const float *b, int M, int N, int K) {
    rf_engine e;
    rf_engine_builtin(&e);
    e.v[RF_ENGINE_GEMM] = blas ? RF_ENGINE_GEMM_BLAS : RF_ENGINE_GEMM_ROWS;
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        int calls = 0;
        double t0 = now(), t;
        do {
            if (op == 1) rf_nn_linear_dx(&e, Y, X, W, M, N, K, K, N);
            else if (op == 2) rf_nn_linear_dw(&e, Y, X, W, M, N, K, K, N);
            else rf_nn_linear_fwd(&e, Y, X, W, b, M, N, K, K, N);
            calls++;
        } while ((t = now() - t0) < 0.02);
        if (t / calls < best) best = t / calls;
    }
    return best;
}

int main(int argc, char **argv) {
    (void)argc; (void)argv;
    /* M N K: vit-tiny at batch 128 (17 tokens), lenet-300-100/lenet-5/mlp at 128 */
    static const int shapes[][3] = {{2176, 192, 64}, {2176, 64, 64}, {2176, 256, 64}, {2176, 64, 256},
                                    {2048, 64, 49}, {128, 10, 64}, {128, 300, 784}, {128, 100, 300},
                                    {128, 10, 100}, {128, 120, 400}, {128, 84, 120}, {128, 10, 84},
                                    {128, 1200, 784}, {128, 1200, 1200}, {128, 800, 800}};
    unsigned s = 1;
    printf("%-16s %-4s %9s %9s %7s\n", "MxNxK", "op", "rows_GF", "blas_GF", "ratio");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int M = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
        for (int op = 0; op < 3; op++) {
            /* fwd: X[M,K], W[N,K] -> Y[M,N]; dx: dY[M,N], W[N,K] -> dX[M,K];
             * dw: dY[M,N] (as X), X[M,K] (as W) -> dW[N,K] */
            float *X = rnd((size_t)M * (op ? N : K), &s), *W = rnd((size_t)(op == 2 ? M : N) * K, &s);
            float *b = rnd((size_t)N, &s), *Y = calloc((size_t)(op == 1 ? M : op == 2 ? N : M) * (op ? K : N), sizeof(float));
            double tr = time_it(0, op, Y, X, W, b, M, N, K), tb = time_it(1, op, Y, X, W, b, M, N, K);
            double fl = 2.0 * M * N * K;
            char sh[32];
            snprintf(sh, sizeof sh, "%dx%dx%d", M, N, K);
            printf("%-16s %-4s %9.1f %9.1f %7.2f\n", sh, op == 1 ? "dx" : op == 2 ? "dw" : "fwd", fl / tr * 1e-9, fl / tb * 1e-9, tb / tr);
            free(X); free(W); free(b); free(Y);
        }
    }
    return 0;
}
